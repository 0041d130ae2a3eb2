#!/usr/bin/env bash
# demo.sh - installs what is missing, builds ndcl, and runs its main job on
# the default OpenCL device: the device list and self-test, a deconvolved
# conv layer in training and evaluation mode next to a plain convolution,
# and a short training run of a small CNN with network deconvolution on
# Fashion-MNIST that prints the test accuracy it reached.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup-deps.sh
ndcl_install "${NDCL_PACKAGES[@]}"

[ -f build/build.ninja ] || meson setup build -Dtests=false
ninja -C build

./build/tools/query/ndcl-query
./build/tools/query/ndcl-query --self-test --device "${NDCL_DEVICE:-$(./build/tools/query/ndcl-query --default-spec)}"
./build/tools/bench/ndcl-bench --suite conv,layer-train,layer-eval --preset small --runs 3

# 50 steps of 128 on the first 6400 training images, evaluated on the first
# 2000 test images (ndcl-train --help; the whole data set: drop the limits).
./build/tools/train/ndcl-train --net nd --limit 6400 --test-limit 2000 --device "${NDCL_DEVICE:-$(./build/tools/query/ndcl-query --default-spec)}"
