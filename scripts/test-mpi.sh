#!/usr/bin/env bash
# Build fondo with the MPI backend and run its MPI example programs under mpirun.
#   scripts/test-mpi.sh            # all examples in MPI_EXAMPLES
#   MPI_NP=2 scripts/test-mpi.sh   # another world size
# Each example is an ordinary `fondo/examples/NAME.rs` using `Pool::mpi()`; it must exit 0
# under `mpirun -np $MPI_NP` (rank 0 runs the program, the other ranks serve tasks).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Examples to run under mpirun (names of fondo/examples/*.rs). Fill in as the backend lands.
MPI_EXAMPLES=(
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

if [ "${#MPI_EXAMPLES[@]}" -eq 0 ]; then
    echo "test-mpi: no MPI examples listed yet (MPI_EXAMPLES in scripts/test-mpi.sh); nothing to run"
    exit 0
fi

echo "test-mpi: building (cargo build --release --features fondo/mpi --examples)"
cargo build --release --features fondo/mpi --examples

target_dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)"
EXAMPLE_DIR="${target_dir:-target}/release/examples"

passed=0
failed=0
failed_names=()

# run_mpi_example NAME [ARGS...]: run one example under mpirun -np $MPI_NP; exit status 0 = pass.
run_mpi_example() {
    local name="$1"; shift
    local bin="$EXAMPLE_DIR/$name"
    local log start end rc
    if [ ! -x "$bin" ]; then
        echo "test-mpi: $name: FAILED (no binary at $bin)"
        return 1
    fi
    log="$(mktemp "/tmp/test-mpi-$name.XXXXXX")"
    start=$(date +%s.%N)
    rc=0
    # shellcheck disable=SC2086  # MPIRUN_FLAGS is a word list on purpose
    timeout --kill-after=10 "$MPI_TIMEOUT" mpirun $MPIRUN_FLAGS -np "$MPI_NP" "$bin" "$@" >"$log" 2>&1 || rc=$?
    end=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    if [ "$rc" -eq 0 ]; then
        echo "test-mpi: $name (np=$MPI_NP): ok in ${secs}s"
        rm -f "$log"
        return 0
    fi
    if [ "$rc" -eq 124 ]; then
        echo "test-mpi: $name (np=$MPI_NP): FAILED, timed out after ${MPI_TIMEOUT}s; output:"
    else
        echo "test-mpi: $name (np=$MPI_NP): FAILED with exit $rc after ${secs}s; output:"
    fi
    sed 's/^/    /' "$log" | tail -n 60
    rm -f "$log"
    return 1
}

for ex in "${MPI_EXAMPLES[@]}"; do
    if run_mpi_example "$ex"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_names+=("$ex")
    fi
done

echo "mpi: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
    echo "test-mpi: failed: ${failed_names[*]}" >&2
    exit 1
fi
