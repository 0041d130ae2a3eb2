#!/usr/bin/python3
"""bench_torch.py - ndcl next to the original network deconvolution in
PyTorch, on the same CPU, the same shapes, in one run.

For each shape it times, in PyTorch (tools/pytorch/deconv_torch.py, the arithmetic
of the authors' FastDeconv, on the CPU with --threads threads), the
training forward, the evaluation forward and a training step (forward +
backward); then runs ndcl-bench on the same shape (layer-train,
layer-eval, layer-backward; the step is layer-train + layer-backward) and
prints the two side by side with the ratios ndcl / torch. Beside it: each
side's peak memory for one training step, each in a fresh process (the
whole process's peak RSS, interpreter and inputs included: PyTorch, and
ndcl-run on the same layer and arrays), and the rate of each side's
matrix products at 1024^3 (torch.mm; ndcl-bench's gemm with the host
BLAS's own cblas_sgemm beside it).

Usage (system Python, which has torch), from a built tree:
  /usr/bin/python3 tools/pytorch/bench_torch.py [--preset cifar-resnet18|small]
      [--shape N,C,H,W,Cout,k[,stride,padding,groups,block,ss]]...
      [--runs 5] [--warmup 1] [--threads 2] [--build build] [--no-memory]
      [--torch-only] [--json]

Timing: time.perf_counter around each call (PyTorch's CPU ops are
synchronous); --warmup untimed calls, then --runs timed calls with the
five interleaved round-robin; medians reported (ndcl-bench times the same
way around enqueue + clFinish). The training forward records the autograd
graph (x requires grad, as in a network); the evaluation forward runs under
torch.no_grad(); the step is forward + y.backward(dy), giving dx, dW and
db, as ndcl's backward does. The plain convolution alone (torch's
F.conv2d; ndcl-bench's conv and conv-backward, by the algorithm auto takes,
named in the last column) is timed the same way: forward under no_grad,
and forward + backward to dx, dW, db. Inputs and weights are random from a fixed
seed. The original's eval forward folds the running statistics into the
weights on every call, where ndcl caches W', b'.

torch's matrix products (the covariance, Newton-Schulz and fold) go
through whatever libblas.so.3 Debian's alternatives select: the reference
BLAS is some 20x slower than OpenBLAS, so the script says which one is
loaded and warns loudly when it is the reference (install
libopenblas0-pthread).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from deconv_torch import FastDeconv, save_layer  # noqa: E402

PRESETS = {
    "cifar-resnet18": ["128,64,32,32,64,3,1,1", "128,128,16,16,128,3,1,1",
                       "128,256,8,8,256,3,1,1", "128,512,4,4,512,3,1,1"],
    "small": ["8,16,16,16,16,3,1,1", "8,32,8,8,32,3,1,1"],
}
TIME = "/usr/bin/time"  # GNU time (Debian's time package), for peak RSS
KEYS = ["n", "c", "h", "w", "cout", "k", "stride", "padding", "groups", "block", "ss"]


def parse_shape(text):
    """N,C,H,W,Cout,k[,stride,padding,groups,block,ss] with ndcl-bench's
    defaults (stride 1, padding k/2, groups 1, block 64, ss 3)."""
    try:
        v = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("bad shape %r: not integers" % text)
    if not 6 <= len(v) <= 11:
        raise argparse.ArgumentTypeError("bad shape %r: %d values (6 to 11)" % (text, len(v)))
    defaults = [1, v[5] // 2, 1, 64, 3]
    v += defaults[len(v) - 6:]
    return dict(zip(KEYS, v))


def shape_arg(s):
    return ",".join(str(s[k]) for k in KEYS)


def shape_text(s):
    return "%d×%d×%d→%d" % (s["c"], s["h"], s["w"], s["cout"])


# ------------------------------------------------------------ PyTorch side

def make_layer(s):
    torch.manual_seed(1)
    m = FastDeconv(s["c"], s["cout"], s["k"], stride=s["stride"], padding=s["padding"],
                   groups=s["groups"], block=s["block"], sampling_stride=s["ss"])
    with torch.no_grad():
        m.weight.copy_(torch.rand_like(m.weight) * 0.1 - 0.05)
        m.bias.copy_(torch.rand_like(m.bias) * 0.2 - 0.1)
    x = torch.rand(s["n"], s["c"], s["h"], s["w"]) * 2 - 1
    with torch.no_grad():
        m.eval()
        y = m(x)
    dy = torch.rand_like(y) * 0.02 - 0.01
    return m, x, dy


def torch_step(m, x, dy):
    """One training step: forward with autograd, backward to dx, dW, db."""
    m.train()
    xg = x.detach().requires_grad_(True)
    m.weight.grad = m.bias.grad = None
    y = m(xg)
    y.backward(dy)


def torch_train_forward(m, x):
    m.train()
    m(x.detach().requires_grad_(True))


def torch_eval_forward(m, x):
    m.eval()
    with torch.no_grad():
        m(x)


def torch_conv(m, x):
    """The plain convolution the layer ends with, alone (no autograd)."""
    with torch.no_grad():
        torch.nn.functional.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation,
                                   m.groups)


def torch_conv_step(m, x, dy):
    """The plain convolution's forward + backward (dx, dW, db)."""
    xg = x.detach().requires_grad_(True)
    m.weight.grad = m.bias.grad = None
    y = torch.nn.functional.conv2d(xg, m.weight, m.bias, m.stride, m.padding, m.dilation,
                                   m.groups)
    y.backward(dy)


def torch_times(s, runs, warmup):
    """Median ms of the train forward, eval forward and step, and of the
    plain convolution's forward and forward + backward."""
    m, x, dy = make_layer(s)
    calls = [("train", lambda: torch_train_forward(m, x)),
             ("eval", lambda: torch_eval_forward(m, x)),
             ("step", lambda: torch_step(m, x, dy)),
             ("conv", lambda: torch_conv(m, x)),
             ("conv_step", lambda: torch_conv_step(m, x, dy))]
    times = {name: [] for name, _ in calls}
    for _ in range(warmup + 1):
        for _, f in calls:
            f()
    for _ in range(runs):
        for name, f in calls:
            t0 = time.perf_counter()
            f()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def blas_library():
    """The file behind the libblas.so.3 torch has loaded."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "libblas.so" in path or "libopenblas" in path:
                    return os.path.realpath(path)
    except OSError:
        pass
    return "?"


def torch_mm_gflops():
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * 1024 ** 3 / best / 1e9


def peak_step_child(shape, threads):
    """--peak-step: one training step in this process (its parent reads the
    peak RSS)."""
    torch.set_num_threads(threads)
    m, x, dy = make_layer(parse_shape(shape))
    torch_step(m, x, dy)


def peak_rss(cmd):
    """Peak RSS (bytes) of a fresh process running cmd, as GNU time reports
    it (its %M). Not from this process's own wait4: Linux carries a
    process's high-water RSS across exec, so a child forked from this
    interpreter would report the interpreter's size. None when it failed
    (its error goes to stderr)."""
    with tempfile.NamedTemporaryFile("r") as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([TIME, "-f", "%M", "-o", out.name] + cmd,
                           stdout=subprocess.DEVNULL, stderr=err)
        if p.returncode != 0:
            err.seek(0)
            sys.stderr.write("%s: exit %d: %s\n" % (" ".join(cmd[:2]), p.returncode,
                                                    err.read().decode()[-600:]))
            return None
        return int(out.read().split()[-1]) * 1024


# ------------------------------------------------------------ ndcl side

def ndcl_bench(bench, args):
    out = subprocess.run([bench] + args + ["--json", "--quiet"], check=True,
                         stdout=subprocess.PIPE).stdout
    return json.loads(out)


def ndcl_times(bench, s, runs, warmup):
    rows = ndcl_bench(bench, ["--shape", shape_arg(s), "--suite",
                              "layer-train,layer-eval,layer-backward,conv,conv-backward",
                              "--runs", str(runs), "--warmup", str(warmup)])
    med = {r["suite"]: r["median_ms"] for r in rows}
    if "layer-backward" not in med:
        raise SystemExit("ndcl-bench gave no layer-backward row for %s" % shape_text(s))
    notes = {r["suite"]: r.get("note", "") for r in rows}
    took = [n.split("auto: ")[-1] for n in (notes.get("conv", ""), notes.get("conv-backward", ""))
            if "auto: " in n]
    return {"train": med["layer-train"], "eval": med["layer-eval"],
            "step": med["layer-train"] + med["layer-backward"],
            "conv": med["conv"], "conv_step": med["conv"] + med["conv-backward"],
            "conv_algo": "; ".join(took), "blas": rows[0].get("blas", "?")}


def ndcl_peak(run_tool, s, tmp):
    """Peak RSS of ndcl-run doing one training step (forward + backward with
    dx, dW, db) on the same layer and arrays PyTorch used."""
    import numpy as np
    m, x, dy = make_layer(s)
    layer, xf, dyf = (os.path.join(tmp, n) for n in ("layer.safetensors", "x.npy", "dy.npy"))
    save_layer(m, layer)
    np.save(xf, x.numpy())
    np.save(dyf, dy.numpy())
    return peak_rss([run_tool, layer, "--input", xf, "--mode", "train", "--grad-output",
                       dyf, "--grad-input", os.path.join(tmp, "dx.npy"), "--grad-params",
                       os.path.join(tmp, "g.safetensors")])


# ------------------------------------------------------------ main

def fmt_ms(v):
    return "%.0f" % v if v >= 10 else "%.1f" % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", action="append", choices=sorted(PRESETS))
    ap.add_argument("--shape", action="append", type=parse_shape, default=[])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"),
                    help="the build directory holding tools/bench/ndcl-bench and tools/run/ndcl-run")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    ap.add_argument("--torch-only", action="store_true", help="only the PyTorch side")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--peak-step", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peak_step:
        return peak_step_child(a.peak_step, a.threads)
    if a.runs < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--runs >= 1, --warmup >= 0, --threads >= 1")
    shapes = list(a.shape)
    for p in a.preset or ([] if shapes else ["cifar-resnet18"]):
        shapes += [parse_shape(t) for t in PRESETS[p]]
    torch.set_num_threads(a.threads)
    bench = os.path.join(a.build, "tools", "bench", "ndcl-bench")
    run_tool = os.path.join(a.build, "tools", "run", "ndcl-run")
    if not a.no_memory and not os.access(TIME, os.X_OK):
        ap.error("%s (GNU time) measures the peak memory: install the time package, "
                 "or pass --no-memory" % TIME)
    if not a.torch_only:
        for t in (bench, run_tool):
            if not os.access(t, os.X_OK):
                ap.error("%s is not there: build ndcl first, or pass --build or "
                         "--torch-only" % t)

    blas_file = blas_library()
    mm = torch_mm_gflops()
    # Debian's reference BLAS lives in .../blas/, OpenBLAS in .../openblas-*/.
    reference = "/blas/libblas" in blas_file
    if reference or mm < 20:
        sys.stderr.write(
            "\n!!! WARNING: torch's BLAS is %s at %.1f GFLOPS (torch.mm 1024^3).\n"
            "!!! That is the reference BLAS (or as slow): no PyTorch user runs that way,\n"
            "!!! and every torch number below is inflated by its matrix products.\n"
            "!!! Install libopenblas0-pthread (tools/setup-deps.sh does) and run again.\n\n"
            % (blas_file, mm))
    gemm = None
    if not a.torch_only:
        gemm = ndcl_bench(bench, ["--suite", "gemm", "--gemm", "1024,1024,1024",
                                  "--runs", "5", "--warmup", "1"])

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(shapes):
            sys.stderr.write("[%d/%d] %s: torch\n" % (i + 1, len(shapes), shape_text(s)))
            row = {"shape": shape_text(s), "args": shape_arg(s),
                   "torch": torch_times(s, a.runs, a.warmup)}
            if not a.torch_only:
                sys.stderr.write("[%d/%d] %s: ndcl\n" % (i + 1, len(shapes), shape_text(s)))
                row["ndcl"] = ndcl_times(bench, s, a.runs, a.warmup)
            if not a.no_memory:
                sys.stderr.write("[%d/%d] %s: peak memory\n" % (i + 1, len(shapes),
                                                                shape_text(s)))
                row["torch"]["peak_bytes"] = peak_rss(
                    [sys.executable, os.path.abspath(__file__), "--peak-step", shape_arg(s),
                     "--threads", str(a.threads)])
                if not a.torch_only:
                    row["ndcl"]["peak_bytes"] = ndcl_peak(run_tool, s, tmp)
            rows.append(row)

    if a.json:
        print(json.dumps({"torch_version": torch.__version__, "threads": a.threads,
                          "torch_blas": blas_file, "torch_mm_1024_gflops": mm,
                          "ndcl_gemm_1024": gemm, "rows": rows}, indent=2))
        return
    print("# PyTorch %s, %d threads, BLAS %s: torch.mm 1024^3 at %.1f GFLOPS%s"
          % (torch.__version__, a.threads, blas_file, mm,
             "  <-- REFERENCE BLAS, see the warning" if reference or mm < 20 else ""))
    if gemm:
        by = {r["suite"]: r for r in gemm}
        g, h = by.get("gemm"), by.get("gemm-host")
        print("# ndcl (%s engine): gemm 1024^3 at %.1f GFLOPS%s"
              % (g["blas"], g["gflops"],
                 "; the host BLAS's own cblas_sgemm at %.1f GFLOPS (%.2fx)"
                 % (h["gflops"], g["gflops"] / h["gflops"]) if h else ""))
    print("# medians of %d runs after %d warm-up, ms; train fwd records autograd in torch; "
          "step = forward + backward (dx, dW, db); peak = whole-process peak RSS of one "
          "training step (torch: python + torch; ndcl: ndcl-run)" % (a.runs, a.warmup))
    print()
    head = ["shape", "torch train fwd"]
    if not a.torch_only:
        head += ["ndcl train fwd", "ndcl/torch"]
    head += ["torch eval"]
    if not a.torch_only:
        head += ["ndcl eval", "ndcl/torch"]
    head += ["torch step (fwd+bwd)"]
    if not a.torch_only:
        head += ["ndcl fwd+bwd", "ndcl/torch"]
    head += ["torch conv"]
    if not a.torch_only:
        head += ["ndcl conv", "ndcl/torch"]
    head += ["torch conv fwd+bwd"]
    if not a.torch_only:
        head += ["ndcl conv fwd+bwd", "ndcl/torch", "ndcl conv algorithm (auto)"]
    if not a.no_memory:
        head += ["torch peak MB"] + ([] if a.torch_only else ["ndcl peak MB", "ndcl/torch"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        t, n = r["torch"], r.get("ndcl")
        cells = [r["shape"]]
        for key in ("train", "eval", "step", "conv", "conv_step"):
            cells.append(fmt_ms(t[key]))
            if n:
                cells += [fmt_ms(n[key]), "%.2f" % (n[key] / t[key])]
        if n:
            cells.append(n["conv_algo"])
        if not a.no_memory:
            tp = t.get("peak_bytes")
            cells.append("%.0f" % (tp / 2 ** 20) if tp else "?")
            if n:
                npk = n.get("peak_bytes")
                cells.append("%.0f" % (npk / 2 ** 20) if npk else "?")
                cells.append("%.2f" % (npk / tp) if npk and tp else "?")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
