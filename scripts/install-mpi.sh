#!/usr/bin/env bash
# Install Open MPI and what rsmpi (the `mpi` crate, feature `fondo/mpi`) needs to build:
#   libopenmpi-dev openmpi-bin  -> mpicc, mpirun, headers, ompi.pc
#   libclang-dev                -> libclang.so for bindgen (mpi-sys generates its bindings)
#   pkg-config                  -> build-probe-mpi asks pkg-config for ompi first
#   gcc                         -> mpi-sys compiles a small C shim (normally already there)
# Idempotent: when everything is present it makes no apt call at all.
# Runs as root (CI); otherwise uses sudo when available.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

# libclang as clang-sys/bindgen looks for it: an unversioned or versioned libclang.so
# (not libclang-cpp), in LIBCLANG_PATH, llvm-config --libdir or the usual Debian places.
have_libclang() {
    local d dirs=()
    [ -n "${LIBCLANG_PATH:-}" ] && dirs+=("$LIBCLANG_PATH")
    if have llvm-config; then dirs+=("$(llvm-config --libdir 2>/dev/null || true)"); fi
    dirs+=(/usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib /usr/local/lib)
    for d in "${dirs[@]}"; do
        [ -n "$d" ] && [ -d "$d" ] || continue
        if compgen -G "$d/libclang.so" >/dev/null || compgen -G "$d/libclang-[0-9]*.so" >/dev/null \
            || compgen -G "$d/libclang.so.[0-9]*" >/dev/null; then
            return 0
        fi
    done
    return 1
}

missing=()
have mpicc || missing+=(libopenmpi-dev)
have mpirun || missing+=(openmpi-bin)
have_libclang || missing+=(libclang-dev)
have pkg-config || missing+=(pkg-config)
have cc || missing+=(gcc)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-mpi: already present (mpicc, mpirun, libclang, pkg-config, cc); nothing to do"
    exit 0
fi

# Always ask for the full set (apt skips what is installed); log which probes failed.
pkgs=(libopenmpi-dev openmpi-bin libclang-dev pkg-config)
for p in "${missing[@]}"; do
    case " ${pkgs[*]} " in *" $p "*) ;; *) pkgs+=("$p") ;; esac
done

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then
        SUDO=(sudo)
    else
        echo "install-mpi: missing ${missing[*]} and not root (no sudo): cannot install" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" apt-get update -q && \
       "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${pkgs[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-mpi: apt-get failed installing ${pkgs[*]}" >&2
    exit 1
fi

if ! have mpicc || ! have mpirun || ! have_libclang; then
    echo "install-mpi: installed ${pkgs[*]} but mpicc/mpirun/libclang still not found" >&2
    exit 1
fi
echo "install-mpi: installed ${pkgs[*]} (missing were: ${missing[*]}); $(mpirun --version 2>/dev/null | head -n1)"
