#!/usr/bin/env bash
# ci-extra.sh - the CI steps beyond the plain suite (run by test.sh when
# CI=true, after the main build passed): the include direction of src/,
# the CLBlast engine on the CPU device, the sizing suites as other machines
# would size them, oneDNN's convolution for every layer, a build without
# the host BLAS and oneDNN, AddressSanitizer + UndefinedBehaviorSanitizer,
# small work-groups, Oclgrind, an application built against an installed
# copy in a scratch prefix as the README says, valgrind (memcheck,
# helgrind) and libFuzzer (tools/fuzz.sh).
set -euo pipefail
# Pipelines into grep use `grep ... >/dev/null`, never `grep -q`: -q exits
# at the first match, the writer then dies of SIGPIPE, and pipefail turns a
# match into a failure (or, in an if, into "no match").
# A failing step names itself: the line and the command that failed.
trap 'echo "ci-extra.sh: FAILED at line $LINENO: $BASH_COMMAND (status $?)" >&2' ERR
cd "$(dirname "$0")/.."
export NDCL_CACHE_DIR="$PWD/build/kernel-cache"

# The include direction of src/ (API -> layers -> conv -> primitives ->
# blas -> runtime, no layer kind including another's header): the rules
# are data at the top of the script.
echo "== the include direction of src/ (tools/check-includes.py)"
python3 tools/check-includes.py

# The main suite ran the products on PoCL through the OpenBLAS engine (the
# blas suite checks that it was chosen); every engine passes the same
# numeric suites, so the kernel, layer and golden-data suites run again
# with CLBlast.
echo "== the CLBlast engine on the CPU device (NDCL_BLAS=clblast)"
NDCL_BLAS=clblast meson test -C build --print-errorlogs \
    --suite primitives --suite layers --suite backward --suite sync
NDCL_BLAS=clblast meson test -C build --print-errorlogs run

# What ndcl reads of the machine to size its work is the device's cache
# size and compute units (PoCL reports the host's L3 and cores; a virtual
# machine may report a 480 MiB L3): the convolution, layer and training
# suites run again as a machine with a 1 MiB cache and one core would size
# them, on one core, and as one reporting 480 MiB and 64 units would.
echo "== sized as on other machines: 1 MiB cache, 1 unit, one core; 480 MiB, 64 units"
NDCL_DEVICE_CACHE_BYTES=1M NDCL_DEVICE_COMPUTE_UNITS=1 taskset -c 0 \
    meson test -C build --print-errorlogs conv layers backward train train_tool mpi_train
NDCL_DEVICE_CACHE_BYTES=480M NDCL_DEVICE_COMPUTE_UNITS=64 \
    meson test -C build --print-errorlogs conv layers backward train train_tool mpi_train

# Every convolution algorithm passes the same numeric suites: the
# conv_algo suite (in primitives, above and below) runs each on its own
# shapes; here every layer's convolution is oneDNN's direct one (it fits
# every geometry of the library), for the layer, backward and golden-data
# suites. Winograd fits only some shapes: conv_algo covers it.
if ldd build/src/libndcl.so | grep libdnnl >/dev/null; then
    echo "== oneDNN's convolution for every layer (NDCL_CONV_ALGO=dnnl)"
    NDCL_CONV_ALGO=dnnl meson test -C build --print-errorlogs \
        --suite layers --suite backward conv run
fi

echo "== a build without the host BLAS and oneDNN (-Dhost_blas=disabled -Ddnnl=disabled)"
if [ ! -f build-noblas/build.ninja ]; then
    meson setup build-noblas -Dhost_blas=disabled -Ddnnl=disabled -Dwerror=true
fi
meson configure build-noblas -Ddnnl=disabled >/dev/null
ninja -C build-noblas
for lib in openblas dnnl; do
    if ldd build-noblas/src/libndcl.so | grep "$lib" >/dev/null; then
        echo "build-noblas links $lib" >&2
        exit 1
    fi
done
meson test -C build-noblas --print-errorlogs --suite primitives
meson test -C build-noblas --print-errorlogs bench query

echo "== kernels with POCL_MAX_WORK_GROUP_SIZE=256"
POCL_MAX_WORK_GROUP_SIZE=256 meson test -C build --print-errorlogs \
    --suite primitives --suite layers --suite sync
# ndcl-train's kernels and network (the test called train).
POCL_MAX_WORK_GROUP_SIZE=256 meson test -C build --print-errorlogs train

echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true
fi
ninja -C build-asan
# Leaks inside the OpenCL runtime and its compiler are not ndcl's.
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
meson test -C build-asan --print-errorlogs --timeout-multiplier 3 --no-suite tools \
    --no-suite mpi
# The tool suites start the tools hundreds of times; LeakSanitizer's
# stop-the-world now and then fails to attach beside PoCL's threads
# ("LeakSanitizer has encountered a fatal error") and fails a good run, so
# they run with ASan and UBSan but without the leak check (the library's
# leaks are checked by the suites above and by valgrind below). The mpirun
# suite runs in the plain build only: Open MPI's own memory hooks are not
# ours to sanitise (the group protocol itself runs under ASan in the sync
# suite, without MPI).
ASAN_OPTIONS="detect_leaks=0:abort_on_error=0" \
    meson test -C build-asan --print-errorlogs --timeout-multiplier 3 --suite tools

echo "== Oclgrind (out-of-bounds accesses, races, uninitialised reads)"
tools/oclgrind-check.sh

echo "== installed copy in a scratch prefix: an OpenCL application built as the README says"
# A prefix outside the system's search paths, as a user without root has:
# the program must find ndcl.pc through PKG_CONFIG_PATH and libndcl.so
# through LD_LIBRARY_PATH or an rpath, exactly as the README says.
prefix=$(mktemp -d /tmp/ndcl-prefix.XXXXXX)
work=$(mktemp -d /tmp/ndcl-app.XXXXXX)
if [ ! -f build-prefix/build.ninja ]; then
    meson setup build-prefix --prefix="$prefix" -Dtests=false -Dwerror=true >/dev/null
else
    meson configure build-prefix --prefix="$prefix" >/dev/null
fi
ninja -C build-prefix >/dev/null
meson install -C build-prefix >/dev/null
libdir=$(meson introspect build-prefix --buildoptions | /usr/bin/python3 -c \
    'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"][0])')
case "$libdir" in /*) ;; *) libdir="$prefix/$libdir" ;; esac
readme_cmd='cc app.c $(pkg-config --cflags --libs ndcl)'
grep -qF "$readme_cmd" README.md || { echo "README no longer shows: $readme_cmd"; exit 1; }
cp tests/embed/app.c "$work/app.c"
(
    cd "$work"
    export PKG_CONFIG_PATH="$libdir/pkgconfig"
    pkg-config --print-requires ndcl | grep -x OpenCL >/dev/null
    # The README's command, as it is (a.out), and the program run from the
    # prefix with LD_LIBRARY_PATH ...
    eval "$readme_cmd"
    LD_LIBRARY_PATH="$libdir" ./a.out
    # ... and with the library's directory recorded as an rpath instead.
    eval "$readme_cmd -Wl,-rpath,\$(pkg-config --variable=libdir ndcl) -o app-rpath"
    env -u LD_LIBRARY_PATH ./app-rpath >/dev/null
    # The installed tools and the Python package ndcl_torch, run from the
    # prefix: a model of its classes (imported from the prefix's site
    # directory, which bin/ndcl-export-pytorch links into, as a user of the
    # installed copy would) exported and run in evaluation mode, and folded.
    LD_LIBRARY_PATH="$libdir" "$prefix/bin/ndcl-query" -l >/dev/null
    LD_LIBRARY_PATH="$libdir" "$prefix/bin/ndcl-run" --help | grep ndcl-export-pytorch >/dev/null
    "$prefix/bin/ndcl-export-pytorch" --help >/dev/null
    site=$(dirname "$(dirname "$(readlink -f "$prefix/bin/ndcl-export-pytorch")")")
    case "$site" in "$prefix"/*) ;; *) echo "ndcl_torch outside the prefix: $site"; exit 1 ;; esac
    PYTHONPATH="$site" /usr/bin/python3 - <<'PY'
import numpy as np
import torch
import ndcl_torch
from ndcl_torch.deconv_torch import FastDeconv
torch.manual_seed(0)
model = torch.nn.Sequential(FastDeconv(3, 4, 3, padding=1, block=3))
x = torch.randn(2, 3, 6, 6)
model.train()
model(x)
model.eval()
with torch.no_grad():
    np.save("y_torch.npy", model(x).numpy())
np.save("x.npy", x.numpy())
torch.save(model, "model.pt")
PY
    "$prefix/bin/ndcl-export-pytorch" model.pt layers --plain plain.pt >/dev/null
    PYTHONPATH="$site" /usr/bin/python3 -c '
import numpy as np, torch
y = torch.load("plain.pt")(torch.from_numpy(np.load("x.npy"))).detach().numpy()
ref = np.load("y_torch.npy")
assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()'
    LD_LIBRARY_PATH="$libdir" "$prefix/bin/ndcl-run" layers/0.safetensors --input x.npy \
        --output y.npy
    /usr/bin/python3 -c '
import numpy as np
y, ref = np.load("y.npy"), np.load("y_torch.npy")
err = np.abs(y - ref).max() / np.abs(ref).max()
print("installed exporter + ndcl-run vs PyTorch: max rel. error %.1e" % err)
assert err < 1e-5, err'
)
echo "prefix $prefix: OK"
rm -rf "$prefix" "$work"

echo "== the same application against the uninstalled build (README: meson-uninstalled)"
work=$(mktemp -d /tmp/ndcl-app.XXXXXX)
cp tests/embed/app.c "$work/app.c"
(
    export PKG_CONFIG_PATH="$PWD/build/meson-uninstalled"
    cd "$work"
    cc app.c $(pkg-config --cflags --libs ndcl)
    LD_LIBRARY_PATH="$(pkg-config --libs-only-L ndcl | sed 's/^ *-L//; s/ .*//')" ./a.out >/dev/null
)
rm -rf "$work"

echo "== valgrind memcheck: context, tensor and small layer lifecycles, teardown orders"
vg="valgrind --suppressions=$PWD/tests/valgrind.supp --error-exitcode=1 --num-callers=30"
# The convolution's auto choice would measure oneDNN's JIT-generated
# kernels, whose blocks exhaust valgrind's translation storage ("VEX
# temporary storage exhausted"): the layer suites run on im2col + GEMM
# here, and oneDNN's passes are checked on their own (mixed_passes, small
# shapes, below) and under AddressSanitizer above.
export NDCL_CONV_ALGO=gemm
$vg --leak-check=full --errors-for-leak-kinds=definite build/tests/test_context
$vg --leak-check=full --errors-for-leak-kinds=definite build/tests/test_tensor
# Contexts, layers and tensors destroyed in all 24 orders, each survivor
# called after every destroy, and a conv layer used after its context's
# destroy: no invalid access, no definite leak (20-40 s here once PoCL has
# cached its kernels for valgrind's CPU; after a kernel change the first
# valgrind run compiles them, minutes, as for the steps around it).
$vg --leak-check=full --errors-for-leak-kinds=definite build/tests/test_lifetime
# Parameter views: shared version cells, views outliving their layer.
$vg --leak-check=full --errors-for-leak-kinds=definite build/tests/test_params
for c in conv_basic linear_layers; do
    CK_RUN_CASE=$c $vg --leak-check=full --errors-for-leak-kinds=definite build/tests/test_layers
done
# The convolution table: oneDNN's passes beside im2col + GEMM's, as host
# work on mapped buffers, and their states released (about 50 s; nothing
# without oneDNN).
CK_RUN_CASE=mixed_passes env -u NDCL_CONV_ALGO $vg --leak-check=full \
    --errors-for-leak-kinds=definite \
    build/tests/test_conv_algo

echo "== helgrind: two contexts on two threads"
# PoCL's worker threads, LLVM and CLBlast synchronise in ways helgrind
# cannot see: their frames are suppressed, ndcl's are not.
CK_RUN_CASE=threads $vg --tool=helgrind build/tests/test_concurrency

echo "== libFuzzer: safetensors, .npy and layer files (${FUZZ_SECONDS:-60}s each)"
tools/fuzz.sh

echo "CI extra steps: OK"
