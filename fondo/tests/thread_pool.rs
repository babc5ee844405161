//! The thread pool (`Pool::threads`): the pool contract of `tests/contract`, run
//! here on threads (`thread_pool::contract::…`), plus what only threads give —
//! closures that capture the caller's data, tasks on named worker threads of this
//! process, a running task that terminate cannot kill, thread-local initializers.
//!
//! Every test asserts behaviour, never a wall-clock figure: tasks that must still be
//! running are held on a latch the test opens, not timed with sleeps.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use fondo::{Builder, Error, Pool, Result, Threads};

#[path = "common/gate.rs"]
mod gate;

mod contract;
use contract::{Latch, OpenOnDrop, Start};

/// The backend this binary runs the shared contract on.
type Under = Threads;

impl Start for Threads {
    fn with_workers(n: usize) -> Result<Pool<Threads>> {
        Pool::threads(n)
    }

    fn start(builder: Builder) -> Result<Pool<Threads>> {
        builder.threads()
    }
}

// ---------------------------------------------------------------------------
// closures, worker threads
// ---------------------------------------------------------------------------

#[test]
fn map_of_a_million_tasks_runs_each_once_and_keeps_order() -> Result<()> {
    const N: u64 = 1_000_000;
    let calls = Arc::new(AtomicUsize::new(0));
    let pool = Pool::threads(2)?;
    let counted = calls.clone();
    let v = pool.map(
        move |x: u64| {
            counted.fetch_add(1, Ordering::Relaxed);
            x * 3 + 1
        },
        0..N,
    )?;
    assert_eq!(v.len(), N as usize);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        N as usize,
        "each task runs once"
    );
    assert!(v.iter().enumerate().all(|(i, &y)| y == i as u64 * 3 + 1));
    assert_eq!(v.iter().sum::<u64>(), 3 * (N * (N - 1) / 2) + N);
    Ok(())
}

#[test]
fn apply_runs_on_a_worker_thread() -> Result<()> {
    let pool = Pool::threads(1)?;
    let here = thread::current().id();
    let there = pool.apply(|| thread::current().id(), ())?;
    assert_ne!(here, there);
    let name = pool.apply(|| thread::current().name().map(str::to_owned), ())?;
    assert!(name.is_some());
    Ok(())
}

#[test]
fn capturing_closures_run_on_threads() -> Result<()> {
    let pool = Pool::threads(2)?;
    let offset = 100u64;
    let label = String::from("item");
    let table: Arc<BTreeMap<u64, &'static str>> =
        Arc::new([(1, "uno"), (2, "dos"), (3, "tres")].into_iter().collect());
    let sink = Arc::new(Mutex::new(Vec::new()));

    assert_eq!(pool.map(move |x: u64| x + offset, 0..3)?, [100, 101, 102]);
    let t = table.clone();
    assert_eq!(
        pool.map(move |k: u64| t.get(&k).copied().unwrap_or("?"), 0..4)?,
        ["?", "uno", "dos", "tres"]
    );
    let l = label.clone();
    assert_eq!(pool.apply(move |n: u8| format!("{l}-{n}"), (7,))?, "item-7");
    let s = sink.clone();
    pool.map(move |x: u32| s.lock().unwrap().push(x), 0..20)?;
    let mut pushed = sink.lock().unwrap().clone();
    pushed.sort_unstable();
    assert_eq!(pushed, (0..20).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_task_running_through_terminate_cannot_overwrite_terminated() -> Result<()> {
    let pool = Pool::threads(1)?;
    let started = Latch::default();
    let release = Latch::default();
    let finished = Latch::default();
    let _release = OpenOnDrop(release.clone());
    let (s, r, f) = (started.clone(), release.clone(), finished.clone());
    // Blocks until the test releases it, after terminate(): a thread cannot be killed.
    let running = pool.apply_async(
        move || {
            s.open();
            r.wait();
            f.open();
            1
        },
        (),
    );
    started.wait();
    let queued_ran = Arc::new(AtomicUsize::new(0));
    let q = queued_ran.clone();
    let queued = pool.apply_async(
        move || {
            q.fetch_add(1, Ordering::SeqCst);
            2
        },
        (),
    );
    pool.terminate();
    assert!(running.ready() && queued.ready(), "decided at once");

    // Let the stuck thread finish: its late value does not overwrite Terminated, and
    // the queued task was dropped, never run. (The pause only gives a wrong
    // implementation the chance to show itself; passing does not depend on it.)
    release.open();
    finished.wait();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(running.successful(), Some(false));
    assert!(matches!(running.get(), Err(Error::Terminated)));
    assert!(matches!(queued.get(), Err(Error::Terminated)));
    assert_eq!(
        queued_ran.load(Ordering::SeqCst),
        0,
        "queued task never ran"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// builder options on threads: no task timeout, initializers per thread
// ---------------------------------------------------------------------------

#[test]
fn task_timeout_on_threads_is_a_config_error() {
    let r = Pool::builder()
        .workers(2)
        .task_timeout(Duration::from_secs(1))
        .threads();
    match r {
        Err(Error::Config(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Config, got {other:?}"),
    }
    assert!(matches!(
        Pool::builder().task_timeout(Duration::ZERO).threads(),
        Err(Error::Config(_))
    ));
}

static INIT_ONCE_CALLS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static INITIALIZED_HERE: Cell<bool> = const { Cell::new(false) };
}

fn count_init_once() {
    INIT_ONCE_CALLS.fetch_add(1, Ordering::SeqCst);
    INITIALIZED_HERE.with(|c| c.set(true));
}

#[test]
fn initializer_runs_once_per_worker_before_its_tasks() -> Result<()> {
    let pool = Pool::builder()
        .workers(3)
        .chunksize(1)
        .initializer(count_init_once)
        .threads()?;
    let flags = pool.map(|_: u32| INITIALIZED_HERE.with(Cell::get), 0..300)?;
    assert!(
        flags.iter().all(|&f| f),
        "every task ran on an initialized thread"
    );
    pool.join();
    assert_eq!(INIT_ONCE_CALLS.load(Ordering::SeqCst), 3);
    Ok(())
}

static INIT_RECYCLE_CALLS: AtomicUsize = AtomicUsize::new(0);

fn count_init_recycle() {
    INIT_RECYCLE_CALLS.fetch_add(1, Ordering::SeqCst);
    INITIALIZED_HERE.with(|c| c.set(true));
}

#[test]
fn max_tasks_per_child_recycles_the_worker_thread() -> Result<()> {
    let pool = Pool::builder()
        .workers(1)
        .chunksize(1)
        .max_tasks_per_child(2)
        .initializer(count_init_recycle)
        .threads()?;
    let seen: Vec<(ThreadId, bool)> = pool.map(
        |_: u32| (thread::current().id(), INITIALIZED_HERE.with(Cell::get)),
        0..10,
    )?;
    pool.join();
    let ids: Vec<ThreadId> = seen.iter().map(|s| s.0).collect();
    assert!(
        seen.iter().all(|s| s.1),
        "each new thread ran the initializer"
    );
    // One worker at a time, two tasks each: tasks 2k and 2k+1 share a fresh thread.
    for (k, pair) in ids.chunks(2).enumerate() {
        assert_eq!(pair[0], pair[1], "pair {k}");
    }
    let distinct = ids.iter().collect::<HashSet<_>>().len();
    assert_eq!(distinct, 5, "10 tasks / 2 per thread");
    let inits = INIT_RECYCLE_CALLS.load(Ordering::SeqCst);
    // A 6th thread may start when the 5th retires before the pool is closed.
    assert!((5..=6).contains(&inits), "{inits} initializer calls");
    Ok(())
}
