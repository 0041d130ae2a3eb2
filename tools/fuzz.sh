#!/usr/bin/env bash
# fuzz.sh - builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan,
# in build-fuzz) and runs each for FUZZ_SECONDS (default 60) from its
# committed seed corpus; fails on any crash, leak or sanitizer report.
# FUZZ_TARGETS limits the targets ("npy layer"); crash inputs stay in
# build-fuzz/artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-safetensors npy layer}
dir=build-fuzz

if [ ! -f $dir/build.ninja ]; then
    CC=clang meson setup $dir -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
        -Db_lundef=false -Dwerror=true >/dev/null
fi
ninja -C $dir $(for t in $targets; do echo tests/fuzz/fuzz_$t; done)

export NDCL_CACHE_DIR="$PWD/$dir/kernel-cache"
# Leaks of the OpenCL runtime are not ndcl's (as in the ASan suite); UBSan
# findings are fatal so libFuzzer records them as crashes.
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# The layer target runs real layer creation: a low device memory limit
# turns metadata that asks for huge layers into the library's own
# out-of-memory path (see fuzz_layer.c).
export POCL_MEMORY_LIMIT=1
mkdir -p $dir/artifacts
for t in $targets; do
    work=$dir/corpus-$t # grows across runs; the committed seeds stay small
    mkdir -p "$work"
    echo "== fuzz_$t for ${seconds}s"
    log=$dir/fuzz_$t.log
    # The layer target keeps its context for the whole run (libFuzzer exits
    # from its own main), so the OpenCL runtime's state is still live at
    # exit: only libFuzzer's per-input leak checks apply there.
    at_exit=1
    [ "$t" = layer ] && at_exit=0
    if ! ASAN_OPTIONS="leak_check_at_exit=$at_exit" $dir/tests/fuzz/fuzz_$t -max_total_time="$seconds" -timeout=30 \
            -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1 \
            -artifact_prefix=$dir/artifacts/$t- "$work" tests/fuzz/corpus/$t \
            >"$log" 2>&1; then
        tail -60 "$log"
        echo "fuzz_$t: FAILED (input saved under $dir/artifacts)"
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' "$log" || true
done
echo "fuzzing: OK"
