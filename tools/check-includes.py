#!/usr/bin/env python3
"""check-includes.py - the include direction of src/: every `#include "..."`
of a file under src/ must name a header of its own part, of a part below
it, or one that every part may include; a layer kind's file may not
include another kind's header, and the kind-blind layer files (layer.*,
group.*) no kind's header; and no two modules (foo.c with foo.h) of src/
may depend on each other through their includes, directly or around a
longer circle (layer.c <-> group.c was one). Exits 1 naming each bad include, 0 when there
is none. Usage: check-includes.py [SOURCE_ROOT] (default: this file's
repository)."""
import os
import re
import sys

# ---------------------------------------------------------------- the rules
# Parts, top to bottom: a file belongs to the first entry whose prefix its
# path (relative to the source root) starts with.
PARTS = [
    # The public wrappers of ndcl.h's primitives, and the door ndcl-bench
    # uses: above everything they call.
    ("api", ["src/primitives/api.c", "src/bench.h"]),
    # The MPI binding: over libndcl's public API only.
    ("mpi", ["src/mpi/"]),
    # The host reference and ndcl_self_test (src/selftest/, from the
    # layout-tools branch): over the public API and the runtime.
    ("selftest", ["src/selftest/"]),
    # File formats: layer files through the public layer API (ndcl.h), the
    # safetensors and .npy readers on the runtime's tensors.
    ("formats", ["src/formats/"]),
    # The layer handle, the kinds and groups.
    ("layers", ["src/layers/"]),
    # The plain convolution's algorithm table: its entries wrap the
    # primitives' im2col + GEMM (primitives/conv2d.c) and oneDNN.
    ("conv", ["src/conv/"]),
    # The deconvolution primitives and their adjoints (kernels in cl/).
    ("primitives", ["src/primitives/"]),
    # The BLAS engines.
    ("blas", ["src/blas/"]),
    # Contexts, status, programs, tensors.
    ("runtime", ["src/runtime/"]),
]

# What each part may include besides its own headers and COMMON.
ALLOWED = {
    "api": {"layers", "conv", "primitives", "blas", "runtime"},
    "mpi": set(),
    "selftest": {"runtime"},
    "formats": {"runtime"},
    "layers": {"conv", "primitives", "runtime"},
    "conv": {"primitives", "blas", "runtime"},
    "primitives": {"blas", "runtime"},
    "blas": {"runtime"},
    "runtime": set(),
}

# Headers any file may include: the public API and the build's features.
COMMON = {"ndcl.h", "ndcl_cl.h", "ndcl_mpi.h", "config.h"}

# Layer kinds: files named <kind>.c, <kind>.h, <kind>_*.c. The others in
# src/layers/ are kind-blind and may include no kind's header.
LAYER_KINDS = ["fastdeconv", "linear", "channel"]
# ---------------------------------------------------------------- the check

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def part_of(rel):
    for name, prefixes in PARTS:
        if any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in prefixes):
            return name
    return None


def kind_of(rel):
    if not rel.startswith("src/layers/"):
        return None
    base = os.path.basename(rel)
    for k in LAYER_KINDS:
        if base == k + ".c" or base == k + ".h" or base.startswith(k + "_"):
            return k
    return None


def header_path(root, rel, inc):
    """The included header as a path relative to root (src/ and include/
    are the include directories; a name beside the including file is
    looked up first, as the compiler does)."""
    beside = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
    if os.path.exists(os.path.join(root, beside)):
        return beside
    for d in ("src", "include"):
        cand = os.path.normpath(os.path.join(d, inc))
        if os.path.exists(os.path.join(root, cand)):
            return cand
    return None


def check(root):
    bad = []
    for dirpath, _, files in os.walk(os.path.join(root, "src")):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            me = part_of(rel)
            with open(os.path.join(root, rel), encoding="utf-8") as fh:
                for no, line in enumerate(fh, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    inc = m.group(1)
                    if os.path.basename(inc) in COMMON and "/" not in inc:
                        continue
                    hp = header_path(root, rel, inc)
                    where = f"{rel}:{no}: #include \"{inc}\""
                    if hp is None:
                        bad.append(f"{where}: not a header of the source tree")
                        continue
                    if hp.startswith("include/"):
                        continue
                    them = part_of(hp)
                    if me is None or them is None:
                        bad.append(f"{where}: {rel if me is None else hp} belongs to no part")
                        continue
                    if them != me and them not in ALLOWED[me]:
                        bad.append(f"{where}: {me} may not include {them} (may: "
                                   f"{', '.join(sorted(ALLOWED[me])) or 'nothing below'})")
                        continue
                    if me == "layers" and them == "layers":
                        mine, theirs = kind_of(rel), kind_of(hp)
                        if theirs is not None and theirs != mine:
                            who = f"the {mine} kind" if mine else "a kind-blind layer file"
                            bad.append(f"{where}: {who} may not include the {theirs} kind's header")
    return bad


def module_cycles(root):
    """Circles between modules: a module is a path without its extension
    (foo.c and foo.h), and it depends on every module whose header one of
    its files includes."""
    deps = {}
    for dirpath, _, files in os.walk(os.path.join(root, "src")):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            me = os.path.splitext(rel)[0]
            deps.setdefault(me, set())
            with open(os.path.join(root, rel), encoding="utf-8") as fh:
                for line in fh:
                    m = INCLUDE.match(line)
                    hp = m and header_path(root, rel, m.group(1))
                    if hp and hp.startswith("src/"):
                        other = os.path.splitext(hp)[0]
                        if other != me:
                            deps[me].add(other)
    bad, seen, stack, on_stack = [], set(), [], set()

    def visit(mod):
        seen.add(mod)
        stack.append(mod)
        on_stack.add(mod)
        for nxt in sorted(deps.get(mod, ())):
            if nxt in on_stack:
                circle = stack[stack.index(nxt):] + [nxt]
                bad.append("modules depend on each other: " + " -> ".join(circle))
            elif nxt not in seen:
                visit(nxt)
        stack.pop()
        on_stack.discard(mod)

    for mod in sorted(deps):
        if mod not in seen:
            visit(mod)
    return bad


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    bad = check(os.path.abspath(root)) + module_cycles(os.path.abspath(root))
    for b in bad:
        print(b, file=sys.stderr)
    if bad:
        print(f"check-includes: {len(bad)} include(s) against the direction of src/ or circles",
              file=sys.stderr)
        return 1
    print("check-includes: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
