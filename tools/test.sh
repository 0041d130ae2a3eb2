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

# Whatever configured build/ before (demo.sh turns the tests off, a
# hand-made setup, an older checkout), the suite is built and run: tests
# on, -Werror under CI. A build directory meson cannot reconfigure is made
# anew. The OpenBLAS engine is required here (setup-deps.sh installs
# OpenBLAS), so that a missing OpenBLAS fails the build instead of quietly
# testing CLBlast alone.
opts=(-Dtests=true -Dwerror=$werror -Dhost_blas=enabled)
if [ -f build/build.ninja ] && meson configure build "${opts[@]}" >/dev/null; then
    echo "test.sh: reusing build/ (tests=true werror=$werror host_blas=enabled)"
else
    [ -e build ] && echo "test.sh: build/ cannot be reconfigured; setting it up anew"
    rm -rf build
    meson setup build "${opts[@]}"
fi
ninja -C build

# meson test exits 0 when it finds no test at all ("No tests defined."): a
# run that tested nothing must not pass for one that tested everything.
ntests=$(meson introspect build --tests | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
if [ "$ntests" -eq 0 ]; then
    echo "test.sh: meson lists no test in build/ (is tests=false?): nothing was tested" >&2
    exit 1
fi
meson test -C build --print-errorlogs
ran=$(grep -c '"name"' build/meson-logs/testlog.json || true)
if [ "$ran" -lt "$ntests" ]; then
    echo "test.sh: meson ran $ran of the $ntests tests it lists" >&2
    exit 1
fi
echo "test.sh: $ran tests passed"

if [ "${CI:-}" = "true" ]; then
    tools/ci-extra.sh
fi
