#!/usr/bin/env bash
# setup-deps.sh - installs the Debian packages ndcl needs to build and test,
# only those that are missing (idempotent). Sourced by demo.sh and test.sh.
set -euo pipefail

# libopenblas-pthread-dev: the OpenBLAS engine's OpenBLAS (CBLAS header,
# pkg-config openblas), the pthread flavour (libopenblas0-pthread): its
# threads are safe to call from several threads at once and sleep when idle.
NDCL_PACKAGES=(ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev
               libopenblas-pthread-dev libdnnl-dev libcjson-dev zlib1g-dev check meson ninja-build
               pkg-config gcc python3 dataset-fashion-mnist)
# libdnnl-dev: oneDNN's convolutions on CPU devices (the dnnl meson
# feature; found by default). zlib reads ndcl-train's gzip data, Debian's Fashion-MNIST is what it
# trains on (demo.sh's last step).
# Test-only extras: sanitizer and libFuzzer runtimes (clang, libclang-rt),
# Oclgrind, valgrind, PyTorch for the golden data, the exporter tests and
# tools/pytorch/bench_torch.py, with libopenblas0-pthread so that torch's BLAS
# (libblas.so.3) is OpenBLAS rather than the reference BLAS, and GNU time
# for its peak-memory column; Open MPI for the MPI binding and its mpirun
# suite (mpi); gnuplot for ndcl-train --plot; ONNX and OpenCV (its DNN
# module runs the ONNX files of ndcl-export-pytorch --onnx in the
# torch_roundtrip suite, a runtime other than PyTorch).
NDCL_TEST_PACKAGES=(clang libclang-rt-14-dev oclgrind python3-torch python3-numpy valgrind
                    libopenblas0-pthread time libopenmpi-dev openmpi-bin gnuplot-nox
                    python3-onnx python3-opencv)

ndcl_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
}
