#!/usr/bin/env bash
# ci-extra.sh - the CI steps beyond the plain suite (run by test.sh when
# CI=true, after the main build passed): AddressSanitizer +
# UndefinedBehaviorSanitizer, small work-groups, Oclgrind, linking an
# installed copy through pkg-config, valgrind (memcheck, helgrind) and
# libFuzzer (tools/fuzz.sh).
set -euo pipefail
# A failing step names itself: the line and the command that failed.
trap 'echo "ci-extra.sh: FAILED at line $LINENO: $BASH_COMMAND (status $?)" >&2' ERR
cd "$(dirname "$0")/.."
export NDCL_CACHE_DIR="$PWD/build/kernel-cache"

echo "== kernels with POCL_MAX_WORK_GROUP_SIZE=256"
POCL_MAX_WORK_GROUP_SIZE=256 meson test -C build --print-errorlogs \
    --suite primitives --suite layers --suite sync

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

echo "== installed library through pkg-config"
dest=$(mktemp -d)
meson install -C build --destdir "$dest" >/dev/null
prefix=$(meson introspect build --buildoptions | /usr/bin/python3 -c \
    'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"][0])')
pcdir=$(dirname "$(find "$dest" -name ndcl.pc | head -1)")
cat > "$dest/use.c" <<'C'
#include <ndcl.h>
#include <stdio.h>
int main(void) { printf("ndcl %s\n", ndcl_version_string()); return ndcl_version_number() == NDCL_VERSION_NUMBER ? 0 : 1; }
C
PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$pcdir" \
    cc -std=c99 -Wall -Werror "$dest/use.c" -o "$dest/use" \
    $(PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs ndcl)
LD_LIBRARY_PATH="$(dirname "$(find "$dest" -name 'libndcl.so' | head -1)")" "$dest/use"
echo "prefix $prefix: OK"
rm -rf "$dest"
echo "== valgrind memcheck: context, tensor and small layer lifecycles"
vg="valgrind --suppressions=$PWD/tests/valgrind.supp --error-exitcode=1 --num-callers=30"
$vg --leak-check=full --errors-for-leak-kinds=definite build/tests/test_context
$vg --leak-check=full --errors-for-leak-kinds=definite build/tests/test_tensor
for c in conv_basic linear_layers; do
    CK_RUN_CASE=$c $vg --leak-check=full --errors-for-leak-kinds=definite build/tests/test_layers
done

echo "== helgrind: two contexts on two threads"
# PoCL's worker threads, LLVM and CLBlast synchronise in ways helgrind
# cannot see: their frames are suppressed, ndcl's are not.
CK_RUN_CASE=threads $vg --tool=helgrind build/tests/test_concurrency

echo "== libFuzzer: safetensors, .npy and layer files (${FUZZ_SECONDS:-60}s each)"
tools/fuzz.sh

echo "CI extra steps: OK"
