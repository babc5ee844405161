//! CPython's own pool tests ported to fondo: `Lib/test/_test_multiprocessing.py`
//! (`_TestPool`, `_TestPoolWorkerErrors`, `_TestPoolWorkerLifetime`,
//! `TestPoolNotLeakOnFailure`, and the pool cases of the other classes) and
//! `Lib/test/test_concurrent_futures/` (`executor.py`, `test_process_pool.py`,
//! `test_shutdown.py`, `test_deadlock.py`, `test_wait.py`, `test_as_completed.py`,
//! `test_future.py`, `test_init.py`, `test_thread_pool.py`). Each test names its
//! origin. The crash matrix of `test_deadlock.py` lives with loky's, in
//! `tests/ported_loky.rs`.
//!
//! Python's `_TestPool` runs on processes and threads alike; so do the tests made
//! with [`on_both!`] here (one module per test, with a `processes` and a `threads`
//! test). What is asserted is fondo's failure contract (README) where Python's
//! differs — a killed worker costs its task, not the pool; a dropped pool finishes
//! its tasks — and never a wall-clock figure: every wait is bounded (`get_timeout`,
//! a [`Deadline`] for blocking calls) only so that a hang fails instead of blocking.
//! Every test runs: the bugs of issue 13 they once hit are fixed.
//! `docs/PORTED_TESTS.md` maps every upstream test to its port, or says why not.

mod common;
use common::both::{Which, on_both};

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::crash::{Bomb, Kind, Stage, detonate};
use common::{
    Deadline, Gate, TempDir, TerminateOnPanic, alive, eventually, gated, helper_command, is_helper,
    output_within, proc_stat, settled_pids,
};
use fondo::{
    AsyncResult, Error, ExitCause, Payload, Pending, Pool, Processes, ReturnWhen, Watchable,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Reading a result that must come: generous, it only tells a hang from slowness.
const RESULT_LIMIT: Duration = Duration::from_secs(30);
/// A whole test, past which its watchdog aborts the binary.
const TEST_LIMIT: Duration = Duration::from_secs(120);
/// Set to a helper test's name in the copy of this binary that runs it.
const HELPER_ENV: &str = "FONDO_PORTED_CPYTHON_HELPER";
/// A helper copy of this binary, past which it is killed and the test fails.
const HELPER_LIMIT: Duration = Duration::from_secs(120);

/// Reads a result that must arrive, failing the test (not hanging it) if it doesn't.
fn must_get<R: Send + 'static>(r: &AsyncResult<R>, what: &str) -> fondo::Result<R> {
    match r.get_timeout(RESULT_LIMIT) {
        Err(Error::WaitTimeout { .. }) => panic!("{what}: no outcome after {RESULT_LIMIT:?}: hang"),
        other => other,
    }
}

/// Which backend an [`on_both!`] test runs on.
/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Runs `f`, which must panic with a message containing `text`.
fn assert_panics_with<T>(what: &str, text: &str, f: impl FnOnce() -> T) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("{what}: expected a panic with {text:?}, got none"),
        Err(p) => assert!(
            panic_text(&*p).contains(text),
            "{what}: {:?}",
            panic_text(&*p)
        ),
    }
}

fn is_panicked_with<T>(r: &fondo::Result<T>, text: &str) -> bool {
    matches!(r, Err(Error::Panicked { message, .. }) if message.contains(text))
}

// ---------------------------------------------------------------------------
// Tasks (plain fns: they run in worker processes too)
// ---------------------------------------------------------------------------

/// Python's `sqr(x)`.
fn sqr(x: u64) -> u64 {
    x * x
}

/// Python's `mul(x, y)`.
fn mul(x: i64, y: i64) -> i64 {
    x * y
}

/// Python's `pow`, modulo 2⁶⁴ (Python's integers do not overflow).
fn pow(b: u64, e: u32) -> u64 {
    b.wrapping_pow(e)
}

/// Python's `int(s)`: panics ("ValueError") on a string that is not a number.
fn int(s: String) -> i64 {
    s.parse()
        .unwrap_or_else(|_| panic!("invalid literal for int(): {s:?}"))
}

/// Python's `divmod(a, b)`, on one tuple; dividing by zero panics.
fn divmod((a, b): (i64, i64)) -> (i64, i64) {
    (a / b, a % b)
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn my_pid(_: u64) -> u32 {
    std::process::id()
}

/// Creates `path` (if not empty): tells the test this task ran.
fn mark(path: &str) {
    if !path.is_empty() {
        std::fs::File::create(path).expect("marker");
    }
}

/// Python's `exception_throwing_generator(total, when)`: yields 0..total but panics
/// (Python raises `SayWhenError`) when it reaches `when`, at once for -1.
fn exception_throwing_generator(total: u64, when: i64) -> impl Iterator<Item = u64> {
    (0..total).inspect(move |&i| {
        if when == -1 || i as i64 == when {
            panic!("Somebody said when");
        }
    })
}

// ---------------------------------------------------------------------------
// _TestPool (_test_multiprocessing.py), on processes and threads
// ---------------------------------------------------------------------------

// _TestPool.test_map: 10 items, then 100 in chunks of 20.
on_both! {
    fn test_map(pool = Pool::builder().workers(4), which) {
        let expected = |n: u64| (0..n).map(sqr).collect::<Vec<_>>();
        assert_eq!(pool.map(sqr, 0..10).expect("map"), expected(10));
        let chunked = match which {
            Which::Processes => Pool::builder().workers(4).chunksize(20).processes().map(|p| p.map(sqr, 0..100)),
            Which::Threads => Pool::builder().workers(4).chunksize(20).threads().map(|p| p.map(sqr, 0..100)),
        };
        assert_eq!(chunked.expect("pool").expect("map"), expected(100));
    }
}

// _TestPool.test_starmap and test_starmap_async: zipped tuples, 10 then 100 (the
// chunks of 20 are test_map's business); _TestPool.test_map_async.
on_both! {
    fn test_starmap(pool = Pool::builder().workers(4), _which) {
        let tuples: Vec<(i64, i64)> = (0..10).zip((0..10).rev()).collect();
        let expected: Vec<i64> = tuples.iter().map(|&(x, y)| x * y).collect();
        assert_eq!(pool.starmap(mul, tuples.clone()).expect("starmap"), expected);
        let tuples: Vec<(i64, i64)> = (0..100).zip((0..100).rev()).collect();
        let expected: Vec<i64> = tuples.iter().map(|&(x, y)| x * y).collect();
        let r = pool.starmap_async(mul, tuples);
        assert_eq!(must_get(&r, "starmap_async").expect("starmap_async"), expected);
        let r = pool.map_async(sqr, 0..10);
        assert_eq!(must_get(&r, "map_async").expect("map_async"), (0..10).map(sqr).collect::<Vec<_>>());
    }
}

// _TestPool.test_map_async_callbacks: map_async(int, ['1']) calls back with [1];
// map_async(int, ['a']) calls the error callback (Python: ValueError; here the
// task panics). Exactly one callback each time.
on_both! {
    fn test_map_async_callbacks(pool = Pool::builder().workers(4), _which) {
        let calls = Arc::new(Mutex::new(Vec::<String>::new()));
        let (a, b) = (calls.clone(), calls.clone());
        pool.map_async(int, ["1".to_string()])
            .on_success(move |v| a.lock().unwrap().push(format!("{v:?}")))
            .on_error(move |e| b.lock().unwrap().push(format!("error {e}")))
            .wait_timeout(RESULT_LIMIT);
        assert!(eventually(RESULT_LIMIT, || calls.lock().unwrap().len() == 1));
        assert_eq!(calls.lock().unwrap()[0], "[1]");
        let (a, b) = (calls.clone(), calls.clone());
        pool.map_async(int, ["a".to_string()])
            .on_success(move |v| a.lock().unwrap().push(format!("{v:?}")))
            .on_error(move |e| b.lock().unwrap().push(format!("error {e}")))
            .wait_timeout(RESULT_LIMIT);
        assert!(eventually(RESULT_LIMIT, || calls.lock().unwrap().len() == 2));
        let got = calls.lock().unwrap().clone();
        assert!(got[1].starts_with("error") && got[1].contains("invalid literal"), "{got:?}");
    }
}

/// _TestPool.test_map_unplicklable (issue #19425): a `map` whose ten arguments all
/// fail to serialise is an error, not a hang (threads serialise nothing).
#[test]
fn test_map_unplicklable() {
    let _wd = Deadline::arm("map unpicklable", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(4).expect("pool"));
    let r = pool.map(
        id_bomb,
        (0..10).map(|i| Bomb::armed(i, Stage::Serialize, Kind::Error)),
    );
    assert!(
        matches!(
            r.as_ref().map_err(Error::inner),
            Err(Error::Serialization {
                what: Payload::Arguments,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        r.err().and_then(|e| e.index()),
        Some(0),
        "the first by position"
    );
    assert_eq!(pool.map(sqr, 0..3).ok(), Some(vec![0, 1, 4]));
}

// _TestPool.test_map_chunksize: map_async over nothing, chunks of 1, does not stall.
on_both! {
    fn test_map_chunksize(pool = Pool::builder().workers(4).chunksize(1), _which) {
        let r = pool.map_async(sqr, Vec::<u64>::new());
        assert_eq!(r.get_timeout(RESULT_LIMIT).expect("empty map_async"), Vec::<u64>::new());
    }
}

// _TestPool.test_map_handle_iterable_exception: the input iterator fails (Python
// raises SayWhenError; a Rust iterator panics): the caller sees its panic, at once,
// twice in a row ("make sure it's reentrant"), also when the failure comes after
// some items, and the pool is unharmed. `SpecialIterable` (whose `__next__` raises
// and whose `__len__` is 1) is the first case again. loky's
// test_imap_handle_iterable_exception (executor.map, chunks of 1, 2, 4) too.
on_both! {
    fn test_map_handle_iterable_exception(pool = Pool::builder().workers(4).chunksize(1), _which) {
        for (total, when) in [(1, -1), (1, -1), (10, 3), (20, 7)] {
            assert_panics_with("map", "Somebody said when", || {
                pool.map(sqr, exception_throwing_generator(total, when))
            });
        }
        assert_eq!(pool.map(sqr, 0..10).expect("map after"), (0..10).map(sqr).collect::<Vec<_>>());
    }
}

// _TestPool.test_imap: one by one, then the end; 1000 items in chunks of 100.
on_both! {
    fn test_imap(pool = Pool::builder().workers(4), which) {
        let all: Vec<u64> = pool.imap(sqr, 0..10).map(|r| r.expect("value")).collect();
        assert_eq!(all, (0..10).map(sqr).collect::<Vec<_>>());
        let mut it = pool.imap(sqr, 0..10);
        for i in 0..10 {
            assert_eq!(it.next().map(|r| r.expect("value")), Some(i * i));
        }
        assert!(it.next().is_none(), "StopIteration");
        drop(it);
        let chunked = match which {
            Which::Processes => Pool::builder().workers(4).chunksize(100).processes()
                .map(|p| p.imap(sqr, 0..1000).map(|r| r.expect("value")).collect::<Vec<_>>()),
            Which::Threads => Pool::builder().workers(4).chunksize(100).threads()
                .map(|p| p.imap(sqr, 0..1000).map(|r| r.expect("value")).collect::<Vec<_>>()),
        };
        assert_eq!(chunked.expect("pool"), (0..1000).map(sqr).collect::<Vec<_>>());
    }
}

/// Runs `imap` (or `imap_unordered`) over a failing input: the values it yields
/// before the input's panic reaches the caller are right (in order for `imap`).
fn imap_until_the_input_fails<B, F>(pool: &Pool<B>, f: F, total: u64, when: i64, unordered: bool)
where
    B: fondo::Runs<F, (u64,)>,
    F: Fn(u64) -> u64 + fondo::Task<(u64,), Output = u64> + Copy,
{
    let mut got = Vec::new();
    assert_panics_with("imap", "Somebody said when", || {
        let it = if unordered {
            pool.imap_unordered(f, exception_throwing_generator(total, when))
        } else {
            pool.imap(f, exception_throwing_generator(total, when))
        };
        for r in it {
            got.push(r.expect("a value before the failure"));
        }
    });
    let limit = if when < 0 { 0 } else { when as usize };
    assert!(got.len() <= limit, "{got:?} past item {when}");
    if unordered {
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "a value twice: {got:?}");
        assert!(
            got.iter()
                .all(|v| (0..limit as u64).map(sqr).any(|e| e == *v)),
            "{got:?}"
        );
    } else {
        assert_eq!(got, (0..got.len() as u64).map(sqr).collect::<Vec<_>>());
    }
}

// _TestPool.test_imap_handle_iterable_exception (and _imap_unordered_): Python
// yields the values before the failing item, then raises; here the input's panic
// reaches the caller of `next()` (fondo reads the input ahead, in bursts, so it may
// come before those values), the values yielded are right, and the pool is
// unharmed: the tasks already sent finish and the pool serves the next `map`.
fn imap_handle_iterable_exception<B, F>(pool: &Pool<B>, f: F, which: Which)
where
    B: fondo::Runs<F, (u64,)>,
    F: Fn(u64) -> u64 + fondo::Task<(u64,), Output = u64> + Copy,
{
    for unordered in [false, true] {
        for (total, when) in [(1, -1), (1, -1), (10, 3), (20, 7)] {
            imap_until_the_input_fails(pool, f, total, when, unordered);
        }
    }
    for chunk in [2, 4] {
        let builder = Pool::builder().workers(4).chunksize(chunk);
        match which {
            Which::Processes => {
                let p = builder.processes().expect("pool");
                imap_until_the_input_fails(&p, f, 20, 7, false);
                imap_until_the_input_fails(&p, f, 20, 7, true);
            }
            Which::Threads => {
                let p = builder.threads().expect("pool");
                imap_until_the_input_fails(&p, f, 20, 7, false);
                imap_until_the_input_fails(&p, f, 20, 7, true);
            }
        }
    }
    assert_eq!(
        pool.map(f, 0..10).expect("map after"),
        (0..10).map(sqr).collect::<Vec<_>>()
    );
}

on_both! {
    fn test_imap_handle_iterable_exception(pool = Pool::builder().workers(4).chunksize(1), which) {
        imap_handle_iterable_exception(&pool, sqr, which);
    }
}

// _TestPool.test_imap_unordered: the same multiset, 10 items then 1000 in chunks of 100.
on_both! {
    fn test_imap_unordered(pool = Pool::builder().workers(4).chunksize(100), _which) {
        for n in [10, 1000] {
            let mut got: Vec<u64> = pool.imap_unordered(sqr, 0..n).map(|r| r.expect("value")).collect();
            got.sort_unstable();
            assert_eq!(got, (0..n).map(sqr).collect::<Vec<_>>());
        }
    }
}

// _TestPool.test_terminate: 10,000 "endless" tasks in chunks of 1 on 3 workers,
// terminated after 0.2 s; `join` returns and the map is `Terminated`. Threads
// cannot be killed, so (as in Python) their tasks sleep 1 s rather than "forever".
on_both! {
    fn test_terminate(pool = Pool::builder().workers(3).chunksize(1), which) {
        let nap = if which == Which::Threads { 1_000 } else { 600_000 };
        let r = pool.map_async(sleep_ms, vec![nap; 10_000]);
        std::thread::sleep(Duration::from_millis(200));
        pool.terminate();
        pool.join();
        assert!(matches!(r.get_timeout(Duration::ZERO), Err(Error::Terminated)));
    }
}

/// Panics with a 1 MiB message (Python's `raise_large_valuerror`), after marking `path`.
fn raise_large_valuerror(path: String) -> u64 {
    mark(&path);
    panic!("{}", "x".repeat(1 << 20))
}

// _TestPool.test_map_no_failfast (issue #23992): both tasks of a map fail with a
// 1 MiB error; `map` returns the error, and close + join return having waited for
// both tasks (Python checks the elapsed time; here each task leaves a mark).
on_both! {
    fn test_map_no_failfast(pool = Pool::builder().workers(2).chunksize(1), _which) {
        let dir = TempDir::new("no-failfast");
        let r = pool.map(raise_large_valuerror, [dir.file("0"), dir.file("1")]);
        match r.as_ref().map_err(Error::inner) {
            Err(Error::Panicked { message, .. }) => assert_eq!(message.len(), 1 << 20),
            other => panic!("expected Panicked, got {:?}", other.map(|v| v.len())),
        }
        assert_eq!(r.err().and_then(|e| e.index()), Some(0), "the first by position");
        pool.close();
        pool.join();
        assert_eq!(dir.names(), ["0", "1"], "both tasks ran");
    }
}

// _TestPool.test_traceback (and test_concurrent_futures/test_process_pool.py
// test_traceback): the error of a task that raised carries where it raised (Python:
// the remote traceback holds the line "raise RuntimeError(123) # some comment").
on_both! {
    fn test_traceback(pool = Pool::builder().workers(1), _which) {
        match pool.apply(raise_runtime_error, ()) {
            Err(Error::Panicked { message, location }) => {
                assert_eq!(message, "123");
                let location = location.expect("the panic's location");
                assert!(location.contains("ported_cpython.rs:"), "{location}");
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
    }
}

fn raise_runtime_error() -> u64 {
    panic!("123") // some comment
}

/// Counts its live values in this process, one counter per test (`slot`).
#[derive(Debug)]
struct Counted {
    value: u64,
    slot: usize,
}

static LIVE: [AtomicIsize; 4] = [const { AtomicIsize::new(0) }; 4];

impl Counted {
    fn new(value: u64, slot: usize) -> Counted {
        LIVE[slot].fetch_add(1, Ordering::SeqCst);
        Counted { value, slot }
    }

    fn live(slot: usize) -> isize {
        LIVE[slot].load(Ordering::SeqCst)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE[self.slot].fetch_sub(1, Ordering::SeqCst);
    }
}

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.value, self.slot).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (value, slot) = <(u64, usize)>::deserialize(d)?;
        Ok(Counted::new(value, slot))
    }
}

fn identity(c: Counted) -> Counted {
    c
}

// _TestPool.test_release_task_refs (issue #29861): once `map` has returned and its
// values are dropped, the pool holds none of the arguments or results (nor copies).
on_both! {
    fn test_release_task_refs(pool = Pool::builder().workers(4), which) {
        let slot = which as usize;
        let objs: Vec<Counted> = (0..10).map(|i| Counted::new(i, slot)).collect();
        let got = pool.map(identity, objs).expect("map");
        assert_eq!(got.iter().map(|c| c.value).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        drop(got);
        assert!(
            eventually(RESULT_LIMIT, || Counted::live(slot) == 0),
            "{} values still alive",
            Counted::live(slot)
        );
    }
}

// test_concurrent_futures/executor.py test_no_stale_references (issue #16284): a
// submitted task whose result nobody keeps leaves nothing behind in the pool (on
// threads: the closure and what it captured; on processes: argument and result).
#[test]
fn test_no_stale_references_threads() {
    let _wd = Deadline::arm("stale references", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::threads(2).expect("pool"));
    let my_object = Arc::new(());
    let captured = my_object.clone();
    drop(pool.apply_async(move || Arc::strong_count(&captured), ()));
    assert!(
        eventually(RESULT_LIMIT, || Arc::strong_count(&my_object) == 1),
        "the task still holds what it captured"
    );
}

#[test]
fn test_no_stale_references_processes() {
    let _wd = Deadline::arm("stale references", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("pool"));
    drop(pool.apply_async(identity, (Counted::new(7, 2),)));
    assert!(
        eventually(RESULT_LIMIT, || Counted::live(2) == 0),
        "{} values still alive in the pool",
        Counted::live(2)
    );
}

// _TestPool.test_make_pool (0 workers is an error; 3 workers are 3), with
// _TestPoolWorkerLifetime.test_pool_maxtasksperchild_invalid (0),
// test_process_pool.py test_map_chunksize's chunksize=-1, executor.py
// test_max_workers_negative (0): fondo's sizes are unsigned, so 0 is the bad value
// (-1, 0.5 and "12" do not type-check).
#[test]
fn test_make_pool() {
    let _wd = Deadline::arm("make pool", TEST_LIMIT);
    for builder in [
        Pool::builder().workers(0),
        Pool::builder().max_tasks_per_child(0),
        Pool::builder().chunksize(0),
    ] {
        assert!(matches!(builder.processes(), Err(Error::Config(_))));
    }
    let p = Pool::processes(3).expect("3 workers");
    assert_eq!(p.workers(), 3);
    assert_eq!(settled_pids(&p).len(), 3);
}

// ---------------------------------------------------------------------------
// _TestPoolWorkerErrors, _TestPoolWorkerLifetime (processes)
// ---------------------------------------------------------------------------

/// _TestPoolWorkerErrors.test_unpickleable_result: 20 times, a task whose result
/// cannot be serialised: `get` is `Serialization` (Python: MaybeEncodingError), the
/// error callback gets it too, and no worker process is lost.
#[test]
fn test_unpickleable_result() {
    let _wd = Deadline::arm("unpickleable result", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("pool"));
    let before = settled_pids(&pool);
    for _ in 0..20 {
        let (tx, rx) = mpsc::channel();
        let r = pool
            .apply_async(unpickleable_result, ())
            .on_error(move |e| tx.send(e.clone()).expect("send"));
        assert!(matches!(
            must_get(&r, "unpickleable result"),
            Err(Error::Serialization {
                what: Payload::Result,
                ..
            })
        ));
        let wrapped = rx
            .recv_timeout(RESULT_LIMIT)
            .expect("the error callback ran");
        assert!(matches!(
            wrapped,
            Error::Serialization {
                what: Payload::Result,
                ..
            }
        ));
    }
    assert_eq!(pool.pids(), before, "a worker was lost to encoding errors");
}

fn unpickleable_result() -> Bomb {
    Bomb::armed(42, Stage::Serialize, Kind::Error)
}

/// _TestPoolWorkerLifetime.test_pool_worker_lifetime: 3 workers that each serve 10
/// tasks; 100 `apply_async` give the right values, and the workers were replaced.
#[test]
fn test_pool_worker_lifetime() {
    let _wd = Deadline::arm("worker lifetime", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(3)
            .max_tasks_per_child(10)
            .processes()
            .expect("pool"),
    );
    let orig = settled_pids(&pool);
    assert_eq!(orig.len(), 3);
    let results: Vec<_> = (0..100).map(|i| pool.apply_async(sqr, (i,))).collect();
    for (j, r) in results.iter().enumerate() {
        assert_eq!(must_get(r, "sqr").ok(), Some((j * j) as u64));
    }
    let last = settled_pids(&pool);
    assert!(last.iter().all(|&p| p != 0), "issue #7805: {last:?}");
    let (mut a, mut b) = (orig.clone(), last.clone());
    a.sort_unstable();
    b.sort_unstable();
    assert_ne!(a, b, "the workers were replaced");
}

fn sqr_wait(x: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

/// _TestPoolWorkerLifetime.test_pool_worker_lifetime_early_close (issue #10332),
/// and test_process_pool.py test_max_tasks_early_shutdown: workers that serve one
/// task each, closed before all tasks ran: `join` returns, every value is right.
#[test]
fn test_pool_worker_lifetime_early_close() {
    let _wd = Deadline::arm("lifetime early close", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(3)
            .max_tasks_per_child(1)
            .processes()
            .expect("pool"),
    );
    let results: Vec<_> = (0..6)
        .map(|i| pool.apply_async(sqr_wait, (i, 300)))
        .collect();
    pool.close();
    pool.join();
    for (j, r) in results.iter().enumerate() {
        assert_eq!(r.get_timeout(Duration::ZERO).ok(), Some((j * j) as u64));
    }
}

/// Keeps a pool in a static that is never dropped (Python: the pool lives in an
/// object held by a global), then lets the program end.
#[test]
fn helper_pool_in_a_static() {
    if !is_helper(HELPER_ENV, "helper_pool_in_a_static") {
        return;
    }
    let _wd = Deadline::arm("helper_pool_in_a_static", HELPER_LIMIT);
    static POOL: std::sync::OnceLock<Pool<Processes>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| Pool::processes(1).expect("pool"));
    let v = pool.map(sqr, 0..10).expect("map");
    println!("pids {:?} sum {}", pool.pids(), v.iter().sum::<u64>());
}

/// Runs `helper` in a copy of this binary (within `HELPER_LIMIT`), checks that it
/// exited with success, and returns its standard output.
fn helper_succeeds(helper: &str) -> String {
    let out = output_within(helper_command(HELPER_ENV, helper), HELPER_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{helper}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// _TestPoolWorkerLifetime.test_worker_finalization_via_atexit_handler_of_multiprocessing
/// (bpo-38744, bpo-39360): a program whose pool is never dropped ends cleanly
/// (exit status 0), and its worker does not outlive it.
#[test]
fn test_worker_finalization_when_the_pool_is_never_dropped() {
    let stdout = helper_succeeds("helper_pool_in_a_static");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("pids ["))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    assert!(line.ends_with("sum 285"), "{line}");
    let pid: u32 = line["pids [".len()..line.find(']').expect("]")]
        .parse()
        .expect("pid");
    assert!(
        eventually(RESULT_LIMIT, || !alive(pid)),
        "the worker outlived its program"
    );
}

// ---------------------------------------------------------------------------
// TestPoolNotLeakOnFailure, MiscTestCase, TestStdinBadfiledescriptor
// ---------------------------------------------------------------------------

/// Open file descriptors of this process.
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Sets this process's soft limit on open files (never above the hard limit).
fn limit_fds(n: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    l.current = Some(l.maximum.map_or(n, |max| n.min(max)));
    setrlimit(Resource::Nofile, l).expect("setrlimit");
}

/// Children of this process, live or not yet reaped.
fn children() -> Vec<u32> {
    let me = std::process::id();
    common::processes()
        .into_iter()
        .filter(|p| p.ppid == me)
        .map(|p| p.pid)
        .collect()
}

/// Asks for more workers than the open-file limit allows, then reports.
#[test]
fn helper_pool_creation_fails() {
    if !is_helper(HELPER_ENV, "helper_pool_creation_fails") {
        return;
    }
    let _wd = Deadline::arm("helper_pool_creation_fails", HELPER_LIMIT);
    limit_fds(open_fds() + 24);
    let made = Pool::processes(50);
    limit_fds(1024);
    println!("made {:?}", made.as_ref().map(|p| p.workers()));
    let gone = eventually(RESULT_LIMIT, || children().is_empty());
    println!("children left {:?} {gone}", children());
}

/// TestPoolNotLeakOnFailure.test_release_unused_processes (issue #19675): when a
/// pool cannot start all its workers (here: out of file descriptors), creating it
/// fails and the workers it had started are not leaked (none is left, live or
/// unreaped). Run in a copy of this binary, whose open-file limit it lowers.
#[test]
fn test_release_unused_processes() {
    let stdout = helper_succeeds("helper_pool_creation_fails");
    assert!(
        stdout.contains("made Err("),
        "the pool was made anyway: {stdout}"
    );
    assert!(stdout.contains("children left [] true"), "{stdout}");
}

/// Runs Python's test script: a pool of 200, a map of 1000 squares, their sum.
#[test]
fn helper_large_pool() {
    if !is_helper(HELPER_ENV, "helper_large_pool") {
        return;
    }
    let _wd = Deadline::arm("helper_large_pool", HELPER_LIMIT);
    // The usual default soft limit, whatever this machine's is.
    limit_fds(1024);
    let pool = Pool::processes(200).expect("a pool of 200");
    println!("{} open files", open_fds());
    println!(
        "{}",
        pool.map(sqr, 0..1000).expect("map").iter().sum::<u64>()
    );
}

/// MiscTestCase.test_large_pool (gh-89240): a pool of 200 processes works, under
/// the common default limit of 1024 open files (the helper sets it).
#[test]
fn test_large_pool() {
    let stdout = helper_succeeds("helper_large_pool");
    assert!(stdout.lines().any(|l| l == "332833500"), "{stdout}");
}

/// Python's `pool_in_process`: a pool of 4 inside a process of its own.
fn pool_in_process() -> Vec<u64> {
    let pool = Pool::processes(4).expect("a pool inside a child");
    let x = pool.map(sqr, 1..=7).expect("map");
    pool.close();
    pool.join();
    x
}

/// TestStdinBadfiledescriptor.test_pool_in_process (issues 5155, 5313, 5331): a
/// process (`fondo::spawn`) makes a pool and maps over it.
#[test]
fn test_pool_in_process() {
    let _wd = Deadline::arm("pool in process", TEST_LIMIT);
    let mut child = fondo::spawn(pool_in_process, ()).expect("spawn");
    let got = child.join_timeout(RESULT_LIMIT).expect("the child's value");
    assert_eq!(got, [1, 4, 9, 16, 25, 36, 49]);
}

// ---------------------------------------------------------------------------
// test_concurrent_futures: executor.py, test_process_pool.py
// ---------------------------------------------------------------------------

/// executor.py test_map: `map(pow, range(10), range(10))`, plain and in chunks of 3;
/// test_process_pool.py test_map_chunksize: 40 items in chunks of 6, 50 and 40.
#[test]
fn test_map_pow_in_chunks() {
    let _wd = Deadline::arm("map pow", TEST_LIMIT);
    for (n, chunks) in [
        (10u64, vec![None, Some(3)]),
        (40, vec![Some(6), Some(50), Some(40)]),
    ] {
        let args: Vec<(u64, u32)> = (0..n).map(|i| (i, i as u32)).collect();
        let expected: Vec<u64> = args.iter().map(|&(b, e)| b.wrapping_pow(e)).collect();
        for chunk in chunks {
            let mut builder = Pool::builder().workers(2);
            if let Some(c) = chunk {
                builder = builder.chunksize(c);
            }
            let pool = builder.processes().expect("pool");
            assert_eq!(
                pool.starmap(pow, args.clone()).expect("starmap"),
                expected,
                "chunks {chunk:?}"
            );
        }
    }
}

/// executor.py test_map_exception: `map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])` yields
/// (0, 1), (0, 1), then the third task's ZeroDivisionError (here: a panic); the
/// fourth is still (0, 1) — fondo reports every outcome, Python stops at the error.
#[test]
fn test_map_exception() {
    let _wd = Deadline::arm("map exception", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("pool"));
    let out: Vec<_> = pool
        .imap(divmod, [(1, 2), (1, 3), (1, 0), (1, 5)])
        .collect();
    assert_eq!(out[0].as_ref().ok(), Some(&(0, 1)));
    assert_eq!(out[1].as_ref().ok(), Some(&(1 / 3, 1)));
    assert!(is_panicked_with(&out[2], "divide by zero"), "{:?}", out[2]);
    assert_eq!(out[3].as_ref().ok(), Some(&(0, 1)));
}

/// `time.sleep(0)` for 0, else a task held on `gate` (Python's `time.sleep(6)`).
fn sleep_or_hold((gate, ms): (String, u64)) -> u64 {
    if ms == 0 {
        0
    } else {
        u64::from(gated(gate, ms as u32))
    }
}

// executor.py test_map_timeout: `map(time.sleep, [0, 0, 6], timeout=5)` yields the
// two quick results, then times out on the third (fondo: `Imap::next_timeout`, the
// limit per outcome, as `IMapIterator.next(timeout)`); "the remaining calls are
// cancelled" (gh-110097): dropping the iterator cancels what has not started.
on_both! {
    fn test_map_timeout(pool = Pool::builder().workers(1).chunksize(1), _which) {
        let gate = Gate::new();
        let mut it = pool.imap(sleep_or_hold, [0, 0, 6].map(|ms| (gate.arg(), ms)));
        let mut results = Vec::new();
        let timed_out = loop {
            match it.next_timeout(Duration::from_millis(200)) {
                Some(Ok(v)) => results.push(v),
                Some(Err(Error::WaitTimeout { .. })) => break true,
                other => panic!("{other:?}"),
            }
        };
        assert!(timed_out);
        assert_eq!(results, [0, 0]);
        drop(it);
        gate.open();
    }
}

// test_thread_pool.py test_executor_map_current_future_cancel: one worker busy
// with "first"; `map(log_n_wait, ["second", "third"], timeout=0)` times out and is
// closed: "second" and "third" are cancelled and never start; only "first" ran.
on_both! {
    fn test_executor_map_current_future_cancel(pool = Pool::builder().workers(1), _which) {
        let dir = TempDir::new("map-current-cancel");
        let stop_event = Gate::new();
        let log_n_wait = |ident: &str| (dir.file(ident), stop_event.arg());
        let (started, gate) = log_n_wait("first");
        let fut = pool.apply_async(started_then_gated, (started, gate));
        assert!(eventually(RESULT_LIMIT, || dir.names() == ["first"]));
        {
            let mut map = pool.imap(started_then_gated_pair, ["second", "third"].map(log_n_wait));
            assert!(matches!(map.next_timeout(Duration::ZERO), Some(Err(Error::WaitTimeout { .. }))));
        }
        stop_event.open();
        assert_eq!(must_get(&fut, "first").ok(), Some(0));
        pool.join();
        assert_eq!(dir.names(), ["first"], "second and third were cancelled");
    }
}

/// [`started_then_gated`] on one tuple, for `imap`.
fn started_then_gated_pair((started, gate): (String, String)) -> i64 {
    started_then_gated(started, gate)
}

// executor.py test_shutdown_race_issue12456: a map of workers + 1 tasks, then the
// pool is shut down (dropped) at once: no hang, and the values are all there.
on_both! {
    fn test_shutdown_race_issue12456(pool = Pool::builder().workers(2), _which) {
        let r = pool.map_async(sqr, 0..3);
        drop(pool);
        assert_eq!(r.get_timeout(Duration::ZERO).ok(), Some(vec![0, 1, 4]));
    }
}

/// test_process_pool.py test_killed_child: a worker is SIGKILLed (Python: terminated)
/// while it runs a task. Python breaks the whole pool; fondo's contract: that task
/// is `WorkerDied` from that worker, with SIGKILL, and the pool takes new work.
#[test]
fn test_killed_child() {
    let _wd = Deadline::arm("killed child", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("pool"));
    let dir = TempDir::new("killed-child");
    let gate = Gate::new();
    let r = pool.apply_async(announce_then_wait_pid, (dir.file("pid"), gate.arg()));
    assert!(
        eventually(RESULT_LIMIT, || dir.names() == ["pid"]),
        "the task started"
    );
    let victim: u32 = std::fs::read_to_string(dir.file("pid"))
        .expect("pid")
        .parse()
        .expect("pid");
    common::kill_child_of(std::process::id(), victim);
    match must_get(&r, "killed task") {
        Err(Error::WorkerDied { pid, cause }) => {
            assert_eq!(pid, victim);
            assert_eq!(cause, ExitCause::Signal(9));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(pool.apply(pow, (2, 8)).ok(), Some(256));
}

/// Writes its worker's PID into `path` (atomically), then waits on `gate`.
fn announce_then_wait_pid(path: String, gate: String) -> u32 {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, std::process::id().to_string()).expect("write pid");
    std::fs::rename(&tmp, &path).expect("publish pid");
    gated(gate, 1)
}

/// test_process_pool.py test_broken_process_pool_traceback: three tasks wait on an
/// event, one of their workers is killed. Python fails all three, each with its own
/// exception; fondo fails only the task the dead worker was running, the others
/// complete when the event is set.
#[test]
fn test_broken_process_pool_traceback() {
    let _wd = Deadline::arm("three waiting tasks", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(3).expect("pool"));
    let dir = TempDir::new("three");
    let gate = Gate::new();
    let rs: Vec<_> = (0..3)
        .map(|i| {
            pool.apply_async(
                announce_then_wait_pid,
                (dir.file(&i.to_string()), gate.arg()),
            )
        })
        .collect();
    assert!(eventually(RESULT_LIMIT, || dir
        .names()
        .iter()
        .filter(|n| !n.ends_with(".tmp"))
        .count()
        == 3));
    let victim: u32 = std::fs::read_to_string(dir.file("1"))
        .expect("pid")
        .parse()
        .expect("pid");
    common::kill_child_of(std::process::id(), victim);
    assert!(matches!(
        must_get(&rs[1], "killed task"),
        Err(Error::WorkerDied {
            cause: ExitCause::Signal(9),
            ..
        })
    ));
    gate.open();
    assert_eq!(must_get(&rs[0], "task 0").ok(), Some(1));
    assert_eq!(must_get(&rs[2], "task 2").ok(), Some(1));
}

/// test_process_pool.py test_traceback_when_child_process_terminates_abruptly
/// (gh-139462): a task calls `os._exit(99)`: the error says the worker exited with
/// code 99.
#[test]
fn test_traceback_when_child_process_terminates_abruptly() {
    let _wd = Deadline::arm("exit 99", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(1).expect("pool"));
    let r = pool.apply_async(detonate, (Kind::Exit(99),));
    let e = must_get(&r, "exit 99").expect_err("the task ended its worker");
    assert!(
        matches!(
            e,
            Error::WorkerDied {
                cause: ExitCause::Code(99),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("exited with code 99"), "{e}");
}

/// An argument whose `Drop`, in a worker, leaves a file (Python's `EventfulGCObj`,
/// whose `__del__` sets a manager event).
#[derive(Serialize, Deserialize)]
struct EventfulGcObj {
    path: String,
    parent: u32,
}

impl Drop for EventfulGcObj {
    fn drop(&mut self) {
        if std::process::id() != self.parent {
            mark(&self.path);
        }
    }
}

fn id_of(obj: EventfulGcObj) -> usize {
    std::ptr::addr_of!(obj) as usize
}

/// test_process_pool.py test_ressources_gced_in_workers: a task's argument is freed
/// in the worker once the task is done.
#[test]
fn test_ressources_gced_in_workers() {
    let _wd = Deadline::arm("gced in workers", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("pool"));
    let dir = TempDir::new("gced");
    let obj = EventfulGcObj {
        path: dir.file("dropped"),
        parent: std::process::id(),
    };
    let r = pool.apply_async(id_of, (obj,));
    assert!(must_get(&r, "id").is_ok());
    assert!(
        eventually(RESULT_LIMIT, || dir.names() == ["dropped"]),
        "the argument was not dropped"
    );
}

/// test_process_pool.py test_saturation: 15 blocked tasks per worker never make
/// the pool start more workers than asked (fondo starts them all up front; the
/// same PIDs serve throughout); once released, every task completes.
/// test_shutdown.py test_processes_terminate: after the shutdown the workers are gone.
#[test]
fn test_saturation_processes() {
    let _wd = Deadline::arm("saturation", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("pool"));
    let pids = settled_pids(&pool);
    let gate = Gate::new();
    let rs: Vec<_> = (0..30)
        .map(|i| pool.apply_async(gated, (gate.arg(), i)))
        .collect();
    assert_eq!(pool.pids(), pids, "workers were added or replaced");
    gate.open();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(must_get(r, "saturated task").ok(), Some(i as u32));
    }
    assert_eq!(pool.pids(), pids, "workers were added or replaced");
    drop(pool);
    for pid in pids {
        assert!(
            eventually(RESULT_LIMIT, || !alive(pid)),
            "worker {pid} left behind"
        );
    }
}

/// test_thread_pool.py test_saturation: 15 blocked tasks per thread, released
/// afterwards; every task completes (Python also counts the threads: fondo starts
/// them all up front).
#[test]
fn test_saturation_threads() {
    let _wd = Deadline::arm("saturation", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::threads(4).expect("pool"));
    let gate = Gate::new();
    let rs: Vec<_> = (0..60)
        .map(|i| pool.apply_async(gated, (gate.arg(), i)))
        .collect();
    gate.open();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(must_get(r, "saturated task").ok(), Some(i as u32));
    }
}

/// test_process_pool.py test_max_tasks_per_child: one worker serving 3 tasks each:
/// the first three tasks run in the same process, the fourth in a new one.
#[test]
fn test_max_tasks_per_child() {
    let _wd = Deadline::arm("max tasks per child", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(1)
            .max_tasks_per_child(3)
            .processes()
            .expect("pool"),
    );
    let original = pool.apply(my_pid, (0,)).expect("f1");
    assert_eq!(pool.apply(my_pid, (1,)).ok(), Some(original));
    assert_eq!(pool.pids().len(), 1);
    assert_eq!(pool.apply(my_pid, (2,)).ok(), Some(original));
    let new = pool.apply(my_pid, (3,)).expect("f4");
    assert_ne!(new, original);
    assert_eq!(pool.pids().len(), 1);
    assert!(
        eventually(RESULT_LIMIT, || !alive(original)),
        "the old worker was reaped"
    );
}

/// test_process_pool.py test_max_tasks_per_child_pending_tasks_gh115634: more tasks
/// than the workers can run before their task limit, all queued at once: every
/// result comes (the retired workers are replaced).
#[test]
fn test_max_tasks_per_child_pending_tasks_gh115634() {
    let _wd = Deadline::arm("gh115634", TEST_LIMIT);
    for (workers, max_tasks, n) in [(1, 2, 6), (2, 2, 8)] {
        let pool = TerminateOnPanic(
            Pool::builder()
                .workers(workers)
                .max_tasks_per_child(max_tasks)
                .processes()
                .expect("pool"),
        );
        let rs: Vec<_> = (0..n).map(|i| pool.apply_async(mul, (i, 2))).collect();
        let got: Vec<i64> = rs
            .iter()
            .map(|r| must_get(r, "mul").expect("mul"))
            .collect();
        assert_eq!(got, (0..n).map(|i| i * 2).collect::<Vec<_>>());
    }
}

/// Python's `_report_wait_return`: announces `value` in `dir`, waits on `gate`,
/// returns `value`.
fn report_wait_return(dir: String, gate: String, value: u32) -> u32 {
    mark(&Path::new(&dir).join(value.to_string()).to_string_lossy());
    gated(gate, value)
}

/// How the test lets go of the pool in [`stranded_worker_exit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LetGo {
    /// `close()` (Python: `shutdown(wait=False)`).
    Close,
    /// `close()`, then the pool is dropped (Python: and garbage collected).
    CloseAndDrop,
    /// Dropped without `close()` (Python: garbage collected).
    Drop,
}

/// Python's `_run_stranded_worker_exit_test`: one worker serving one task each
/// runs the first of three tasks (held on a gate); the pool is let go; then the
/// gate opens, so the worker exits at its task limit with two tasks queued. Python
/// fails those two when the executor was collected; fondo's contract (drop = close
/// + join) is that all three complete.
fn stranded_worker_exit(let_go: LetGo) {
    let _wd = Deadline::arm(&format!("stranded worker exit {let_go:?}"), TEST_LIMIT);
    let pool = Pool::builder()
        .workers(1)
        .max_tasks_per_child(1)
        .processes()
        .expect("pool");
    let dir = TempDir::new("stranded");
    let gate = Gate::new();
    let futs: Vec<_> = (0..3)
        .map(|i| pool.apply_async(report_wait_return, (dir.file(""), gate.arg(), i)))
        .collect();
    assert!(
        eventually(RESULT_LIMIT, || dir.names() == ["0"]),
        "task 0 started: {:?}",
        dir.names()
    );
    if let_go != LetGo::Drop {
        pool.close();
    }
    let dropper = match let_go {
        LetGo::Close => {
            gate.open();
            None
        }
        // The drop waits for the tasks: from another thread, while the gate opens.
        LetGo::CloseAndDrop | LetGo::Drop => Some(std::thread::spawn(move || drop(pool))),
    };
    std::thread::sleep(Duration::from_millis(50));
    gate.open();
    for (i, f) in futs.iter().enumerate() {
        assert_eq!(
            must_get(f, "stranded task").ok(),
            Some(i as u32),
            "task {i}"
        );
    }
    if let Some(d) = dropper {
        d.join().expect("drop");
    }
}

/// test_process_pool.py test_shutdown_no_wait_max_tasks_gh119592, drop_reference=False.
#[test]
fn test_shutdown_no_wait_max_tasks_gh119592() {
    stranded_worker_exit(LetGo::Close);
}

/// test_process_pool.py test_shutdown_no_wait_max_tasks_gh119592, drop_reference=True.
#[test]
fn test_shutdown_no_wait_max_tasks_gh119592_dropped() {
    stranded_worker_exit(LetGo::CloseAndDrop);
}

/// test_process_pool.py test_gc_during_max_tasks_worker_exit_gh152967.
#[test]
fn test_gc_during_max_tasks_worker_exit_gh152967() {
    stranded_worker_exit(LetGo::Drop);
}

/// test_process_pool.py test_force_shutdown_during_max_tasks_worker_exit: the same
/// one-task worker running the first of three tasks; the pool is terminated (Python:
/// terminate_workers()/kill_workers()): all three are `Terminated` at once, no
/// replacement worker escapes the kill, and the first task never finishes.
#[test]
fn test_force_shutdown_during_max_tasks_worker_exit() {
    let _wd = Deadline::arm("force shutdown at task limit", TEST_LIMIT);
    let pool = Pool::builder()
        .workers(1)
        .max_tasks_per_child(1)
        .processes()
        .expect("pool");
    let dir = TempDir::new("force");
    let gate = Gate::new();
    let futs: Vec<_> = (0..3)
        .map(|i| pool.apply_async(report_wait_return, (dir.file(""), gate.arg(), i)))
        .collect();
    assert!(eventually(RESULT_LIMIT, || dir.names() == ["0"]));
    let worker = settled_pids(&pool)[0];
    pool.terminate();
    for f in &futs {
        assert!(matches!(
            f.get_timeout(Duration::ZERO),
            Err(Error::Terminated)
        ));
    }
    drop(pool);
    assert!(eventually(RESULT_LIMIT, || !alive(worker)));
    assert_eq!(dir.names(), ["0"], "no task ran after the terminate");
}

/// Starts a one-worker pool whose worker retires after each task, lets the first
/// task run, then leaves the process no file descriptor to start a replacement.
#[test]
fn helper_replacement_cannot_start() {
    if !is_helper(HELPER_ENV, "helper_replacement_cannot_start") {
        return;
    }
    let _wd = Deadline::arm("helper_replacement_cannot_start", HELPER_LIMIT);
    let pool = Pool::builder()
        .workers(1)
        .max_tasks_per_child(1)
        .processes()
        .expect("pool");
    let dir = TempDir::new("no-replacement");
    let gate = Gate::new();
    let futs: Vec<_> = (0..3)
        .map(|i| pool.apply_async(report_wait_return, (dir.file(""), gate.arg(), i)))
        .collect();
    assert!(eventually(RESULT_LIMIT, || dir.names() == ["0"]));
    // No new descriptor from here on (even those the old worker frees: the limit is
    // on descriptor numbers); the gate opens by a rename, which needs none.
    let ready = dir.file("gate-to-be");
    std::fs::write(&ready, "").expect("prepare the gate");
    limit_fds(3);
    std::fs::rename(&ready, gate.arg()).expect("open the gate");
    let outcomes: Vec<String> = futs
        .iter()
        .map(|f| format!("{:?}", f.get_timeout(RESULT_LIMIT)))
        .collect();
    limit_fds(1024);
    println!("outcomes {outcomes:?}");
    pool.terminate();
}

/// test_process_pool.py test_failed_worker_replacement_breaks_pool: the worker
/// exits at its task limit and no replacement can be started (here: out of file
/// descriptors): the queued tasks fail promptly with an error (fondo gives up on a
/// slot after a few attempts) instead of waiting forever.
#[test]
fn test_failed_worker_replacement_fails_the_queued_tasks() {
    let stdout = helper_succeeds("helper_replacement_cannot_start");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("outcomes"))
        .unwrap_or_else(|| panic!("no report: {stdout}"));
    assert!(line.contains("\"Ok(0)\""), "{line}");
    assert_eq!(line.matches("\"Err(").count(), 2, "{line}");
    assert!(!line.contains("WaitTimeout"), "{line}");
}

/// test_process_pool.py test_force_shutdown_workers (terminate_workers and
/// kill_workers: fondo has one, `terminate`): a task that started and waits for an
/// event that never comes is ended by `terminate`: `Terminated`, and it never gets
/// to its next line (Python: 'finished' never reaches the queue).
#[test]
fn test_force_shutdown_workers() {
    let _wd = Deadline::arm("force shutdown", TEST_LIMIT);
    let pool = Pool::processes(1).expect("pool");
    let dir = TempDir::new("put-wait-put");
    let gate = Gate::new();
    let r = pool.apply_async(put_wait_put, (dir.file(""), gate.arg()));
    assert!(eventually(RESULT_LIMIT, || dir.names() == ["started"]));
    let worker = settled_pids(&pool)[0];
    pool.terminate();
    assert!(matches!(
        r.get_timeout(Duration::ZERO),
        Err(Error::Terminated)
    ));
    assert!(eventually(RESULT_LIMIT, || !alive(worker)));
    gate.open();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(dir.names(), ["started"], "the task went on after terminate");
}

/// Python's `_put_wait_put`: says 'started', waits on `gate`, says 'finished'.
fn put_wait_put(dir: String, gate: String) -> u32 {
    mark(&Path::new(&dir).join("started").to_string_lossy());
    gated(gate, 0);
    mark(&Path::new(&dir).join("finished").to_string_lossy());
    1
}

/// test_process_pool.py test_force_shutdown_workers_dead_workers (`os._exit(1)`, then
/// terminate) and test_force_shutdown_workers_not_started_yet (terminate before any
/// task): neither fails nor hangs.
#[test]
fn test_force_shutdown_workers_dead_or_idle() {
    let _wd = Deadline::arm("terminate dead or idle", TEST_LIMIT);
    let pool = Pool::processes(1).expect("pool");
    let r = pool.apply_async(detonate, (Kind::Exit(1),));
    assert!(matches!(
        must_get(&r, "exit 1"),
        Err(Error::WorkerDied {
            cause: ExitCause::Code(1),
            ..
        })
    ));
    pool.terminate();
    drop(pool);
    let pool = Pool::processes(1).expect("pool");
    let pids = settled_pids(&pool);
    pool.terminate();
    drop(pool);
    assert!(eventually(RESULT_LIMIT, || !alive(pids[0])));
}

// ---------------------------------------------------------------------------
// test_concurrent_futures: test_deadlock.py (beyond the matrix in ported_loky.rs)
// ---------------------------------------------------------------------------

fn crash_after(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    detonate(Kind::Segfault)
}

/// test_deadlock.py test_shutdown_deadlock: a task that will segfault in 0.1 s, and
/// the pool shut down (dropped) at once: the drop returns and the task is
/// `WorkerDied` from SIGSEGV (Python: BrokenProcessPool).
#[test]
fn test_shutdown_deadlock() {
    let _wd = Deadline::arm("shutdown deadlock", TEST_LIMIT);
    let pool = Pool::processes(2).expect("pool");
    let f = pool.apply_async(crash_after, (100,));
    drop(pool);
    assert!(matches!(
        f.get_timeout(Duration::ZERO),
        Err(Error::WorkerDied {
            cause: ExitCause::Signal(11),
            ..
        })
    ));
}

fn id_bomb(b: Bomb) -> u64 {
    b.value
}

/// test_deadlock.py test_shutdown_deadlock_pickle (bpo-39104): after a first task,
/// one whose argument fails to serialise, and the pool closed without waiting
/// (`shutdown(wait=False)`): its result is the serialisation error, and the pool
/// then shuts down.
#[test]
fn test_shutdown_deadlock_pickle() {
    let _wd = Deadline::arm("shutdown deadlock pickle", TEST_LIMIT);
    let pool = Pool::processes(2).expect("pool");
    assert_eq!(pool.apply(id_bomb, (Bomb::dud(42),)).ok(), Some(42));
    let f = pool.apply_async(id_bomb, (Bomb::armed(1, Stage::Serialize, Kind::Error),));
    pool.close();
    assert!(matches!(
        must_get(&f, "bad argument"),
        Err(Error::Serialization {
            what: Payload::Arguments,
            ..
        })
    ));
    pool.join();
}

/// Segfaults, whatever its (big) argument.
fn crash_with_data(_data: String) -> u64 {
    detonate(Kind::Segfault)
}

/// test_deadlock.py test_crash_big_data (gh-94777): ten tasks, each with an argument
/// bigger than a pipe holds (`PIPE_MAX_SIZE`: 4 MiB + 1), each segfaulting its
/// worker while the next argument is being written: every task is `WorkerDied`
/// (Python: the map raises BrokenProcessPool), no deadlock.
#[test]
fn test_crash_big_data() {
    let _wd = Deadline::arm("crash big data", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(2)
            .chunksize(1)
            .processes()
            .expect("pool"),
    );
    let data = "a".repeat((4 << 20) + 1);
    let out: Vec<_> = pool.imap(crash_with_data, vec![data; 10]).collect();
    assert_eq!(out.len(), 10);
    for o in &out {
        assert!(
            matches!(
                o,
                Err(Error::WorkerDied {
                    cause: ExitCause::Signal(11),
                    ..
                })
            ),
            "{o:?}"
        );
    }
    assert_eq!(pool.map(sqr, 0..4).ok(), Some(vec![0, 1, 4, 9]));
}

// ---------------------------------------------------------------------------
// test_concurrent_futures: test_shutdown.py
// ---------------------------------------------------------------------------

/// Python's `sleep_and_print`.
fn sleep_and_print(ms: u64, msg: String) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    println!("{msg}");
    ms
}

/// Submits a task that prints after a second and lets the program end at once,
/// with (`close_first`) or without closing the pool first.
fn submit_then_end(close_first: bool) {
    let pool = Pool::processes(5).expect("pool");
    // The result is dropped unread: the pool still runs the task before it goes.
    drop(pool.apply_async(sleep_and_print, (1000, "apple".to_string())));
    if close_first {
        pool.close();
    }
}

#[test]
fn helper_interpreter_shutdown() {
    if is_helper(HELPER_ENV, "helper_interpreter_shutdown") {
        let _wd = Deadline::arm("helper_interpreter_shutdown", HELPER_LIMIT);
        submit_then_end(false);
    }
}

#[test]
fn helper_shutdown_no_wait_at_exit() {
    if is_helper(HELPER_ENV, "helper_shutdown_no_wait_at_exit") {
        let _wd = Deadline::arm("helper_shutdown_no_wait_at_exit", HELPER_LIMIT);
        submit_then_end(true);
    }
}

/// test_shutdown.py test_interpreter_shutdown (the task finishes as the program
/// ends, its output printed, no error) and test_hang_gh83386 (the same after
/// `shutdown(wait=False)`; Python skips it for process pools: it hangs there).
#[test]
fn test_interpreter_shutdown() {
    for helper in [
        "helper_interpreter_shutdown",
        "helper_shutdown_no_wait_at_exit",
    ] {
        let out = output_within(helper_command(HELPER_ENV, helper), HELPER_LIMIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{helper}: {:?} {stdout}", out.status);
        assert_eq!(
            stdout.lines().filter(|l| *l == "apple").count(),
            1,
            "{helper}: {stdout}"
        );
    }
}

// test_shutdown.py test_hang_issue12364: 50 short tasks, then shutdown; every
// result can be read.
on_both! {
    fn test_hang_issue12364(pool = Pool::builder().workers(2), _which) {
        let fs: Vec<_> = (0..50).map(|_| pool.apply_async(sleep_ms, (10,))).collect();
        pool.close();
        pool.join();
        for f in &fs {
            assert_eq!(f.get_timeout(Duration::ZERO).ok(), Some(10));
        }
    }
}

// test_shutdown.py test_cancel_futures: 50 tasks of 100 ms on two workers, then
// shutdown cancelling what is pending: more than 20 are cancelled, the others
// finish without error, and at least one finished. (Upstream shuts down at once;
// here once the first task runs, so "at least one finished" cannot race the start.)
on_both! {
    fn test_cancel_futures(pool = Pool::builder().workers(2).chunksize(1), _which) {
        let dir = TempDir::new("cancel-futures");
        let fs: Vec<_> = (0..50)
            .map(|i| pool.apply_async(mark_then_sleep, (dir.file(&format!("{i}")), 100)))
            .collect();
        assert!(eventually(RESULT_LIMIT, || !dir.names().is_empty()));
        pool.shutdown(Pending::Cancel);
        let cancelled = fs.iter().filter(|f| f.cancelled()).count();
        assert!(cancelled > 20, "{cancelled} cancelled");
        let others: Vec<_> = fs.iter().filter(|f| !f.cancelled()).collect();
        for f in &others {
            assert!(f.ready());
            assert_eq!(f.get_timeout(Duration::ZERO).ok(), Some(100));
        }
        assert!(!others.is_empty());
        assert_eq!(dir.names().len(), others.len(), "the cancelled never ran");
    }
}

/// Marks `path`, then sleeps `ms`.
fn mark_then_sleep(path: String, ms: u64) -> u64 {
    mark(&path);
    sleep_ms(ms)
}

// test_shutdown.py test_hang_gh94440: one worker; a task run, another submitted
// and cancelled at once, then shutdown(wait=True) returns (the watchdog bounds it).
on_both! {
    fn test_hang_gh94440(pool = Pool::builder().workers(1), _which) {
        assert_eq!(pool.apply(mul, (0, 0)).ok(), Some(0));
        let _ = pool.apply_async(mul, (0, 0)).cancel();
        pool.shutdown(Pending::Finish);
    }
}

#[test]
fn helper_cancel_futures_at_exit_threads() {
    if is_helper(HELPER_ENV, "helper_cancel_futures_at_exit_threads") {
        let _wd = Deadline::arm("helper_cancel_futures_at_exit_threads", HELPER_LIMIT);
        let pool = Pool::threads(fondo::cpu_count()).expect("pool");
        drop(pool.apply_async(sleep_and_print, (100, "apple".to_string())));
        pool.shutdown(Pending::Cancel);
    }
}

#[test]
fn helper_cancel_futures_at_exit_processes() {
    if is_helper(HELPER_ENV, "helper_cancel_futures_at_exit_processes") {
        let _wd = Deadline::arm("helper_cancel_futures_at_exit_processes", HELPER_LIMIT);
        let pool = Pool::processes(fondo::cpu_count()).expect("pool");
        drop(pool.apply_async(sleep_and_print, (100, "apple".to_string())));
        pool.shutdown(Pending::Cancel);
    }
}

/// test_shutdown.py ThreadPoolShutdownTest.test_cancel_futures_wait_false: a
/// program submits a task and shuts down cancelling what is pending as it ends: no
/// error, and "apple" printed if the task had started, nothing if it had not.
/// (fondo's shutdown always waits for running tasks; Python's `wait=False` does
/// not, which is why upstream cannot test process pools: fondo's can be.)
#[test]
fn test_cancel_futures_wait_false() {
    for helper in [
        "helper_cancel_futures_at_exit_threads",
        "helper_cancel_futures_at_exit_processes",
    ] {
        let out = output_within(helper_command(HELPER_ENV, helper), HELPER_LIMIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{helper}: {:?} {stdout}", out.status);
        let apples = stdout.lines().filter(|l| *l == "apple").count();
        assert!(apples <= 1, "{helper}: {stdout}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("fondo:") && !stderr.contains("panicked"),
            "{helper}: {stderr}"
        );
    }
}

/// test_shutdown.py test_context_manager_shutdown (ProcessPoolShutdownTest): `map`
/// in a scope; once the pool is dropped its worker processes are gone.
#[test]
fn test_context_manager_shutdown() {
    let _wd = Deadline::arm("context manager", TEST_LIMIT);
    let pids = {
        let pool = Pool::processes(5).expect("pool");
        let v = pool.map(abs, -5..5).expect("map");
        assert_eq!(v, [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]);
        settled_pids(&pool)
    };
    for pid in pids {
        assert!(
            proc_stat(pid).is_none_or(|p| p.ppid != std::process::id()),
            "worker {pid} not reaped by the drop"
        );
    }
}

fn abs(x: i64) -> i64 {
    x.abs()
}

fn good_task(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100 * n));
    n
}

fn failing_task(_: u64) -> u64 {
    panic!("failing task")
}

/// test_shutdown.py test_shutdown_gh_132969_case_1 (2 workers) and _case_2 (4):
/// workers that serve one task each, a task that fails between two that succeed,
/// then `shutdown(wait=False)` (`close`): no error from the pool's machinery, no
/// hang; the values and the failure are as they should be.
#[test]
fn test_shutdown_gh_132969() {
    for workers in [2, 4] {
        let _wd = Deadline::arm("gh-132969", TEST_LIMIT);
        let pool = Pool::builder()
            .workers(workers)
            .max_tasks_per_child(1)
            .processes()
            .expect("pool");
        let f1 = pool.apply_async(good_task, (1,));
        let f2 = pool.apply_async(failing_task, (2,));
        let f3 = pool.apply_async(good_task, (3,));
        assert_eq!(must_get(&f1, "f1").ok(), Some(1));
        assert!(is_panicked_with(&must_get(&f2, "f2"), "failing task"));
        pool.close();
        std::thread::sleep(Duration::from_millis(200));
        drop(pool);
        assert_eq!(f3.get_timeout(Duration::ZERO).ok(), Some(3));
    }
}

// ---------------------------------------------------------------------------
// test_concurrent_futures: test_wait.py, test_as_completed.py, test_future.py
// (fondo::wait, fondo::as_completed, cancel / cancelled / running: issue 17)
// ---------------------------------------------------------------------------

/// Python's `SUCCESSFUL_FUTURE`: finished with 42.
fn successful_future() -> AsyncResult<i64> {
    AsyncResult::completed(Ok(42))
}

/// Python's `EXCEPTION_FUTURE`: finished with an `OSError`.
fn exception_future() -> AsyncResult<i64> {
    AsyncResult::completed(Err(Error::Io(Arc::new(std::io::Error::other("OSError")))))
}

/// Python's `CANCELLED_AND_NOTIFIED_FUTURE`. (Python's `CANCELLED_FUTURE` — cancelled,
/// its waiters not yet notified — is a state of its internals: a cancelled fondo
/// result is complete, so where upstream lists `CANCELLED_FUTURE` as pending, the
/// ports list it as done.)
fn cancelled_future() -> AsyncResult<i64> {
    AsyncResult::completed(Err(Error::Cancelled))
}

/// Python's `wait_and_raise(e)`: waits for the event, then raises.
fn wait_and_raise(gate: String) -> i64 {
    gated(gate, 0);
    panic!("this is an exception")
}

/// A task that marks `started` then waits on the gate (Python's `event.wait`, with
/// a way to know it runs).
fn started_then_gated(started: String, gate: String) -> i64 {
    mark(&started);
    i64::from(gated(gate, 0))
}

/// `Waited` as two sets, as Python compares them.
fn sets(w: fondo::Waited) -> (Vec<usize>, Vec<usize>) {
    (w.done, w.pending)
}

// test_wait.py test_20369: the same future twice, ALL_COMPLETED: done (at both
// positions), nothing pending.
on_both! {
    fn test_20369(pool = Pool::builder().workers(2), _which) {
        let future = pool.apply_async(mul, (1, 2));
        let w = fondo::wait([&future, &future], ReturnWhen::AllCompleted, Some(RESULT_LIMIT));
        assert_eq!(sets(w), (vec![0, 1], vec![]));
    }
}

// test_wait.py test_first_completed: `mul(21, 2)` completes while a task waits on
// an event. (Upstream also lists `CANCELLED_FUTURE` as pending: see
// `cancelled_future`.)
on_both! {
    fn test_first_completed(pool = Pool::builder().workers(2), _which) {
        let gate = Gate::new();
        let future1 = pool.apply_async(mul, (21, 2));
        let future2 = pool.apply_async(gated, (gate.arg(), 1));
        let w = fondo::wait(
            [&future1 as &dyn Watchable, &future2],
            ReturnWhen::FirstCompleted,
            Some(RESULT_LIMIT),
        );
        assert_eq!(sets(w), (vec![0], vec![1]));
        gate.open();
        assert_eq!(must_get(&future2, "future2").ok(), Some(1));
    }
}

// test_wait.py test_first_completed_some_already_completed.
on_both! {
    fn test_first_completed_some_already_completed(pool = Pool::builder().workers(2), _which) {
        let gate = Gate::new();
        let future1 = pool.apply_async(gated, (gate.arg(), 1));
        let (cancelled, successful) = (cancelled_future(), successful_future());
        let set: [&dyn Watchable; 3] = [&cancelled, &successful, &future1];
        let w = fondo::wait(set, ReturnWhen::FirstCompleted, Some(RESULT_LIMIT));
        assert_eq!(sets(w), (vec![0, 1], vec![2]));
        gate.open();
        assert_eq!(must_get(&future1, "future1").ok(), Some(1));
    }
}

// test_wait.py test_first_exception: future1 completes, then future2 raises;
// future3 still waits.
on_both! {
    fn test_first_exception(pool = Pool::builder().workers(3), _which) {
        let (event1, event2) = (Gate::new(), Gate::new());
        let future1 = pool.apply_async(mul, (2, 21));
        let future2 = pool.apply_async(wait_and_raise, (event1.arg(),));
        let future3 = pool.apply_async(gated, (event2.arg(), 3));
        std::thread::scope(|s| {
            s.spawn(|| {
                let _ = must_get(&future1, "future1");
                event1.open();
            });
            let set: [&dyn Watchable; 3] = [&future1, &future2, &future3];
            let w = fondo::wait(set, ReturnWhen::FirstException, Some(RESULT_LIMIT));
            assert_eq!(sets(w), (vec![0, 1], vec![2]));
        });
        event2.open();
        assert_eq!(must_get(&future3, "future3").ok(), Some(3));
    }
}

// test_wait.py test_first_exception_some_already_complete (upstream's
// `CANCELLED_FUTURE` is done here: see `cancelled_future`).
on_both! {
    fn test_first_exception_some_already_complete(pool = Pool::builder().workers(2), _which) {
        let gate = Gate::new();
        let future1 = pool.apply_async(divmod, ((21, 0),));
        let future2 = pool.apply_async(gated, (gate.arg(), 2));
        let (successful, cancelled, notified) =
            (successful_future(), cancelled_future(), cancelled_future());
        let set: [&dyn Watchable; 5] = [&successful, &cancelled, &notified, &future1, &future2];
        let w = fondo::wait(set, ReturnWhen::FirstException, Some(RESULT_LIMIT));
        assert_eq!(sets(w), (vec![0, 1, 2, 3], vec![4]));
        gate.open();
        assert_eq!(must_get(&future2, "future2").ok(), Some(2));
    }
}

// test_wait.py test_first_exception_one_already_failed.
on_both! {
    fn test_first_exception_one_already_failed(pool = Pool::builder().workers(2), _which) {
        let gate = Gate::new();
        let future1 = pool.apply_async(gated, (gate.arg(), 1));
        let failed = exception_future();
        let set: [&dyn Watchable; 2] = [&failed, &future1];
        let w = fondo::wait(set, ReturnWhen::FirstException, Some(RESULT_LIMIT));
        assert_eq!(sets(w), (vec![0], vec![1]));
        gate.open();
        assert_eq!(must_get(&future1, "future1").ok(), Some(1));
    }
}

// test_wait.py test_all_completed.
on_both! {
    fn test_all_completed(pool = Pool::builder().workers(2), _which) {
        let future1 = pool.apply_async(divmod, ((2, 0),));
        let future2 = pool.apply_async(mul, (2, 21));
        let (successful, cancelled, failed) =
            (successful_future(), cancelled_future(), exception_future());
        let set: [&dyn Watchable; 5] = [&successful, &cancelled, &failed, &future1, &future2];
        let w = fondo::wait(set, ReturnWhen::AllCompleted, Some(RESULT_LIMIT));
        assert_eq!(sets(w), (vec![0, 1, 2, 3, 4], vec![]));
    }
}

// test_wait.py test_timeout: 50 ms, ALL_COMPLETED: what was done is done, the
// waiting task pending.
on_both! {
    fn test_timeout(pool = Pool::builder().workers(2), _which) {
        let gate = Gate::new();
        let future = pool.apply_async(gated, (gate.arg(), 1));
        let (cancelled, failed, successful) =
            (cancelled_future(), exception_future(), successful_future());
        let set: [&dyn Watchable; 4] = [&cancelled, &failed, &successful, &future];
        let w = fondo::wait(set, ReturnWhen::AllCompleted, Some(Duration::from_millis(50)));
        assert_eq!(sets(w), (vec![0, 1, 2], vec![3]));
        gate.open();
        assert_eq!(must_get(&future, "future").ok(), Some(1));
    }
}

/// test_wait.py ThreadPoolWaitTests.test_pending_calls_race (issue #14406): 100
/// tasks released at once, ALL_COMPLETED over them.
#[test]
fn test_pending_calls_race() {
    let _wd = Deadline::arm("pending calls race", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::threads(cpu_count_min(4)).expect("pool"));
    let gate = Gate::new();
    let fs: Vec<_> = (0..100)
        .map(|i| pool.apply_async(gated, (gate.arg(), i)))
        .collect();
    gate.open();
    let w = fondo::wait(&fs, ReturnWhen::AllCompleted, Some(RESULT_LIMIT));
    assert!(w.all_done(), "{w:?}");
}

fn cpu_count_min(n: usize) -> usize {
    fondo::cpu_count().max(n)
}

// test_as_completed.py test_no_timeout: every future, each once.
on_both! {
    fn test_no_timeout(pool = Pool::builder().workers(2), _which) {
        let future1 = pool.apply_async(mul, (2, 21));
        let future2 = pool.apply_async(mul, (7, 6));
        let results = vec![cancelled_future(), exception_future(), successful_future(), future1, future2];
        let mut completed: Vec<usize> = fondo::as_completed(&results, Some(RESULT_LIMIT))
            .map(|r| r.expect("no timeout").0)
            .collect();
        completed.sort_unstable();
        assert_eq!(completed, [0, 1, 2, 3, 4]);
    }
}

// test_as_completed.py test_future_times_out: with a timeout of 0 and of 100 ms,
// the three complete futures come, the waiting one does not: a timeout error ends it.
on_both! {
    fn test_future_times_out(pool = Pool::builder().workers(2), _which) {
        for timeout in [Duration::ZERO, Duration::from_millis(100)] {
            let gate = Gate::new();
            let future = pool.apply_async(gated, (gate.arg(), 1));
            let already = [cancelled_future(), exception_future(), successful_future()];
            let set: [&dyn Watchable; 4] = [&already[0], &already[1], &already[2], &future];
            let mut completed = Vec::new();
            let mut timed_out = false;
            for r in fondo::as_completed(set, Some(timeout)) {
                match r {
                    Ok((i, _)) => completed.push(i),
                    Err(Error::WaitTimeout { .. }) => timed_out = true,
                    Err(e) => panic!("{e}"),
                }
            }
            completed.sort_unstable();
            assert_eq!(completed, [0, 1, 2], "{timeout:?}");
            assert!(timed_out, "{timeout:?}");
            gate.open();
            assert_eq!(must_get(&future, "future").ok(), Some(1));
        }
    }
}

// test_as_completed.py test_duplicate_futures (issues 20367, #31641): the same
// future three times, from any iterable, comes once.
on_both! {
    fn test_duplicate_futures(pool = Pool::builder().workers(2), _which) {
        let future1 = pool.apply_async(sleep_ms, (20,));
        let completed: Vec<_> = fondo::as_completed(std::iter::repeat_n(&future1, 3), Some(RESULT_LIMIT))
            .collect();
        assert_eq!(completed.len(), 1);
        assert!(completed[0].as_ref().is_ok_and(|(i, _)| *i == 0));
    }
}

/// test_as_completed.py test_free_reference_yielded_future (issue #14406): the
/// iterator keeps no reference to a future it yielded (each is an `Arc` here, so a
/// weak reference tells). Python completes its futures by hand; here tasks on
/// eight threads complete when the test opens their gates, one after the other.
#[test]
fn test_free_reference_yielded_future() {
    let _wd = Deadline::arm("free reference", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::threads(8).expect("pool"));
    let gates: Vec<Gate> = (0..8).map(|_| Gate::new()).collect();
    let mut futures: Vec<Arc<AsyncResult<u32>>> = gates
        .iter()
        .zip(0..)
        .map(|(g, i)| Arc::new(pool.apply_async(gated, (g.arg(), i))))
        .collect();
    futures.push(Arc::new(AsyncResult::completed(Err(Error::Cancelled))));
    futures.push(Arc::new(AsyncResult::completed(Ok(42))));
    let taken = |future: Arc<AsyncResult<u32>>, futures: &mut Vec<Arc<AsyncResult<u32>>>| {
        futures.retain(|f| !Arc::ptr_eq(f, &future));
        let weak = Arc::downgrade(&future);
        drop(future);
        assert!(weak.upgrade().is_none(), "as_completed kept a reference");
    };
    let mut timed_out = false;
    for r in fondo::as_completed(futures.clone(), Some(Duration::ZERO)) {
        match r {
            Ok((_, future)) => taken(future, &mut futures),
            Err(Error::WaitTimeout { .. }) => timed_out = true,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(timed_out && futures.len() == 8);
    gates[0].open();
    let mut next = 1;
    for r in fondo::as_completed(futures.clone(), Some(RESULT_LIMIT)) {
        let (_, future) = r.expect("within the limit");
        taken(future, &mut futures);
        if let Some(gate) = gates.get(next) {
            gate.open();
            next += 1;
        }
    }
    assert!(futures.is_empty());
}

/// The pool's `Error::WaitTimeout` after `as_completed` gave up (test_as_completed.py
/// test_correct_timeout_exception_msg: "2 (of 4) futures unfinished"): the two
/// unfinished are handed back.
#[test]
fn test_correct_timeout_exception_msg() {
    let _wd = Deadline::arm("timeout message", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(1)
            .prefetch(1)
            .threads()
            .expect("pool"),
    );
    let gate = Gate::new();
    let running = pool.apply_async(gated, (gate.arg(), 1));
    let pending = pool.apply_async(gated, (gate.arg(), 2));
    let results = vec![
        AsyncResult::completed(Err(Error::Cancelled)),
        pending,
        running,
        AsyncResult::completed(Ok(42)),
    ];
    let mut it = fondo::as_completed(results, Some(Duration::ZERO));
    let got: Vec<_> = it.by_ref().collect();
    assert_eq!(got.len(), 3);
    assert!(
        matches!(got[2], Err(Error::WaitTimeout { .. })),
        "{:?}",
        got[2]
    );
    let unfinished: Vec<usize> = it.into_pending().into_iter().map(|(i, _)| i).collect();
    assert_eq!(unfinished, [1, 2], "2 (of 4) futures unfinished");
    gate.open();
}

// test_future.py test_cancel, test_cancelled, test_running, test_done: a pending
// future (queued behind a running one on one worker), a running one, cancelled
// ones, one failed, one successful.
on_both! {
    fn test_cancel_cancelled_running(pool = Pool::builder().workers(1).prefetch(2), _which) {
        let gate = Gate::new();
        let dir = TempDir::new("future-states");
        let running = pool.apply_async(started_then_gated, (dir.file("started"), gate.arg()));
        assert!(eventually(RESULT_LIMIT, || running.running()));
        let pending = pool.apply_async(mul, (6, 7));
        let (cancelled, failed, successful) =
            (cancelled_future(), exception_future(), successful_future());
        // test_cancelled, test_running, test_done
        let states = |f: &AsyncResult<i64>| (f.cancelled(), f.running(), f.ready());
        assert_eq!(states(&pending), (false, false, false));
        assert_eq!(states(&running), (false, true, false));
        assert_eq!(states(&cancelled), (true, false, true));
        assert_eq!(states(&failed), (false, false, true));
        assert_eq!(states(&successful), (false, false, true));
        // test_cancel
        assert!(pending.cancel());
        assert_eq!(states(&pending), (true, false, true));
        assert!(!running.cancel());
        assert_eq!(states(&running), (false, true, false));
        assert!(cancelled.cancel());
        assert!(!failed.cancel() && !failed.cancelled());
        assert!(!successful.cancel() && !successful.cancelled());
        gate.open();
        assert_eq!(must_get(&running, "running").ok(), Some(0));
        assert!(matches!(pending.get(), Err(Error::Cancelled)));
        assert_eq!(successful.get().ok(), Some(42));
    }
}

// test_future.py test_done_callback_with_cancel and
// test_done_callback_already_cancelled: the callback sees the cancel, whether
// registered before or after it.
on_both! {
    fn test_done_callback_with_cancel(pool = Pool::builder().workers(1).prefetch(1), _which) {
        let gate = Gate::new();
        let running = pool.apply_async(gated, (gate.arg(), 1));
        let was_cancelled = Arc::new(Mutex::new(None));
        let seen = was_cancelled.clone();
        let f = pool
            .apply_async(mul, (1, 1))
            .on_done(move |r| *seen.lock().unwrap() = Some(matches!(r, Err(Error::Cancelled))));
        assert!(f.cancel());
        assert_eq!(*was_cancelled.lock().unwrap(), Some(true));
        // Already cancelled, then the callback.
        let g = pool.apply_async(mul, (1, 1));
        assert!(g.cancel());
        let seen = was_cancelled.clone();
        *seen.lock().unwrap() = None;
        let g = g.on_done(move |r| *seen.lock().unwrap() = Some(matches!(r, Err(Error::Cancelled))));
        assert_eq!(*was_cancelled.lock().unwrap(), Some(true));
        assert!(g.cancelled());
        gate.open();
        assert_eq!(must_get(&running, "running").ok(), Some(1));
    }
}

// test_future.py test_result_with_cancel: another thread cancels the future the
// main thread waits on; the wait ends with the cancel.
on_both! {
    fn test_result_with_cancel(pool = Pool::builder().workers(1).prefetch(1), _which) {
        let gate = Gate::new();
        let running = pool.apply_async(gated, (gate.arg(), 1));
        let f1 = pool.apply_async(mul, (2, 3));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                assert!(f1.cancel());
            });
            assert!(matches!(must_get(&f1, "f1"), Err(Error::Cancelled)));
        });
        gate.open();
        assert_eq!(must_get(&running, "running").ok(), Some(1));
    }
}

/// test_wait.py test_first_completed with the blocking task submitted first (in
/// Python the order does not matter: any idle worker takes the next task from the
/// shared call queue). On 2 workers, a task waiting on an event, then quick tasks
/// one by one and as one `map`: they all complete while the first still waits.
#[test]
fn test_first_completed_behind_a_blocked_task() {
    let _wd = Deadline::arm("head of line", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("pool"));
    let gate = Gate::new();
    let blocked = pool.apply_async(gated, (gate.arg(), 1));
    std::thread::sleep(Duration::from_millis(100));
    let quick: Vec<_> = (0..6).map(|i| pool.apply_async(mul, (i, 2))).collect();
    for (i, q) in quick.iter().enumerate() {
        assert!(
            q.wait_timeout(RESULT_LIMIT),
            "quick task {i} waited behind the blocked task while a worker idled"
        );
    }
    let m = pool.map_async(sqr, 0..6);
    assert!(
        m.wait_timeout(RESULT_LIMIT),
        "a map waited behind the blocked task"
    );
    assert!(!blocked.ready());
    gate.open();
    assert_eq!(must_get(&blocked, "blocked").ok(), Some(1));
}

// ---------------------------------------------------------------------------
// test_concurrent_futures: test_init.py
// ---------------------------------------------------------------------------

/// What the initializer leaves in the worker (Python's `INITIALIZER_STATUS`).
static INITIALIZER_STATUS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_STATUS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn init() {
    INITIALIZER_STATUS.store(1, Ordering::SeqCst);
    THREAD_STATUS.with(|s| s.set(1));
}

/// Python's `get_init_status`, for processes: the worker process's status.
fn get_init_status() -> usize {
    INITIALIZER_STATUS.load(Ordering::SeqCst)
}

/// The status where the task runs: its worker process's (the test process's own is
/// never set by a process pool) or, on threads, its worker thread's.
fn get_init_status_of(test_process: u32) -> usize {
    if std::process::id() == test_process {
        THREAD_STATUS.with(|s| s.get())
    } else {
        get_init_status()
    }
}

// test_init.py InitializerMixin.test_initializer: every worker (2) has run the
// initializer before its first task.
on_both! {
    fn test_initializer(pool = Pool::builder().workers(2).chunksize(1).initializer(init), _which) {
        let statuses = pool.map(get_init_status_of, [std::process::id(); 2]).expect("map");
        assert_eq!(statuses, [1, 1]);
    }
}

/// Python's `init_fail`: sleeps 0.1 s ("let some futures be scheduled"), then fails.
fn init_fail() {
    std::thread::sleep(Duration::from_millis(100));
    panic!("error in initializer");
}

fn init_exit() {
    std::thread::sleep(Duration::from_millis(100));
    std::process::exit(3);
}

fn init_hang() {
    std::thread::sleep(Duration::from_secs(3600));
}

/// test_init.py FailingInitializerMixin.test_initializer: the workers' initializer
/// fails. Python breaks the executor: the task's future raises BrokenExecutor. The
/// contract fondo owes: the task is not run in a worker whose initializer failed —
/// it gets an error — and nothing hangs (the pool still terminates).
#[test]
fn test_failing_initializer_panics() {
    let _wd = Deadline::arm("failing initializer", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(2)
            .initializer(init_fail)
            .processes()
            .expect("pool"),
    );
    let f = pool.apply_async(get_init_status, ());
    let got = must_get(&f, "task after a failed initializer");
    assert!(
        got.is_err(),
        "ran in a worker whose initializer failed: {got:?}"
    );
    pool.terminate();
}

/// The same, the initializer calling `exit(3)` (Rust's other way to fail there):
/// the task gets an error, and the pool stops restarting workers that will only
/// exit again (no endless respawning: the count of worker processes started stays
/// put once the task has failed).
#[test]
fn test_failing_initializer_exits() {
    let _wd = Deadline::arm("exiting initializer", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(2)
            .initializer(init_exit)
            .processes()
            .expect("pool"),
    );
    let f = pool.apply_async(sqr, (3,));
    let got = must_get(&f, "task after an exiting initializer");
    assert!(got.is_err(), "{got:?}");
    let spawned = || {
        pool.pids()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
    };
    let mut seen = spawned();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(50));
        seen.extend(spawned());
    }
    let before = seen.len();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(50));
        seen.extend(spawned());
    }
    assert_eq!(seen.len(), before, "workers keep being started: {seen:?}");
    pool.terminate();
}

/// The same, the initializer never returning, with a task timeout: the timeout
/// covers the initializer (the task gets `Timeout` or another error) rather than
/// leaving the task queued forever.
#[test]
fn test_hanging_initializer_with_a_task_timeout() {
    let _wd = Deadline::arm("hanging initializer", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(1)
            .initializer(init_hang)
            .task_timeout(Duration::from_millis(500))
            .processes()
            .expect("pool"),
    );
    let f = pool.apply_async(sqr, (3,));
    let got = must_get(&f, "task behind a hanging initializer");
    assert!(got.is_err(), "{got:?}");
    pool.terminate();
}

/// Takes 2 s to serialise: a result whose encoding outlasts the task timeout.
struct SlowlyPickling;

impl Serialize for SlowlyPickling {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        std::thread::sleep(Duration::from_secs(3600));
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for SlowlyPickling {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| SlowlyPickling)
    }
}

fn slowly_pickling() -> SlowlyPickling {
    SlowlyPickling
}

/// loky `test_worker_timeout.py` `SlowlyPickling`'s premise with fondo's task
/// timeout (issue 13's list): a task whose result never finishes serialising is
/// over the timeout like one that never returns: `Timeout`, the worker replaced.
#[test]
fn test_task_timeout_covers_result_serialisation() {
    let _wd = Deadline::arm("slow result serialisation", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(1)
            .task_timeout(Duration::from_millis(500))
            .processes()
            .expect("pool"),
    );
    let f = pool.apply_async(slowly_pickling, ());
    assert!(matches!(
        must_get(&f, "slow result").map(|_| ()),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(pool.apply(sqr, (3,)).ok(), Some(9));
}

// ---------------------------------------------------------------------------
// test_concurrent_futures: test_thread_pool.py
// ---------------------------------------------------------------------------

/// test_thread_pool.py test_map_submits_without_iteration (issue 11777): a `map`
/// nobody reads still runs every task before the pool's shutdown returns.
#[test]
fn test_map_submits_without_iteration() {
    let _wd = Deadline::arm("map without iteration", TEST_LIMIT);
    let finished = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::threads(2).expect("pool");
    let f = finished.clone();
    drop(pool.map_async(move |n: u32| f.lock().unwrap().push(n), 0..10));
    pool.join();
    let mut got = finished.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

/// test_thread_pool.py test_default_workers: the default worker count (fondo:
/// `cpu_count()`, Python: min(32, cpus + 4)).
#[test]
fn test_default_workers() {
    let _wd = Deadline::arm("default workers", TEST_LIMIT);
    let pool = Pool::builder().threads().expect("pool");
    assert_eq!(pool.workers(), fondo::cpu_count());
}

/// test_thread_pool.py test_process_fork_from_a_threadpool (bpo-43944): a task on a
/// thread pool starts a process (fondo's `spawn`: exec, not fork) and joins it.
#[test]
fn test_process_from_a_thread_pool() {
    let _wd = Deadline::arm("process from a thread pool", TEST_LIMIT);
    let pool = Pool::threads(1).expect("pool");
    let code = pool
        .apply(
            || {
                let mut c = fondo::spawn(sqr, (7,)).expect("spawn");
                c.join_timeout(RESULT_LIMIT)
            },
            (),
        )
        .expect("task");
    assert_eq!(code.ok(), Some(49));
}
