#!/usr/bin/env bash
# test.sh - installs what is missing, builds ndcl and runs the whole test
# suite with meson test. With CI=true it also builds with -Werror, runs the
# suite under AddressSanitizer + UndefinedBehaviorSanitizer, the kernel
# suites with POCL_MAX_WORK_GROUP_SIZE=256 and the small ones under
# Oclgrind, and checks the installed library with pkg-config.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup-deps.sh
ndcl_install "${NDCL_PACKAGES[@]}" "${NDCL_TEST_PACKAGES[@]}"

werror=false
[ "${CI:-}" = "true" ] && werror=true
# A cache directory of the build's own, so runs are hermetic yet the second
# run reuses the kernels the first one built.
export NDCL_CACHE_DIR="$PWD/build/kernel-cache"

# The host BLAS engine is required here (setup-deps.sh installs OpenBLAS),
# so that a missing OpenBLAS fails the build instead of quietly testing
# CLBlast alone.
if [ -f build/build.ninja ]; then
    meson configure build -Dwerror=$werror -Dhost_blas=enabled >/dev/null
else
    meson setup build -Dwerror=$werror -Dhost_blas=enabled
fi
ninja -C build
meson test -C build --print-errorlogs

if [ "${CI:-}" = "true" ]; then
    tools/ci-extra.sh
fi
