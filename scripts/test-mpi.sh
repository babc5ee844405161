#!/usr/bin/env bash
# Build fondo with the MPI backend and run its MPI example programs under mpirun.
#   scripts/test-mpi.sh            # everything below
#   MPI_NP=2 scripts/test-mpi.sh   # another world size for the MPI_EXAMPLES
# Each example is an ordinary `fondo/examples/NAME.rs` using `Pool::mpi()` (rank 0 runs the
# program, the other ranks serve tasks). The run:
#   - MPI_EXAMPLES under `mpirun -np $MPI_NP`: exit 0, print "mpi: ok ..." lines, no "mpi: FAIL";
#   - mpi_abort: a task aborts its rank; the job must end non-zero within MPI_ABORT_LIMIT s
#     (MPI ends the whole job when a rank dies) and never reach "UNEXPECTED";
#   - mpi_journal: a journaled map whose worker rank is killed with `kill -9` mid-way (MPI then
#     ends the job); the same command run again resumes from the journal, runs only the
#     tasks not journaled and ends with the expected results;
#   - Pool::mpi() without mpirun and with -np 1: a clear Err(Mpi), exit 2, no hang;
#   - mpi_bench at -np 2 and -np 3: per-task overhead figures (printed, not judged);
#   - two nodes on one machine (section 7, scripts/two-nodes.sh): network namespaces joined
#     by a veth pair, Open MPI's TCP transport, mpirun reaching node 2 through
#     scripts/netns-rsh (`ip netns exec`) instead of ssh, each node its own copy of the
#     executable. mpi_factorial and mpi_methods at -np 4 (2 ranks per node); mpi_two_nodes:
#     tasks ran on both nodes from their own copies, `-x FONDO_PROBE=...` reached node 2 and
#     a variable not forwarded did not; a changed copy on node 2 is refused with
#     Err(ExecutableMismatch) and the job ends; no process, namespace or mount is left; the
#     part takes under MPI_TWO_NODES_LIMIT s. Where namespaces cannot be made (not root, no
#     CAP_SYS_ADMIN, no veth) it is skipped with the reason, not failed; any other set-up
#     error fails it.
#   scripts/test-mpi.sh --two-nodes      # the build and section 7 only
#   MPI_TWO_NODES=0 scripts/test-mpi.sh  # everything but section 7
# Ends with "mpi: N passed, N failed" and exits non-zero if anything failed. Every run has a
# time limit, so a hung rank fails the run instead of stalling CI.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ONLY_TWO_NODES=no
case "${1:-}" in
    "") ;;
    --two-nodes) ONLY_TWO_NODES=yes ;;
    *) echo "usage: scripts/test-mpi.sh [--two-nodes]" >&2; exit 2 ;;
esac

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
copies=""
jdir=""
tn_dir=""
skipped=""

# On any exit (an error, ^C, a CI time-out): no log, copy, namespace or process left behind.
cleanup() {
    [ -z "$LOG" ] || rm -f "$LOG"
    [ -z "$copies" ] || rm -rf "$copies"
    [ -z "$jdir" ] || rm -rf "$jdir"
    if [ -n "$tn_dir" ]; then
        scripts/two-nodes.sh down || true
        rm -rf "$tn_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# Sections 1-6: one node (shared memory).
single_node() {
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

    # 2c. A journaled map survives the job's end: once the journal holds some results,
    #     rank 1 is killed with SIGKILL, which ends the MPI job; the same command run again
    #     resumes (rank 0 reads and writes the journal) and ends with the expected results,
    #     running only the tasks that were not journaled.
    jdir="$(mktemp -d /tmp/test-mpi-journal.XXXXXX)"
    local jn=4000 jpid jwaited=0 jsize
    LOG="$(mktemp /tmp/test-mpi.XXXXXX)"
    SECS=0
    # shellcheck disable=SC2086
    mpirun $MPIRUN_FLAGS -np "$MPI_NP" "$EXAMPLE_DIR/mpi_journal" "$jdir/run.journal" "$jn" "$jdir" \
        >"$LOG" 2>&1 </dev/null &
    jpid=$!
    # Up to 60 s for rank 1's PID and a quarter of the results (~25 bytes each) on record.
    while [ "$jwaited" -lt 600 ] && kill -0 "$jpid" 2>/dev/null; do
        jsize=$(stat -c %s "$jdir/run.journal" 2>/dev/null || echo 0)
        if [ -s "$jdir/rank-1" ] && [ "$jsize" -gt $((jn * 25 / 4)) ]; then break; fi
        sleep 0.1
        jwaited=$((jwaited + 1))
    done
    local jkilled=no
    if [ -s "$jdir/rank-1" ] && kill -9 "$(cat "$jdir/rank-1")" 2>/dev/null; then jkilled=yes; fi
    # The job must end within MPI_ABORT_LIMIT s of the kill.
    jwaited=0
    while kill -0 "$jpid" 2>/dev/null && [ "$jwaited" -lt $((MPI_ABORT_LIMIT * 10)) ]; do
        sleep 0.1
        jwaited=$((jwaited + 1))
    done
    local jrc=0 jfirst jhung=no
    if kill -0 "$jpid" 2>/dev/null; then
        jhung=yes
        pkill -9 -P "$jpid" 2>/dev/null || true
        kill -9 "$jpid" 2>/dev/null || true
    fi
    wait "$jpid" || jrc=$?
    jfirst="$(cat "$LOG")"
    rm -f "$LOG"
    # shellcheck disable=SC2086
    launch "$MPI_TIMEOUT" mpirun $MPIRUN_FLAGS -np "$MPI_NP" "$EXAMPLE_DIR/mpi_journal" "$jdir/run.journal" "$jn"
    local jfrom
    jfrom=$(sed -n 's/^mpi: ok journal: .* \([0-9][0-9]*\) came from the journal$/\1/p' "$LOG")
    if [ "$jkilled" != yes ]; then
        verdict "journal: rank killed, rerun resumes" no "rank 1 was never killed (first run: $(printf '%s' "$jfirst" | tail -n 3))"
    elif [ "$jhung" = yes ]; then
        verdict "journal: rank killed, rerun resumes" no "the job did not end within ${MPI_ABORT_LIMIT}s of the kill"
    elif [ "$jrc" -eq 0 ] || grep -q '^mpi: ok journal' <<<"$jfirst"; then
        verdict "journal: rank killed, rerun resumes" no "the first run finished although rank 1 was killed"
    elif [ "$RC" -ne 0 ] || [ -z "$jfrom" ]; then
        verdict "journal: rank killed, rerun resumes" no "the rerun: $(exit_why), no 'mpi: ok journal' line"
    elif [ "$jfrom" -le 0 ] || [ "$jfrom" -ge "$jn" ]; then
        verdict "journal: rank killed, rerun resumes" no "$jfrom of $jn results came from the journal"
    else
        verdict "journal: rank killed, rerun resumes" yes "first job ended with exit $jrc; rerun: $jfrom of $jn from the journal, $((jn - jfrom)) ran"
    fi
    rm -rf "$jdir"
    jdir=""

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
    copies=""

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
}

# 7. Two nodes on one machine: see scripts/two-nodes.sh. mpirun runs on node 1 (rank 0 there),
#    reaches node 2 through scripts/netns-rsh, and starts DIR/node/PROGRAM on both: a
#    different copy of the file on each node. The TCP transports are confined to the veth.
MPI_TWO_NODES_LIMIT="${MPI_TWO_NODES_LIMIT:-60}"
TN_LOCK=/tmp/fondo-two-nodes.lock

# tn_mpirun LIMIT TABLE MPIRUN-ARGS...: mpirun on node 1 over both nodes (TABLE: which copy
# each node mounts). FONDO_NOT_FORWARDED is in mpirun's environment only: no -x.
tn_mpirun() {
    local limit="$1" table="$2"; shift 2
    launch "$limit" env FONDO_TWO_NODES_TABLE="$table" FONDO_NOT_FORWARDED=node1-only \
        scripts/two-nodes.sh exec fondo-node1 \
        mpirun --allow-run-as-root --bind-to none --hostfile "$tn_dir/hostfile" \
        --mca plm_rsh_agent "$PWD/scripts/netns-rsh" --mca plm_rsh_no_tree_spawn 1 \
        --mca pml ob1 --mca btl self,vader,tcp \
        --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
        --mca odls_base_sigkill_timeout 0 "$@"
}

# tn_left: after a run, every process on both nodes must be gone within 5 s (orted
# daemonizes on node 2, so mpirun's exit alone does not prove it). Prints and kills leftovers.
tn_left() {
    local i left
    for i in $(seq 50); do
        left="$(scripts/two-nodes.sh pids)"
        [ -n "$left" ] || return 0
        sleep 0.1
    done
    echo "$left"
    scripts/two-nodes.sh kill
    return 1
}

two_nodes() {
    local t0 t1 why ex left reason keep
    # One two-node run at a time on this machine (the namespace names are fixed).
    exec 9>"$TN_LOCK"
    if ! flock -w 300 9; then
        SECS=0 LOG="$(mktemp /tmp/test-mpi.XXXXXX)"
        verdict "two nodes" no "another run held $TN_LOCK for 300 s"
        return 0
    fi
    t0=$(date +%s.%N) # the part's time, without the wait for the lock
    scripts/two-nodes.sh down # what an interrupted run left (we hold the lock)
    tn_dir="$(mktemp -d /tmp/fondo-two-nodes.XXXXXX)"
    RC=0
    reason="$(scripts/two-nodes.sh up "$tn_dir" 2>&1)" || RC=$?
    if [ "$RC" -ne 0 ]; then
        scripts/two-nodes.sh down || true
        rm -rf "$tn_dir"
        tn_dir=""
        if [ "$RC" -eq 3 ]; then
            # This machine does not allow namespaces or veth pairs: not a failure of fondo's.
            echo "test-mpi: two nodes: SKIPPED: cannot simulate two nodes on this machine: $reason"
            skipped="two nodes skipped: $reason"
        else
            SECS=0 LOG="$(mktemp /tmp/test-mpi.XXXXXX)"
            echo "$reason" >"$LOG"
            verdict "two nodes: set-up" no "scripts/two-nodes.sh up failed"
        fi
        return 0
    fi
    export FONDO_TWO_NODES="$tn_dir"
    # Each node's own copy; node2-changed holds mpi_two_nodes with one byte appended.
    for ex in mpi_factorial mpi_methods mpi_two_nodes; do
        cp "$EXAMPLE_DIR/$ex" "$tn_dir/node1/$ex"
        cp "$EXAMPLE_DIR/$ex" "$tn_dir/node2/$ex"
    done
    mkdir "$tn_dir/node2-changed"
    cp "$EXAMPLE_DIR/mpi_two_nodes" "$tn_dir/node2-changed/mpi_two_nodes"
    printf 'x' >>"$tn_dir/node2-changed/mpi_two_nodes"
    sed "s|$tn_dir/node2\$|$tn_dir/node2-changed|" "$tn_dir/nodes" >"$tn_dir/nodes-changed"
    echo "test-mpi: two nodes: fondo-node1 (10.77.0.1, rank 0) and fondo-node2 (10.77.0.2)" \
        "in network namespaces fondo-n1/fondo-n2, copies in $tn_dir/node{1,2} at $tn_dir/node"

    # 7a. The examples that must pass, 4 ranks: 2 on node 1 (rank 0 among them), 2 on node 2.
    for ex in mpi_factorial mpi_methods; do
        tn_mpirun "$MPI_TIMEOUT" "$tn_dir/nodes" -np 4 --display-map "$tn_dir/node/$ex"
        why=""
        if ! left="$(tn_left)"; then
            why="processes left on the nodes: $left"
        elif [ "$RC" -ne 0 ]; then
            why="$(exit_why)"
        elif grep -q '^mpi: FAIL' "$LOG" || ! grep -q '^mpi: ok' "$LOG"; then
            why="a check failed or none ran"
        elif ! grep -q 'Data for node: fondo-node1.*Num procs: 2' "$LOG" \
            || ! grep -q 'Data for node: fondo-node2.*Num procs: 2' "$LOG"; then
            why="the ranks were not 2 per node"
        fi
        verdict "two nodes: $ex (np=4, 2 per node)" "$([ -z "$why" ] && echo yes || echo no)" \
            "${why:-$(grep -c '^mpi: ok' "$LOG") checks}"
    done

    # 7b. Where tasks run, and -x: FONDO_PROBE only through -x, FONDO_NOT_FORWARDED not at all.
    local probe="probe-$$-$RANDOM"
    tn_mpirun "$MPI_TIMEOUT" "$tn_dir/nodes" -np 4 -x FONDO_PROBE="$probe" \
        "$tn_dir/node/mpi_two_nodes" "$probe"
    keep="$(mktemp /tmp/test-mpi.XXXXXX)"
    cp "$LOG" "$keep"
    why=""
    if ! left="$(tn_left)"; then
        why="processes left on the nodes: $left"
    elif [ "$RC" -ne 0 ]; then
        why="$(exit_why)"
    elif ! grep -q '^mpi: ok tasks ran on every worker rank' "$LOG" \
        || ! grep -q '^mpi: ok tasks ran on several nodes: 2 hosts, 2 network namespaces' "$LOG" \
        || ! grep -q '^mpi: ok each node runs its own copy of the executable' "$LOG"; then
        why="tasks did not run on both nodes from their own copies"
    fi
    grep '^mpi: ok \(tasks ran on several\|each node\)' "$LOG" | sed 's/^/    /' || true
    verdict "two nodes: tasks ran on both nodes, each from its own copy" \
        "$([ -z "$why" ] && echo yes || echo no)" "$why"
    LOG="$keep"
    if [ -z "$why" ] && { ! grep -q '^mpi: ok mpirun -x FONDO_PROBE reaches every' "$LOG" \
        || ! grep -q '^mpi: ok an unforwarded variable stays off the other nodes' "$LOG"; }; then
        why="FONDO_PROBE missing on a rank, or an unforwarded variable reached node 2"
    fi
    verdict "two nodes: -x FONDO_PROBE reaches the ranks on node 2" \
        "$([ -z "$why" ] && echo yes || echo no)" "$why"

    # 7c. Node 2 runs another build (one byte more): the handshake refuses it, rank 0 gets
    #     Err(ExecutableMismatch) naming the node, the job ends cleanly and quickly.
    tn_mpirun "$MPI_ABORT_LIMIT" "$tn_dir/nodes-changed" -np 4 "$tn_dir/node/mpi_two_nodes"
    why=""
    if ! left="$(tn_left)"; then
        why="processes left on the nodes: $left"
    elif [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
        why="the job did not end within ${MPI_ABORT_LIMIT}s"
    elif ! grep -q 'refused: Err(ExecutableMismatch): .*(pid [0-9]* on fondo-node2) runs .*, rank 0 runs .* on fondo-node1' "$LOG"; then
        why="exit $RC without Err(ExecutableMismatch) naming fondo-node2"
    elif [ "$RC" -ne 3 ]; then
        why="exit $RC: rank 0 did not end the job itself (exit 3)"
    elif [ "$(grep -o 'rank 0 refused this rank' "$LOG" | wc -l)" -ne 3 ]; then
        # Counted, not matched by line: the ranks' stderr lines can interleave mid-line.
        why="not all 3 worker ranks were told they were refused"
    fi
    verdict "two nodes: a different executable on node 2 is refused" \
        "$([ -z "$why" ] && echo yes || echo no)" "${why:-Err(ExecutableMismatch), exit $RC}"

    # 7d. Nothing left: namespaces, veth pair, mounts, processes running the copies; and time.
    LOG="$(mktemp /tmp/test-mpi.XXXXXX)"
    t1=$(date +%s.%N)
    scripts/two-nodes.sh down >"$LOG" 2>&1 || true
    {
        ip netns list 2>&1 | grep -E '^fondo-n[12]( |$)' && echo "^ namespaces left"
        ip -o link show 2>&1 | grep -E 'fondo-v[12][@:]' && echo "^ veth left"
        grep -F "$tn_dir" /proc/self/mountinfo && echo "^ mounts left"
        for ex in /proc/[0-9]*/exe; do
            case "$(readlink "$ex" 2>/dev/null)" in "$tn_dir"/*) echo "process left: $ex" ;; esac
        done
    } >>"$LOG" 2>&1 || true
    rm -rf "$tn_dir"
    tn_dir=""
    unset FONDO_TWO_NODES
    SECS=$(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    if [ -s "$LOG" ]; then
        verdict "two nodes: cleaned up" no "something was left"
    else
        verdict "two nodes: cleaned up" yes "no namespace, veth, mount or process left"
    fi
    LOG="$(mktemp /tmp/test-mpi.XXXXXX)"
    SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    if awk -v s="$SECS" -v l="$MPI_TWO_NODES_LIMIT" 'BEGIN { exit !(s < l) }'; then
        verdict "two nodes: the whole part" yes "limit ${MPI_TWO_NODES_LIMIT}s"
    else
        verdict "two nodes: the whole part" no "over ${MPI_TWO_NODES_LIMIT}s"
    fi
    exec 9>&-
}

if [ "$ONLY_TWO_NODES" = no ]; then
    single_node
fi
if [ "${MPI_TWO_NODES:-1}" != 0 ]; then
    two_nodes
fi

echo "mpi: $passed passed, $failed failed${skipped:+ ($skipped)}"
if [ "$failed" -ne 0 ]; then
    echo "test-mpi: failed: ${failed_names[*]}" >&2
    exit 1
fi
