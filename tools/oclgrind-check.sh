#!/usr/bin/env bash
# oclgrind-check.sh - runs the small kernel suites under Oclgrind, which
# simulates every work-item and catches out-of-bounds accesses, data races
# and uninitialised reads that PoCL hides. Fails on any such report in an
# ndcl kernel, or when a suite's checks fail.
#
# CLBlast's own kernels are not ours to judge: its GEMMs read the padding of
# their tiles before it is written, so Oclgrind's uninitialised-value
# reports inside them (and in ndcl kernels that read a GEMM's result) are
# counted but do not fail the run. Invalid accesses and races fail it
# wherever they are. The layer suites run without --uninitialized: with it,
# Oclgrind's shadow values change what CLBlast's padded GEMMs compute (the
# same binaries pass without the plugin and on PoCL), so only their
# out-of-bounds and race checks are meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
command -v oclgrind >/dev/null || { echo "oclgrind-check.sh: oclgrind is not installed" >&2; exit 1; }
for bin in test_primitives test_layers test_backward test_sync; do
    if [ ! -x "$build/tests/$bin" ]; then
        echo "oclgrind-check.sh: $build/tests/$bin is missing (was $build configured with -Dtests=false?)" >&2
        exit 1
    fi
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

run() { # flags binary case...
    local flags=$1 bin=$2
    shift 2
    for c in "$@"; do
        echo "-- oclgrind $bin $c"
        # Oclgrind's runtime corrupts the heap at exit after CLBlast ran;
        # the verdict comes from Check's summary line, not the exit code.
        NDCL_CACHE=0 CK_RUN_CASE=$c timeout 900 \
            oclgrind $flags "$build/tests/$bin" >"$log" 2>&1 || true
        local summary
        summary=$(grep -E '^[0-9]+%: Checks' "$log" | tail -1 || true)
        echo "   ${summary:-no summary}"
        if ! grep -qE '^100%: Checks: [1-9]' "$log"; then
            echo "   FAILED: not every check of $bin $c passed under Oclgrind; the end of its log:"
            grep -E ':[EF]:' "$log" | head -5 || tail -20 "$log"
            status=1
        fi
        local bad
        bad=$(grep -cE '^(Invalid (read|write)|.*data race)' "$log" || true)
        local uninit
        uninit=$(grep -cE '^Uninitialized' "$log" || true)
        echo "   invalid accesses / races: $bad, uninitialised reads (not failing): $uninit"
        if [ "$bad" != "0" ]; then
            grep -E -A6 '^(Invalid (read|write)|.*data race)' "$log" | head -30
            status=1
        fi
    done
}

run "--data-races --uninitialized" test_primitives patches covariance isqrt fold whiten
run "--data-races" test_conv small_paths backward_outputs_alone
run "--data-races" test_layers conv_basic conv_groups linear_layers channel_layers
run "--data-races" test_backward fd_conv_g1 fd_conv_g2 fd_linear_layers fd_channel_layers
# The group protocol's kernels (shares of a sample, leftover moments) on one
# thread: Oclgrind's runtime is not safe for contexts on two threads at once.
run "--data-races" test_sync group_of_one
if [ $status -ne 0 ]; then echo "oclgrind-check.sh: FAILED (see the reports above)" >&2; fi
exit $status
