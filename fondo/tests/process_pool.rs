//! The process pool, method by method: the semantics of the thread pool
//! (`tests/thread_pool.rs`) on `Pool::processes`, plus what only processes give —
//! a task that aborts, segfaults, calls `exit` or is killed takes only itself down;
//! a task that hangs is timed out; an initializer runs once per worker process — and
//! `fondo::spawn`, the `multiprocessing.Process` of the notebook.
//!
//! Tasks run in other processes, so they are plain `fn`s or closures that capture
//! nothing, and they talk back only through their results or the file system. A task
//! that must still be running is held on a file [`Gate`] the test opens, never timed
//! with a sleep. No test asserts a wall-clock figure; the few time bounds are
//! generous "does not hang" guards. Every test leaves no worker process behind: pools
//! are dropped (close + join reaps the workers) and the tests that kill check it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{Gate, TempDir, alive, eventually, gated, proc_stat};

use fondo::{Error, ExitCause, Payload, Pool, Result};
use serde::{Deserialize, Serialize};

/// Generous guard against a hang: long enough never to trip on a slow machine.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// How long a killed worker may take to disappear ("within a second", with margin).
const GONE_GUARD: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Helpers: /proc
// ---------------------------------------------------------------------------

/// True while `pid` is a child of this process not yet reaped (running or zombie).
fn is_our_child(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|p| p.ppid == std::process::id())
}

/// Asserts every pid has been reaped (or is reaped within `GONE_GUARD`).
fn assert_reaped(pids: &[u32]) {
    for &pid in pids {
        assert!(
            eventually(GONE_GUARD, || !is_our_child(pid)),
            "worker {pid} is still a child of ours (state {:?})",
            proc_stat(pid)
        );
    }
}

fn is_panicked_with<T>(r: &Result<T>, text: &str) -> bool {
    matches!(r, Err(Error::Panicked { message, .. }) if message.contains(text))
}

// ---------------------------------------------------------------------------
// Tasks (they run in worker processes)
// ---------------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn pow(b: u64, e: u32) -> u64 {
    b.pow(e)
}

fn worker_pid() -> u32 {
    std::process::id()
}

fn worker_pid_of(_: u32) -> u32 {
    std::process::id()
}

fn parent_pid() -> u32 {
    std::os::unix::process::parent_id()
}

fn exe_path() -> String {
    std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sleep_ms(ms: u64) -> u64 {
    thread::sleep(Duration::from_millis(ms));
    ms
}

/// Creates `path`, then sleeps: tells the test the task has started.
fn announce_then_sleep(path: String, ms: u64) -> u64 {
    std::fs::File::create(path).expect("announce");
    sleep_ms(ms)
}

fn check(x: u32) -> u32 {
    assert!(x % 10 != 4, "bad item {x}");
    x
}

fn panics(message: String) -> u32 {
    panic!("{message}")
}

/// How a task takes its worker down.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Death {
    Abort,
    Exit(i32),
    Segv,
    Kill,
}

fn raise(signal: rustix::process::Signal) -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), signal);
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

fn die(how: Death) -> u32 {
    match how {
        Death::Abort => std::process::abort(),
        Death::Exit(code) => std::process::exit(code),
        Death::Segv => raise(rustix::process::Signal::SEGV),
        Death::Kill => raise(rustix::process::Signal::KILL),
    }
}

/// Takes a millisecond (not a "tiny" task, so the pool keeps its pipeline at the
/// `prefetch` depth) and aborts on 13.
fn abort_at_13(x: u32) -> u32 {
    thread::sleep(Duration::from_millis(1));
    if x == 13 {
        std::process::abort();
    }
    x
}

/// Aborts the first time (no marker yet), succeeds when run again.
fn abort_once(marker: String) -> u32 {
    if Path::new(&marker).exists() {
        return std::process::id();
    }
    std::fs::File::create(&marker).expect("marker");
    std::process::abort()
}

/// Leaves one file per attempt in `dir`, then aborts.
fn abort_always(dir: String) -> u32 {
    let file = Path::new(&dir).join(std::process::id().to_string());
    std::fs::File::create(file).expect("attempt file");
    std::process::abort()
}

/// Serialises every value but 13, like a type holding something (a handle, a
/// pointer) that cannot cross a process boundary for some values only.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct NoSend13(u32);

impl Serialize for NoSend13 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0 == 13 {
            Err(serde::ser::Error::custom("13 cannot be serialised"))
        } else {
            s.serialize_u32(self.0)
        }
    }
}

/// Serialises every value but refuses to deserialise 13, like a type that
/// validates what it reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct NoRead13(u32);

impl<'de> Deserialize<'de> for NoRead13 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match u32::deserialize(d)? {
            13 => Err(serde::de::Error::custom("13 cannot be deserialised")),
            v => Ok(NoRead13(v)),
        }
    }
}

fn take_no_send(x: NoSend13) -> u32 {
    x.0
}

fn give_no_send(x: u32) -> NoSend13 {
    NoSend13(x)
}

fn take_no_read(x: NoRead13) -> u32 {
    x.0
}

fn give_no_read(x: u32) -> NoRead13 {
    NoRead13(x)
}

// ---------------------------------------------------------------------------
// map / starmap / apply
// ---------------------------------------------------------------------------

#[test]
fn map_returns_results_in_input_order() -> Result<()> {
    let pool = Pool::processes(2)?;
    assert_eq!(
        pool.map(square, 0..1000)?,
        (0..1000).map(|x| x * x).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn map_keeps_input_order_when_later_items_finish_first() -> Result<()> {
    // Early items are the slow ones, so completion order is roughly reversed.
    let pool = Pool::builder().workers(2).chunksize(1).processes()?;
    let v = pool.map(|x: u64| sleep_ms(2 * (10 - x)), 0..10)?;
    assert_eq!(v, (0..10).map(|x| 2 * (10 - x)).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn map_of_100_000_tasks_returns_each_result_once_in_order() -> Result<()> {
    const N: u64 = 100_000;
    let pool = Pool::processes(2)?;
    let v = pool.map(|x: u64| x * 3 + 1, 0..N)?;
    assert_eq!(v.len(), N as usize);
    for (i, &y) in v.iter().enumerate() {
        assert_eq!(y, i as u64 * 3 + 1, "element {i}");
    }
    // Spread over both workers, not run in the parent.
    let pids: HashSet<u32> = pool.map(worker_pid_of, 0..N as u32)?.into_iter().collect();
    assert!(!pids.contains(&std::process::id()));
    assert!(pids.iter().all(|p| pool.pids().contains(p)), "{pids:?}");
    Ok(())
}

#[test]
fn empty_input_gives_empty_output_everywhere() -> Result<()> {
    let pool = Pool::processes(2)?;
    assert!(pool.map(|x: u32| x, Vec::new())?.is_empty());
    assert!(pool.map(square, 0..0)?.is_empty());
    assert!(pool.starmap(pow, Vec::new())?.is_empty());
    assert!(pool.map_async(square, 0..0).get()?.is_empty());
    assert_eq!(pool.imap(square, 0..0).count(), 0);
    assert_eq!(pool.imap_unordered(square, 0..0).count(), 0);
    Ok(())
}

#[test]
fn starmap_spreads_tuples_of_arity_0_1_2_3_6() -> Result<()> {
    let pool = Pool::processes(2)?;

    assert_eq!(pool.starmap(|| 7u8, [(), (), ()])?, [7, 7, 7]);
    assert_eq!(pool.starmap(|x: u32| x * 2, [(1,), (2,), (3,)])?, [2, 4, 6]);
    assert_eq!(
        pool.starmap(pow, [(2, 10), (3, 4), (10, 0)])?,
        [1024, 81, 1]
    );

    let three = pool.starmap(
        |a: i32, b: String, c: bool| if c { format!("{b}{a}") } else { b },
        [(1, "x".to_string(), true), (2, "ñandú".to_string(), false)],
    )?;
    assert_eq!(three, ["x1", "ñandú"]);

    let six = pool.starmap(
        |a: u8, b: u16, c: u32, d: u64, e: i32, f: i64| {
            i64::from(a) + i64::from(b) + i64::from(c) + d as i64 + i64::from(e) + f
        },
        [(1, 2, 3, 4, 5, 6), (10, 20, 30, 40, 50, -150)],
    )?;
    assert_eq!(six, [21, 0]);

    // Owned, non-Copy data crosses both ways; order holds as for map.
    let many = pool.starmap(
        |v: Vec<u64>, s: String| format!("{s}{}", v.iter().sum::<u64>()),
        (0..500u64).map(|i| (vec![i; 3], format!("{i}:"))),
    )?;
    assert_eq!(
        many,
        (0..500u64)
            .map(|i| format!("{i}:{}", 3 * i))
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn apply_calls_the_function_with_the_tuple_spread_in_a_worker() -> Result<()> {
    let pool = Pool::processes(1)?;
    assert_eq!(pool.apply(pow, (2, 10))?, 1024);
    assert_eq!(pool.apply(|| "none".to_string(), ())?, "none");
    assert_eq!(pool.apply(|x: i8| -x, (5,))?, -5);
    assert_eq!(
        pool.apply(|a: u8, b: u8, c: u8| [a, b, c], (1, 2, 3))?,
        [1, 2, 3]
    );
    let there = pool.apply(worker_pid, ())?;
    assert_ne!(there, std::process::id());
    assert_eq!(pool.pids(), [there]);
    Ok(())
}

#[test]
fn workers_are_this_executable_with_pids_of_their_own() -> Result<()> {
    let pool = Pool::processes(3)?;
    let pids = pool.pids();
    assert_eq!(pids.len(), 3);
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 3, "{pids:?}");
    assert!(!pids.contains(&0) && !pids.contains(&std::process::id()));
    assert!(pids.iter().all(|&p| is_our_child(p) && alive(p)));
    // Every task ran in one of them; each is a child of this process running the
    // very same executable (re-executed, not forked into something else).
    let seen: HashSet<u32> = pool.map(worker_pid_of, 0..300)?.into_iter().collect();
    assert!(
        seen.is_subset(&pids.iter().copied().collect()),
        "{seen:?} ⊄ {pids:?}"
    );
    assert_eq!(pool.apply(parent_pid, ())?, std::process::id());
    assert_eq!(pool.apply(exe_path, ())?, exe_path());
    drop(pool);
    assert_reaped(&pids);
    Ok(())
}

#[test]
fn workers_are_named_so_in_ps() -> Result<()> {
    let pool = Pool::processes(2)?;
    for pid in pool.pids() {
        // `ps -o comm` (not "exe", after /proc/self/exe); `ps -o args` keeps the
        // program's name, " [fondo worker]" after it.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
        assert_eq!(comm.trim_end(), "fondo-worker");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let arg0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        assert!(
            String::from_utf8_lossy(arg0).ends_with(" [fondo worker]"),
            "{:?}",
            String::from_utf8_lossy(&cmdline)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// apply_async and AsyncResult
// ---------------------------------------------------------------------------

#[test]
fn apply_async_get_returns_the_value() -> Result<()> {
    let pool = Pool::processes(2)?;
    let a = pool.apply_async(pow, (3, 4));
    let b = pool.apply_async(|| String::from("hola"), ());
    assert_eq!(b.get()?, "hola");
    assert_eq!(a.get()?, 81);
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
    let pool = Pool::processes(1)?;
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
    gate.open();
    assert_eq!(r.get_timeout(HANG_GUARD)?, 42);
    assert!(matches!(
        r.get_timeout(Duration::ZERO),
        Err(Error::ResultTaken)
    ));
    Ok(())
}

#[test]
fn wait_wait_timeout_ready_and_successful_follow_the_task() -> Result<()> {
    let pool = Pool::processes(2)?;
    let gate = Gate::new();
    let r = pool.apply_async(gated, (gate.arg(), 5));
    assert!(!r.wait_timeout(Duration::from_millis(20)), "task is held");
    assert!(!r.ready());
    assert_eq!(r.successful(), None, "still running");
    gate.open();
    r.wait();
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    assert!(
        r.wait_timeout(Duration::ZERO),
        "finished: no waiting needed"
    );
    r.wait(); // wait does not consume the value
    assert_eq!(r.get()?, 5);

    let failed = pool.apply_async(panics, ("nope".to_string(),));
    failed.wait();
    assert!(failed.ready());
    assert_eq!(failed.successful(), Some(false));
    assert!(is_panicked_with(&failed.get(), "nope"));
    Ok(())
}

#[test]
fn callbacks_run_once_in_the_parent_with_the_outcome() -> Result<()> {
    let pool = Pool::processes(2)?;
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
fn async_result_is_a_future() -> Result<()> {
    let pool = Pool::processes(2)?;
    let a = pool.apply_async(square, (7,));
    let b = pool.apply_async(pow, (2, 5));
    let sum = pollster::block_on(async { Ok::<_, Error>(a.await? + b.await?) })?;
    assert_eq!(sum, 49 + 32);

    // Pending when first polled, woken when the worker answers.
    let gate = Gate::new();
    let held = pool.apply_async(gated, (gate.arg(), 11));
    let opener = {
        let path = gate.arg();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            std::fs::File::create(path).expect("open gate");
        })
    };
    assert_eq!(pollster::block_on(held)?, 11);
    opener.join().unwrap();

    let failed = pool.apply_async(panics, ("awaited".to_string(),));
    assert!(is_panicked_with(&pollster::block_on(failed), "awaited"));
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
    let pool = Pool::builder().workers(1).chunksize(1).processes()?;
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

/// Announces it has started, then waits on the gate.
fn announce_then_wait(started: String, gate: String) -> u32 {
    std::fs::File::create(started).expect("announce");
    gated(gate, 1)
}

#[test]

fn two_tasks_on_two_idle_workers_run_at_the_same_time() -> Result<()> {
    let pool = Pool::processes(2)?;
    // Notebook In[39]: apply_async then apply must overlap. Both tasks wait on one
    // gate, so both can only be seen started if they run on different workers.
    let dir = TempDir::new("spread");
    let gate = Gate::new();
    let a = pool.apply_async(announce_then_wait, (dir.file("a"), gate.arg()));
    let b = pool.apply_async(announce_then_wait, (dir.file("b"), gate.arg()));
    let both = eventually(Duration::from_secs(10), || dir.names().len() == 2);
    gate.open();
    assert!(
        both,
        "only {:?} started while a worker sat idle",
        dir.names()
    );
    assert_eq!((a.get()?, b.get()?), (1, 1));

    // The same for a two-item map.
    let dir = TempDir::new("spread-map");
    let gate = Gate::new();
    let m = pool.starmap_async(
        announce_then_wait,
        [(dir.file("a"), gate.arg()), (dir.file("b"), gate.arg())],
    );
    let both = eventually(Duration::from_secs(10), || dir.names().len() == 2);
    gate.open();
    assert!(
        both,
        "map: only {:?} started while a worker sat idle",
        dir.names()
    );
    assert_eq!(m.get()?, [1, 1]);
    Ok(())
}

// ---------------------------------------------------------------------------
// imap / imap_unordered
// ---------------------------------------------------------------------------

#[test]
fn imap_yields_results_in_input_order() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(1).processes()?;
    let out: Vec<u64> = pool
        .imap(|x: u64| sleep_ms(x % 3) + x, 0..200)
        .collect::<Result<_>>()?;
    assert_eq!(out, (0..200).map(|x| x % 3 + x).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn imap_unordered_yields_the_same_multiset() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(2).processes()?;
    let input: Vec<u64> = (0..300).map(|i| i % 50).collect();
    let mut out: Vec<u64> = pool
        .imap_unordered(|x: u64| x + 1000, input.clone())
        .collect::<Result<_>>()?;
    let mut expected: Vec<u64> = input.iter().map(|x| x + 1000).collect();
    out.sort_unstable();
    expected.sort_unstable();
    assert_eq!(out, expected);
    Ok(())
}

/// How far ahead of the consumer `imap` may pull its input, with 2 workers and
/// chunks of at most 4: a fixed bound (the pool keeps every worker's pipeline full,
/// 64 tasks a worker at most today), however long the iteration runs.
const IMAP_LEAD_BOUND: usize = 512;

/// Runs `imap` (or `imap_unordered`) over an endless counted input, takes the
/// first 5000 results, and checks the input never ran more than a fixed bound
/// ahead of what was consumed.
fn endless_input_stays_bounded(chunk: usize, unordered: bool) -> Result<()> {
    const TAKE: usize = 5000;
    let pool = Pool::builder().workers(2).chunksize(chunk).processes()?;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let input = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let it: Box<dyn Iterator<Item = Result<u64>>> = if unordered {
        Box::new(pool.imap_unordered(|x: u64| x * 2, input))
    } else {
        Box::new(pool.imap(|x: u64| x * 2, input))
    };
    let mut got = Vec::with_capacity(TAKE);
    for (i, r) in it.take(TAKE).enumerate() {
        got.push(r?);
        let p = pulled.load(Ordering::SeqCst);
        assert!(
            p <= i + IMAP_LEAD_BOUND,
            "after {} results {p} items pulled",
            i + 1
        );
    }
    let p = pulled.load(Ordering::SeqCst);
    assert!((TAKE..=TAKE + IMAP_LEAD_BOUND).contains(&p), "pulled {p}");
    if unordered {
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), TAKE, "no repeats");
        assert!(got.iter().all(|&y| y % 2 == 0 && y / 2 < p as u64));
    } else {
        assert_eq!(got, (0..TAKE as u64).map(|x| x * 2).collect::<Vec<_>>());
    }
    // The pool is fine after the lazy iterator was dropped mid-stream.
    assert_eq!(pool.apply(|| 7, ())?, 7);
    Ok(())
}

#[test]
fn imap_over_an_endless_iterator_stays_bounded() -> Result<()> {
    endless_input_stays_bounded(1, false)?;
    endless_input_stays_bounded(4, false)
}

#[test]
fn imap_unordered_over_an_endless_iterator_stays_bounded() -> Result<()> {
    endless_input_stays_bounded(1, true)?;
    endless_input_stays_bounded(3, true)
}

#[test]
fn imap_reports_each_panic_in_place_and_continues() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(3).processes()?;
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
fn imap_ends_after_terminate() -> Result<()> {
    let pool = Pool::processes(2)?;
    let pids = pool.pids();
    let mut it = pool.imap(|x: u64| x, 0..);
    for i in 0..10 {
        assert_eq!(it.next().unwrap()?, i);
    }
    pool.terminate();
    let rest: Vec<Result<u64>> = it.by_ref().take(10_000).collect();
    assert!(rest.len() < 10_000, "endless imap must end after terminate");
    // Tasks finished before terminate() may still come back Ok (in input order, a
    // later task can finish on one worker while an earlier one is cut short on the
    // other); everything cut short is `Terminated`, never a worker death.
    assert!(
        rest.iter().any(|r| matches!(r, Err(Error::Terminated))),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .all(|r| matches!(r, Ok(_) | Err(Error::Terminated))),
        "{rest:?}"
    );
    assert!(it.next().is_none());
    drop(it);
    drop(pool);
    assert_reaped(&pids);
    Ok(())
}

// ---------------------------------------------------------------------------
// Panics and worker deaths
// ---------------------------------------------------------------------------

#[test]
fn panicking_task_gives_panicked_and_the_same_worker_lives_on() -> Result<()> {
    let pool = Pool::builder().workers(1).processes()?;
    let before = pool.apply(worker_pid, ())?;
    let r = pool.apply(panics, ("¡socorro!".to_string(),));
    assert!(is_panicked_with(&r, "¡socorro!"), "{r:?}");
    assert!(r.unwrap_err().to_string().contains("¡socorro!"));
    assert_eq!(
        pool.apply(worker_pid, ())?,
        before,
        "the same process lives on"
    );
    assert_eq!(pool.pids(), [before]);
    Ok(())
}

/// One worker; a task kills it in the way given; the task gets `WorkerDied` with
/// that worker's PID and the cause, and a new worker with a new PID takes over.
fn death_is_reported_and_the_worker_replaced(how: Death, expected: ExitCause) -> Result<()> {
    let pool = Pool::builder().workers(1).processes()?;
    let before = pool.apply(worker_pid, ())?;
    assert_eq!(pool.pids(), [before]);
    match pool.apply(die, (how,)) {
        Err(Error::WorkerDied { pid, cause }) => {
            assert_eq!(pid, before, "the PID of the worker that died");
            assert_eq!(cause, expected);
        }
        other => panic!("{how:?}: expected WorkerDied, got {other:?}"),
    }
    let after = pool.apply(worker_pid, ())?;
    assert_ne!(after, before, "a new worker process");
    assert_eq!(pool.pids(), [after]);
    assert_reaped(&[before]);
    assert_eq!(
        pool.map(square, 0..100)?,
        (0..100).map(|x| x * x).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn abort_gives_worker_died_signal_6_and_a_new_worker() -> Result<()> {
    death_is_reported_and_the_worker_replaced(Death::Abort, ExitCause::Signal(6))
}

#[test]
fn exit_gives_worker_died_code_and_a_new_worker() -> Result<()> {
    death_is_reported_and_the_worker_replaced(Death::Exit(3), ExitCause::Code(3))
}

#[test]
fn segfault_gives_worker_died_signal_11_and_a_new_worker() -> Result<()> {
    death_is_reported_and_the_worker_replaced(Death::Segv, ExitCause::Signal(11))
}

#[test]
fn sigkill_gives_worker_died_signal_9_and_a_new_worker() -> Result<()> {
    death_is_reported_and_the_worker_replaced(Death::Kill, ExitCause::Signal(9))
}

#[test]
fn a_worker_death_fails_only_its_task_and_every_other_task_completes() -> Result<()> {
    // prefetch(1) and millisecond tasks: the dying worker holds no unread task
    // frames; see the ignored test below for what happens when it does.
    let pool = Pool::builder()
        .workers(2)
        .chunksize(1)
        .prefetch(1)
        .processes()?;
    let before = pool.pids();
    let out: Vec<Result<u32>> = pool.imap(abort_at_13, 0..40).collect();
    assert_eq!(out.len(), 40);
    for (i, r) in out.iter().enumerate() {
        if i == 13 {
            assert!(
                matches!(r, Err(Error::WorkerDied { pid, cause: ExitCause::Signal(6) }) if before.contains(pid)),
                "{r:?}"
            );
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u32)), "{i}: {r:?}");
        }
    }
    let after = pool.pids();
    assert_eq!(after.len(), 2);
    assert_ne!(after, before, "the dead worker was replaced");
    // map reports the failure as its error, with the input's position; the pool
    // still works afterwards.
    let e = pool.map(abort_at_13, 0..20).expect_err("task 13 dies");
    assert_eq!(e.index(), Some(13), "{e}");
    assert!(matches!(e.inner(), Error::WorkerDied { .. }), "{e}");
    assert_eq!(pool.map(abort_at_13, 0..13)?, (0..13).collect::<Vec<_>>());
    Ok(())
}

/// Announces it has started, waits on the gate, then aborts.
fn announce_gated_abort(started: String, gate: String) -> u32 {
    std::fs::File::create(started).expect("announce");
    gated(gate, 0);
    std::process::abort()
}

#[test]

fn a_worker_dying_with_an_unread_task_frame_still_gives_worker_died() -> Result<()> {
    let pool = Pool::builder().workers(1).processes()?;
    let dir = TempDir::new("unread");
    let gate = Gate::new();
    let dying = pool.apply_async(announce_gated_abort, (dir.file("started"), gate.arg()));
    assert!(
        eventually(HANG_GUARD, || dir.names().len() == 1),
        "task started"
    );
    // Sent to the busy worker at once (pipeline depth 2); it never reads it.
    let next = pool.apply_async(square, (3,));
    gate.open();
    let r = dying.get();
    assert!(
        matches!(
            r,
            Err(Error::WorkerDied {
                cause: ExitCause::Signal(6),
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(next.get()?, 9, "the unread task ran on the replacement");
    Ok(())
}

#[test]
fn retries_rerun_a_task_whose_worker_died() -> Result<()> {
    let dir = TempDir::new("retry");
    let pool = Pool::builder().workers(1).retries(1).processes()?;
    let first = pool.pids()[0];
    let ran_on = pool.apply(abort_once, (dir.file("marker"),))?;
    assert_ne!(
        ran_on, first,
        "the second run was on the replacement worker"
    );
    assert_eq!(dir.names(), ["marker"], "the first run did happen");

    // Retries are bounded: 1 + 2 attempts, then WorkerDied.
    let dir2 = TempDir::new("retry-always");
    let pool2 = Pool::builder().workers(1).retries(2).processes()?;
    let r = pool2.apply(abort_always, (dir2.0.to_string_lossy().into_owned(),));
    assert!(
        matches!(
            r,
            Err(Error::WorkerDied {
                cause: ExitCause::Signal(6),
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(dir2.names().len(), 3, "three attempts: {:?}", dir2.names());
    assert_eq!(pool2.apply(|| 1, ())?, 1);
    Ok(())
}

#[test]
fn task_timeout_gives_timeout_replaces_the_worker_and_later_tasks_succeed() -> Result<()> {
    let limit = Duration::from_millis(300);
    let pool = Pool::builder()
        .workers(1)
        .chunksize(1)
        .task_timeout(limit)
        .processes()?;
    let before = pool.apply(worker_pid, ())?;
    let started = Instant::now();
    let r = pool.apply(sleep_ms, (60_000,));
    assert!(
        matches!(r, Err(Error::Timeout { limit: l }) if l == limit),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the 60 s task was cut short"
    );
    let after = pool.apply(worker_pid, ())?;
    assert_ne!(after, before, "the timed-out worker was replaced");
    assert_reaped(&[before]);
    // A task under the limit is untouched; those queued behind a hung one still run.
    assert_eq!(pool.apply(sleep_ms, (1,))?, 1);
    let out: Vec<Result<u64>> = pool.imap(sleep_ms, [60_000, 1, 2, 3]).collect();
    assert!(matches!(out[0], Err(Error::Timeout { .. })), "{:?}", out[0]);
    assert_eq!(
        out[1..]
            .iter()
            .map(|r| r.as_ref().ok().copied())
            .collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Serialisation failures are per task
// ---------------------------------------------------------------------------

#[test]
fn unserialisable_argument_fails_only_its_task() -> Result<()> {
    for chunk in [1, 4] {
        let pool = Pool::builder().workers(2).chunksize(chunk).processes()?;
        let out: Vec<Result<u32>> = pool.imap(take_no_send, (0..20).map(NoSend13)).collect();
        for (i, r) in out.iter().enumerate() {
            if i == 13 {
                assert!(
                    matches!(
                        r,
                        Err(Error::Serialization {
                            what: Payload::Arguments,
                            ..
                        })
                    ),
                    "chunk {chunk}: {r:?}"
                );
            } else {
                assert_eq!(
                    r.as_ref().ok(),
                    Some(&(i as u32)),
                    "chunk {chunk}, {i}: {r:?}"
                );
            }
        }
        assert!(matches!(
            pool.apply(take_no_send, (NoSend13(13),)),
            Err(Error::Serialization { .. })
        ));
        let e = pool
            .map(take_no_send, (10..15).map(NoSend13))
            .expect_err("13 cannot be sent");
        assert_eq!(e.index(), Some(3), "{e}");
        assert!(matches!(e.inner(), Error::Serialization { .. }), "{e}");
        assert_eq!(pool.apply(take_no_send, (NoSend13(12),))?, 12);
    }
    Ok(())
}

#[test]
fn unserialisable_result_fails_only_its_task() -> Result<()> {
    for chunk in [1, 4] {
        let pool = Pool::builder().workers(2).chunksize(chunk).processes()?;
        let before = pool.pids();
        let out: Vec<Result<NoSend13>> = pool.imap(give_no_send, 0..20).collect();
        for (i, r) in out.iter().enumerate() {
            if i == 13 {
                assert!(
                    matches!(
                        r,
                        Err(Error::Serialization {
                            what: Payload::Result,
                            ..
                        })
                    ),
                    "chunk {chunk}: {r:?}"
                );
            } else {
                assert_eq!(
                    r.as_ref().ok(),
                    Some(&NoSend13(i as u32)),
                    "chunk {chunk}, {i}"
                );
            }
        }
        assert_eq!(pool.pids(), before, "no worker died over it");
        assert_eq!(pool.apply(give_no_send, (12,))?, NoSend13(12));
    }
    Ok(())
}

#[test]
fn undeserialisable_argument_fails_its_task() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(1).processes()?;
    let r = pool.apply(take_no_read, (NoRead13(13),));
    assert!(
        matches!(
            r,
            Err(Error::Serialization {
                what: Payload::Arguments,
                ..
            })
        ),
        "{r:?}"
    );
    let r = pool.apply(give_no_read, (13,));
    assert!(
        matches!(
            r,
            Err(Error::Serialization {
                what: Payload::Result,
                ..
            })
        ),
        "{r:?}"
    );
    let out: Vec<Result<u32>> = pool.imap(take_no_read, (0..20).map(NoRead13)).collect();
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r.is_ok(), i != 13, "{i}: {r:?}");
    }
    assert_eq!(pool.apply(take_no_read, (NoRead13(12),))?, 12);
    Ok(())
}

#[test]

fn undeserialisable_argument_in_a_batch_fails_only_its_task() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(4).processes()?;
    let out: Vec<Result<u32>> = pool.imap(take_no_read, (0..20).map(NoRead13)).collect();
    for (i, r) in out.iter().enumerate() {
        assert_eq!(
            r.as_ref().ok().copied(),
            (i != 13).then_some(i as u32),
            "{i}: {r:?}"
        );
    }
    Ok(())
}

/// Aborts its worker on 14; 13 does not even decode.
fn take_no_read_abort_14(x: NoRead13) -> u32 {
    if x.0 == 14 {
        std::process::abort();
    }
    x.0
}

#[test]
fn a_death_after_an_undecodable_argument_blames_the_task_that_died() -> Result<()> {
    // One job of four: 12, 13 (does not decode), 14 (kills the worker), 15.
    let pool = Pool::builder().workers(1).chunksize(4).processes()?;
    let out: Vec<Result<u32>> = pool
        .imap(take_no_read_abort_14, (12..16).map(NoRead13))
        .collect();
    assert_eq!(out[0].as_ref().ok(), Some(&12), "{out:?}");
    assert!(
        matches!(
            &out[1],
            Err(Error::Serialization {
                what: Payload::Arguments,
                ..
            })
        ),
        "13 fails to decode, it did not kill anything: {out:?}"
    );
    assert!(matches!(&out[2], Err(Error::WorkerDied { .. })), "{out:?}");
    assert_eq!(out[3].as_ref().ok(), Some(&15), "{out:?}");
    Ok(())
}

#[test]

fn undeserialisable_result_in_a_batch_fails_only_its_task() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(4).processes()?;
    let out: Vec<Result<NoRead13>> = pool.imap(give_no_read, 0..20).collect();
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r.is_ok(), i != 13, "{i}: {r:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// initializer, max_tasks_per_child
// ---------------------------------------------------------------------------

/// Where a worker's initializer leaves its mark: a directory named after the pool's
/// process (the worker's parent), so no environment variable needs setting in this
/// multi-threaded test process.
fn init_dir(tag: &str, owner: u32) -> PathBuf {
    std::env::temp_dir().join(format!("fondo-pp-init-{tag}-{owner}"))
}

/// Appends a line to a file named by the worker's PID.
fn mark_init(tag: &str) {
    let dir = init_dir(tag, std::os::unix::process::parent_id());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(std::process::id().to_string()))
        .expect("init mark");
    writeln!(f, "init").expect("write init mark");
}

fn init_once() {
    mark_init("once");
}

fn init_recycle() {
    mark_init("recycle");
}

/// The task's worker PID and whether its initializer had run before the task.
fn pid_and_initialised(_: u32) -> (u32, bool) {
    let dir = init_dir("once", std::os::unix::process::parent_id());
    (
        std::process::id(),
        dir.join(std::process::id().to_string()).exists(),
    )
}

/// Per worker PID (file name), how many times its initializer ran.
fn init_counts(dir: &TempDir) -> BTreeMap<u32, usize> {
    dir.names()
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.0.join(&name)).expect("read mark");
            (name.parse().expect("pid file name"), text.lines().count())
        })
        .collect()
}

#[test]
fn initializer_runs_once_per_worker_process_before_its_tasks() -> Result<()> {
    let dir = TempDir::at(init_dir("once", std::process::id()));
    let pool = Pool::builder()
        .workers(2)
        .chunksize(1)
        .initializer(init_once)
        .processes()?;
    let pids = pool.pids();
    let out = pool.map(pid_and_initialised, 0..50)?;
    assert!(out.iter().all(|&(_, init)| init), "{out:?}");
    drop(pool);
    let counts = init_counts(&dir);
    let expected: BTreeMap<u32, usize> = pids.iter().map(|&p| (p, 1)).collect();
    assert_eq!(counts, expected, "once in each of {pids:?}");
    Ok(())
}

#[test]
fn max_tasks_per_child_recycles_workers() -> Result<()> {
    let dir = TempDir::at(init_dir("recycle", std::process::id()));
    let pool = Pool::builder()
        .workers(2)
        .chunksize(1)
        .max_tasks_per_child(2)
        .initializer(init_recycle)
        .processes()?;
    let pids = pool.map(worker_pid_of, 0..20)?;
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for &p in &pids {
        *per_pid.entry(p).or_default() += 1;
    }
    assert!(per_pid.len() > 2, "distinct workers: {per_pid:?}");
    assert!(per_pid.values().all(|&n| n <= 2), "{per_pid:?}");
    drop(pool);
    // Each new worker ran the initializer once, and none is left behind.
    let counts = init_counts(&dir);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert!(
        per_pid.keys().all(|p| counts.contains_key(p)),
        "{counts:?} / {per_pid:?}"
    );
    assert_reaped(&counts.keys().copied().collect::<Vec<_>>());
    Ok(())
}

// ---------------------------------------------------------------------------
// drop, close, terminate
// ---------------------------------------------------------------------------

fn slow_square(x: u64) -> u64 {
    thread::sleep(Duration::from_millis(100));
    x * x
}

#[test]
fn dropped_pool_finishes_pending_apply_async_and_results_stay_readable() -> Result<()> {
    let pool = Pool::processes(2)?;
    let pids = pool.pids();
    let results: Vec<_> = (0..6u64)
        .map(|i| pool.apply_async(slow_square, (i,)))
        .collect();
    let mapped = pool.map_async(slow_square, 10..14);
    drop(pool); // Python's `with` block would lose these; here drop = close + join.
    for (i, r) in results.into_iter().enumerate() {
        assert!(r.ready(), "finished before the drop returned");
        assert_eq!(r.get()?, (i * i) as u64);
    }
    assert_eq!(mapped.get()?, [100, 121, 144, 169]);
    // Reaped by the drop itself, not later.
    for pid in pids {
        assert!(
            !is_our_child(pid),
            "worker {pid} left behind: {:?}",
            proc_stat(pid)
        );
    }
    Ok(())
}

#[test]
fn terminate_fails_pending_results_at_once_and_kills_the_workers() -> Result<()> {
    let pool = Pool::processes(2)?;
    let pids = pool.pids();
    let announced = TempDir::new("terminate");
    let results: Vec<_> = (0..4)
        .map(|i| {
            pool.apply_async(
                announce_then_sleep,
                (announced.file(&i.to_string()), 60_000),
            )
        })
        .collect();
    let mapped = pool.map_async(sleep_ms, vec![60_000; 4]);
    // Both workers are inside a 60 s sleep.
    assert!(eventually(HANG_GUARD, || announced.names().len() == 2));
    // Another thread blocked in get() is released too.
    let (tx, rx) = mpsc::channel();
    let blocked = pool.apply_async(sleep_ms, (60_000,));
    let waiter = thread::spawn(move || tx.send(blocked.get()).unwrap());

    let started = Instant::now();
    pool.terminate();
    for r in results {
        assert!(r.ready(), "terminate fails pending results at once");
        assert!(matches!(r.get(), Err(Error::Terminated)));
    }
    assert!(matches!(
        mapped.get_timeout(GONE_GUARD),
        Err(Error::Terminated)
    ));
    let from_thread = rx
        .recv_timeout(GONE_GUARD)
        .expect("blocked get() was released");
    assert!(
        matches!(from_thread, Err(Error::Terminated)),
        "{from_thread:?}"
    );
    waiter.join().unwrap();
    assert_reaped(&pids);
    drop(pool);
    assert!(
        started.elapsed() < GONE_GUARD,
        "terminate + drop do not hang"
    );
    assert!(pids.iter().all(|&p| !is_our_child(p)));
    Ok(())
}

#[test]
fn submitting_after_close_is_closed_and_after_terminate_an_error() -> Result<()> {
    let pool = Pool::processes(2)?;
    assert_eq!(pool.apply(square, (3,))?, 9);
    pool.close();
    assert!(matches!(pool.apply(square, (3,)), Err(Error::Closed)));
    let a = pool.apply_async(square, (3,));
    assert!(a.ready(), "refused at once, not queued");
    assert!(matches!(a.get(), Err(Error::Closed)));
    assert!(matches!(pool.map(square, 0..10), Err(Error::Closed)));
    assert!(matches!(pool.starmap(pow, [(1, 2)]), Err(Error::Closed)));
    // An endless imap on a closed pool ends, every item refused.
    let out: Vec<Result<u64>> = pool.imap(square, 0..).take(100_000).collect();
    assert!(!out.is_empty() && out.len() < 100_000, "{}", out.len());
    assert!(out.iter().all(|r| matches!(r, Err(Error::Closed))));
    pool.close(); // twice is fine
    pool.join();

    let pool = Pool::processes(1)?;
    pool.terminate();
    let r = pool.apply(square, (3,));
    assert!(matches!(r, Err(Error::Terminated | Error::Closed)), "{r:?}");
    pool.terminate(); // twice is fine
    pool.join(); // and join after terminate waits for nothing
    Ok(())
}

#[test]
fn pools_can_be_created_and_dropped_repeatedly_leaving_no_process() -> Result<()> {
    let mut all = Vec::new();
    for i in 0..10u64 {
        let pool = Pool::processes(2)?;
        all.extend(pool.pids());
        assert_eq!(pool.apply(square, (i,))?, i * i);
    }
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 20);
    assert!(all.iter().all(|&p| !is_our_child(p)));
    Ok(())
}

#[test]
fn a_worker_can_spawn_a_process_of_its_own() -> Result<()> {
    fn spawn_grandchild() -> (u32, u32, u32) {
        let child = fondo::spawn(parent_pid, ()).expect("spawn from a worker");
        let pid = child.pid();
        (
            std::process::id(),
            pid,
            child.join().expect("join grandchild"),
        )
    }
    let pool = Pool::processes(1)?;
    let (worker, grandchild, its_parent) = pool.apply(spawn_grandchild, ())?;
    assert_eq!(pool.pids(), [worker]);
    assert_ne!(grandchild, worker);
    assert_eq!(its_parent, worker);
    Ok(())
}

// ---------------------------------------------------------------------------
// Output and parent death, seen from a second copy of this test binary
// ---------------------------------------------------------------------------

/// Set to a helper's name to make that helper test act; unset, helpers do nothing.
const HELPER_ENV: &str = "FONDO_PROCESS_POOL_HELPER";

/// Runs this test binary again with only `helper` selected and acting.
fn helper_command(helper: &str) -> Command {
    common::helper_command(HELPER_ENV, helper)
}

fn shout(i: u32) -> u32 {
    println!("tarea {i}: hola, ñandú ✓");
    // One write per line: unbuffered stderr would split `eprintln!` into pieces that
    // two worker processes can interleave, which says nothing about fondo.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("tarea {i}: por stderr\n").as_bytes(),
    );
    i * 10
}

#[test]
fn helper_prints_from_tasks() -> Result<()> {
    if std::env::var_os(HELPER_ENV).is_none_or(|h| h != "helper_prints_from_tasks") {
        return Ok(());
    }
    let pool = Pool::builder().workers(2).chunksize(1).processes()?;
    let results = pool.map(shout, 0..20)?;
    println!("resultados: {results:?}");
    Ok(())
}

#[test]
fn a_tasks_println_reaches_stdout_untouched() {
    let out = helper_command("helper_prints_from_tasks")
        .output()
        .expect("run helper");
    let stdout = String::from_utf8(out.stdout).expect("stdout is clean UTF-8, no wire bytes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    for i in 0..20 {
        let want = format!("tarea {i}: hola, ñandú ✓");
        assert_eq!(
            lines.iter().filter(|l| **l == want).count(),
            1,
            "{want:?} once, whole, in:\n{stdout}"
        );
        assert!(
            stderr
                .lines()
                .any(|l| l == format!("tarea {i}: por stderr")),
            "{stderr}"
        );
    }
    assert_eq!(
        lines.iter().filter(|l| l.contains("tarea")).count(),
        20,
        "{stdout}"
    );
    let expected: Vec<u32> = (0..20).map(|i| i * 10).collect();
    assert!(
        lines.contains(&format!("resultados: {expected:?}").as_str()),
        "{stdout}"
    );
}

#[test]
fn helper_pool_then_hang() -> Result<()> {
    if std::env::var_os(HELPER_ENV).is_none_or(|h| h != "helper_pool_then_hang") {
        return Ok(());
    }
    let pool = Pool::processes(2)?;
    println!("pids {:?}", pool.pids());
    std::io::stdout().flush()?;
    let _busy = pool.apply_async(sleep_ms, (60_000,));
    thread::sleep(Duration::from_secs(60)); // the test kills us long before
    Ok(())
}

#[test]
fn workers_exit_when_the_parent_dies() {
    let mut parent = helper_command("helper_pool_then_hang")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run helper");
    let stdout = parent.stdout.take().expect("piped");
    let pids: Vec<u32> = BufReader::new(stdout)
        .lines()
        .map_while(std::result::Result::ok)
        .find_map(|l| {
            l.split_once("pids [").map(|(_, rest)| {
                rest.trim_end_matches(']')
                    .split(", ")
                    .map(|p| p.parse().expect("pid"))
                    .collect()
            })
        })
        .unwrap_or_default();
    let _ = parent.kill();
    let _ = parent.wait();
    assert_eq!(pids.len(), 2, "helper reported its workers");
    for pid in pids {
        assert!(
            eventually(GONE_GUARD, || !alive(pid)),
            "orphaned worker {pid} still running"
        );
    }
}

// ---------------------------------------------------------------------------
// fondo::spawn, the notebook's multiprocessing.Process
// ---------------------------------------------------------------------------

#[test]
fn spawned_children_have_their_own_pids_and_return_values() -> Result<()> {
    let a = fondo::spawn(worker_pid, ())?;
    let b = fondo::spawn(pow, (2, 10))?;
    let (pa, pb) = (a.pid(), b.pid());
    assert!(pa != pb && pa != std::process::id() && pb != std::process::id());
    assert!(is_our_child(pa) || !alive(pa));
    assert_eq!(a.join()?, pa, "the value is the child's own PID");
    assert_eq!(b.join()?, 1024);
    assert!(
        !is_our_child(pa) && !is_our_child(pb),
        "joined children are reaped"
    );
    Ok(())
}

#[test]
fn spawned_child_panic_is_panicked_and_deaths_are_worker_died() -> Result<()> {
    let r = fondo::spawn(panics, ("¡ay!".to_string(),))?.join();
    assert!(is_panicked_with(&r, "¡ay!"), "{r:?}");
    for (how, expected) in [
        (Death::Abort, ExitCause::Signal(6)),
        (Death::Exit(3), ExitCause::Code(3)),
        (Death::Segv, ExitCause::Signal(11)),
    ] {
        let child = fondo::spawn(die, (how,))?;
        let pid = child.pid();
        match child.join() {
            Err(Error::WorkerDied { pid: p, cause }) => {
                assert_eq!((p, cause), (pid, expected), "{how:?}");
            }
            other => panic!("{how:?}: expected WorkerDied, got {other:?}"),
        }
        assert!(!is_our_child(pid));
    }
    Ok(())
}

#[test]
fn join_timeout_expires_then_join_succeeds() -> Result<()> {
    let gate = Gate::new();
    let mut child = fondo::spawn(gated, (gate.arg(), 7))?;
    let waited = Duration::from_millis(30);
    match child.join_timeout(waited) {
        Err(Error::WaitTimeout { waited: w }) => assert_eq!(w, waited),
        other => panic!("expected WaitTimeout, got {other:?}"),
    }
    assert!(alive(child.pid()), "the child runs on after a join timeout");
    gate.open();
    assert_eq!(child.join_timeout(HANG_GUARD)?, 7);
    Ok(())
}

#[test]
fn killed_child_gives_worker_died_signal_9() -> Result<()> {
    let dir = TempDir::new("kill");
    let mut child = fondo::spawn(announce_then_sleep, (dir.file("started"), 60_000))?;
    let pid = child.pid();
    assert!(
        eventually(HANG_GUARD, || dir.names().len() == 1),
        "child started"
    );
    child.kill()?;
    let r = child.join();
    assert!(
        matches!(r, Err(Error::WorkerDied { pid: p, cause: ExitCause::Signal(9) }) if p == pid),
        "{r:?}"
    );
    assert!(!is_our_child(pid));
    Ok(())
}

#[test]

fn child_killed_at_once_gives_worker_died() -> Result<()> {
    for _ in 0..5 {
        let mut child = fondo::spawn(sleep_ms, (60_000,))?;
        child.kill()?;
        let r = child.join();
        assert!(
            matches!(
                r,
                Err(Error::WorkerDied {
                    cause: ExitCause::Signal(9),
                    ..
                })
            ),
            "{r:?}"
        );
    }
    Ok(())
}

#[test]
fn dropping_a_child_waits_for_it() -> Result<()> {
    let child = fondo::spawn(sleep_ms, (50,))?;
    let pid = child.pid();
    drop(child);
    assert!(!is_our_child(pid), "no zombie left behind");
    Ok(())
}

/// Tasks of different pools and children run side by side without mixing results.
#[test]
fn pools_and_children_in_parallel_do_not_mix_results() -> Result<()> {
    let results = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..4u64)
        .map(|k| {
            let results = results.clone();
            thread::spawn(move || -> Result<()> {
                let pool = Pool::processes(1)?;
                let v = pool.map(square, k * 100..k * 100 + 100)?;
                let c = fondo::spawn(pow, (k, 2))?.join()?;
                results.lock().unwrap().push((k, v, c));
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap()?;
    }
    let mut results = results.lock().unwrap().clone();
    results.sort();
    for (k, v, c) in results {
        assert_eq!(
            v,
            (k * 100..k * 100 + 100).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(c, k * k);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Threads waiting in get() read the workers' answers themselves
// ---------------------------------------------------------------------------

#[test]
fn many_threads_waiting_at_once_each_get_their_own_values() -> Result<()> {
    let pool = Arc::new(Pool::processes(2)?);
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
fn answers_keep_arriving_after_the_waiting_thread_stops_waiting() -> Result<()> {
    let pool = Pool::processes(1)?;
    let slow = pool.apply_async(sleep_ms, (200,));
    // This thread helps while it waits, then gives up with the slow task in flight:
    // the supervisor must take the reading back.
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(1)),
        Err(Error::WaitTimeout { .. })
    ));
    let (tx, rx) = mpsc::channel();
    let slow = slow.on_done(move |r| {
        let _ = tx.send(r.as_ref().ok().copied());
    });
    // Nobody waits in get() now: only the supervisor can read the answer.
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
    let pool = Arc::new(Pool::processes(2)?);
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
