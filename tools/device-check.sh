#!/usr/bin/env bash
# device-check.sh - the numeric suites and the convolution benchmarks on
# one OpenCL device, for the day a GPU (or any other device) is at hand:
#   tools/device-check.sh [SPEC] [BUILD]
# SPEC selects the device as NDCL_DEVICE does (P:D or part of its name;
# default: ndcl's own choice, the first GPU else the first device); BUILD
# is a configured build directory (default build, set up with the tests).
# Prints the device's listing (BLAS engine, convolution algorithms), its
# self-test, the kernel, conv_algo, layer, backward and golden-data suites
# on it, and ndcl-bench's gemm, conv and conv-backward rows (one per
# algorithm the device has) at the cifar-resnet18 shapes. Exit status: 0
# when every step passed, else the first failing step's.
set -euo pipefail
trap 'echo "device-check.sh: FAILED at line $LINENO: $BASH_COMMAND (status $?)" >&2' ERR
cd "$(dirname "$0")/.."
spec=${1:-}
build=${2:-build}
[ -n "$spec" ] && export NDCL_DEVICE="$spec"
export NDCL_CACHE_DIR="${NDCL_CACHE_DIR:-$PWD/$build/kernel-cache}"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dtests=true
fi
ninja -C "$build"

echo "== the device"
"$build/tools/query/ndcl-query" ${spec:+--device "$spec"}
"$build/tools/query/ndcl-query" ${spec:+--device "$spec"} --self-test

echo "== numeric suites on it"
meson test -C "$build" --print-errorlogs --suite primitives --suite layers \
    --suite backward run

echo "== convolution benchmarks on it (medians of 5)"
"$build/tools/bench/ndcl-bench" ${spec:+--device "$spec"} --preset cifar-resnet18 --runs 5 \
    --suite gemm,conv,conv-backward,conv/gemm,conv/dnnl,conv/winograd,conv-backward/gemm,conv-backward/dnnl,conv-backward/winograd
echo "device-check.sh: OK"
