#!/usr/bin/env bash
# Build fondo with the MPI backend and run its MPI example programs under mpirun.
#   scripts/test-mpi.sh            # everything below
#   MPI_NP=2 scripts/test-mpi.sh   # another world size for the MPI_EXAMPLES
# Each example is an ordinary `fondo/examples/NAME.rs` using `Pool::mpi()` (rank 0 runs the
# program, the other ranks serve tasks). The run:
#   - MPI_EXAMPLES under `mpirun -np $MPI_NP`: exit 0, print "mpi: ok ..." lines, no "mpi: FAIL";
#   - mpi_abort: a task aborts its rank; the job must end non-zero within MPI_ABORT_LIMIT s
#     (MPI ends the whole job when a rank dies) and never reach "UNEXPECTED";
#   - Pool::mpi() without mpirun and with -np 1: a clear Err(Mpi), exit 2, no hang;
#   - mpi_bench at -np 2 and -np 3: per-task overhead figures (printed, not judged).
# Ends with "mpi: N passed, N failed" and exits non-zero if anything failed. Every run has a
# time limit, so a hung rank fails the run instead of stalling CI.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Examples that must pass under mpirun -np $MPI_NP (names of fondo/examples/*.rs).
MPI_EXAMPLES=(
    mpi_factorial
    mpi_methods
)

MPI_NP="${MPI_NP:-3}"
# Per-example time limit (seconds): a hung rank must fail the run, not stall CI.
MPI_TIMEOUT="${MPI_TIMEOUT:-120}"

# mpirun flags, measured on these 2-core Firecracker VMs (Open MPI 4.1.4, Debian 12):
#   --allow-run-as-root            CI runs as root; without it mpirun refuses (exit 1)
#   --oversubscribe                -np 3 > 2 cores is otherwise "not enough slots"
#   --bind-to none                 at -np <= 2 Open MPI pins each rank to ONE core, which
#                                  would confine a rank's own threads to that core
#   --mca pml ob1                  skips UCX probing: MPI_Init ~270 ms -> ~70 ms
#   --mca btl self,vader           shared memory only (single node); no TCP listeners
#   --mca odls_base_sigkill_timeout 0
#                                  when a rank dies (abort/panic/SIGKILL) mpirun kills the
#                                  others after ~40 ms instead of ~1 s
# No btl/vader warnings appear here, so btl_vader_single_copy_mechanism is left at its
# default (cma). The same settings as env vars: OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
# OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.
MPIRUN_FLAGS="--allow-run-as-root --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader --mca odls_base_sigkill_timeout 0"
# Also honoured by a program started without mpirun (a singleton) and by nested tools.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

scripts/install-mpi.sh

echo "test-mpi: building (cargo build --release -p fondo --features mpi --examples; fondo-cli --features mpi)"
cargo build --release -p fondo --features mpi --examples
cargo build --release -p fondo-cli --features mpi

target_dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)"
EXAMPLE_DIR="${target_dir:-target}/release/examples"
# A job whose rank dies must be gone within this many seconds (measured: ~0.3 s).
MPI_ABORT_LIMIT="${MPI_ABORT_LIMIT:-20}"

passed=0
failed=0
failed_names=()
LOG=""
RC=0
SECS=0

# launch LIMIT CMD...: runs CMD with a time limit; sets LOG (file), RC and SECS.
launch() {
    local limit="$1"; shift
    local start end
    LOG="$(mktemp /tmp/test-mpi.XXXXXX)"
    start=$(date +%s.%N)
    RC=0
    timeout --kill-after=10 "$limit" "$@" >"$LOG" 2>&1 </dev/null || RC=$?
    end=$(date +%s.%N)
    SECS=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
}

# verdict NAME OK WHY: records a pass or (with the log's tail) a failure.
verdict() {
    local name="$1" ok="$2" why="$3"
    if [ "$ok" = yes ]; then
        echo "test-mpi: $name: ok in ${SECS}s${why:+ ($why)}"
        passed=$((passed + 1))
    else
        echo "test-mpi: $name: FAILED after ${SECS}s: $why; output:"
        sed 's/^/    /' "$LOG" | tail -n 60
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
    rm -f "$LOG"
}

mpirun_example() {
    local np="$1" name="$2"; shift 2
    # shellcheck disable=SC2086  # MPIRUN_FLAGS is a word list on purpose
    launch "$MPI_TIMEOUT" mpirun $MPIRUN_FLAGS -np "$np" "$EXAMPLE_DIR/$name" "$@"
}

exit_why() {
    if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then echo "timed out"; else echo "exit $RC"; fi
}

# 1. Examples that must pass.
for ex in "${MPI_EXAMPLES[@]}"; do
    mpirun_example "$MPI_NP" "$ex"
    if [ "$RC" -ne 0 ]; then
        verdict "$ex (np=$MPI_NP)" no "$(exit_why)"
    elif grep -q '^mpi: FAIL' "$LOG" || ! grep -q '^mpi: ok' "$LOG"; then
        verdict "$ex (np=$MPI_NP)" no "a check failed or none ran"
    else
        verdict "$ex (np=$MPI_NP)" yes "$(grep -c '^mpi: ok' "$LOG") checks"
    fi
done

# 2. A rank dies: the job must end, non-zero and quickly, never hang.
# shellcheck disable=SC2086
launch "$MPI_ABORT_LIMIT" mpirun $MPIRUN_FLAGS -np "$MPI_NP" "$EXAMPLE_DIR/mpi_abort"
if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
    verdict "mpi_abort (np=$MPI_NP)" no "the job did not end within ${MPI_ABORT_LIMIT}s"
elif [ "$RC" -eq 0 ] || grep -q UNEXPECTED "$LOG"; then
    verdict "mpi_abort (np=$MPI_NP)" no "exit $RC: the job went on after a rank died"
elif ! grep -q 'task 7 aborts' "$LOG"; then
    verdict "mpi_abort (np=$MPI_NP)" no "exit $RC before the aborting task ran"
else
    verdict "mpi_abort (np=$MPI_NP)" yes "job ended with exit $RC after the rank died"
fi

# 2b. task_timeout: a rank cannot be replaced, so a task over its limit ends the job the same way.
# shellcheck disable=SC2086
launch "$MPI_ABORT_LIMIT" mpirun $MPIRUN_FLAGS -np "$MPI_NP" "$EXAMPLE_DIR/mpi_abort" timeout
if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
    verdict "mpi_abort timeout (np=$MPI_NP)" no "the job did not end within ${MPI_ABORT_LIMIT}s"
elif [ "$RC" -eq 0 ] || grep -q UNEXPECTED "$LOG" || ! grep -q 'ran longer than its timeout' "$LOG"; then
    verdict "mpi_abort timeout (np=$MPI_NP)" no "exit $RC without the timeout message"
elif ! awk -v s="$SECS" 'BEGIN { exit !(s >= 0.3) }'; then
    verdict "mpi_abort timeout (np=$MPI_NP)" no "the 300 ms timeout fired after only ${SECS}s"
else
    verdict "mpi_abort timeout (np=$MPI_NP)" yes "job ended with exit $RC after the timeout"
fi

# 3. Clear errors instead of a pool: no launcher, one rank.
launch 30 env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK -u PMI_RANK -u PMI_SIZE -u PMI_FD \
    "$EXAMPLE_DIR/mpi_methods"
if [ "$RC" -eq 2 ] && grep -q 'needs the program started by an MPI launcher' "$LOG"; then
    verdict "Pool::mpi() without mpirun" yes "Err(Mpi)"
else
    verdict "Pool::mpi() without mpirun" no "$(exit_why), expected exit 2 with Err(Mpi)"
fi
mpirun_example 1 mpi_methods
if grep -q 'needs at least 2 MPI ranks' "$LOG" && [ "$RC" -ne 0 ] && [ "$RC" -ne 124 ]; then
    verdict "Pool::mpi() with -np 1" yes "Err(Mpi)"
else
    verdict "Pool::mpi() with -np 1" no "$(exit_why), expected Err(Mpi) about 2 ranks"
fi

# 4. The handshake compares executables by content. A byte-identical copy at another path
#    (another inode, as on another node) is accepted; a copy with one byte appended is refused
#    on every rank, with Err(ExecutableMismatch) on rank 0, and the job still ends.
copies="$(mktemp -d /tmp/test-mpi-exe.XXXXXX)"
cp "$EXAMPLE_DIR/mpi_factorial" "$copies/same"
cp "$EXAMPLE_DIR/mpi_factorial" "$copies/changed"
printf 'x' >>"$copies/changed"
# shellcheck disable=SC2086
launch "$MPI_TIMEOUT" mpirun $MPIRUN_FLAGS -np 1 "$EXAMPLE_DIR/mpi_factorial" : -np 2 "$copies/same"
if [ "$RC" -eq 0 ] && grep -q '^mpi: ok factorial' "$LOG"; then
    verdict "same executable at another path" yes "accepted"
else
    verdict "same executable at another path" no "$(exit_why)"
fi
# shellcheck disable=SC2086
launch "$MPI_TIMEOUT" mpirun $MPIRUN_FLAGS -np 1 "$EXAMPLE_DIR/mpi_factorial" : -np 1 "$copies/same" \
    : -np 1 "$copies/changed"
if [ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] && [ "$RC" -ne 137 ] \
    && grep -q 'mpi_factorial: the worker runs a different executable' "$LOG"; then
    verdict "different executable refused" yes "Err(ExecutableMismatch), exit $RC"
else
    verdict "different executable refused" no "$(exit_why), expected Err(ExecutableMismatch)"
fi
rm -rf "$copies"

# 5. Per-task overhead at 2 and 3 ranks (figures are printed; only a crash fails).
for np in 2 3; do
    mpirun_example "$np" mpi_bench
    if [ "$RC" -eq 0 ] && grep -q "^mpi_bench: np=$np map" "$LOG"; then
        grep '^mpi_bench:' "$LOG" | sed 's/^/    /'
        verdict "mpi_bench (np=$np)" yes ""
    else
        verdict "mpi_bench (np=$np)" no "$(exit_why)"
    fi
done

# 6. `fondo bench --mpi` under mpirun: the command's MPI figures.
launch "$MPI_TIMEOUT" mpirun $MPIRUN_FLAGS -np 3 "${target_dir:-target}/release/fondo" bench --mpi --quick --no-python
if [ "$RC" -eq 0 ] && grep -q 'MPI pool overheads' "$LOG"; then
    sed 's/^/    /' "$LOG"
    verdict "fondo bench --mpi (np=3)" yes ""
else
    verdict "fondo bench --mpi (np=3)" no "$(exit_why)"
fi

echo "mpi: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
    echo "test-mpi: failed: ${failed_names[*]}" >&2
    exit 1
fi
