#!/usr/bin/env bash
# Two simulated cluster nodes on one Linux machine, for scripts/test-mpi.sh:
#
#   node      network namespace  address         host name
#   node1     fondo-n1           10.77.0.1/24    fondo-node1   (mpirun and rank 0 run here)
#   node2     fondo-n2           10.77.0.2/24    fondo-node2   (reached through scripts/netns-rsh)
#
# joined by a veth pair (fondo-v1 <-> fondo-v2); the addresses exist only inside the two
# namespaces, each has its own loopback. Every command run "on" a node enters its network
# namespace (`ip netns exec`, which also gives it a private mount namespace) and a new UTS
# namespace (`unshare --uts`), then, in those namespaces only:
#   - sets the host name (fondo-nodeN), so Open MPI and fondo see two hosts;
#   - bind-mounts DIR/hosts over /etc/hosts, so both names resolve on both nodes;
#   - bind-mounts the node's own directory (DIR/node1, DIR/node2, ...) over DIR/node, so the
#     one path mpirun starts everywhere (DIR/node/PROGRAM) is a different file on each node:
#     each node has its own copy of the executable, as on a real cluster.
# Nothing is mounted outside those namespaces; a namespace's mounts vanish with its last
# process. DIR is the work directory given to `up` (its `nodes` file is the node table).
#
#   scripts/two-nodes.sh up DIR          # create the namespaces, DIR/{hosts,hostfile,nodes}
#   scripts/two-nodes.sh exec NODE [--clean-env] CMD...   # run CMD on NODE (name or address)
#   scripts/two-nodes.sh pids            # processes left in the namespaces (none: no output)
#   scripts/two-nodes.sh kill            # SIGKILL them
#   scripts/two-nodes.sh down            # kill what runs in them, delete them (idempotent)
#
# `exec` reads the node table from $FONDO_TWO_NODES_TABLE (default DIR/nodes, DIR from
# $FONDO_TWO_NODES). --clean-env starts CMD with a login-like environment (HOME, PATH,
# USER, LOGNAME, SHELL), as sshd would: what mpirun forwards (-x) must travel itself.
# Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), iproute2 and util-linux's unshare.
# scripts/netns-rsh calls `exec` for Open MPI; scripts/test-mpi.sh the rest.
set -euo pipefail

TN_NS=(fondo-n1 fondo-n2)
TN_VETH=(fondo-v1 fondo-v2)
TN_ADDR=(10.77.0.1 10.77.0.2)
TN_HOST=(fondo-node1 fondo-node2)

# tn_exec NODE [--clean-env] CMD...: exec CMD on NODE (a name or an address of the table).
tn_exec() {
    local node="$1"; shift
    local clean=no
    if [ "${1:-}" = --clean-env ]; then clean=yes; shift; fi
    local dir="${FONDO_TWO_NODES:?FONDO_TWO_NODES is not set (the work directory of up)}"
    local table="${FONDO_TWO_NODES_TABLE:-$dir/nodes}"
    local name addr ns copy found=no
    while read -r name addr ns copy; do
        if [ "$node" = "$name" ] || [ "$node" = "$addr" ]; then found=yes; break; fi
    done <"$table"
    if [ "$found" != yes ]; then
        echo "two-nodes: no node '$node' in $table" >&2
        return 255
    fi
    local envcmd=()
    if [ "$clean" = yes ]; then
        envcmd=(env -i "HOME=${HOME:-/root}" "USER=$(id -un)" "LOGNAME=$(id -un)" SHELL=/bin/sh
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    fi
    # shellcheck disable=SC2016  # $1.. are the inner shell's
    exec ip netns exec "$ns" unshare --uts -- sh -c '
        set -e
        hostname "$1"
        mount --bind "$2" /etc/hosts
        mount --bind "$3" "$4"
        shift 4
        exec "$@"' two-nodes "$name" "$dir/hosts" "$copy" "$dir/node" "${envcmd[@]}" "$@"
}

# tn_pids: "NS PID COMMAND" for each process left in our namespaces.
tn_pids() {
    local ns pid
    for ns in "${TN_NS[@]}"; do
        [ -e "/run/netns/$ns" ] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            echo "$ns $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-150)"
        done
    done
}

# tn_kill: SIGKILLs, by pid, every process still in our namespaces (all started by us).
tn_kill() {
    local ns pid pids tries
    for ns in "${TN_NS[@]}"; do
        [ -e "/run/netns/$ns" ] || continue
        for tries in 1 2 3 4 5 6 7 8 9 10; do
            pids="$(ip netns pids "$ns" 2>/dev/null || true)"
            [ -n "$pids" ] || break
            for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
            sleep 0.1
        done
    done
}

# tn_down: tn_kill, then deletes the namespaces (and with them the veth pair). Idempotent.
tn_down() {
    local ns
    tn_kill
    for ns in "${TN_NS[@]}"; do
        [ -e "/run/netns/$ns" ] || continue
        ip netns del "$ns" 2>/dev/null || true
    done
    # A veth end left in this namespace by a set-up that failed half-way.
    for ns in "${TN_VETH[@]}"; do
        if ip link show "$ns" >/dev/null 2>&1; then ip link del "$ns" 2>/dev/null || true; fi
    done
}

# tn_up DIR: creates the namespaces and DIR/{hosts,hostfile,nodes}, checks a command runs on
# each node and that node1 reaches node2. On failure prints the command and its error, and
# returns 3 when this machine does not allow it (missing tool, no permission, no veth or
# namespace support: the caller skips), 1 otherwise (a real failure). Call tn_down after.
tn_up() {
    local dir="$1" i err
    local out
    out="$(mktemp)"
    step() {
        if ! "$@" >"$out" 2>&1; then
            err="$(tr '\n' ' ' <"$out" | sed 's/ *$//')"
            echo "'$*' failed: ${err:-no message}"
            rm -f "$out"
            case "$err" in
                "" | *"not permitted"* | *"Permission denied"* | *"not supported"* \
                    | *"Unknown device type"* | *"Invalid argument"* | *"not found"* \
                    | *"No such file"*) return 3 ;;
                *) return 1 ;;
            esac
        fi
    }
    for i in ip unshare hostname mount timeout; do
        command -v "$i" >/dev/null || { echo "no '$i' command"; rm -f "$out"; return 3; }
    done
    step ip netns add "${TN_NS[0]}" || return
    step ip netns add "${TN_NS[1]}" || return
    step ip link add "${TN_VETH[0]}" netns "${TN_NS[0]}" type veth \
        peer name "${TN_VETH[1]}" netns "${TN_NS[1]}" || return
    for i in 0 1; do
        step ip -n "${TN_NS[$i]}" link set lo up || return
        step ip -n "${TN_NS[$i]}" addr add "${TN_ADDR[$i]}/24" dev "${TN_VETH[$i]}" || return
        step ip -n "${TN_NS[$i]}" link set "${TN_VETH[$i]}" up || return
    done
    mkdir -p "$dir/node"
    {
        echo "127.0.0.1 localhost"
        for i in 0 1; do echo "${TN_ADDR[$i]} ${TN_HOST[$i]}"; done
    } >"$dir/hosts"
    for i in 0 1; do echo "${TN_HOST[$i]} slots=2"; done >"$dir/hostfile"
    for i in 0 1; do
        mkdir -p "$dir/node$((i + 1))"
        echo "${TN_HOST[$i]} ${TN_ADDR[$i]} ${TN_NS[$i]} $dir/node$((i + 1))"
    done >"$dir/nodes"
    export FONDO_TWO_NODES="$dir"
    # A command on each node sees its host name and its own directory at DIR/node.
    for i in 0 1; do
        touch "$dir/node$((i + 1))/here-${TN_HOST[$i]}"
        step timeout 10 "${BASH_SOURCE[0]}" exec "${TN_HOST[$i]}" sh -c \
            "test \"\$(hostname)\" = ${TN_HOST[$i]} && test -e '$dir/node/here-${TN_HOST[$i]}' \
             || { echo \"host name \$(hostname), \$(ls '$dir/node')\"; exit 1; }" \
            || return
        rm -f "$dir/node$((i + 1))/here-${TN_HOST[$i]}"
    done
    # node1 reaches node2 by name over the veth: a connection to a closed port is refused
    # (an answer from node2), not "no route" or a time-out. bash's /dev/tcp: no nc needed.
    # A veth end reports carrier a moment after both ends are up: try for up to 5 s.
    local reached=no try
    for try in $(seq 50); do
        err="$(timeout 5 "${BASH_SOURCE[0]}" exec "${TN_HOST[0]}" bash -c \
            "exec 3<>/dev/tcp/${TN_HOST[1]}/9" 2>&1 || true)"
        if [[ "$err" == *refused* ]]; then
            reached=yes
            break
        fi
        sleep 0.1
    done
    if [ "$reached" != yes ]; then
        echo "node1 cannot reach ${TN_HOST[1]} (${TN_ADDR[1]}) over ${TN_VETH[0]}" \
            "($(ip -n "${TN_NS[1]}" -br link show "${TN_VETH[1]}" 2>&1 | tr -s ' '))"
        rm -f "$out"
        return 1
    fi
    rm -f "$out"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cmd="${1:-}"
    shift || true
    case "$cmd" in
        up) tn_up "${1:?usage: two-nodes.sh up DIR}" ;;
        exec) tn_exec "$@" ;;
        pids) tn_pids ;;
        kill) tn_kill ;;
        down) tn_down ;;
        *) echo "usage: two-nodes.sh up DIR | exec NODE [--clean-env] CMD... | pids | kill | down" >&2; exit 2 ;;
    esac
fi
