#!/usr/bin/env python3
"""CPython reference figures for `fondo bench`.

`fondo bench` runs this script as a subprocess so that CPython's `threading` and
`multiprocessing` are measured on the same machine, in the same run, as the Rust
backends: figures copied from another machine or another day are not comparable.

Usage:
    python3 cpython_reference.py [--quick] [--repeat N] [--workers 1,2,4]

Stdout carries exactly one JSON object and nothing else; progress goes to stderr.

    {"python": "3.11.7", "implementation": "cpython", "cpu_count": 2,
     "usable_cpus": 2, "start_method": "fork", "load_avg": [1m, 5m, 15m],
     "quick": false, "repeat": 5, "workers": [1, 2, 4],
     "results": [{"name": "...", "workers": 2 or null,
                  "unit": "s" | "us" | "tasks_per_s" | "GB_per_s",
                  "min": f, "median": f, "max": f, "best": f,
                  "higher_is_better": bool, "samples": [f, ...]}, ...],
     "errors": [{"name": "...", "workers": w, "error": "..."}]}  # only on failure

"min" and "median" are plain statistics of "samples" whatever the unit. For rates
(tasks_per_s, GB_per_s) the best sample is the largest, so "best" is given
explicitly: min for times, max for rates.

Every measurement runs once untimed before its samples (warm-up), so one-off costs
(lazy imports, page faults, first pool start) do not land in the first sample; pool
creation is excluded except in "pool_create_first_close", which measures it.

Exit status: 0 when every measurement ran, 1 when some failed (the JSON is still
printed, with the failures under "errors"), 2 on bad arguments.

Ctrl-C or SIGTERM stops the script within a second, leaving no worker behind
(see "Stopping" below); it then dies of that signal and prints no JSON.

Stdlib only, Python 3.8+. Uses the platform's default start method (fork on Linux
up to 3.13) and records it, because that choice dominates pool start-up cost.
"""

import argparse
import array
import functools
import json
import math
import multiprocessing
import os
import platform
import signal
import statistics
import sys
import threading
import time
import traceback

# Task functions live at module level: the pool pickles them by qualified name.


def factorial(x):
    # The notebook's while-loop factorial, kept verbatim (not math.factorial) so the
    # Rust side can be compared on the same algorithm.
    f = 1
    i = x
    while i > 0:
        f *= i
        i -= 1
    return f


def tarea(inicio, fin, lista):
    # The notebook's thread body: threads cannot return values, so they write
    # their slice into a shared list.
    for x in range(inicio, fin):
        lista[x - 1000] = factorial(x)


def noop(_x=None):
    # Accepts zero or one argument so the same function serves apply_async and map.
    return None


def identity(x):
    return x


def sleep_for(seconds):
    # The long task of the head-of-line figures.
    time.sleep(seconds)


def with_context(_ctx, _x):
    # The map_with figures' task: fondo's `map_with(&ctx, f, items)` is
    # `Pool.map(functools.partial(f, ctx), items)` here.
    return None


# Shared-memory blocks this worker has attached, by name: attached once per
# worker, as fondo's Shared values are.
_ATTACHED = {}


def _attach(name):
    from multiprocessing import shared_memory

    shm = _ATTACHED.get(name)
    if shm is None:
        try:  # 3.13+: the block is the parent's to track and unlink
            shm = shared_memory.SharedMemory(name=name, track=False)
        except TypeError:
            shm = shared_memory.SharedMemory(name=name)
        _ATTACHED[name] = shm
    return shm


def scan_half(name, lo, hi):
    # Sums doubles lo..hi of a shared block where they lie: no numpy, so the sum
    # runs over a memoryview, one Python float at a time.
    with _attach(name).buf.cast("d") as view, view[lo:hi] as part:
        return sum(part)


FACTORIAL_RANGE = range(1000, 2000)
KIB = 1024
MIB = 1024 * KIB
# The head-of-line figures (fondo-cli/src/bench/mod.rs: HOL_LONG_MS, HOL_FAST_TASKS).
HOL_LONG_S = 0.3
HOL_FAST_TASKS = 8
# How long the payload figure warms up (fondo-cli/src/bench/overhead.rs: PAYLOAD_WARM_UP).
PAYLOAD_WARM_UP_S = 2.0


def log(msg):
    print("[cpython_reference] " + msg, file=sys.stderr, flush=True)


def check_factorials(values):
    # Cheap guard that a measured run really computed the factorials (a broken
    # run that returns early would otherwise look like a spectacular speed-up).
    if (
        len(values) != len(FACTORIAL_RANGE)
        or values[0] != math.factorial(FACTORIAL_RANGE[0])
        or values[-1] != math.factorial(FACTORIAL_RANGE[-1])
    ):
        raise RuntimeError("factorial results are wrong")


# --- measurements -------------------------------------------------------------
#
# Each measurement is a function `run()` returning one sample already converted to
# its unit; `sample()` calls it once untimed, then `repeat` times.


def time_it(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def factorial_single():
    lista = [0] * len(FACTORIAL_RANGE)
    elapsed = time_it(lambda: tarea(1000, 2000, lista))
    check_factorials(lista)
    return elapsed


def factorial_threads():
    lista = [0] * len(FACTORIAL_RANGE)
    # The notebook's split: two fixed halves, not balanced (the second half's
    # numbers are larger), exactly as the Rust "halves split" figure does it.
    threads = [
        threading.Thread(target=tarea, args=(1000, 1500, lista)),
        threading.Thread(target=tarea, args=(1500, 2000, lista)),
    ]

    def run():
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    elapsed = time_it(run)
    check_factorials(lista)
    return elapsed


def factorial_pool_map(pool):
    out = []
    elapsed = time_it(lambda: out.append(pool.map(factorial, FACTORIAL_RANGE)))
    check_factorials(out[0])
    return elapsed


def apply_async_roundtrip(pool, batch):
    # A single round trip (tens of µs) is at the mercy of the scheduler on these
    # VMs, so each sample is the mean over a batch, and the median is taken
    # over batches.
    def run():
        for _ in range(batch):
            pool.apply_async(noop).get()

    return time_it(run) / batch * 1e6


def map_noop(pool, n):
    return n / time_it(lambda: pool.map(noop, range(n)))


def imap_noop_chunk1(pool, n):
    def run():
        for _ in pool.imap(noop, range(n), chunksize=1):
            pass

    return n / time_it(run)


def payload_roundtrip(pool, size, tasks):
    payload = bytes(size)
    out = []
    # chunksize=1 makes each payload its own task (what Pool.map would pick for 8
    # items on 2 workers anyway), so both workers carry payloads concurrently.
    elapsed = time_it(
        lambda: out.append(pool.map(identity, [payload] * tasks, chunksize=1))
    )
    if len(out[0]) != tasks or any(len(r) != size for r in out[0]):
        raise RuntimeError("payload came back with the wrong size")
    # Decimal GB, counting the bytes sent and the bytes received.
    return 2 * size * tasks / elapsed / 1e9


def map_with_context(pool, ctx, n):
    return n / time_it(lambda: pool.map(functools.partial(with_context, ctx), range(n)))


def numbers(n):
    # The same doubles as fondo's shared array: i % 1000, whose sum is exact.
    block = array.array("d", map(float, range(1000)))
    return block * (n // 1000) + array.array("d", map(float, range(n % 1000)))


def numbers_sum(n):
    cycles, rest = divmod(n, 1000)
    return float(cycles * 499500 + rest * max(rest - 1, 0) // 2)


def shared_scan(pool, name, n):
    mid = n // 2
    out = []
    elapsed = time_it(
        lambda: out.append(pool.starmap(scan_half, [(name, 0, mid), (name, mid, n)]))
    )
    if sum(out[0]) != numbers_sum(n):
        raise RuntimeError("the shared scan summed {}".format(sum(out[0])))
    return 8 * n / elapsed / 1e9


def with_shared_block(size, fn):
    """Runs fn(name, n) with a shared block of `size` bytes of numbers(n), made
    (and so registered with the resource tracker) before any pool is forked."""
    from multiprocessing import shared_memory

    n = size // 8
    shm = shared_memory.SharedMemory(create=True, size=8 * n)
    try:
        with shm.buf.cast("d") as view:
            view[:] = memoryview(numbers(n))
        return fn(shm.name, n)
    finally:
        shm.close()
        shm.unlink()


def array_roundtrip(pool, size, tasks):
    payload = array.array("d", bytes(size))
    out = []
    elapsed = time_it(
        lambda: out.append(pool.map(identity, [payload] * tasks, chunksize=1))
    )
    if len(out[0]) != tasks or any(8 * len(r) != size for r in out[0]):
        raise RuntimeError("an array came back with the wrong size")
    return 2 * size * tasks / elapsed / 1e9


def fast_behind(pool, long_s, fast):
    # fondo-cli/src/bench/mixed.rs: one apply_async of a long sleep (none when
    # long_s is None), then `fast` no-ops at once; each one's latency runs from its
    # submission to its get() returning (read in submission order). Returns the
    # median and the largest, in µs; waits for the long task, so the next run
    # starts on two idle workers.
    long = None if long_s is None else pool.apply_async(sleep_for, (long_s,))
    submitted = []
    for _ in range(fast):
        t0 = time.perf_counter()
        submitted.append((t0, pool.apply_async(noop)))
    micros = []
    for t0, r in submitted:
        r.get()
        micros.append((time.perf_counter() - t0) * 1e6)
    if long is not None:
        long.get()
    micros.sort()
    return micros[len(micros) // 2], micros[-1]


def pool_create_first_close():
    def run():
        pool = make_pool(2)
        pool.apply(noop)
        pool.close()
        pool.join()

    return time_it(run)


# --- harness -----------------------------------------------------------------

RATE_UNITS = {"tasks_per_s", "GB_per_s"}


def sample(run, repeat):
    run()  # warm-up, discarded
    return [run() for _ in range(repeat)]


def record(name, unit, workers, samples):
    higher_is_better = unit in RATE_UNITS
    rec = {
        "name": name,
        "workers": workers,
        "unit": unit,
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
        "best": max(samples) if higher_is_better else min(samples),
        "higher_is_better": higher_is_better,
        "samples": samples,
    }
    log(
        "{:<24} workers={:<4} median={:.6g} best={:.6g} {}".format(
            name, str(workers), rec["median"], rec["best"], unit
        )
    )
    return rec


# Stopping. Ctrl-C or SIGTERM (from a user, or from `fondo bench` giving up) must
# end this script within a second and leave no process behind. CPython's Pool does
# not manage that on its own, in three ways, each seen on this machine:
#  1. a process-directed signal may be delivered to one of the pool's helper
#     threads; the main thread, blocked on a lock in map() or get(), never notices
#     and waits forever. Hence pools are created with the stop signals blocked in
#     the creating thread: the helper threads inherit the mask, so the kernel must
#     pick the main thread, whose wait fails with EINTR and raises;
#  2. Pool.terminate() can hang when interrupted mid-transfer (its task handler
#     stays blocked writing a 64 MiB task into a pipe the parent itself keeps
#     open). Hence an interrupted run never tries a graceful pool shutdown: it
#     kills the workers and exits at once (stop_now);
#  3. workers never notice their parent's death (each holds both ends of its
#     task pipe), so a parent killed by SIGKILL leaves them running. Hence they
#     ask Linux for a SIGKILL when the parent goes (_worker_init).
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _find_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None


# Looked up here, once, not in each worker: importing ctypes there would add
# milliseconds to every pool start, and pool start is one of the figures.
_prctl = _find_prctl()
_PR_SET_PDEATHSIG = 1


class Stopped(BaseException):
    """SIGTERM, turned into an exception so it unwinds like KeyboardInterrupt."""

    signum = signal.SIGTERM


def _on_sigterm(signum, frame):
    raise Stopped()


def _worker_init(parent_pid):
    # Workers inherit the blocked mask (and, under fork, the parent's handlers).
    # They must die on the SIGTERM that Pool.terminate() sends; Ctrl-C reaches
    # the whole process group, but it is the parent's to handle, and ignoring it
    # here spares a traceback from every worker.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if _prctl is not None:
        # Fires when the thread that forked this worker exits: the parent's
        # main thread for the pool's first workers, or the pool's handler
        # thread for replacements (e.g. forked while stop_now is killing
        # workers); either way no later than the parent process itself.
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died before prctl took hold.
        if parent_pid is not None and os.getppid() != parent_pid:
            os._exit(1)


def _expected_parent():
    # Under forkserver (Linux default from 3.14) workers are children of the fork
    # server, not of this process; it exits when this process does, so watching
    # it is just as good.
    if multiprocessing.get_start_method() == "forkserver":
        return None
    return os.getpid()


def make_pool(processes):
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        return multiprocessing.Pool(processes)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return multiprocessing.Pool(
            processes, initializer=_worker_init, initargs=(_expected_parent(),)
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop_now(signum):
    """Kill every worker and die of `signum`, skipping all cleanup that may hang."""
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
    for child in children:  # reap them, so none outlives this process even briefly
        child.join(1)
    # Replacements the pool's handler thread may fork meanwhile die with this
    # process (PR_SET_PDEATHSIG in _worker_init).
    sys.stderr.flush()
    # Dying of the signal itself (not exit(1)) tells the caller what happened,
    # and skips multiprocessing's atexit pool finalizers, which can hang (2.).
    signal.signal(signum, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # not reached unless the signal is somehow ignored


def with_pool(processes, fn):
    pool = make_pool(processes)
    try:
        result = fn(pool)
    except Exception:
        # A failed measurement: the pool is idle (the error came back through
        # it, or from our own checks), so terminate() is safe and the run can
        # go on with the next figure. Ctrl-C and SIGTERM pass through to main().
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
    return result


def plan(args):
    """Yield (name, unit, workers, thunk) where thunk() returns the samples."""
    quick, repeat = args.quick, args.repeat
    noop_n = 100_000 if quick else 1_000_000
    imap_n = 5_000 if quick else 50_000
    payload_size = (8 if quick else 64) * MIB
    roundtrip_batch = 500 if quick else 2_000
    # fondo-cli/src/bench/mod.rs, Sizes: context_big_bytes, shared_small_bytes.
    context_big = (8 if quick else 64) * MIB
    shared_small = (8 if quick else 64) * MIB

    yield "factorial_single", "s", None, lambda: sample(factorial_single, repeat)
    yield "factorial_threads", "s", 2, lambda: sample(factorial_threads, repeat)
    for w in args.workers:
        yield "factorial_pool_map", "s", w, (
            lambda w=w: with_pool(
                w, lambda p: sample(lambda: factorial_pool_map(p), repeat)
            )
        )
    yield "apply_async_roundtrip", "us", 2, lambda: with_pool(
        2, lambda p: sample(lambda: apply_async_roundtrip(p, roundtrip_batch), repeat)
    )
    yield "map_noop", "tasks_per_s", 2, lambda: with_pool(
        2, lambda p: sample(lambda: map_noop(p, noop_n), repeat)
    )
    yield "imap_noop_chunk1", "tasks_per_s", 2, lambda: with_pool(
        2, lambda p: sample(lambda: imap_noop_chunk1(p, imap_n), repeat)
    )

    def payload(p):
        # Full-size round trips for 2 s (one at least), as fondo's bench does: the
        # samples measure the steady state, not the first touch.
        deadline = time.perf_counter() + PAYLOAD_WARM_UP_S
        payload_roundtrip(p, payload_size, 8)
        while time.perf_counter() < deadline:
            payload_roundtrip(p, payload_size, 8)
        return [payload_roundtrip(p, payload_size, 8) for _ in range(repeat)]

    yield "payload_roundtrip", "GB_per_s", 2, lambda: with_pool(2, payload)

    # Issue 16: a context with each task (functools.partial pickles it with every
    # chunk), a shared block summed in workers, arrays of doubles.
    for which, ctx_size in (("small", KIB), ("big", context_big)):
        ctx = array.array("d", bytes(ctx_size))
        yield "map_with_{}_context".format(which), "tasks_per_s", 2, (
            lambda ctx=ctx: with_pool(
                2, lambda p: sample(lambda: map_with_context(p, ctx, noop_n), repeat)
            )
        )
    yield "shared_scan", "GB_per_s", 2, lambda: with_shared_block(
        shared_small,
        lambda name, n: with_pool(
            2, lambda p: sample(lambda: shared_scan(p, name, n), repeat)
        ),
    )

    def arrays(p):
        deadline = time.perf_counter() + PAYLOAD_WARM_UP_S
        array_roundtrip(p, payload_size, 8)
        while time.perf_counter() < deadline:
            array_roundtrip(p, payload_size, 8)
        return [array_roundtrip(p, payload_size, 8) for _ in range(repeat)]

    yield "array_roundtrip", "GB_per_s", 2, lambda: with_pool(2, arrays)
    yield "pool_create_first_close", "s", 2, lambda: sample(
        pool_create_first_close, repeat
    )

    # Head-of-line, behind a long task and with both workers idle: one measurement,
    # two figures (each run's median and largest latency); the second reads what
    # the first kept.
    for name, long_s in (("hol_fast_latency", HOL_LONG_S), ("hol_idle_latency", None)):
        maxima = []

        def medians(p, long_s=long_s, maxima=maxima):
            runs = sample(lambda: fast_behind(p, long_s, HOL_FAST_TASKS), repeat)
            maxima[:] = [m for _, m in runs]
            return [m for m, _ in runs]

        def largest(name=name, maxima=maxima):
            if len(maxima) != repeat:
                raise RuntimeError("not measured: see {}_median".format(name))
            return list(maxima)

        yield name + "_median", "us", 2, lambda medians=medians: with_pool(2, medians)
        yield name + "_max", "us", 2, largest


def parse_workers(text):
    try:
        ws = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected a comma-separated list of integers")
    if not ws or any(w < 1 for w in ws):
        raise argparse.ArgumentTypeError("worker counts must be positive integers")
    return sorted(set(ws))


def positive_int(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer")
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def main(argv=None):
    cpus = multiprocessing.cpu_count()
    # The notebook's choices: 2, cpu_count() and 2*cpu_count() processes, plus 1
    # so the pool's overhead over the plain single-thread run is visible.
    default_workers = sorted({1, 2, cpus, 2 * cpus})

    parser = argparse.ArgumentParser(
        description="Measure CPython multiprocessing for `fondo bench`; "
        "prints one JSON object on stdout."
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller inputs, 2 repeats by default"
    )
    parser.add_argument(
        "--repeat", type=positive_int, help="timed samples per figure (default 5, quick 2)"
    )
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=default_workers,
        help="pool sizes for factorial_pool_map, e.g. 1,2,4 (default: {})".format(
            ",".join(map(str, default_workers))
        ),
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5

    # Anything that writes to sys.stdout (ours, a library's, a forked worker's,
    # since workers inherit this object) must not corrupt the JSON the parent
    # parses, so stdout is diverted to stderr until the very end.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    signal.signal(signal.SIGTERM, _on_sigterm)

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS / Windows
        usable = cpus

    report = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "cpu_count": cpus,
        "usable_cpus": usable,
        "start_method": multiprocessing.get_start_method(),
        # Other work on the machine skews every figure; this lets the caller warn.
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "quick": args.quick,
        "repeat": args.repeat,
        "workers": args.workers,
        "results": [],
    }
    errors = []
    log(
        "python {} ({}), start method {}, {} cpus, repeat {}{}".format(
            report["python"],
            sys.executable,
            report["start_method"],
            cpus,
            args.repeat,
            ", quick" if args.quick else "",
        )
    )

    t_start = time.perf_counter()
    try:
        for name, unit, workers, thunk in plan(args):
            try:
                report["results"].append(record(name, unit, workers, thunk()))
            except Exception as exc:  # keep going: partial figures beat none
                traceback.print_exc(file=sys.stderr)
                errors.append({"name": name, "workers": workers, "error": repr(exc)})
    except KeyboardInterrupt:
        log("interrupted")
        stop_now(signal.SIGINT)
    except Stopped as stop:
        log("terminated")
        stop_now(stop.signum)
    if errors:
        report["errors"] = errors
    log("done in {:.1f} s".format(time.perf_counter() - t_start))

    sys.stdout = real_stdout
    json.dump(report, real_stdout)
    real_stdout.write("\n")
    real_stdout.flush()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
