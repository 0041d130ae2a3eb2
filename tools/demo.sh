#!/usr/bin/env bash
# demo.sh - installs what is missing, builds ndcl, and runs its main job on
# the default OpenCL device: the device list and self-test, then a
# deconvolved conv layer in training and evaluation mode next to a plain
# convolution.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup-deps.sh
ndcl_install "${NDCL_PACKAGES[@]}"

[ -f build/build.ninja ] || meson setup build -Dtests=false
ninja -C build

./build/tools/ndcl-query
./build/tools/ndcl-query --self-test --device "${NDCL_DEVICE:-$(./build/tools/ndcl-query --default-spec)}"
./build/tools/ndcl-bench --suite conv,layer-train,layer-eval --preset small --runs 3
