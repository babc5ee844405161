//! The pool contract, written once and run on each backend: map, starmap, imap,
//! imap_unordered, apply, apply_async, `get`/`wait`/`ready`/`successful`, callbacks,
//! the `AsyncResult` future, close/join/terminate, errors, chunksize and the builder.
//!
//! Not a test binary of its own: `tests/thread_pool.rs` and `tests/process_pool.rs`
//! each include it (`mod contract;`), name their backend `Under`, implement [`Start`]
//! for it and have `tests/common/gate.rs` as their module `gate` (loaded once per
//! binary), so every test here runs on threads as `thread_pool::contract::<name>` and
//! on processes as `process_pool::contract::<name>`.
//! What only one backend has (closures that capture, thread identity; PIDs, worker
//! deaths, serialisation) stays in that backend's file.
//!
//! Tasks are plain `fn`s or closures that capture nothing, which both backends run;
//! they talk back through their results or the file system ([`TempDir`] marks). A task
//! that must still be running is held on a file [`Gate`] the test opens, never timed
//! with a sleep, and no test asserts a wall-clock figure: the few time bounds are
//! generous "does not hang" guards. Only the standard library and fondo's thread
//! backend are named here, so the threads-only build compiles it.

pub use super::gate::{Gate, TempDir, eventually, gated};

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use fondo::{AsyncResult, Backend, Builder, Error, Pool, Result, cpu_count};

use super::Under;

/// Generous guard against a hang: long enough never to trip on a slow machine.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// How long a pool's worker processes may take to be reaped after a terminate
/// ("within a second", with margin).
pub const GONE_GUARD: Duration = Duration::from_secs(5);

/// What the contract needs of a backend: how to start a pool, and the worker
/// processes it runs (none on threads), so the tests can check none is left behind.
pub trait Start: Backend {
    /// `Pool::threads(n)`, `Pool::processes(n)`.
    fn with_workers(n: usize) -> Result<Pool<Self>>;
    /// `builder.threads()`, `builder.processes()`.
    fn start(builder: Builder) -> Result<Pool<Self>>;
    /// The PIDs of the pool's worker processes; empty on a backend without any.
    fn pids(_pool: &Pool<Self>) -> Vec<u32> {
        Vec::new()
    }
    /// True while `pid` is a child of this process not yet reaped.
    fn is_our_child(_pid: u32) -> bool {
        false
    }
}

/// A pool of `n` workers on this binary's backend.
fn pool(n: usize) -> Result<Pool<Under>> {
    Under::with_workers(n)
}

/// The pool `builder` describes, on this binary's backend.
fn build(builder: Builder) -> Result<Pool<Under>> {
    Under::start(builder)
}

/// Asserts every one of `pids` is reaped within [`GONE_GUARD`].
pub fn assert_reaped(pids: &[u32]) {
    for &pid in pids {
        assert!(
            eventually(GONE_GUARD, || !Under::is_our_child(pid)),
            "worker {pid} is still a child of ours"
        );
    }
}

pub fn is_panicked_with<T>(r: &Result<T>, text: &str) -> bool {
    matches!(r, Err(Error::Panicked { message, .. }) if message.contains(text))
}

/// A latch in this process a test opens once: for what waits on the test's side
/// (callbacks, threads of the test), where a file [`Gate`] is for tasks.
#[derive(Clone, Default)]
pub struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
    }
}

/// Opens the latch when dropped, so a failing assertion never leaves a thread
/// blocked forever.
pub struct OpenOnDrop(pub Latch);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

// ---------------------------------------------------------------------------
// Tasks (plain fns: they run in worker processes too)
// ---------------------------------------------------------------------------

pub fn square(x: u64) -> u64 {
    x * x
}

pub fn pow(b: u64, e: u32) -> u64 {
    b.pow(e)
}

pub fn sleep_ms(ms: u64) -> u64 {
    thread::sleep(Duration::from_millis(ms));
    ms
}

pub fn panics(message: String) -> u32 {
    panic!("{message}")
}

/// Panics on every item ending in 4.
pub fn check(x: u32) -> u32 {
    assert!(x % 10 != 4, "bad item {x}");
    x
}

/// The worker running the task: its process and thread. One value names one worker
/// on either backend (a thread of this process, or a worker process).
pub fn worker() -> (u32, String) {
    (std::process::id(), format!("{:?}", thread::current().id()))
}

/// Creates `path`: tells the test this task ran.
pub fn mark(path: String) {
    std::fs::File::create(path).expect("mark");
}

/// Announces it has started (creates `started`), then waits on the gate.
pub fn announce_then_wait(started: String, gate: String) -> u32 {
    mark(started);
    gated(gate, 1)
}

/// Tasks held on one gate, each announcing when it starts ([`announce_then_wait`]):
/// the test sees which have started and releases them all at once — or never, as the
/// gate opens only when dropped.
pub struct Held {
    started: TempDir,
    pub gate: Gate,
}

impl Held {
    pub fn new(tag: &str) -> Held {
        Held {
            started: TempDir::new(tag),
            gate: Gate::new(),
        }
    }

    /// The arguments of [`announce_then_wait`] for a task called `name`.
    pub fn args(&self, name: &str) -> (String, String) {
        (self.started.file(name), self.gate.arg())
    }

    /// Submits a held task called `name`.
    pub fn submit(&self, pool: &Pool<Under>, name: &str) -> AsyncResult<u32> {
        pool.apply_async(announce_then_wait, self.args(name))
    }

    /// True once tasks of `n` names have started, polled for up to `guard`.
    pub fn started(&self, n: usize, guard: Duration) -> bool {
        eventually(guard, || self.names().len() >= n)
    }

    /// The names of the tasks that have started.
    pub fn names(&self) -> Vec<String> {
        self.started.names()
    }
}

// ---------------------------------------------------------------------------
// map / starmap / apply
// ---------------------------------------------------------------------------

#[test]
fn map_returns_results_in_input_order() -> Result<()> {
    let pool = pool(2)?;
    assert_eq!(
        pool.map(square, 0..1000)?,
        (0..1000).map(|x| x * x).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn map_keeps_input_order_when_later_items_finish_first() -> Result<()> {
    // Early items are the slow ones, so completion order is roughly reversed.
    let pool = build(Pool::builder().workers(2).chunksize(1))?;
    let v = pool.map(|x: u64| sleep_ms(2 * (10 - x)), 0..10)?;
    assert_eq!(v, (0..10).map(|x| 2 * (10 - x)).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn map_of_100_000_tasks_returns_each_result_once_in_order() -> Result<()> {
    const N: u64 = 100_000;
    let pool = pool(2)?;
    let v = pool.map(|x: u64| x * 3 + 1, 0..N)?;
    assert_eq!(v.len(), N as usize);
    for (i, &y) in v.iter().enumerate() {
        assert_eq!(y, i as u64 * 3 + 1, "element {i}");
    }
    let sum: u64 = v.iter().sum();
    assert_eq!(sum, 3 * (N * (N - 1) / 2) + N);
    Ok(())
}

#[test]
fn empty_input_gives_empty_output_everywhere() -> Result<()> {
    let pool = pool(2)?;
    assert!(pool.map(|x: u32| x, Vec::new())?.is_empty());
    assert!(pool.map(square, 0..0)?.is_empty());
    assert!(pool.starmap(|a: u32, b: u32| a + b, Vec::new())?.is_empty());
    assert!(pool.starmap(pow, Vec::new())?.is_empty());
    assert!(pool.map_async(square, 0..0).get()?.is_empty());
    assert_eq!(pool.imap(square, 0..0).count(), 0);
    assert_eq!(pool.imap_unordered(square, 0..0).count(), 0);
    Ok(())
}

#[test]
fn map_moves_owned_non_copy_items() -> Result<()> {
    let pool = pool(2)?;
    let words: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    let v = pool.map(|s: String| s.len() + s.as_str().len(), words.clone())?;
    assert_eq!(
        v,
        words.iter().map(|s| 2 * s.len()).collect::<Vec<_>>(),
        "owned Strings moved through the pool"
    );
    let upper = pool.map(|s: String| s.to_uppercase(), words)?;
    assert_eq!(upper[7], "W7");
    Ok(())
}

#[test]
fn starmap_spreads_tuples_of_arity_0_1_2_3_6() -> Result<()> {
    let pool = pool(2)?;

    assert_eq!(pool.starmap(|| 7u8, [(), (), ()])?, [7, 7, 7]);
    assert_eq!(pool.starmap(|x: u32| x * 2, [(1,), (2,), (3,)])?, [2, 4, 6]);
    assert_eq!(
        pool.starmap(pow, [(2, 10), (3, 4), (10, 0)])?,
        [1024, 81, 1]
    );

    let three = pool.starmap(
        |a: i32, b: String, c: bool| if c { format!("{b}{a}") } else { b },
        [
            (1, "x".to_string(), true),
            (2, "y".to_string(), false),
            (3, "ñandú".to_string(), false),
        ],
    )?;
    assert_eq!(three, ["x1", "y", "ñandú"]);

    let six = pool.starmap(
        |a: u8, b: u16, c: u32, d: u64, e: i32, f: i64| {
            i64::from(a) + i64::from(b) + i64::from(c) + d as i64 + i64::from(e) + f
        },
        [(1, 2, 3, 4, 5, 6), (10, 20, 30, 40, 50, -150)],
    )?;
    assert_eq!(six, [21, 0]);

    // Order holds for starmap as for map.
    let many = pool.starmap(|a: u64, b: u64| a * 1000 + b, (0..500).map(|i| (i, i + 1)))?;
    assert_eq!(many, (0..500).map(|i| i * 1000 + i + 1).collect::<Vec<_>>());

    // Owned, non-Copy data crosses both ways.
    let owned = pool.starmap(
        |v: Vec<u64>, s: String| format!("{s}{}", v.iter().sum::<u64>()),
        (0..500u64).map(|i| (vec![i; 3], format!("{i}:"))),
    )?;
    assert_eq!(
        owned,
        (0..500u64)
            .map(|i| format!("{i}:{}", 3 * i))
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn apply_calls_the_function_with_the_tuple_spread() -> Result<()> {
    let pool = pool(1)?;
    assert_eq!(pool.apply(pow, (2, 10))?, 1024);
    assert_eq!(pool.apply(|| "none".to_string(), ())?, "none");
    assert_eq!(pool.apply(|x: i8| -x, (5,))?, -5);
    assert_eq!(
        pool.apply(|a: u8, b: u8, c: u8| [a, b, c], (1, 2, 3))?,
        [1, 2, 3]
    );
    Ok(())
}

/// Item `(v, None)` returns at once; `(v, Some(gate))` waits on the gate.
fn quick_or_gated(item: (u32, Option<String>)) -> u32 {
    match item {
        (v, None) => v,
        (v, Some(gate)) => gated(gate, v),
    }
}

#[test]
fn a_finished_result_is_not_held_back_by_a_slow_task_behind_it() -> Result<()> {
    let pool = build(Pool::builder().workers(1).chunksize(1))?;
    let gate = Gate::new();
    // One submission: both tasks travel to the one worker together.
    let mut it = pool.imap(quick_or_gated, [(1, None), (2, Some(gate.arg()))]);
    let (tx, rx) = mpsc::channel();
    let (first, second, in_time) = thread::scope(|s| {
        let reader = s.spawn(move || {
            let first = it.next();
            tx.send(()).unwrap();
            (first, it.next())
        });
        // Task 0 is done in microseconds; 10 s is only a guard against a hang.
        let in_time = rx.recv_timeout(Duration::from_secs(10)).is_ok();
        gate.open();
        let (first, second) = reader.join().unwrap();
        (first, second, in_time)
    });
    assert!(in_time, "task 0's result waited for task 1 to finish");
    assert_eq!(first.transpose()?, Some(1));
    assert_eq!(second.transpose()?, Some(2));
    Ok(())
}

#[test]
fn two_tasks_on_two_idle_workers_run_at_the_same_time() -> Result<()> {
    let pool = pool(2)?;
    // Notebook In[39]: apply_async then apply must overlap. Both tasks wait on one
    // gate, so both can only be seen started if they run on different workers.
    let held = Held::new("spread");
    let a = held.submit(&pool, "a");
    let b = held.submit(&pool, "b");
    let both = held.started(2, Duration::from_secs(10));
    held.gate.open();
    assert!(
        both,
        "only {:?} started while a worker sat idle",
        held.names()
    );
    assert_eq!((a.get()?, b.get()?), (1, 1));

    // The same for a two-item map.
    let held = Held::new("spread-map");
    let m = pool.starmap_async(announce_then_wait, [held.args("a"), held.args("b")]);
    let both = held.started(2, Duration::from_secs(10));
    held.gate.open();
    assert!(
        both,
        "map: only {:?} started while a worker sat idle",
        held.names()
    );
    assert_eq!(m.get()?, [1, 1]);
    Ok(())
}

// ---------------------------------------------------------------------------
// apply_async and AsyncResult
// ---------------------------------------------------------------------------

#[test]
fn apply_async_get_returns_the_value() -> Result<()> {
    let pool = pool(2)?;
    let a = pool.apply_async(pow, (3, 4));
    let b = pool.apply_async(|| String::from("hola"), ());
    assert_eq!(b.get()?, "hola");
    assert_eq!(a.get()?, 81);
    Ok(())
}

#[test]
fn many_apply_async_results_each_get_their_own_value() -> Result<()> {
    let pool = pool(2)?;
    let results: Vec<_> = (0..200u64)
        .map(|i| pool.apply_async(square, (i,)))
        .collect();
    for (i, r) in results.into_iter().enumerate().rev() {
        assert_eq!(r.get()?, (i * i) as u64);
    }
    Ok(())
}

#[test]
fn get_timeout_expires_while_the_task_blocks_then_succeeds_later() -> Result<()> {
    let pool = pool(1)?;
    let gate = Gate::new();
    let r = pool.apply_async(gated, (gate.arg(), 42));
    let waited = Duration::from_millis(20);
    match r.get_timeout(waited) {
        Err(Error::WaitTimeout { waited: w }) => assert_eq!(w, waited),
        other => panic!("expected WaitTimeout, got {other:?}"),
    }
    // The task is untouched by the timeout: still running, still readable.
    assert!(!r.ready());
    assert_eq!(r.successful(), None);
    assert!(matches!(
        r.get_timeout(Duration::from_millis(1)),
        Err(Error::WaitTimeout { .. })
    ));
    gate.open();
    assert_eq!(r.get_timeout(HANG_GUARD)?, 42);
    assert!(matches!(
        r.get_timeout(Duration::ZERO),
        Err(Error::ResultTaken)
    ));
    Ok(())
}

#[test]
fn get_timeout_takes_the_value_so_a_second_read_is_result_taken() -> Result<()> {
    let pool = pool(1)?;
    let r = pool.apply_async(|| 5, ());
    assert_eq!(r.get_timeout(HANG_GUARD)?, 5);
    assert!(r.ready());
    assert!(matches!(
        r.get_timeout(Duration::from_millis(1)),
        Err(Error::ResultTaken)
    ));
    assert!(matches!(r.get(), Err(Error::ResultTaken)));
    Ok(())
}

#[test]
fn wait_and_wait_timeout_follow_the_task() -> Result<()> {
    let pool = pool(1)?;
    let gate = Gate::new();
    let r = pool.apply_async(gated, (gate.arg(), 5));
    assert!(!r.wait_timeout(Duration::from_millis(20)), "task is held");
    assert!(!r.ready());
    gate.open();
    r.wait();
    assert!(r.ready());
    assert!(
        r.wait_timeout(Duration::ZERO),
        "finished: no waiting needed"
    );
    // wait does not consume the value.
    r.wait();
    assert_eq!(r.get()?, 5);
    Ok(())
}

#[test]
fn ready_and_successful_track_the_outcome() -> Result<()> {
    let pool = pool(2)?;
    let gate = Gate::new();
    let pending = pool.apply_async(gated, (gate.arg(), 0));
    assert!(!pending.ready());
    assert_eq!(pending.successful(), None, "still running");
    gate.open();
    pending.wait();
    assert!(pending.ready());
    assert_eq!(pending.successful(), Some(true));

    let failed = pool.apply_async(panics, ("nope".to_string(),));
    failed.wait();
    assert!(failed.ready());
    assert_eq!(failed.successful(), Some(false));
    assert!(is_panicked_with(&failed.get(), "nope"));
    Ok(())
}

#[test]
fn successful_stays_false_after_get_timeout_took_an_error() -> Result<()> {
    let pool = pool(1)?;
    let failed = pool.apply_async(panics, ("bad".to_string(),));
    assert!(is_panicked_with(&failed.get_timeout(HANG_GUARD), "bad"));
    assert_eq!(failed.successful(), Some(false));
    Ok(())
}

#[test]
fn huge_timeouts_wait_like_no_timeout() -> Result<()> {
    let pool = pool(1)?;
    let r = pool.apply_async(|| 1, ());
    assert!(r.wait_timeout(Duration::MAX));
    assert_eq!(r.get_timeout(Duration::MAX)?, 1);
    Ok(())
}

#[test]
fn many_threads_waiting_at_once_each_get_their_own_values() -> Result<()> {
    let pool = Arc::new(pool(2)?);
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let pool = pool.clone();
            thread::spawn(move || -> Result<()> {
                for i in 0..300u64 {
                    let x = t * 1000 + i;
                    assert_eq!(pool.apply(square, (x,))?, x * x);
                    if i % 50 == 0 {
                        let v = pool.map(square, x..x + 20)?;
                        assert_eq!(v, (x..x + 20).map(|y| y * y).collect::<Vec<_>>());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("waiting thread panicked")?;
    }
    Ok(())
}

#[test]
fn one_pool_serves_many_submitting_threads_at_once() -> Result<()> {
    let pool = pool(2)?;
    thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || -> Result<u64> {
                    let v = pool.map(|(x, t): (u64, u64)| x + t, (0..1000).map(|x| (x, t)))?;
                    let a = pool.apply(|t: u64| t, (t,))?;
                    let i: u64 = pool.imap(|x: u64| x, 0..100).map(|r| r.unwrap()).sum();
                    Ok(v.iter().sum::<u64>() + a + i)
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let t = t as u64;
            let got = h.join().unwrap().unwrap();
            assert_eq!(got, 999 * 1000 / 2 + 1000 * t + t + 99 * 100 / 2);
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// callbacks
// ---------------------------------------------------------------------------

#[test]
fn on_success_runs_once_with_the_value_and_on_error_does_not_run() -> Result<()> {
    let pool = pool(2)?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (s, e, d) = (seen.clone(), errors.clone(), done.clone());
    let r = pool
        .apply_async(|x: u32| x + 1, (41,))
        .on_success(move |v| s.lock().unwrap().push(*v))
        .on_error(move |_| {
            e.fetch_add(1, Ordering::SeqCst);
        })
        .on_done(move |r| {
            assert!(r.is_ok());
            d.fetch_add(1, Ordering::SeqCst);
        });
    // Callbacks run before the outcome is published: once get returns, they have run.
    assert_eq!(r.get()?, 42);
    assert_eq!(*seen.lock().unwrap(), [42]);
    assert_eq!(errors.load(Ordering::SeqCst), 0);
    assert_eq!(done.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn on_error_runs_once_with_the_panic_and_on_success_does_not_run() -> Result<()> {
    let pool = pool(2)?;
    let messages = Arc::new(Mutex::new(Vec::new()));
    let successes = Arc::new(AtomicUsize::new(0));
    let (m, s) = (messages.clone(), successes.clone());
    let r = pool
        .apply_async(panics, ("callback test failure".to_string(),))
        .on_success(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .on_error(move |e| m.lock().unwrap().push(e.to_string()));
    r.wait();
    let messages = messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("callback test failure"),
        "{messages:?}"
    );
    assert_eq!(successes.load(Ordering::SeqCst), 0);
    assert!(is_panicked_with(&r.get(), "callback test failure"));
    Ok(())
}

#[test]
fn callbacks_run_once_in_the_parent_with_the_outcome() -> Result<()> {
    let pool = pool(2)?;
    let (tx, rx) = mpsc::channel::<String>();

    let (t1, t2, t3) = (tx.clone(), tx.clone(), tx.clone());
    let ok = pool
        .apply_async(square, (9,))
        .on_success(move |v| t1.send(format!("success {v}")).unwrap())
        .on_error(move |e| t2.send(format!("error {e}")).unwrap())
        .on_done(move |r| t3.send(format!("done {}", r.is_ok())).unwrap());
    ok.wait();
    let (t4, t5) = (tx.clone(), tx.clone());
    let bad = pool
        .apply_async(panics, ("ay".to_string(),))
        .on_success(move |v| t4.send(format!("success {v}")).unwrap())
        .on_error(move |e| t5.send(format!("error {e}")).unwrap());
    bad.wait();
    // Registered after completion: runs at once, exactly once.
    let t6 = tx.clone();
    let late = pool.apply_async(square, (3,));
    late.wait();
    let late = late.on_success(move |v| t6.send(format!("late {v}")).unwrap());
    drop(tx);
    let got: Vec<String> = rx.iter().collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], "success 81");
    assert_eq!(got[1], "done true");
    assert!(got[2].starts_with("error task panicked: ay"), "{got:?}");
    assert_eq!(got[3], "late 9");
    assert_eq!(ok.get()?, 81);
    assert!(is_panicked_with(&bad.get(), "ay"));
    assert_eq!(late.get()?, 9);
    Ok(())
}

#[test]
fn callbacks_registered_after_completion_run_at_once_exactly_once() -> Result<()> {
    let pool = pool(1)?;
    let count = Arc::new(AtomicUsize::new(0));
    let r = pool.apply_async(|| 9, ());
    r.wait();
    let (c1, c2, c3) = (count.clone(), count.clone(), count.clone());
    let r = r.on_done(move |v| {
        assert_eq!(*v.as_ref().unwrap(), 9);
        c1.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(count.load(Ordering::SeqCst), 1, "on_done ran immediately");
    let r = r.on_success(move |v| {
        assert_eq!(*v, 9);
        c2.fetch_add(10, Ordering::SeqCst);
    });
    assert_eq!(
        count.load(Ordering::SeqCst),
        11,
        "on_success ran immediately"
    );
    let r = r.on_error(move |_| {
        c3.fetch_add(100, Ordering::SeqCst);
    });
    assert_eq!(
        count.load(Ordering::SeqCst),
        11,
        "on_error not for a success"
    );
    // The value is still there after the callbacks saw it.
    assert_eq!(r.get()?, 9);
    assert_eq!(count.load(Ordering::SeqCst), 11, "nothing ran twice");

    let failed = pool.apply_async(panics, ("late".to_string(),));
    failed.wait();
    let c = count.clone();
    let failed = failed.on_error(move |e| {
        assert!(e.to_string().contains("late"));
        c.fetch_add(1000, Ordering::SeqCst);
    });
    assert_eq!(count.load(Ordering::SeqCst), 1011);
    assert!(is_panicked_with(&failed.get(), "late"));
    Ok(())
}

#[test]
fn callbacks_run_in_registration_order() -> Result<()> {
    let pool = pool(1)?;
    let gate = Gate::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut r = pool.apply_async(gated, (gate.arg(), 0));
    for i in 0..5 {
        let o = order.clone();
        r = r.on_done(move |_| o.lock().unwrap().push(i));
    }
    gate.open();
    r.get()?;
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    Ok(())
}

#[test]
fn callback_registered_while_another_callback_runs_is_not_lost() -> Result<()> {
    let pool = pool(1)?;
    let first_started = Latch::default();
    let first_release = Latch::default();
    let _release = OpenOnDrop(first_release.clone());
    let second_ran = Arc::new(AtomicUsize::new(0));
    // The task is held until its first callback is registered, so that callback runs
    // in the pool (registered after completion, it would run here and block us).
    let task_gate = Gate::new();
    let (started, release) = (first_started.clone(), first_release.clone());
    let r = pool
        .apply_async(gated, (task_gate.arg(), 1))
        .on_done(move |_| {
            started.open();
            release.wait();
        });
    task_gate.open();
    // The task is done and its first callback is running in the pool.
    first_started.wait();
    let s = second_ran.clone();
    let r = r.on_done(move |_| {
        s.fetch_add(1, Ordering::SeqCst);
    });
    first_release.open();
    assert_eq!(r.get()?, 1);
    assert_eq!(second_ran.load(Ordering::SeqCst), 1, "second callback lost");
    Ok(())
}

#[test]
fn panicking_callback_spoils_neither_the_result_nor_the_pool() -> Result<()> {
    let pool = pool(1)?;
    let after = Arc::new(AtomicUsize::new(0));
    let a = after.clone();
    let r = pool
        .apply_async(|| 3, ())
        .on_done(|_| panic!("callback blew up"))
        .on_done(move |_| {
            a.fetch_add(1, Ordering::SeqCst);
        });
    assert_eq!(r.get()?, 3);
    assert_eq!(after.load(Ordering::SeqCst), 1, "later callbacks still run");
    assert_eq!(
        pool.apply(|| 4, ())?,
        4,
        "the worker delivering it lives on"
    );
    Ok(())
}

#[test]
fn answers_keep_arriving_after_the_waiting_thread_stops_waiting() -> Result<()> {
    let pool = pool(1)?;
    let slow = pool.apply_async(sleep_ms, (200,));
    // This thread helps while it waits, then gives up with the slow task in flight:
    // the pool (on processes, the supervisor) must take the reading back.
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(1)),
        Err(Error::WaitTimeout { .. })
    ));
    let (tx, rx) = mpsc::channel();
    let slow = slow.on_done(move |r| {
        let _ = tx.send(r.as_ref().ok().copied());
    });
    // Nobody waits in get() now: only the pool can read the answer.
    assert_eq!(rx.recv_timeout(HANG_GUARD).ok(), Some(Some(200)));
    // Callbacks run before the value is stored (as in Python): wait for it.
    assert_eq!(slow.get()?, 200);
    // And after a helped round trip, a callback-only task is still answered.
    assert_eq!(pool.apply(square, (3,))?, 9);
    let (tx, rx) = mpsc::channel();
    let pending = pool.apply_async(square, (4,)).on_done(move |r| {
        let _ = tx.send(r.as_ref().ok().copied());
    });
    assert_eq!(rx.recv_timeout(HANG_GUARD).ok(), Some(Some(16)));
    drop(pending);
    Ok(())
}

#[test]
fn a_callback_run_by_a_waiting_thread_may_submit_more_work() -> Result<()> {
    let pool = Arc::new(pool(2)?);
    let (tx, rx) = mpsc::channel();
    let inner = pool.clone();
    let first = pool.apply_async(square, (5,)).on_success(move |v| {
        // Submitting (not waiting) from a callback is fine wherever it runs.
        let _ = tx.send(inner.apply_async(square, (*v,)));
    });
    assert_eq!(first.get()?, 25);
    let second = rx.recv_timeout(HANG_GUARD).expect("callback ran");
    assert_eq!(second.get()?, 625);
    Ok(())
}

#[test]
fn a_pool_dropped_by_its_own_callback_does_not_deadlock() -> Result<()> {
    let pool = Arc::new(pool(2)?);
    let (tx, rx) = mpsc::channel();
    let holder = Arc::new(Mutex::new(Some(pool.clone())));
    let in_callback = holder.clone();
    // The task waits until the test has let go of the pool, so the callback's drop
    // is the last one and runs in the pool.
    let gate = Gate::new();
    let r = pool
        .apply_async(|gate: String, x: u32| gated(gate, x) + 1, (gate.arg(), 1))
        .on_done(move |_| {
            drop(in_callback.lock().ok().and_then(|mut p| p.take()));
            let _ = tx.send(());
        });
    drop(pool);
    gate.open();
    rx.recv_timeout(Duration::from_secs(10))
        .expect("callback ran and the drop inside it returned");
    assert_eq!(r.get()?, 2);
    assert!(holder.lock().map(|p| p.is_none()).unwrap_or(false));
    Ok(())
}

// ---------------------------------------------------------------------------
// AsyncResult as a Future
// ---------------------------------------------------------------------------

#[test]
fn async_result_can_be_awaited() -> Result<()> {
    let pool = pool(2)?;
    let v = pollster::block_on(pool.apply_async(pow, (2, 10)))?;
    assert_eq!(v, 1024);
    let all = pollster::block_on(pool.map_async(|x: u32| x + 1, 0..100))?;
    assert_eq!(all, (1..101).collect::<Vec<_>>());
    let both = pollster::block_on(async {
        let a = pool.apply_async(|| 1, ()).await?;
        let b = pool.apply_async(|| 2, ()).await?;
        Ok::<_, Error>(a + b)
    })?;
    assert_eq!(both, 3);
    // Two in flight at once, awaited in turn.
    let a = pool.apply_async(square, (7,));
    let b = pool.apply_async(pow, (2, 5));
    let sum = pollster::block_on(async { Ok::<_, Error>(a.await? + b.await?) })?;
    assert_eq!(sum, 49 + 32);
    let failed = pollster::block_on(pool.apply_async(panics, ("awaited panic".to_string(),)));
    assert!(is_panicked_with(&failed, "awaited panic"));
    Ok(())
}

/// Sends on a channel each time it is woken.
struct ChannelWaker(Mutex<mpsc::Sender<()>>);

impl Wake for ChannelWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

#[test]
fn awaited_result_pending_then_woken_when_the_task_finishes() -> Result<()> {
    let pool = pool(1)?;
    let gate = Gate::new();
    let mut r = pool.apply_async(gated, (gate.arg(), 7));
    let (tx, woken) = mpsc::channel();
    let waker = Waker::from(Arc::new(ChannelWaker(Mutex::new(tx))));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut r).poll(&mut cx).is_pending());
    gate.open();
    woken
        .recv_timeout(HANG_GUARD)
        .expect("the waker is called when the task finishes");
    match Pin::new(&mut r).poll(&mut cx) {
        Poll::Ready(v) => assert_eq!(v?, 7),
        Poll::Pending => panic!("woken but still pending"),
    }

    // The same through an executor, the gate opened by another thread meanwhile.
    let gate = Gate::new();
    let held = pool.apply_async(gated, (gate.arg(), 11));
    let path = gate.arg();
    let opener = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        mark(path);
    });
    assert_eq!(pollster::block_on(held)?, 11);
    opener.join().unwrap();
    Ok(())
}

#[test]
fn terminated_result_awaited_as_future_is_terminated() -> Result<()> {
    let pool = pool(1)?;
    let gate = Gate::new();
    let r = pool.apply_async(gated, (gate.arg(), 0));
    pool.terminate();
    assert!(matches!(pollster::block_on(r), Err(Error::Terminated)));
    Ok(())
}

// ---------------------------------------------------------------------------
// imap / imap_unordered
// ---------------------------------------------------------------------------

/// Doubles; takes a millisecond on every seventh item, so results finish out of order.
fn double_now_and_then(x: u64) -> u64 {
    if x.is_multiple_of(7) {
        thread::sleep(Duration::from_millis(1));
    }
    x * 2
}

#[test]
fn imap_yields_results_in_input_order() -> Result<()> {
    for chunk in [None, Some(1), Some(3), Some(64)] {
        let mut b = Pool::builder().workers(2);
        if let Some(c) = chunk {
            b = b.chunksize(c);
        }
        let pool = build(b)?;
        let out: Vec<u64> = pool
            .imap(double_now_and_then, 0..500)
            .collect::<Result<_>>()?;
        assert_eq!(
            out,
            (0..500).map(|x| x * 2).collect::<Vec<_>>(),
            "chunk {chunk:?}"
        );
    }
    // Tasks of 0, 1 and 2 ms in turn.
    let pool = build(Pool::builder().workers(2).chunksize(1))?;
    let out: Vec<u64> = pool
        .imap(|x: u64| sleep_ms(x % 3) + x, 0..200)
        .collect::<Result<_>>()?;
    assert_eq!(out, (0..200).map(|x| x % 3 + x).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn imap_unordered_yields_the_same_multiset() -> Result<()> {
    let pool = build(Pool::builder().workers(2).chunksize(2))?;
    let input: Vec<u64> = (0..300).map(|x| x % 50).collect(); // repeats on purpose
    let mut out: Vec<u64> = pool
        .imap_unordered(
            |x: u64| {
                if x.is_multiple_of(5) {
                    thread::sleep(Duration::from_millis(1));
                }
                x + 1000
            },
            input.clone(),
        )
        .collect::<Result<_>>()?;
    let mut expected: Vec<u64> = input.iter().map(|x| x + 1000).collect();
    out.sort_unstable();
    expected.sort_unstable();
    assert_eq!(out, expected);
    Ok(())
}

/// How an endless-input test is set up.
#[derive(Clone, Copy)]
struct Endless {
    workers: usize,
    chunk: Option<usize>,
    prefetch: Option<usize>,
    unordered: bool,
    /// How many results are taken.
    take: usize,
}

/// Runs `imap` (or `imap_unordered`) over an endless counted input, takes the first
/// `take` results, and checks the input was pulled no further than the window.
fn endless_input_stays_bounded(e: Endless) -> Result<()> {
    let mut b = Pool::builder().workers(e.workers);
    if let Some(c) = e.chunk {
        b = b.chunksize(c);
    }
    if let Some(p) = e.prefetch {
        b = b.prefetch(p);
    }
    let pool = build(b)?;
    // imap's window (imap.rs): max(chunksize (default 1) × workers × (prefetch (default 2)
    // + 1), 64 × workers) tasks in flight at most. Input is pulled a whole chunk at a
    // time while fewer than `window` are in flight, so allow one chunk of slack.
    let chunk_len = e.chunk.unwrap_or(1);
    let window = (chunk_len * e.workers * (e.prefetch.unwrap_or(2) + 1)).max(64 * e.workers);
    let slack = window + chunk_len;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let input = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let f = |x: u64| x * 2;
    let it: Box<dyn Iterator<Item = Result<u64>>> = if e.unordered {
        Box::new(pool.imap_unordered(f, input))
    } else {
        Box::new(pool.imap(f, input))
    };
    let mut got = Vec::with_capacity(e.take);
    for (i, r) in it.take(e.take).enumerate() {
        got.push(r?);
        let p = pulled.load(Ordering::SeqCst);
        assert!(
            p <= i + slack,
            "after {} results {p} items pulled (window {window})",
            i + 1
        );
    }
    let p = pulled.load(Ordering::SeqCst);
    assert!(p >= e.take, "{p}");
    assert!(
        p <= e.take + slack,
        "pulled {p} > {} + window {window} + chunk",
        e.take
    );
    if e.unordered {
        got.sort_unstable();
        // Completion order: a prefix of the input, up to the window, was served.
        assert!(got.iter().all(|&y| y % 2 == 0 && y / 2 < p as u64));
        assert_eq!(
            got.iter().collect::<HashSet<_>>().len(),
            e.take,
            "no repeats"
        );
    } else {
        assert_eq!(got, (0..e.take as u64).map(|x| x * 2).collect::<Vec<_>>());
    }
    // The pool is fine after the lazy iterator was dropped mid-stream.
    assert_eq!(pool.apply(|| 7, ())?, 7);
    Ok(())
}

/// Two workers, default chunks and prefetch, 1000 results.
const ENDLESS: Endless = Endless {
    workers: 2,
    chunk: None,
    prefetch: None,
    unordered: false,
    take: 1000,
};

#[test]
fn imap_pulls_endless_input_only_as_results_are_consumed() -> Result<()> {
    endless_input_stays_bounded(ENDLESS)
}

#[test]
fn imap_unordered_pulls_endless_input_only_as_results_are_consumed() -> Result<()> {
    endless_input_stays_bounded(Endless {
        unordered: true,
        ..ENDLESS
    })
}

#[test]
fn imap_window_follows_chunksize_workers_and_prefetch() -> Result<()> {
    for (workers, chunk, prefetch, unordered) in
        [(2, 4, 1, false), (3, 2, 3, false), (1, 1, 1, true)]
    {
        endless_input_stays_bounded(Endless {
            workers,
            chunk: Some(chunk),
            prefetch: Some(prefetch),
            unordered,
            take: 1000,
        })?;
    }
    Ok(())
}

#[test]
fn imap_over_an_endless_iterator_stays_bounded() -> Result<()> {
    // A longer run: the bound holds however long the iteration goes on.
    for chunk in [1, 4] {
        endless_input_stays_bounded(Endless {
            chunk: Some(chunk),
            take: 5000,
            ..ENDLESS
        })?;
    }
    Ok(())
}

#[test]
fn imap_unordered_over_an_endless_iterator_stays_bounded() -> Result<()> {
    for chunk in [1, 3] {
        endless_input_stays_bounded(Endless {
            chunk: Some(chunk),
            unordered: true,
            take: 5000,
            ..ENDLESS
        })?;
    }
    Ok(())
}

#[test]
fn imap_is_lazy_until_iterated() -> Result<()> {
    let pool = pool(2)?;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let it = pool.imap(
        |x: u32| x,
        (0..).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    );
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "nothing pulled before next()"
    );
    drop(it);
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    Ok(())
}

#[test]
fn imap_reports_each_panic_in_place_and_continues() -> Result<()> {
    let pool = build(Pool::builder().workers(2).chunksize(3))?;
    let out: Vec<Result<u32>> = pool.imap(check, 0..30).collect();
    assert_eq!(out.len(), 30);
    for (i, r) in out.iter().enumerate() {
        if i % 10 == 4 {
            assert!(is_panicked_with(r, &format!("bad item {i}")), "{i}: {r:?}");
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u32)), "{i}");
        }
    }
    Ok(())
}

#[test]
fn imap_on_a_closed_pool_yields_closed_and_ends() -> Result<()> {
    let pool = pool(2)?;
    pool.close();
    let out: Vec<Result<u64>> = pool.imap(square, 0..).take(100_000).collect();
    assert!(!out.is_empty());
    assert!(
        out.len() < 100_000,
        "the endless imap must end on a closed pool"
    );
    assert!(
        out.iter().all(|r| matches!(r, Err(Error::Closed))),
        "{out:?}"
    );
    Ok(())
}

#[test]
fn imap_ends_after_terminate() -> Result<()> {
    let pool = pool(2)?;
    let pids = Under::pids(&pool);
    let mut it = pool.imap(|x: u64| x, 0..);
    for i in 0..10 {
        assert_eq!(it.next().unwrap()?, i);
    }
    pool.terminate();
    let rest: Vec<Result<u64>> = it.by_ref().take(10_000).collect();
    assert!(rest.len() < 10_000, "endless imap must end after terminate");
    // Results finished before terminate() still arrive, each in its input's place (a
    // later task can finish on one worker while an earlier one is cut short on the
    // other); whatever was in flight, or asked for afterwards, is Terminated — never a
    // worker death: the stream says why it ended.
    assert!(
        rest.iter().any(|r| matches!(r, Err(Error::Terminated))),
        "no Terminated among {} results",
        rest.len()
    );
    for (i, r) in rest.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, 10 + i as u64),
            Err(e) => assert!(matches!(e, Error::Terminated), "{e:?}"),
        }
    }
    assert!(it.next().is_none());
    drop(it);
    drop(pool);
    assert_reaped(&pids);
    Ok(())
}

#[test]
fn imap_blocked_in_another_thread_ends_when_the_pool_is_terminated() -> Result<()> {
    let pool = pool(1)?;
    let held = Held::new("imap-blocked");
    let (tx, rx) = mpsc::channel();
    thread::scope(|scope| {
        let args = held.args("started");
        let pool = &pool;
        scope.spawn(move || {
            let out: Vec<Result<u32>> = pool
                .imap(
                    |(s, g): (String, String)| announce_then_wait(s, g),
                    std::iter::repeat(args),
                )
                .take(1000)
                .collect();
            let _ = tx.send(out);
        });
        assert!(held.started(1, HANG_GUARD), "the first task started");
        pool.terminate();
        let out = rx.recv_timeout(HANG_GUARD);
        held.gate.open(); // whatever happened, let the scope end
        let out = out.expect("an imap blocked before terminate() must end");
        assert!(out.len() < 1000, "{} items", out.len());
        assert!(
            matches!(out.first(), Some(Err(Error::Terminated))),
            "{out:?}"
        );
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// panics and errors
// ---------------------------------------------------------------------------

#[test]
fn panicking_task_gives_panicked_and_the_same_worker_lives_on() -> Result<()> {
    let pool = pool(1)?;
    let before = pool.apply(worker, ())?;
    let r = pool.apply(|| -> u32 { panic!("kaboom {}", 42) }, ());
    match &r {
        Err(Error::Panicked { message, .. }) => assert!(message.contains("kaboom 42"), "{message}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    let static_msg = pool.apply(|| -> u32 { panic!("static text") }, ());
    assert!(is_panicked_with(&static_msg, "static text"));
    let r = pool.apply(panics, ("¡socorro!".to_string(),));
    assert!(is_panicked_with(&r, "¡socorro!"), "{r:?}");
    assert!(r.unwrap_err().to_string().contains("¡socorro!"));
    let after = pool.apply(worker, ())?;
    assert_eq!(before, after, "the panicking task's worker lives on");
    let pids = Under::pids(&pool);
    assert!(pids.is_empty() || pids == [before.0], "{pids:?}");
    assert_eq!(pool.map(|x: u8| x, 0..5)?, [0, 1, 2, 3, 4]);
    Ok(())
}

#[test]
fn panic_with_non_string_payload_is_still_panicked() -> Result<()> {
    let pool = pool(1)?;
    let r = pool.apply(|| -> u8 { std::panic::panic_any(17u32) }, ());
    assert!(matches!(r, Err(Error::Panicked { .. })), "{r:?}");
    assert_eq!(pool.apply(|| 1, ())?, 1);
    Ok(())
}

fn fails_at_seven(i: u32) -> u32 {
    assert!(i != 7, "task seven fails");
    i * 2
}

#[test]
fn a_panic_in_one_task_leaves_the_other_tasks_intact() -> Result<()> {
    let pool = pool(2)?;
    let results: Vec<_> = (0..20u32)
        .map(|i| pool.apply_async(fails_at_seven, (i,)))
        .collect();
    for (i, r) in results.into_iter().enumerate() {
        let r = r.get();
        if i == 7 {
            assert!(is_panicked_with(&r, "task seven fails"), "{r:?}");
        } else {
            assert_eq!(r?, i as u32 * 2);
        }
    }
    Ok(())
}

/// Fails at 30, late in time (after a pause), and at 70 at once.
fn fails_at_30_and_70(x: u32) -> u32 {
    if x == 30 {
        thread::sleep(Duration::from_millis(30));
        panic!("failed at {x}");
    }
    if x == 70 {
        panic!("failed at {x}");
    }
    x
}

#[test]
fn map_returns_the_first_error_by_input_position() -> Result<()> {
    let pool = build(Pool::builder().workers(2).chunksize(1))?;
    let e = pool
        .map(fails_at_30_and_70, 0..100)
        .expect_err("two tasks panic");
    assert_eq!(e.index(), Some(30), "the first by position: {e}");
    match e.inner() {
        Error::Panicked { message, .. } => {
            assert!(message.contains("failed at 30"), "{message}")
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(e.to_string().starts_with("task 30: "), "{e}");
    // The pool still works after a failed map.
    assert_eq!(pool.map(|x: u32| x, 0..3)?, [0, 1, 2]);
    Ok(())
}

#[test]
fn error_display_carries_the_panic_text() -> Result<()> {
    let pool = pool(1)?;
    let e = pool
        .apply(panics, ("visible text".to_string(),))
        .unwrap_err();
    assert!(e.to_string().contains("visible text"), "{e}");
    let cloned = e.clone();
    assert!(matches!(cloned, Error::Panicked { .. }));
    Ok(())
}

// ---------------------------------------------------------------------------
// life cycle: drop, close, join, terminate
// ---------------------------------------------------------------------------

/// Takes 50 ms, leaves its mark, returns `i × 10`.
fn slow_mark(path: String, i: u64) -> u64 {
    thread::sleep(Duration::from_millis(50));
    mark(path);
    i * 10
}

fn slow_square(x: u64) -> u64 {
    thread::sleep(Duration::from_millis(5));
    x * x
}

#[test]
fn dropped_pool_finishes_submitted_tasks_and_results_stay_readable() -> Result<()> {
    let pool = pool(2)?;
    let pids = Under::pids(&pool);
    let ran = TempDir::new("dropped");
    let results: Vec<_> = (0..6u64)
        .map(|i| pool.apply_async(slow_mark, (ran.file(&i.to_string()), i)))
        .collect();
    let mapped = pool.map_async(slow_square, 0..10);
    drop(pool); // close + join: Python's `with Pool()` loses these, fondo finishes them
    assert_eq!(ran.names().len(), 6, "drop waited for every task");
    for (i, r) in results.into_iter().enumerate() {
        assert!(r.ready(), "result {i} ready once drop returned");
        assert_eq!(r.get()?, i as u64 * 10);
    }
    assert!(mapped.ready());
    assert_eq!(mapped.get()?, (0..10).map(|x| x * x).collect::<Vec<_>>());
    // Worker processes are reaped by the drop itself, not later.
    for pid in pids {
        assert!(!Under::is_our_child(pid), "worker {pid} left behind");
    }
    Ok(())
}

#[test]
fn terminate_fails_pending_results_at_once() -> Result<()> {
    let pool = pool(2)?;
    let pids = Under::pids(&pool);
    let held = Held::new("terminate"); // opened only when the test ends: the tasks are stuck
    let running: Vec<_> = (0..2).map(|i| held.submit(&pool, &i.to_string())).collect();
    // Both workers are inside a task that does not end.
    assert!(held.started(2, HANG_GUARD));
    let queued_ran = TempDir::new("queued");
    let queued: Vec<_> = (0..4)
        .map(|i| pool.apply_async(mark, (queued_ran.file(&i.to_string()),)))
        .collect();
    let mapped = pool.starmap_async(gated, vec![(held.gate.arg(), 0); 4]);
    // Another thread blocked in get() is released too.
    let (tx, rx) = mpsc::channel();
    let blocked = pool.apply_async(gated, (held.gate.arg(), 0));
    let waiter = thread::spawn(move || tx.send(blocked.get()).unwrap());

    let started = Instant::now();
    pool.terminate();

    // "At once": every result is already decided when terminate() returns.
    assert!(
        running.iter().all(|r| r.ready()),
        "the running tasks' results are decided"
    );
    assert!(queued.iter().all(|r| r.ready()));
    assert!(mapped.ready());
    for r in running {
        assert_eq!(r.successful(), Some(false));
        assert!(matches!(r.get(), Err(Error::Terminated)));
    }
    for r in queued {
        assert!(matches!(r.get(), Err(Error::Terminated)));
    }
    assert!(matches!(mapped.get(), Err(Error::Terminated)));
    let from_thread = rx
        .recv_timeout(GONE_GUARD)
        .expect("blocked get() was released");
    assert!(
        matches!(from_thread, Err(Error::Terminated)),
        "{from_thread:?}"
    );
    waiter.join().unwrap();
    assert!(queued_ran.names().is_empty(), "queued tasks never ran");
    // Worker processes are killed and reaped; dropping the pool waits for no task.
    assert_reaped(&pids);
    drop(pool);
    assert!(
        started.elapsed() < GONE_GUARD,
        "terminate + drop do not hang"
    );
    Ok(())
}

#[test]
fn get_blocked_in_another_thread_returns_terminated_when_the_pool_is_terminated() -> Result<()> {
    let pool = pool(1)?;
    let held = Held::new("get-blocked");
    let running = held.submit(&pool, "started");
    let queued = pool.apply_async(|| 2, ());
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send((running.get(), queued.get()));
    });
    assert!(held.started(1, HANG_GUARD));
    pool.terminate();
    let (running, queued) = rx
        .recv_timeout(HANG_GUARD)
        .expect("a get() blocked before terminate() must return");
    assert!(matches!(running, Err(Error::Terminated)), "{running:?}");
    assert!(matches!(queued, Err(Error::Terminated)), "{queued:?}");
    waiter.join().unwrap();
    Ok(())
}

#[test]
fn dropping_a_terminated_pool_does_not_wait_for_a_stuck_task() -> Result<()> {
    let pool = pool(1)?;
    let held = Held::new("stuck");
    let stuck = held.submit(&pool, "started");
    assert!(held.started(1, HANG_GUARD));
    pool.terminate();
    let (tx, rx) = mpsc::channel();
    let dropper = thread::spawn(move || {
        drop(pool);
        let _ = tx.send(());
    });
    let dropped = rx.recv_timeout(HANG_GUARD);
    held.gate.open(); // the stuck task may end now, whatever happened
    dropped.expect("drop after terminate must not wait for a task that never ends");
    dropper.join().unwrap();
    assert!(matches!(stuck.get(), Err(Error::Terminated)));
    Ok(())
}

#[test]
fn submitting_after_terminate_is_an_error_not_a_hang() -> Result<()> {
    let pool = pool(2)?;
    pool.terminate();
    let r = pool.apply(square, (3,));
    assert!(matches!(r, Err(Error::Terminated | Error::Closed)), "{r:?}");
    let a = pool.apply_async(|| 1, ());
    assert!(a.ready());
    assert!(a.get().is_err());
    assert!(pool.map(|x: u8| x, 0..10).is_err());
    pool.terminate(); // twice is fine
    pool.join(); // and join after terminate does not wait for anything
    Ok(())
}

#[test]
fn submitting_after_close_is_closed_error() -> Result<()> {
    let pool = pool(2)?;
    assert_eq!(pool.apply(square, (3,))?, 9);
    pool.close();
    assert!(matches!(pool.apply(square, (3,)), Err(Error::Closed)));
    let a = pool.apply_async(square, (3,));
    assert!(a.ready(), "refused at once, not queued");
    assert!(matches!(a.get(), Err(Error::Closed)));
    assert!(matches!(pool.map(square, 0..10), Err(Error::Closed)));
    assert!(matches!(pool.starmap(pow, [(1, 2)]), Err(Error::Closed)));
    assert!(matches!(
        pool.map_async(|x: u8| x, 0..3).get(),
        Err(Error::Closed)
    ));
    // Closing an empty map's worth is still fine: nothing to refuse.
    assert!(pool.map(|x: u8| x, 0..0)?.is_empty());
    pool.close(); // twice is fine
    pool.join();
    Ok(())
}

#[test]
fn submitting_after_join_is_closed_error() -> Result<()> {
    let pool = pool(2)?;
    assert_eq!(pool.apply(|| 1, ())?, 1);
    pool.join();
    assert!(matches!(pool.apply(|| 1, ()), Err(Error::Closed)));
    Ok(())
}

#[test]
fn close_lets_submitted_tasks_finish() -> Result<()> {
    let pool = pool(2)?;
    let gate = Gate::new();
    let held = pool.apply_async(gated, (gate.arg(), 99));
    let queued: Vec<_> = (0..10u32)
        .map(|i| pool.apply_async(|i: u32| i, (i,)))
        .collect();
    pool.close();
    gate.open();
    assert_eq!(held.get()?, 99);
    for (i, r) in queued.into_iter().enumerate() {
        assert_eq!(r.get()?, i as u32);
    }
    pool.join();
    Ok(())
}

/// Takes 10 ms, then leaves its mark.
fn slow_mark_10ms(path: String) {
    thread::sleep(Duration::from_millis(10));
    mark(path);
}

#[test]
fn join_waits_for_every_submitted_task() -> Result<()> {
    let pool = pool(2)?;
    let done = TempDir::new("join");
    for i in 0..8 {
        // Results dropped unread: join must still wait for the tasks.
        drop(pool.apply_async(slow_mark_10ms, (done.file(&format!("a{i}")),)));
    }
    let mapped = pool.map_async(mark, (0..100).map(|i| done.file(&format!("m{i}"))));
    pool.join();
    assert_eq!(done.names().len(), 108);
    assert!(mapped.ready());
    pool.join(); // twice is fine
    Ok(())
}

#[test]
fn pools_can_be_created_and_dropped_repeatedly() -> Result<()> {
    let mut all = Vec::new();
    for i in 0..50u32 {
        let pool = pool(2)?;
        all.extend(Under::pids(&pool));
        assert_eq!(pool.apply(|i: u32| i, (i,))?, i);
    }
    for _ in 0..20 {
        let pool = pool(2)?;
        all.extend(Under::pids(&pool));
        pool.terminate();
    }
    // Each pool had worker processes of its own, and left none behind.
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
    assert_reaped(&all);
    Ok(())
}

// ---------------------------------------------------------------------------
// builder options
// ---------------------------------------------------------------------------

#[test]
fn zero_workers_is_a_config_error() {
    assert!(matches!(pool(0), Err(Error::Config(_))));
    assert!(matches!(
        build(Pool::builder().workers(0)),
        Err(Error::Config(_))
    ));
}

#[test]
fn other_zero_options_are_config_errors() {
    let w = || Pool::builder().workers(1);
    assert!(matches!(build(w().chunksize(0)), Err(Error::Config(_))));
    assert!(matches!(
        build(w().max_tasks_per_child(0)),
        Err(Error::Config(_))
    ));
    assert!(matches!(build(w().prefetch(0)), Err(Error::Config(_))));
}

#[test]
fn chunksize_1_and_1000_give_the_same_right_results() -> Result<()> {
    let expected: Vec<u64> = (0..5000).map(|x| x * x).collect();
    for chunk in [1, 7, 1000, 10_000] {
        let pool = build(Pool::builder().workers(2).chunksize(chunk))?;
        assert_eq!(pool.map(square, 0..5000)?, expected, "chunk {chunk}");
        let s = pool.starmap(|a: u64, b: u64| a * b, (0..5000).map(|x| (x, x)))?;
        assert_eq!(s, expected, "starmap chunk {chunk}");
    }
    Ok(())
}

#[test]
fn chunksize_sends_consecutive_runs_to_one_worker() -> Result<()> {
    let pool = build(Pool::builder().workers(2).chunksize(10))?;
    let ids = pool.map(
        |_: u32| {
            thread::sleep(Duration::from_micros(200));
            worker()
        },
        0..100,
    )?;
    for (c, chunk) in ids.chunks(10).enumerate() {
        assert!(
            chunk.iter().all(|id| *id == chunk[0]),
            "chunk {c} was split across workers"
        );
    }
    // One chunk covering everything runs on a single worker.
    let pool = build(Pool::builder().workers(2).chunksize(1000))?;
    let ids = pool.map(|_: u32| worker(), 0..1000)?;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1);
    Ok(())
}

fn panicking_initializer() {
    panic!("initializer failure");
}

#[test]
fn a_panicking_initializer_breaks_the_pool_and_no_task_runs_uninitialised() -> Result<()> {
    let pool = build(
        Pool::builder()
            .workers(1)
            .initializer(panicking_initializer),
    )?;
    for _ in 0..2 {
        match pool.apply(|| 5, ()) {
            Err(Error::InitializerFailed { message }) => {
                assert!(message.contains("initializer failure"), "{message}");
            }
            other => panic!("expected InitializerFailed, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn max_tasks_per_child_bounds_tasks_per_worker_with_several_workers() -> Result<()> {
    let pool = build(
        Pool::builder()
            .workers(2)
            .chunksize(1)
            .max_tasks_per_child(3),
    )?;
    let ids = pool.map(|x: u32| (x, worker()), 0..60)?;
    assert!(ids.iter().enumerate().all(|(i, (x, _))| *x == i as u32));
    let mut per_worker: BTreeMap<&(u32, String), usize> = BTreeMap::new();
    for (_, id) in &ids {
        *per_worker.entry(id).or_default() += 1;
    }
    assert!(per_worker.len() >= 20, "{} workers", per_worker.len());
    assert!(per_worker.len() > pool.workers());
    assert!(per_worker.values().all(|&n| n <= 3), "{per_worker:?}");
    // The recycled pool still works and drops cleanly.
    assert_eq!(pool.map(|x: u32| x + 1, 0..10)?.len(), 10);
    Ok(())
}

#[test]
fn workers_reports_the_worker_count() -> Result<()> {
    assert_eq!(pool(3)?.workers(), 3);
    assert_eq!(pool(1)?.workers(), 1);
    assert_eq!(build(Pool::builder().workers(5))?.workers(), 5);
    assert_eq!(build(Pool::builder())?.workers(), cpu_count());
    Ok(())
}

#[test]
fn more_workers_than_cores_still_run_everything() -> Result<()> {
    let n = 2 * cpu_count() + 1;
    let pool = build(Pool::builder().workers(n).chunksize(1))?;
    let ids = pool.map(
        |_: u32| {
            thread::sleep(Duration::from_millis(2));
            worker()
        },
        0..(4 * n as u32),
    )?;
    let distinct = ids.iter().collect::<HashSet<_>>().len();
    assert!(distinct >= 1 && distinct <= n, "{distinct} of {n}");
    Ok(())
}

#[test]
fn debug_impls_do_not_panic() -> Result<()> {
    let builder = Pool::builder().workers(2).chunksize(4);
    assert!(format!("{builder:?}").contains("Builder"));
    let pool = build(builder)?;
    let text = format!("{pool:?}");
    assert!(text.contains("Pool") && text.contains('2'), "{text}");
    let gate = Gate::new();
    let pending = pool.apply_async(gated, (gate.arg(), 0));
    assert!(format!("{pending:?}").contains("AsyncResult"));
    gate.open();
    pending.wait();
    assert!(!format!("{pending:?}").is_empty());
    for e in [
        Error::Terminated,
        Error::Closed,
        Error::ResultTaken,
        Error::Config("x".into()),
        Error::WaitTimeout {
            waited: Duration::from_millis(3),
        },
    ] {
        assert!(!format!("{e:?}").is_empty());
        assert!(!e.to_string().is_empty());
    }
    assert!(gate.is_open());
    Ok(())
}
