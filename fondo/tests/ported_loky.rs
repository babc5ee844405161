//! loky's `tests/test_reusable_executor.py` ported to fondo's process pool: above
//! all its crash matrix (`TestExecutorDeadLock.test_crashes` and
//! `test_in_callback_submit_with_crash`), where a task's value misbehaves at each
//! stage of its trip — argument serialised in the parent, deserialised in the
//! worker, the task itself, result serialised in the worker, deserialised in the
//! parent, values dropped in the worker ("at gc") — and each way it can: a serde
//! error, a panic, `exit`, `abort`, a segfault, SIGKILL. CPython's
//! `test_concurrent_futures/test_deadlock.py` has the same matrix in smaller form;
//! its cases are named next to the cells they share.
//!
//! What each cell asserts is fondo's failure contract (README), not loky's broken
//! pool: an error for that one task (`Serialization`, `Panicked` or `WorkerDied`
//! with the right cause), the tasks around it complete (before and after it, and
//! beside it in the same chunk), the pool works afterwards, nothing hangs. Every
//! wait is bounded: results through `get_timeout`, whole tests under a
//! [`Deadline`]; a pool is terminated, not joined, when a failing test unwinds.
//!
//! Every cell runs: the bugs of issue 13 each cell once hit are fixed; only the test
//! `docs/PORTED_TESTS.md` maps every loky test to its port here, or says why not.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::crash::{Bomb, Kind, MESSAGE, Stage, detonate, relay};
use common::{Deadline, TempDir, TerminateOnPanic, eventually, kill_child_of, settled_pids};
use fondo::{AsyncResult, Error, ExitCause, Payload, Pool, Processes};

/// Reading a result that must come: generous, it only tells a hang from slowness.
const RESULT_LIMIT: Duration = Duration::from_secs(30);
/// A whole test, past which its watchdog aborts the binary.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Reads a result that must arrive, failing the test (not hanging it) if it doesn't.
fn must_get<R: Send + 'static>(r: &AsyncResult<R>, what: &str) -> fondo::Result<R> {
    match r.get_timeout(RESULT_LIMIT) {
        Err(Error::WaitTimeout { .. }) => panic!("{what}: no outcome after {RESULT_LIMIT:?}: hang"),
        other => other,
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// loky's `id_sleep`: returns `x` after `ms` milliseconds.
fn id_sleep(x: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x
}

/// The pool keeps serving: a `map` after the fact returns every value.
fn assert_pool_works(pool: &Pool<Processes>) {
    let _wd = Deadline::arm("map after the failure", RESULT_LIMIT);
    let v = pool.map(square, 0..20).expect("map after the failure");
    assert_eq!(v, (0..20).map(|x| x * x).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// The crash matrix
// ---------------------------------------------------------------------------

/// Where, on its trip, the task's value misbehaves.
#[derive(Debug, Clone, Copy)]
enum At {
    /// The argument's `Serialize`, in the parent (loky: "while pickling a task").
    ArgSerialize,
    /// The argument's `Deserialize`, in the worker ("while unpickling a task").
    ArgDeserialize,
    /// The task itself ("during function execution on workers").
    Run,
    /// The result's `Serialize`, in the worker ("while pickling a task result").
    ResultSerialize,
    /// The result's `Deserialize`, in the parent ("while unpickling a task result
    /// in the result handler").
    ResultDeserialize,
    /// The argument's `Drop`, in the worker, as the task returns (loky's
    /// `CrashAtGCInWorker`: "at call item GC time").
    ArgDrop,
    /// The result's `Drop`, in the worker, once it has been encoded.
    ResultDrop,
}

type Call = (Bomb, Option<Kind>, Option<(Stage, Kind)>);

/// The arguments of [`relay`] that make its value misbehave `at` as `kind`.
fn call(at: At, kind: Kind, value: u64) -> Call {
    match at {
        At::ArgSerialize => (Bomb::armed(value, Stage::Serialize, kind), None, None),
        At::ArgDeserialize => (Bomb::armed(value, Stage::Deserialize, kind), None, None),
        At::Run => (Bomb::dud(value), Some(kind), None),
        At::ResultSerialize => (Bomb::dud(value), None, Some((Stage::Serialize, kind))),
        At::ResultDeserialize => (Bomb::dud(value), None, Some((Stage::Deserialize, kind))),
        At::ArgDrop => (Bomb::armed(value, Stage::Drop, kind), None, None),
        At::ResultDrop => (Bomb::dud(value), None, Some((Stage::Drop, kind))),
    }
}

fn harmless(value: u64) -> Call {
    (Bomb::dud(value), None, None)
}

/// [`relay`] on one tuple, for `imap`.
fn relay_call((arg, run, out): Call) -> Bomb {
    relay(arg, run, out)
}

/// What fondo's contract promises for a task whose value misbehaves so.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `Err(Serialization { what })` (whether the message is the value's own is
    /// [`an_argument_that_fails_to_deserialise_says_why`]'s business).
    Serialization(Payload),
    /// A panic inside serde's code: `Panicked` with the message, or `Serialization`
    /// about `what` — either is an error for this task alone, the worker living on.
    PanicOrSerialization(Payload),
    /// `Err(Panicked)` with the message; the worker lives on.
    Panicked,
    /// `Err(WorkerDied)` with this cause, from a worker of the pool.
    Died(ExitCause),
    /// The value (the answer may have left before the death) or `WorkerDied`.
    ValueOrDied(ExitCause),
    /// The value, or `Panicked` with the message.
    ValueOrPanicked,
}

impl Expect {
    fn of(at: At, kind: Kind) -> Expect {
        let (arg, res) = (Payload::Arguments, Payload::Result);
        match (at, kind.death()) {
            (At::ArgSerialize | At::ArgDeserialize, None) if kind == Kind::Error => {
                Expect::Serialization(arg)
            }
            (At::ResultSerialize | At::ResultDeserialize, None) if kind == Kind::Error => {
                Expect::Serialization(res)
            }
            (At::ArgSerialize | At::ArgDeserialize, None) => Expect::PanicOrSerialization(arg),
            (At::ResultSerialize | At::ResultDeserialize, None) => {
                Expect::PanicOrSerialization(res)
            }
            (At::Run | At::ArgDrop, None) => Expect::Panicked,
            (At::ResultDrop, None) => Expect::ValueOrPanicked,
            (At::ResultDrop, Some(cause)) => Expect::ValueOrDied(cause),
            (At::ArgSerialize | At::ResultDeserialize, Some(_)) => {
                unreachable!("a death in the parent would end the test process itself")
            }
            (_, Some(cause)) => Expect::Died(cause),
        }
    }

    /// True when the worker that ran the task must still be alive afterwards.
    fn worker_lives(self) -> bool {
        !matches!(self, Expect::Died(_) | Expect::ValueOrDied(_))
    }

    /// Checks the outcome of the misbehaving task (value `value`), run by one of `pids`.
    fn check(self, outcome: &fondo::Result<u64>, value: u64, pids: &[u32], what: &str) {
        let carries = |m: &str| m.contains(MESSAGE);
        let ok = match (self, outcome) {
            (
                Expect::Serialization(w) | Expect::PanicOrSerialization(w),
                Err(Error::Serialization { what, .. }),
            ) => *what == w,
            (
                Expect::PanicOrSerialization(_) | Expect::Panicked | Expect::ValueOrPanicked,
                Err(Error::Panicked { message, .. }),
            ) => carries(message),
            (
                Expect::Died(want) | Expect::ValueOrDied(want),
                Err(Error::WorkerDied { pid, cause }),
            ) => *cause == want && pids.contains(pid),
            (Expect::ValueOrDied(_) | Expect::ValueOrPanicked, Ok(v)) => *v == value,
            _ => false,
        };
        assert!(
            ok,
            "{what}: expected {self:?}, got {outcome:?} (workers {pids:?})"
        );
    }
}

/// `test_crashes`: the misbehaving task submitted between two harmless ones on two
/// workers, then in the middle of a chunk of `imap` (chunks of 4, task 5 of 0..8);
/// each time only it fails, as the contract says.
fn crash_cell(at: At, kind: Kind) {
    let what = format!("{at:?}/{kind:?}");
    let _wd = Deadline::arm(&what, TEST_LIMIT);
    let expect = Expect::of(at, kind);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(2)
            .chunksize(4)
            .processes()
            .expect("start a pool"),
    );
    let before = settled_pids(&pool);

    let first = pool.apply_async(relay, harmless(1));
    let bad = pool.apply_async(relay, call(at, kind, 2));
    let last = pool.apply_async(relay, harmless(3));
    let got = must_get(&bad, &what).map(|b| b.value);
    expect.check(&got, 2, &before, &what);
    assert_eq!(
        must_get(&first, "task before").map(|b| b.value).ok(),
        Some(1)
    );
    assert_eq!(must_get(&last, "task after").map(|b| b.value).ok(), Some(3));
    if expect.worker_lives() {
        assert_eq!(pool.pids(), before, "{what}: a worker was lost");
    }

    let before = settled_pids(&pool);
    let calls = (0..8).map(|i| {
        if i == 5 {
            call(at, kind, i)
        } else {
            harmless(i)
        }
    });
    let outcomes: Vec<fondo::Result<u64>> = pool
        .imap(relay_call, calls)
        .map(|r| r.map(|b| b.value))
        .collect();
    assert_eq!(outcomes.len(), 8, "{what}: {outcomes:?}");
    for (i, o) in outcomes.iter().enumerate() {
        if i == 5 {
            expect.check(o, 5, &before, &format!("{what} in a chunk"));
        } else {
            assert_eq!(
                o.as_ref().ok(),
                Some(&(i as u64)),
                "{what}: neighbour {i} spoiled"
            );
        }
    }
    assert_pool_works(&pool);
    let after = settled_pids(&pool);
    assert!(
        after.iter().all(|&p| p != 0),
        "{what}: a slot was lost: {after:?}"
    );
}

/// `test_in_callback_submit_with_crash`: the misbehaving task is submitted by the
/// callback of a task that took a little while, so the callback runs in the pool's
/// own machinery (a supervisor or a waiting thread), not in the test's thread.
fn crash_cell_from_callback(at: At, kind: Kind) {
    let what = format!("{at:?}/{kind:?} from a callback");
    let _wd = Deadline::arm(&what, TEST_LIMIT);
    let expect = Expect::of(at, kind);
    let pool = Arc::new(TerminateOnPanic(Pool::processes(2).expect("start a pool")));
    let before = settled_pids(&pool);
    let (tx, rx) = mpsc::channel();
    let weak = Arc::downgrade(&pool);
    let args = call(at, kind, 2);
    let first = pool.apply_async(id_sleep, (42, 100)).on_done(move |_| {
        if let Some(pool) = weak.upgrade() {
            let _ = tx.send(pool.apply_async(relay, args));
        }
    });
    assert_eq!(must_get(&first, "first task").ok(), Some(42));
    let bad = rx
        .recv_timeout(RESULT_LIMIT)
        .expect("the callback submitted its task");
    let got = must_get(&bad, &what).map(|b| b.value);
    expect.check(&got, 2, &before, &what);
    assert_pool_works(&pool);
}

/// One module per cell, with two tests: `direct` (`test_crashes`) and
/// `in_callback` (`test_in_callback_submit_with_crash`).
macro_rules! crash_matrix {
    ($($(#[$attr:meta])* $name:ident: $at:ident, $kind:expr;)*) => {
        $(
            mod $name {
                use super::*;

                #[test]
                $(#[$attr])*
                fn direct() {
                    crash_cell(At::$at, $kind);
                }

                #[test]
                $(#[$attr])*
                fn in_callback() {
                    crash_cell_from_callback(At::$at, $kind);
                }
            }
        )*
    };
}

crash_matrix! {
    // --- The argument's Serialize, in the parent ---
    // loky (id, (ErrorAtPickle(),), PicklingError); CPython test_deadlock
    // test_error_at_task_pickle.
    arg_serialize_error: ArgSerialize, Kind::Error;
    // loky (id, (ExitAtPickle(),), PicklingError): sys.exit raises SystemExit, an
    // exception, so a panic here (exit/abort/segfault would end the test process).
    arg_serialize_panic: ArgSerialize, Kind::Panic;

    // --- The argument's Deserialize, in the worker ---
    // loky (id, (ErrorAtUnpickle(),), BrokenProcessPool, "UnpicklingError") and
    // test_informative_error_when_fail_at_unpickle; CPython test_error_at_task_unpickle.
    arg_deserialize_error: ArgDeserialize, Kind::Error;
    // loky (id, (ExitAtUnpickle(),), BrokenProcessPool, "SystemExit"); CPython
    // test_exit_at_task_unpickle.
    arg_deserialize_panic: ArgDeserialize, Kind::Panic;
    // loky (id, (CExitAtUnpickle(),), TerminatedWorkerError, "EXIT(0)").
    arg_deserialize_exit: ArgDeserialize, Kind::Exit(0);
    // loky (id, (CrashAtUnpickle(),), TerminatedWorkerError, "SIGSEGV"); CPython
    // test_crash_at_task_unpickle.
    arg_deserialize_segfault: ArgDeserialize, Kind::Segfault;
    // Rust's other deaths, same stage.
    arg_deserialize_abort: ArgDeserialize, Kind::Abort;
    arg_deserialize_sigkill: ArgDeserialize, Kind::SigKill;

    // --- The task itself ---
    // loky (exit, (), SystemExit) and (raise_error, (RuntimeError,), RuntimeError);
    // CPython test_exit_during_func_exec_on_worker, test_error_during_func_exec_on_worker.
    run_panic: Run, Kind::Panic;
    // loky (c_exit, (), TerminatedWorkerError, "EXIT(0)").
    run_exit: Run, Kind::Exit(0);
    // loky (crash, (), TerminatedWorkerError, "SIGSEGV"); CPython
    // test_crash_during_func_exec_on_worker.
    run_segfault: Run, Kind::Segfault;
    run_abort: Run, Kind::Abort;
    run_sigkill: Run, Kind::SigKill;

    // --- The result's Serialize, in the worker ---
    // loky (return_instance, (ErrorAtPickle,), PicklingError); CPython
    // test_error_during_result_pickle_on_worker.
    result_serialize_error: ResultSerialize, Kind::Error;
    // loky (return_instance, (ExitAtPickle,), SystemExit); CPython
    // test_exit_during_result_pickle_on_worker.
    result_serialize_panic: ResultSerialize, Kind::Panic;
    // loky (return_instance, (CExitAtPickle,), TerminatedWorkerError, "EXIT(0)").
    result_serialize_exit: ResultSerialize, Kind::Exit(0);
    // loky (return_instance, (CrashAtPickle,), TerminatedWorkerError, "SIGSEGV");
    // CPython test_crash_during_result_pickle_on_worker.
    result_serialize_segfault: ResultSerialize, Kind::Segfault;
    result_serialize_abort: ResultSerialize, Kind::Abort;
    result_serialize_sigkill: ResultSerialize, Kind::SigKill;

    // --- The result's Deserialize, in the parent ---
    // loky (return_instance, (ErrorAtUnpickle,), BrokenProcessPool, "UnpicklingError");
    // CPython test_error_during_result_unpickle_in_result_handler.
    result_deserialize_error: ResultDeserialize, Kind::Error;
    // loky (return_instance, (ExitAtUnpickle,), BrokenProcessPool, "SystemExit");
    // CPython test_exit_during_result_unpickle_in_result_handler.
    result_deserialize_panic: ResultDeserialize, Kind::Panic;

    // --- The argument's Drop, in the worker (loky test_call_item_gc_crash_or_exit) ---
    // loky CrashAtGCInWorker, "SIGSEGV".
    arg_drop_segfault: ArgDrop, Kind::Segfault;
    // loky CExitAtGCInWorker, "EXIT(0)".
    arg_drop_exit: ArgDrop, Kind::Exit(0);
    arg_drop_panic: ArgDrop, Kind::Panic;
    arg_drop_abort: ArgDrop, Kind::Abort;
    arg_drop_sigkill: ArgDrop, Kind::SigKill;

    // --- The result's Drop, in the worker, after it was encoded (Rust's own "at gc") ---
    result_drop_segfault: ResultDrop, Kind::Segfault;
    result_drop_exit: ResultDrop, Kind::Exit(0);
    result_drop_panic: ResultDrop, Kind::Panic;
    result_drop_abort: ResultDrop, Kind::Abort;
    result_drop_sigkill: ResultDrop, Kind::SigKill;
}

// ---------------------------------------------------------------------------
// TestExecutorDeadLock: the rest
// ---------------------------------------------------------------------------

/// loky `test_callback_crash_on_submit`: a callback that raises (`exit()`, i.e.
/// `SystemExit`, then `raise_error()`; both are panics in Rust) in the pool's own
/// thread must not break the pool: the next tasks run.
#[test]
fn a_callback_that_panics_leaves_the_pool_working() {
    let _wd = Deadline::arm("panicking callbacks", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("start a pool"));
    for message in ["exit() in a callback", "raise_error() in a callback"] {
        let f = pool
            .apply_async(id_sleep, (42, 100))
            .on_done(move |_| panic!("{message}"));
        assert_eq!(
            must_get(&f, "task with a panicking callback").ok(),
            Some(42)
        );
        let next = pool.apply_async(id_sleep, (42, 0));
        assert_eq!(must_get(&next, "next task").ok(), Some(42));
    }
    assert_pool_works(&pool);
}

/// Sleeps `ms` then reports whether every PID in `pids` is alive (loky's
/// `sleep_then_check_pids_exist`).
fn sleep_then_check_pids_exist((ms, pids): (u64, Vec<u32>)) -> bool {
    std::thread::sleep(Duration::from_millis(ms));
    pids.iter().all(|&p| common::alive(p))
}

/// Kills a sibling worker (loky's `kill_friend`), if it is still the pool's.
fn kill_friend(victim: u32) -> u32 {
    kill_child_of(std::os::unix::process::parent_id(), victim);
    victim
}

/// loky `test_crash_races` (n_proc 1, 2, 5, 13): every worker sees all its
/// siblings alive; then each task SIGKILLs a sibling (the last worker first). In
/// loky the executor breaks; here each task either completes or gets `WorkerDied`
/// from SIGKILL, nothing hangs, and the pool refills and works.
#[test]
fn crash_races_between_workers_killing_each_other() {
    for n in [1usize, 2, 5, 13] {
        let what = format!("crash races, {n} workers");
        let _wd = Deadline::arm(&what, TEST_LIMIT);
        let pool = TerminateOnPanic(Pool::processes(n).expect("start a pool"));
        let pids = settled_pids(&pool);
        assert_eq!(pids.len(), n);
        let checks = pool
            .map(
                sleep_then_check_pids_exist,
                (0..2 * n as u64).map(|j| (j / 2, pids.clone())),
            )
            .expect("check pids");
        assert!(checks.iter().all(|&c| c), "{what}: {checks:?}");
        let victims: Vec<u32> = pids.iter().rev().copied().collect();
        let outcomes: Vec<_> = pool.imap(kill_friend, victims.clone()).collect();
        for (o, v) in outcomes.iter().zip(&victims) {
            match o {
                Ok(p) => assert_eq!(p, v),
                Err(Error::WorkerDied { pid, cause }) => {
                    assert_eq!(*cause, ExitCause::Signal(9), "{what}");
                    assert!(pids.contains(pid), "{what}: {pid} not a worker");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        if n == 1 {
            assert!(
                matches!(outcomes[0], Err(Error::WorkerDied { .. })),
                "a lone worker killing itself: {outcomes:?}"
            );
        }
        assert_pool_works(&pool);
    }
}

/// Takes anything, returns `true` (loky's `do_nothing`).
fn do_nothing(_: Bomb) -> bool {
    true
}

/// loky `test_queue_full_deadlock`: 100 tasks whose argument fails to serialise,
/// then 100 whose argument is fine, on one worker: the first 100 fail, the next
/// 100 succeed (the failures neither block the queue nor the worker).
#[test]
fn many_unserialisable_arguments_do_not_block_the_queue() {
    let _wd = Deadline::arm("queue full deadlock", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(1).expect("start a pool"));
    assert_eq!(pool.apply(square, (42,)).ok(), Some(42 * 42));
    let fails: Vec<_> = (0..100)
        .map(|i| pool.apply_async(do_nothing, (Bomb::armed(i, Stage::Serialize, Kind::Error),)))
        .collect();
    let goods: Vec<_> = (0..100)
        .map(|i| pool.apply_async(do_nothing, (Bomb::dud(i),)))
        .collect();
    for f in &fails {
        assert!(
            matches!(
                must_get(f, "bad argument"),
                Err(Error::Serialization {
                    what: Payload::Arguments,
                    ..
                })
            ),
            "a bad argument's task"
        );
    }
    for g in &goods {
        assert_eq!(must_get(g, "good argument").ok(), Some(true));
    }
}

/// loky `test_informative_error_when_fail_at_unpickle`: an argument whose
/// `Deserialize` fails with `RuntimeError("message raised in child")`: the error
/// the parent gets says so (loky puts it in the `BrokenProcessPool`'s cause). The
/// same for the three other serde errors of a task's trip.
#[test]
fn an_argument_that_fails_to_deserialise_says_why() {
    let _wd = Deadline::arm("informative error", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("start a pool"));
    for (at, what) in [
        (At::ArgDeserialize, Payload::Arguments),
        (At::ArgSerialize, Payload::Arguments),
        (At::ResultSerialize, Payload::Result),
        (At::ResultDeserialize, Payload::Result),
    ] {
        let r = pool.apply_async(relay, call(at, Kind::Error, 1));
        match must_get(&r, "bad value").map(|b| b.value) {
            Err(Error::Serialization {
                what: w, message, ..
            }) => {
                assert_eq!(w, what);
                assert!(
                    message.contains(MESSAGE),
                    "{at:?}: the message is {message:?}"
                );
            }
            other => panic!("{at:?}: expected Serialization, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// TestTerminateExecutor
// ---------------------------------------------------------------------------

/// loky `test_shutdown_kill`: a quick `map` and a slow one (100 tasks of 1 s) on
/// 5 workers; the quick one is read, then the pool is stopped with its workers
/// killed (`terminate`): it returns at once, the slow `map` is `Terminated`, the
/// quick one's values stay as they were read.
#[test]
fn terminate_with_a_slow_map_pending() {
    let _wd = Deadline::arm("shutdown kill", TEST_LIMIT);
    let pool = Pool::processes(5).expect("start a pool");
    let quick = pool.map_async(id_sleep_1ms, 0..100);
    let slow = pool.map_async(id_sleep_1s, 0..100);
    let values = quick.get_timeout(RESULT_LIMIT).expect("the quick map");
    assert_eq!(values, (0..100).collect::<Vec<u64>>());
    let pids = settled_pids(&pool);
    pool.terminate();
    assert!(matches!(
        slow.get_timeout(Duration::ZERO),
        Err(Error::Terminated)
    ));
    drop(pool);
    for pid in pids {
        assert!(
            eventually(RESULT_LIMIT, || !common::alive(pid)),
            "worker {pid} survived terminate"
        );
    }
}

fn id_sleep_1ms(x: u64) -> u64 {
    id_sleep(x, 1)
}

fn id_sleep_1s(x: u64) -> u64 {
    id_sleep(x, 1000)
}

/// loky `test_shutdown_deadlock`: a task kills a worker of its pool, then the pool
/// is shut down (dropped: close + join) at once: the drop returns, the task is done
/// or `WorkerDied`.
#[test]
fn dropping_the_pool_while_a_task_kills_a_worker() {
    for _ in 0..5 {
        let _wd = Deadline::arm("shutdown while a worker is killed", TEST_LIMIT);
        let pool = Pool::processes(2).expect("start a pool");
        assert_eq!(pool.map(square, 0..2).ok(), Some(vec![0, 1]));
        let victim = settled_pids(&pool)[0];
        let r = pool.apply_async(kill_friend, (victim,));
        std::thread::sleep(Duration::from_millis(10));
        drop(pool);
        match r.get_timeout(Duration::ZERO) {
            Ok(v) => assert_eq!(v, victim),
            Err(Error::WorkerDied { cause, .. }) => assert_eq!(cause, ExitCause::Signal(9)),
            other => panic!("after the drop: {other:?}"),
        }
        assert!(eventually(RESULT_LIMIT, || !common::alive(victim)));
    }
}

// ---------------------------------------------------------------------------
// TestGetReusableExecutor
// ---------------------------------------------------------------------------

/// A task's value is squared `steps` times through `map`s of 10 (the body of loky's
/// `helper_func` for `test_reusable_executor_thread_safety`).
fn maps_from_a_thread(pool: &Pool<Processes>, steps: usize) -> Result<(), String> {
    for _ in 0..steps {
        let got = pool.map(square, 0..10).map_err(|e| e.to_string())?;
        if got != (0..10).map(|x| x * x).collect::<Vec<u64>>() {
            return Err(format!("wrong values {got:?}"));
        }
    }
    Ok(())
}

/// loky `test_reusable_executor_thread_safety` with ("constant", "clean_start") and
/// ("constant", "broken_start"): ten threads share one pool of 2 and each runs 5
/// `map`s of 10; every value is right. For the broken start, a task first kills its
/// worker with a segfault (loky breaks the executor; fondo replaces the worker).
/// The ("varying", …) cases resize the executor, which fondo has no notion of.
fn thread_safety(broken_start: bool) {
    let _wd = Deadline::arm("thread safety", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("start a pool"));
    if broken_start {
        let r = pool.apply_async(detonate, (Kind::Segfault,));
        assert!(matches!(
            must_get(&r, "segfault"),
            Err(Error::WorkerDied {
                cause: ExitCause::Signal(11),
                ..
            })
        ));
    } else {
        assert_eq!(pool.apply(square, (42,)).ok(), Some(42 * 42));
    }
    let pool = &*pool;
    let outcomes: Vec<Result<(), String>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..10)
            .map(|_| s.spawn(move || maps_from_a_thread(pool, 5)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
}

#[test]
fn one_pool_shared_by_ten_threads_clean_start() {
    thread_safety(false);
}

#[test]
fn one_pool_shared_by_ten_threads_after_a_worker_crashed() {
    thread_safety(true);
}

/// `sqrt` on processes.
fn sqrt(x: u32) -> f64 {
    f64::from(x).sqrt()
}

/// `time.sleep(0.0001)`.
fn nap(_: u32) {
    std::thread::sleep(Duration::from_micros(100));
}

/// One thread of `_test_process_executor.py`'s `_test_thread_safety`: a lazy map,
/// 20 submitted tasks of which every even one is cancelled, another map; the maps
/// give every value, the odd tasks (and the even ones the cancel came too late for)
/// complete.
fn maps_and_cancels_from_a_thread(pool: &Pool<Processes>, thread_idx: usize) -> Result<(), String> {
    let map_future_1 = pool.imap(sqrt, 0..40);
    if thread_idx.is_multiple_of(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let submit_futures: Vec<AsyncResult<()>> =
        (0..20).map(|i| pool.apply_async(nap, (i,))).collect();
    let said: Vec<bool> = submit_futures
        .iter()
        .step_by(2)
        .map(AsyncResult::cancel)
        .collect();
    let map_future_2 = pool.imap(sqrt, 0..40);
    let want: Vec<f64> = (0..40).map(sqrt).collect();
    let got_1: Vec<f64> = map_future_1
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let got_2: Vec<f64> = map_future_2
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if got_1 != want || got_2 != want {
        return Err(format!("thread {thread_idx}: wrong map values"));
    }
    for (i, f) in submit_futures.iter().enumerate() {
        let outcome = f.get_timeout(RESULT_LIMIT);
        let cancelled = i % 2 == 0 && said[i / 2];
        match (cancelled, outcome) {
            (false, Ok(())) | (true, Err(Error::Cancelled)) => {}
            (c, o) => {
                return Err(format!(
                    "thread {thread_idx}, task {i}: cancelled {c}, {o:?}"
                ));
            }
        }
        if f.cancelled() != cancelled {
            return Err(format!(
                "thread {thread_idx}, task {i}: cancelled() disagrees"
            ));
        }
    }
    Ok(())
}

/// `_test_process_executor.py` `test_thread_safety`: ten threads at once, each
/// mixing lazy maps, submissions and cancels on one pool.
#[test]
fn ten_threads_mapping_submitting_and_cancelling() {
    let _wd = Deadline::arm("thread safety with cancels", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("start a pool"));
    let pool = &*pool;
    let outcomes: Vec<Result<(), String>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..10)
            .map(|i| s.spawn(move || maps_and_cancels_from_a_thread(pool, i)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
}

/// loky's literal broken start for `test_reusable_executor_thread_safety`:
/// `executor.submit(return_instance, CrashAtPickle)` — the worker segfaults while
/// serialising the result — must be `WorkerDied`, then the shared pool works.
#[test]
fn one_pool_shared_by_ten_threads_after_a_crash_at_result_serialisation() {
    let _wd = Deadline::arm("broken start at pickle", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("start a pool"));
    let r = pool.apply_async(relay, call(At::ResultSerialize, Kind::Segfault, 1));
    assert!(
        matches!(
            must_get(&r, "crash at pickle").map(|b| b.value),
            Err(Error::WorkerDied {
                cause: ExitCause::Signal(11),
                ..
            })
        ),
        "the crash at result serialisation"
    );
    let pool = &*pool;
    std::thread::scope(|s| {
        for _ in 0..10 {
            s.spawn(move || maps_from_a_thread(pool, 5).expect("maps"));
        }
    });
}

/// loky's `inner_parallel_func`.
fn inner_parallel_func(j: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100));
    j * j
}

/// loky's `outer_parallel_func`: a pool of its own inside a worker.
fn outer_parallel_func(i: u64) -> Vec<u64> {
    let pool = Pool::processes(2).expect("a pool inside a worker");
    let v = pool.map(inner_parallel_func, 0..2).expect("inner map");
    drop(pool);
    v.into_iter().map(|x| x + 10 * i).collect()
}

/// loky `test_no_deadlock_on_nested_reusable_exector`: each of two workers makes a
/// pool of its own and maps over it; the outer map returns and nothing waits for
/// grandchildren.
#[test]
fn nested_pools_do_not_deadlock() {
    let _wd = Deadline::arm("nested pools", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("start a pool"));
    let got = pool.map(outer_parallel_func, 0..2).expect("outer map");
    assert_eq!(got, [vec![0, 1], vec![10, 11]]);
}

fn raise_value_error(_: u64) -> u64 {
    panic!("ValueError")
}

/// loky's nested `nested_loop` where the inner tasks raise: reports the inner error.
fn nested_loop_with_errors(_: u64) -> String {
    let pool = Pool::processes(2).expect("a pool inside a worker");
    match pool.map(raise_value_error, 0..10) {
        Ok(_) => "no error".into(),
        Err(e) => e.to_string(),
    }
}

/// loky `test_error_in_nested_call_keeps_resource_tracker_silent`: inner tasks of a
/// nested pool fail; the error reaches the outer caller as a value, and the inner
/// pool's workers leave nothing behind (its drop reaps them).
#[test]
fn errors_in_a_nested_pool_reach_the_outer_caller() {
    let _wd = Deadline::arm("nested errors", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("start a pool"));
    let got = pool.map(nested_loop_with_errors, 0..2).expect("outer map");
    for message in got {
        assert!(message.contains("ValueError"), "{message}");
    }
}

/// Runs a child process that reads (nothing) from its inherited stdin.
fn call_subprocess() -> bool {
    std::thread::sleep(Duration::from_millis(10));
    std::process::Command::new("sh")
        .args(["-c", "test -e /proc/self/fd/0 && head -c 0"])
        .status()
        .is_ok_and(|s| s.success())
}

/// loky `test_no_crash_on_stdin_access_in_child_subprocess_run` (#420): a task runs
/// a subprocess that touches its inherited stdin; it works.
#[test]
fn a_task_can_run_a_subprocess_that_uses_stdin() {
    let _wd = Deadline::arm("stdin in a subprocess", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(4).expect("start a pool"));
    let r = pool.apply_async(call_subprocess, ());
    assert_eq!(must_get(&r, "subprocess").ok(), Some(true));
}

/// Announces itself in `dir`, then waits (up to 30 s) until `n` tasks have: a
/// barrier in the file system (loky's `check_running` on a manager `Barrier`).
fn check_running(dir: String, i: u32, n: usize) -> bool {
    std::fs::File::create(std::path::Path::new(&dir).join(i.to_string())).expect("announce");
    eventually(Duration::from_secs(30), || {
        std::fs::read_dir(&dir).map_or(0, |d| d.count()) >= n
    })
}

/// loky `test_reusable_executor_queue_size` (n_cpus 1, 2, 4): 2 × cpus + 2 workers
/// and as many tasks that each wait for all the others: they must all run at once,
/// one per worker (no task queued behind another while a worker idles).
#[test]
fn as_many_waiting_tasks_as_workers_all_run_at_once() {
    let _wd = Deadline::arm("queue size", TEST_LIMIT);
    for cpus in [1usize, 2, 4] {
        let n = 2 * cpus + 2;
        let pool = TerminateOnPanic(Pool::processes(n).expect("start a pool"));
        let dir = TempDir::new("barrier");
        let rs: Vec<_> = (0..n as u32)
            .map(|i| pool.apply_async(check_running, (dir.file(""), i, n)))
            .collect();
        for r in &rs {
            assert_eq!(must_get(r, "barrier task").ok(), Some(true), "{n} workers");
        }
    }
}

/// loky `test_no_crash_max_workers_on_windows`: more workers than Windows allows
/// (61 + 1): the pool starts them all and runs a task.
#[test]
fn sixty_two_workers() {
    let _wd = Deadline::arm("62 workers", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(62).expect("start 62 workers"));
    assert_eq!(pool.pids().len(), 62);
    assert_eq!(pool.apply(square, (3,)).ok(), Some(9));
    assert_eq!(pool.map(square, 0..62).map(|v| v.len()).ok(), Some(62));
}

// ---------------------------------------------------------------------------
// TestExecutorInitializer
// ---------------------------------------------------------------------------

/// What the initializer leaves in the worker process (loky's `_initialized_state`).
static INITIALIZED_STATE: AtomicUsize = AtomicUsize::new(0);

fn initializer_42() {
    INITIALIZED_STATE.store(42, Ordering::SeqCst);
}

/// loky's `_test_initializer`: the state after `delay_ms`.
fn test_initializer(delay_ms: u64) -> usize {
    std::thread::sleep(Duration::from_millis(delay_ms));
    INITIALIZED_STATE.load(Ordering::SeqCst)
}

/// loky `test_reusable_initializer`: tasks see the state the initializer set, on
/// every worker (the `map` with a delay spreads over all 4). The rest of loky's
/// test changes the initializer of a reused executor, which fondo has no notion of.
#[test]
fn tasks_see_what_the_initializer_set_on_every_worker() {
    let _wd = Deadline::arm("initializer", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(4)
            .chunksize(1)
            .initializer(initializer_42)
            .processes()
            .expect("start a pool"),
    );
    assert_eq!(pool.apply(test_initializer, (0,)).ok(), Some(42));
    let states = pool.map(test_initializer, [100; 8]).expect("map");
    assert!(states.iter().all(|&s| s == 42), "{states:?}");
    let plain = TerminateOnPanic(Pool::processes(2).expect("start a pool"));
    assert_eq!(plain.apply(test_initializer, (0,)).ok(), Some(0));
}

// ---------------------------------------------------------------------------
// tests/_test_process_executor.py (loky's executor suite, shared by its
// test_process_executor_*.py files): the cases beyond CPython's
// ---------------------------------------------------------------------------

fn id_bomb(b: Bomb) -> u64 {
    b.value
}

/// loky `ExecutorShutdownTest.test_shutdown_with_pickle_error`: five times, a pool
/// of 4 gets a task whose argument fails to serialise: `Serialization`, and the
/// pool's shutdown (drop) returns. (`test_shutdown_with_sys_exit_at_pickle`, the
/// same with `sys.exit` — a panic in Rust — is the matrix's `arg_serialize_panic`.)
#[test]
fn shutdown_after_an_argument_failed_to_serialise() {
    for _ in 0..5 {
        let _wd = Deadline::arm("shutdown with pickle error", TEST_LIMIT);
        let pool = Pool::processes(4).expect("start a pool");
        let f = pool.apply_async(id_bomb, (Bomb::armed(1, Stage::Serialize, Kind::Error),));
        assert!(matches!(
            must_get(&f, "bad argument"),
            Err(Error::Serialization {
                what: Payload::Arguments,
                ..
            })
        ));
        drop(pool);
    }
}

/// Waits on `gate`, then segfaults (loky's `_wait_and_crash`).
fn wait_and_crash(gate: String) -> u32 {
    common::gated(gate, 0);
    detonate(Kind::Segfault);
    0
}

fn sleep_and_return(ms: u64, x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x
}

/// loky `ExecutorShutdownTest.test_processes_crash_handling_after_executor_gc`: five
/// quick tasks and one that will crash once an event is set; the pool is dropped
/// (loky: garbage collected) meanwhile. The quick results come; once the event is
/// set the crash is `WorkerDied` from SIGSEGV; the drop then returns and no worker
/// is left.
#[test]
fn a_crash_after_the_pool_was_dropped() {
    let _wd = Deadline::arm("crash after drop", TEST_LIMIT);
    let pool = Pool::processes(5).expect("start a pool");
    let pids = settled_pids(&pool);
    let results = pool.starmap_async(sleep_and_return, (0..5).map(|i| (10, i)));
    let gate = common::Gate::new();
    let crash = pool.apply_async(wait_and_crash, (gate.arg(),));
    let dropper = std::thread::spawn(move || drop(pool));
    assert_eq!(
        must_get(&results, "quick results").ok(),
        Some((0..5).collect::<Vec<u64>>())
    );
    gate.open();
    assert!(matches!(
        must_get(&crash, "crash"),
        Err(Error::WorkerDied {
            cause: ExitCause::Signal(11),
            ..
        })
    ));
    dropper.join().expect("drop");
    for pid in pids {
        assert!(
            eventually(RESULT_LIMIT, || !common::alive(pid)),
            "worker {pid} left"
        );
    }
}

/// loky's `return_inputs`, for a chain link.
fn return_inputs(name: String, count: u32) -> (String, u32) {
    (name, count)
}

/// Records a link of a chain and submits the next one from the callback.
fn collect_and_submit_next(
    pool: std::sync::Weak<TerminateOnPanic<Processes>>,
    collected: Arc<std::sync::Mutex<Vec<(String, u32)>>>,
    r: &fondo::Result<(String, u32)>,
) {
    let Ok((name, count)) = r else { return };
    collected.lock().unwrap().push((name.clone(), *count));
    if *count > 0
        && let Some(p) = pool.upgrade()
    {
        let (weak, c) = (pool.clone(), collected.clone());
        drop(
            p.apply_async(return_inputs, (name.clone(), count - 1))
                .on_done(move |r| collect_and_submit_next(weak, c, r)),
        );
    }
}

/// loky `ExecutorTest.test_submit_from_callback`: three chains (100, 50 and 60
/// links) where each task's callback submits the next: every chain runs to 0.
#[test]
fn callbacks_submitting_chains_of_tasks() {
    let _wd = Deadline::arm("callback chains", TEST_LIMIT);
    let pool = Arc::new(TerminateOnPanic(Pool::processes(2).expect("start a pool")));
    let collected = Arc::new(std::sync::Mutex::new(Vec::new()));
    let chains = [("chain a", 100u32), ("chain b", 50), ("chain c", 60)];
    let firsts: Vec<_> = chains
        .iter()
        .map(|&(name, n)| {
            let (weak, c) = (Arc::downgrade(&pool), collected.clone());
            pool.apply_async(return_inputs, (name.to_string(), n))
                .on_done(move |r| collect_and_submit_next(weak, c, r))
        })
        .collect();
    for (f, &(name, n)) in firsts.iter().zip(&chains) {
        assert_eq!(must_get(f, "first link").ok(), Some((name.to_string(), n)));
    }
    let complete = || {
        let got = collected.lock().unwrap();
        chains.iter().all(|&(name, n)| {
            let links: Vec<u32> = got.iter().filter(|(c, _)| c == name).map(|l| l.1).collect();
            links == (0..=n).rev().collect::<Vec<_>>()
        })
    };
    assert!(
        eventually(RESULT_LIMIT, complete),
        "callback submit chains stalled at: {:?}",
        collected.lock().unwrap().len()
    );
}

/// Makes a pool of its own whose one worker records its PID in `dir` and sleeps
/// for a minute (loky's `_test_shutdown_and_kill_workers` at depth 2).
fn nested_long_task(dir: String) -> u64 {
    let pool = Pool::processes(1).expect("a pool inside a worker");
    pool.apply(record_pid_then_sleep, (dir,))
        .expect("inner task")
}

fn record_pid_then_sleep(dir: String) -> u64 {
    let path = std::path::Path::new(&dir).join(std::process::id().to_string());
    std::fs::File::create(path).expect("record pid");
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// loky `ExecutorShutdownTest.test_shutdown_and_kill_workers`: a task runs a pool
/// of its own whose worker runs a long task; the outer pool is shut down with its
/// workers killed (`terminate`): quickly, the outer task is `Terminated`, and the
/// grandchild worker does not survive its parent.
#[test]
fn terminate_kills_nested_pools_too() {
    let _wd = Deadline::arm("terminate nested", TEST_LIMIT);
    let pool = Pool::processes(2).expect("start a pool");
    let dir = TempDir::new("nested-kill");
    let f = pool.apply_async(nested_long_task, (dir.file(""),));
    assert!(
        eventually(RESULT_LIMIT, || dir.names().len() == 1),
        "the grandchild started"
    );
    let grandchild: u32 = dir.names()[0].parse().expect("pid");
    pool.terminate();
    assert!(matches!(
        f.get_timeout(Duration::ZERO),
        Err(Error::Terminated)
    ));
    drop(pool);
    assert!(
        eventually(RESULT_LIMIT, || !common::alive(grandchild)),
        "the grandchild worker {grandchild} outlived the killed pool"
    );
}
