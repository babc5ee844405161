//! The failure contract (README.md, "The failure contract"), line by line, then under load:
//! kill storms, exactly-once delivery while workers are being killed, timeouts,
//! serialisation failures both ways, terminate, close.
//!
//! Trial counts scale with the environment: a quick default, the full counts with
//! `FONDO_FULL=1` (see RELIABILITY.md for what CI runs). Every trial that could hang
//! runs under a [`Watchdog`] that aborts the whole test binary with a clear message
//! instead of letting `cargo test` hang; single results are read with `get_timeout`
//! so a hang fails the one test instead. Set `FONDO_SEED` to replay a random run.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{TRIAL_LIMIT, Watchdog, alive, gone_within, must_get, settled_pids, sigkill};

use fondo::{Error, ExitCause, Payload, Pool, Processes};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------
// Harness: scale, randomness, watchdog, signals
// ---------------------------------------------------------------------------

/// The full counts run with `FONDO_FULL=1`, and in CI (`CI=true`): the whole file
/// then takes about a minute on 2 cores. Otherwise a quick but still meaningful run.
fn full() -> bool {
    let set = |k: &str, v: &str| std::env::var(k).is_ok_and(|x| x == v);
    set("FONDO_FULL", "1") || set("CI", "true")
}

/// Picks a count for the current scale.
fn count(quick: usize, full_count: usize) -> usize {
    if full() { full_count } else { quick }
}

/// A small xorshift generator: no dependency, and a seed printed for replay.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed = common::seed();
        eprintln!("{test}: FONDO_SEED={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn processes(n: usize) -> Pool<Processes> {
    Pool::processes(n).expect("start a process pool")
}

// ---------------------------------------------------------------------------
// Tasks (plain fns: they run in worker processes)
// ---------------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn identity(x: u64) -> u64 {
    x
}

fn nap(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    3 * x + 1
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn my_pid() -> u32 {
    std::process::id()
}

fn panic_on_3(x: u64) -> u64 {
    assert!(x != 3, "three is right out");
    x
}

/// Dies in the way named by `how` when `x == 7`; otherwise returns `x`.
fn die_at_7((how, x): (u8, u64)) -> u64 {
    if x == 7 {
        die(how);
    }
    x
}

fn die(how: u8) {
    match how {
        0 => sigkill(std::process::id()),
        1 => std::process::abort(),
        2 => {
            // A real segfault: a write to an address that is never mapped.
            // SAFETY: deliberately invalid; the process dies on it, which is the point.
            unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u64>(16), 1) }
        }
        3 => std::process::exit(3),
        4 => {
            std::hint::black_box(recurse(0));
        }
        _ => unreachable!(),
    }
}

/// Overflows the stack.
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 256]);
    if n == u64::MAX {
        return 0;
    }
    recurse(n + 1).wrapping_add(frame[n as usize % 256])
}

fn forever(_: u64) -> u64 {
    loop {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn forever_at_5(x: u64) -> u64 {
    if x == 5 {
        forever(x);
    }
    x
}

/// Dies on the first attempt only: the first run creates `marker`.
fn die_once(marker: String, x: u64) -> u64 {
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .is_ok()
    {
        sigkill(std::process::id());
        std::thread::sleep(Duration::from_secs(10));
    }
    x
}

fn die_always(x: u64) -> u64 {
    sigkill(std::process::id());
    std::thread::sleep(Duration::from_secs(10));
    x
}

fn marker(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("fondo-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// Contract: a task panics
// ---------------------------------------------------------------------------

#[test]
fn processes_panic_is_panicked_and_worker_lives_on() {
    let pool = processes(1);
    let before = settled_pids(&pool);
    let r = pool.apply(panic_on_3, (3,));
    assert!(
        matches!(&r, Err(Error::Panicked { message, .. }) if message.contains("three is right out")),
        "{r:?}"
    );
    let outcomes: Vec<_> = pool.imap(panic_on_3, 0..8).collect();
    for (i, o) in outcomes.iter().enumerate() {
        if i == 3 {
            assert!(matches!(o, Err(Error::Panicked { .. })), "{o:?}");
        } else {
            assert_eq!(o.as_ref().ok(), Some(&(i as u64)));
        }
    }
    assert_eq!(
        pool.pids(),
        before,
        "a panic must not cost the worker its life"
    );
    assert_eq!(pool.apply(my_pid, ()).unwrap(), before[0]);
}

#[test]
fn threads_panic_is_panicked_and_worker_lives_on() {
    let pool = Pool::threads(1).unwrap();
    let tid = pool.apply(|| format!("{:?}", std::thread::current().id()), ());
    let r = pool.apply(panic_on_3, (3,));
    assert!(
        matches!(&r, Err(Error::Panicked { message, .. }) if message.contains("three is right out")),
        "{r:?}"
    );
    let outcomes: Vec<_> = pool.imap(panic_on_3, 0..8).collect();
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 7);
    assert!(matches!(outcomes[3], Err(Error::Panicked { .. })));
    let again = pool.apply(|| format!("{:?}", std::thread::current().id()), ());
    assert_eq!(tid.unwrap(), again.unwrap(), "the worker thread lives on");
}

// ---------------------------------------------------------------------------
// Contract: a worker dies (SIGKILL, abort, segfault, exit, stack overflow)
// ---------------------------------------------------------------------------

/// Runs 0..20 through `imap` with chunks of 4 on 2 workers, task 7 dying as `how`
/// says: task 7 gets `WorkerDied` from the worker that ran it, every other task its
/// value, the dead worker is replaced and the pool runs more work.
fn worker_death(how: u8, cause_ok: impl Fn(ExitCause) -> bool) {
    let pool = Pool::builder().workers(2).chunksize(4).processes().unwrap();
    let before = settled_pids(&pool);
    let wd = Watchdog::new();
    let outcomes: Vec<_> = wd.guard("worker death imap", TRIAL_LIMIT, || {
        pool.imap(die_at_7, (0..20).map(|x| (how, x))).collect()
    });
    for (i, o) in outcomes.iter().enumerate() {
        if i == 7 {
            match o {
                Err(Error::WorkerDied { pid, cause }) => {
                    assert!(
                        before.contains(pid),
                        "died pid {pid} not a worker {before:?}"
                    );
                    assert!(cause_ok(*cause), "cause {cause:?}");
                    assert!(gone_within(*pid, Duration::from_secs(5)));
                }
                other => panic!("task 7: expected WorkerDied, got {other:?}"),
            }
        } else {
            assert_eq!(o.as_ref().ok(), Some(&(i as u64)), "task {i}");
        }
    }
    let after = settled_pids(&pool);
    assert!(after.iter().all(|&p| p != 0));
    assert_eq!(
        after.iter().filter(|p| before.contains(p)).count(),
        1,
        "exactly one worker replaced: {before:?} -> {after:?}"
    );
    assert_eq!(pool.map(square, 0..50).unwrap()[49], 49 * 49);
    // apply_async too: the single task dies, the next one runs.
    let r = pool.apply_async(die_at_7, ((how, 7),));
    assert!(matches!(
        must_get(&r, "apply_async death"),
        Err(Error::WorkerDied { .. })
    ));
    assert_eq!(pool.apply(square, (9,)).unwrap(), 81);
}

#[test]
fn worker_sigkill_is_worker_died() {
    worker_death(0, |c| c == ExitCause::Signal(9));
}

#[test]
fn worker_abort_is_worker_died() {
    worker_death(1, |c| c == ExitCause::Signal(6));
}

#[test]
fn worker_segfault_is_worker_died() {
    worker_death(2, |c| c == ExitCause::Signal(11));
}

#[test]
fn worker_exit_is_worker_died() {
    worker_death(3, |c| c == ExitCause::Code(3));
}

#[test]
fn worker_stack_overflow_is_worker_died() {
    worker_death(4, |c| matches!(c, ExitCause::Signal(6 | 11)));
}

fn sleep_then_abort(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::abort()
}

/// The worker dies while work the parent already sent it sits unread in its socket:
/// the kernel then reports the death as a connection reset rather than an end of
/// file, and it must still read as `WorkerDied`.
#[test]
fn worker_death_with_queued_input_is_worker_died() {
    let pool = processes(1);
    let victim = settled_pids(&pool)[0];
    let dying = pool.apply_async(sleep_then_abort, (300,));
    // Sent to the worker once it sleeps in the task: unread when it dies.
    std::thread::sleep(Duration::from_millis(100));
    let queued: Vec<_> = (0..3).map(|i| pool.apply_async(square, (i,))).collect();
    match must_get(&dying, "dying task") {
        Err(Error::WorkerDied { pid, cause }) => {
            assert_eq!(pid, victim);
            assert_eq!(cause, ExitCause::Signal(6));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    for (i, r) in queued.iter().enumerate() {
        assert_eq!(must_get(r, "queued task").unwrap(), (i * i) as u64);
    }
}

/// A worker killed while idle blames no task: work sent to it meanwhile is requeued
/// and runs on its replacement.
#[test]
fn worker_killed_between_tasks_blames_no_task() {
    let pool = processes(1);
    assert_eq!(pool.apply(square, (2,)).unwrap(), 4);
    let victim = settled_pids(&pool)[0];
    sigkill(victim);
    // Some of these may be sent to the dead worker before its supervisor notices.
    let outcomes: Vec<_> = (0..20).map(|i| pool.apply_async(square, (i,))).collect();
    for (i, r) in outcomes.iter().enumerate() {
        assert_eq!(must_get(r, "after idle kill").unwrap(), (i * i) as u64);
    }
    assert!(gone_within(victim, Duration::from_secs(5)));
    assert_ne!(settled_pids(&pool)[0], victim);
}

#[test]
fn spawned_child_killed_is_worker_died() {
    let mut child = fondo::spawn(sleep_ms, (60_000,)).unwrap();
    let pid = child.pid();
    child.kill().unwrap();
    match child.join() {
        Err(Error::WorkerDied { pid: p, cause }) => {
            assert_eq!(p, pid);
            assert_eq!(cause, ExitCause::Signal(9));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert!(!alive(pid));
    let child = fondo::spawn(die_at_7, ((1, 7),)).unwrap();
    let r = child.join();
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
    let child = fondo::spawn(panic_on_3, (3,)).unwrap();
    assert!(matches!(child.join(), Err(Error::Panicked { .. })));
}

#[test]
fn retries_rerun_a_task_whose_worker_died() {
    let pool = Pool::builder().workers(2).retries(1).processes().unwrap();
    let m = marker("die-once");
    let r = pool.apply_async(die_once, (m.clone(), 42));
    assert_eq!(must_get(&r, "retried task").unwrap(), 42);
    let _ = std::fs::remove_file(&m);
    // A task that kills every worker it runs on gets WorkerDied after 1 + 1 runs.
    let r = pool.apply_async(die_always, (5,));
    assert!(matches!(
        must_get(&r, "always dying task"),
        Err(Error::WorkerDied {
            cause: ExitCause::Signal(9),
            ..
        })
    ));
    assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
}

// ---------------------------------------------------------------------------
// Contract: a task exceeds its timeout
// ---------------------------------------------------------------------------

#[test]
fn task_that_never_returns_times_out() {
    let limit = Duration::from_millis(300);
    let pool = Pool::builder()
        .workers(2)
        .chunksize(3)
        .task_timeout(limit)
        .processes()
        .unwrap();
    let before = settled_pids(&pool);
    let r = pool.apply_async(forever, (0,));
    match must_get(&r, "never-returning task") {
        Err(Error::Timeout { limit: l }) => assert_eq!(l, limit),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let after = settled_pids(&pool);
    assert_ne!(before, after, "the hung worker was replaced");
    for p in before.iter().filter(|p| !after.contains(p)) {
        assert!(
            gone_within(*p, Duration::from_secs(5)),
            "hung worker {p} still alive"
        );
    }
    // In the middle of a chunk: only that task times out; its neighbours complete.
    let wd = Watchdog::new();
    let outcomes: Vec<_> = wd.guard("timeout imap", TRIAL_LIMIT, || {
        pool.imap(forever_at_5, 0..12).collect()
    });
    for (i, o) in outcomes.iter().enumerate() {
        if i == 5 {
            assert!(matches!(o, Err(Error::Timeout { .. })), "{o:?}");
        } else {
            assert_eq!(o.as_ref().ok(), Some(&(i as u64)), "task {i}");
        }
    }
    // Tasks under the limit are untouched; timeouts are not retried even with retries.
    assert_eq!(pool.map(sleep_ms, [1, 2, 3]).unwrap(), [1, 2, 3]);
}

#[test]
fn timeouts_are_not_retried() {
    let pool = Pool::builder()
        .workers(1)
        .retries(3)
        .task_timeout(Duration::from_millis(200))
        .processes()
        .unwrap();
    let r = pool.apply_async(forever, (0,));
    assert!(matches!(
        must_get(&r, "timeout"),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
}

#[test]
fn threads_refuse_a_task_timeout() {
    let r = Pool::builder()
        .task_timeout(Duration::from_secs(1))
        .threads();
    assert!(matches!(r, Err(Error::Config(_))));
}

// ---------------------------------------------------------------------------
// Contract: arguments or results cannot be (de)serialised
// ---------------------------------------------------------------------------

/// A value whose `Serialize` fails for 13 and whose `Deserialize` fails for 666:
/// each direction can be broken on purpose, for one item of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Picky(u64);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 cannot be serialised"));
        }
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v == 666 {
            return Err(serde::de::Error::custom("666 cannot be deserialised"));
        }
        Ok(Picky(v))
    }
}

fn picky_in(p: Picky) -> u64 {
    p.0
}

fn picky_out(x: u64) -> Picky {
    Picky(x)
}

/// The four ways serialisation can fail, each in the middle of a batch (chunks of 4):
/// only the task it concerns fails.
fn serialization_case(outcomes: Vec<fondo::Result<u64>>, bad: usize, what: Payload) {
    for (i, o) in outcomes.iter().enumerate() {
        if i == bad {
            match o {
                Err(Error::Serialization { what: w, .. }) => assert_eq!(*w, what, "{o:?}"),
                other => panic!("task {i}: expected Serialization({what}), got {other:?}"),
            }
        } else {
            assert!(o.is_ok(), "task {i} was spoiled by its neighbour: {o:?}");
        }
    }
}

fn picky_pool() -> Pool<Processes> {
    Pool::builder().workers(2).chunksize(4).processes().unwrap()
}

#[test]
fn argument_that_cannot_be_serialised() {
    let pool = picky_pool();
    let wd = Watchdog::new();
    let out: Vec<_> = wd.guard("argument serialise", TRIAL_LIMIT, || {
        pool.imap(picky_in, (10..18).map(Picky)).collect()
    });
    serialization_case(out, 3, Payload::Arguments);
    let r = pool.apply_async(picky_in, (Picky(13),));
    assert!(matches!(
        must_get(&r, "apply"),
        Err(Error::Serialization {
            what: Payload::Arguments,
            ..
        })
    ));
    let e = pool
        .map(picky_in, (10..18).map(Picky))
        .expect_err("13 cannot be serialised");
    assert_eq!(e.index(), Some(3), "{e}");
    assert!(matches!(
        e.inner(),
        Error::Serialization {
            what: Payload::Arguments,
            ..
        }
    ));
}

#[test]
fn argument_that_cannot_be_deserialised() {
    let pool = picky_pool();
    let before = settled_pids(&pool);
    let wd = Watchdog::new();
    let out: Vec<_> = wd.guard("argument deserialise", TRIAL_LIMIT, || {
        pool.imap(picky_in, (664..672).map(Picky)).collect()
    });
    serialization_case(out, 2, Payload::Arguments);
    let r = pool.apply_async(picky_in, (Picky(666),));
    let got = must_get(&r, "apply");
    assert!(
        matches!(
            got,
            Err(Error::Serialization {
                what: Payload::Arguments,
                ..
            })
        ),
        "{got:?}"
    );
    assert_eq!(
        pool.pids(),
        before,
        "a bad argument must not kill the worker"
    );
}

#[test]
fn result_that_cannot_be_serialised() {
    let pool = picky_pool();
    let before = settled_pids(&pool);
    let wd = Watchdog::new();
    let out: Vec<_> = wd.guard("result serialise", TRIAL_LIMIT, || {
        pool.imap(picky_out, 10..18)
            .map(|r| r.map(|p| p.0))
            .collect()
    });
    serialization_case(out, 3, Payload::Result);
    assert_eq!(pool.pids(), before, "a bad result must not kill the worker");
}

#[test]
fn result_that_cannot_be_deserialised() {
    let pool = picky_pool();
    let before = settled_pids(&pool);
    let wd = Watchdog::new();
    let out: Vec<_> = wd.guard("result deserialise", TRIAL_LIMIT, || {
        pool.imap(picky_out, 664..672)
            .map(|r| r.map(|p| p.0))
            .collect()
    });
    serialization_case(out, 2, Payload::Result);
    let r = pool.apply_async(picky_out, (666,));
    let got = must_get(&r, "apply");
    assert!(
        matches!(
            got,
            Err(Error::Serialization {
                what: Payload::Result,
                ..
            })
        ),
        "{got:?}"
    );
    assert_eq!(pool.apply(picky_out, (665,)).unwrap(), Picky(665));
    assert_eq!(pool.pids(), before, "a bad result must not kill the worker");
}

/// A result bigger than the frame cap: a clear error for that task, never a hang.
fn big_result(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[test]
fn result_over_the_frame_cap_is_an_error() {
    let pool = Pool::builder()
        .workers(1)
        .max_frame(64 * 1024)
        .processes()
        .unwrap();
    let r = pool.apply_async(big_result, (1 << 20,));
    let out = r.get_timeout(Duration::from_secs(20));
    if matches!(out, Err(Error::WaitTimeout { .. })) {
        pool.terminate();
        panic!("a result over max_frame hung the pool");
    }
    assert!(
        matches!(out, Err(Error::Serialization { .. } | Error::Protocol(_))),
        "{:?}",
        out.map(|v| v.len())
    );
    assert_eq!(pool.apply(big_result, (10,)).unwrap().len(), 10);
}

#[test]
fn argument_over_the_frame_cap_is_an_error() {
    let pool = Pool::builder()
        .workers(1)
        .max_frame(64 * 1024)
        .processes()
        .unwrap();
    fn len(v: Vec<u8>) -> usize {
        v.len()
    }
    let r = pool.apply_async(len, (vec![1u8; 1 << 20],));
    assert!(matches!(
        must_get(&r, "big argument"),
        Err(Error::Protocol(_) | Error::Serialization { .. })
    ));
    assert_eq!(pool.apply(len, (vec![1u8; 100],)).unwrap(), 100);
}

// ---------------------------------------------------------------------------
// Contract: pool dropped with tasks pending (drop = close + join)
// ---------------------------------------------------------------------------

#[test]
fn processes_drop_finishes_pending_tasks() {
    let pool = processes(2);
    let singles: Vec<_> = (0..10).map(|i| pool.apply_async(nap, (i,))).collect();
    let whole = pool.map_async(sleep_ms, [20, 30, 10, 40]);
    let wd = Watchdog::new();
    wd.guard("drop with pending tasks", TRIAL_LIMIT, || drop(pool));
    for (i, r) in singles.into_iter().enumerate() {
        assert!(r.ready(), "drop returned before task {i} finished");
        assert_eq!(r.get().unwrap(), 3 * i as u64 + 1);
    }
    assert_eq!(whole.get().unwrap(), [20, 30, 10, 40]);
}

#[test]
fn threads_drop_finishes_pending_tasks() {
    let pool = Pool::threads(2).unwrap();
    let singles: Vec<_> = (0..10).map(|i| pool.apply_async(nap, (i,))).collect();
    let whole = pool.map_async(sleep_ms, [20, 30, 10, 40]);
    drop(pool);
    for (i, r) in singles.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), 3 * i as u64 + 1);
    }
    assert_eq!(whole.get().unwrap(), [20, 30, 10, 40]);
}

// ---------------------------------------------------------------------------
// Contract: terminate()
// ---------------------------------------------------------------------------

#[test]
fn processes_terminate_while_tasks_run() {
    let pool = processes(2);
    let pids = settled_pids(&pool);
    let running: Vec<_> = (0..6)
        .map(|_| pool.apply_async(sleep_ms, (60_000,)))
        .collect();
    let whole = pool.map_async(sleep_ms, vec![60_000; 8]);
    std::thread::sleep(Duration::from_millis(100)); // let the workers pick them up
    let wd = Watchdog::new();
    wd.guard("terminate", TRIAL_LIMIT, || {
        pool.terminate();
        for r in &running {
            assert!(r.ready(), "terminate must fail pending results at once");
            assert!(matches!(
                r.get_timeout(Duration::ZERO),
                Err(Error::Terminated)
            ));
        }
        assert!(matches!(
            whole.get_timeout(Duration::ZERO),
            Err(Error::Terminated)
        ));
        // Submissions after terminate are refused, never hang.
        let late = pool.apply_async(square, (2,));
        assert!(matches!(
            late.get_timeout(Duration::ZERO),
            Err(Error::Terminated)
        ));
        assert!(matches!(pool.map(square, 0..4), Err(Error::Terminated)));
        let first = pool.imap(square, 0..4).next();
        assert!(matches!(first, Some(Err(Error::Terminated))), "{first:?}");
        for p in &pids {
            assert!(
                gone_within(*p, Duration::from_secs(5)),
                "worker {p} survived terminate"
            );
        }
        drop(pool);
    });
}

#[test]
fn processes_terminate_during_imap_ends_the_iterator() {
    let pool = processes(2);
    let wd = Watchdog::new();
    wd.guard("terminate during imap", TRIAL_LIMIT, || {
        std::thread::scope(|s| {
            let it = pool.imap(sleep_ms, std::iter::repeat(20));
            let reader = s.spawn(move || {
                let mut ok = 0;
                let mut terminated = 0;
                for r in it {
                    match r {
                        Ok(_) => ok += 1,
                        Err(Error::Terminated) => terminated += 1,
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
                (ok, terminated)
            });
            std::thread::sleep(Duration::from_millis(200));
            pool.terminate();
            let (ok, terminated) = reader.join().unwrap();
            assert!(terminated >= 1, "ok {ok}, terminated {terminated}");
        });
    });
}

#[test]
fn threads_terminate_while_tasks_run() {
    let pool = Pool::threads(2).unwrap();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let g = gate.clone();
    let hold = move |x: u64| {
        let mut open = g.0.lock().unwrap();
        while !*open {
            open = g.1.wait(open).unwrap();
        }
        x
    };
    let running: Vec<_> = (0..6)
        .map(|i| pool.apply_async(hold.clone(), (i,)))
        .collect();
    let whole = pool.map_async(hold.clone(), 0..8);
    pool.terminate();
    for r in &running {
        assert!(matches!(
            r.get_timeout(Duration::ZERO),
            Err(Error::Terminated)
        ));
    }
    assert!(matches!(
        whole.get_timeout(Duration::ZERO),
        Err(Error::Terminated)
    ));
    let late = pool.apply_async(square, (2,));
    assert!(matches!(
        late.get_timeout(Duration::ZERO),
        Err(Error::Terminated)
    ));
    // Let the stuck tasks go, so the threads end.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    drop(pool);
}

// ---------------------------------------------------------------------------
// Submit after close; get_timeout expiring then succeeding
// ---------------------------------------------------------------------------

/// Tasks submitted before `close` still run; anything submitted after gets `Closed`.
macro_rules! submit_after_close {
    ($pool:expr) => {{
        let pool = $pool;
        let before = pool.apply_async(square, (3,));
        pool.close();
        let late = pool.apply_async(square, (4,));
        assert!(matches!(
            late.get_timeout(Duration::ZERO),
            Err(Error::Closed)
        ));
        assert!(matches!(pool.map(square, 0..4), Err(Error::Closed)));
        // imap yields Closed for each item it had taken, then ends.
        let outcomes: Vec<_> = pool.imap(square, 0..4).collect();
        assert!(!outcomes.is_empty() && outcomes.len() <= 4, "{outcomes:?}");
        assert!(
            outcomes.iter().all(|o| matches!(o, Err(Error::Closed))),
            "{outcomes:?}"
        );
        assert_eq!(must_get(&before, "task submitted before close").unwrap(), 9);
        pool.join();
    }};
}

#[test]
fn processes_submit_after_close_is_closed() {
    submit_after_close!(processes(1));
}

#[test]
fn threads_submit_after_close_is_closed() {
    submit_after_close!(Pool::threads(1).unwrap());
}

#[test]
fn get_timeout_expires_then_succeeds() {
    let pool = processes(1);
    let r = pool.apply_async(sleep_ms, (400,));
    match r.get_timeout(Duration::from_millis(10)) {
        Err(Error::WaitTimeout { waited }) => assert_eq!(waited, Duration::from_millis(10)),
        other => panic!("expected WaitTimeout, got {other:?}"),
    }
    assert!(!r.ready());
    assert_eq!(must_get(&r, "later").unwrap(), 400);
    assert!(matches!(
        r.get_timeout(Duration::ZERO),
        Err(Error::ResultTaken)
    ));
}

// ---------------------------------------------------------------------------
// Kill storm: SIGKILL a random worker in the middle of work
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Shape {
    Map,
    Imap,
    ApplyAsync,
}

/// Checks one trial's outcomes: the right value or `WorkerDied` from the killed
/// worker, at most once; with retries, every value.
fn check_outcomes(
    outcomes: &[fondo::Result<u64>],
    victim: u32,
    retries: bool,
    trial: &str,
) -> usize {
    let mut died = 0;
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Ok(v) => assert_eq!(*v, 3 * i as u64 + 1, "{trial}: task {i} wrong value"),
            Err(Error::WorkerDied { pid, cause }) if !retries => {
                assert_eq!(*pid, victim, "{trial}: task {i} blamed on the wrong worker");
                assert_eq!(*cause, ExitCause::Signal(9), "{trial}");
                died += 1;
            }
            Err(e) => panic!("{trial}: task {i}: {e:?}"),
        }
    }
    assert!(died <= 1, "{trial}: {died} tasks blamed for one kill");
    died
}

fn kill_storm(shape: Shape, retries: u32, trials: usize) {
    let name = format!("kill storm {shape:?} retries={retries}");
    let mut rng = Rng::new(&name);
    let wd = Watchdog::new();
    let pool = Pool::builder()
        .workers(2)
        .retries(retries)
        .processes()
        .unwrap();
    let tasks = 24u64;
    let mut blamed = 0;
    let t0 = Instant::now();
    for trial in 0..trials {
        let label = format!("{name}: trial {trial}");
        wd.guard(&label, TRIAL_LIMIT, || {
            let pids = settled_pids(&pool);
            let victim = pids[rng.below(pids.len() as u64) as usize];
            let delay = Duration::from_micros(rng.below(14_000));
            let outcomes: Vec<fondo::Result<u64>> = match shape {
                Shape::Map => {
                    let all = pool.map_async(nap, 0..tasks);
                    std::thread::sleep(delay);
                    sigkill(victim);
                    match must_get(&all, &label) {
                        Ok(v) => v.into_iter().map(Ok).collect(),
                        // map reports the first failure: the one killed task,
                        // with its position.
                        Err(e) => {
                            assert!(e.index().is_some_and(|i| i < tasks as usize), "{e}");
                            let e = e.into_inner();
                            blamed += check_outcomes(&[Err(e)], victim, retries > 0, &label);
                            Vec::new()
                        }
                    }
                }
                Shape::Imap => std::thread::scope(|s| {
                    let it = pool.imap(nap, 0..tasks);
                    let h = s.spawn(move || it.collect::<Vec<_>>());
                    std::thread::sleep(delay);
                    sigkill(victim);
                    h.join().unwrap()
                }),
                Shape::ApplyAsync => {
                    let mut pending = Vec::new();
                    let start = Instant::now();
                    for i in 0..tasks {
                        pending.push(pool.apply_async(nap, (i,)));
                        if start.elapsed() < delay {
                            std::thread::sleep(Duration::from_micros(300));
                        }
                    }
                    std::thread::sleep(delay.saturating_sub(start.elapsed()));
                    sigkill(victim);
                    pending.iter().map(|r| must_get(r, &label)).collect()
                }
            };
            blamed += check_outcomes(&outcomes, victim, retries > 0, &label);
            assert!(
                gone_within(victim, Duration::from_secs(5)),
                "{label}: victim alive"
            );
            // The pool runs more work after the kill.
            assert_eq!(
                pool.map(square, 0..8).unwrap(),
                [0, 1, 4, 9, 16, 25, 36, 49]
            );
        });
    }
    eprintln!(
        "{name}: {trials} trials, {blamed} tasks got WorkerDied, 0 hangs, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let after = settled_pids(&pool);
    assert!(after.iter().all(|&p| alive(p)));
}

fn storm_trials() -> usize {
    count(100, 1000)
}

#[test]
fn kill_storm_map() {
    kill_storm(Shape::Map, 0, storm_trials());
}

#[test]
fn kill_storm_imap() {
    kill_storm(Shape::Imap, 0, storm_trials());
}

#[test]
fn kill_storm_apply_async() {
    kill_storm(Shape::ApplyAsync, 0, storm_trials());
}

#[test]
fn kill_storm_with_retries_loses_nothing() {
    let n = storm_trials() / 2;
    kill_storm(Shape::Map, 1, n);
    kill_storm(Shape::Imap, 1, n);
    kill_storm(Shape::ApplyAsync, 1, n);
}

// ---------------------------------------------------------------------------
// Exactly once: every index delivered once, never twice, while workers die
// ---------------------------------------------------------------------------

/// Kills a random worker of `pool` every `every` until `stop` is set; returns the kills.
fn killer(pool: &Pool<Processes>, stop: &AtomicBool, every: Duration, seed: &mut Rng) -> usize {
    let mut kills = 0;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(every);
        let pids: Vec<u32> = pool.pids().into_iter().filter(|&p| p != 0).collect();
        if let Some(&p) = pids.get(seed.below(pids.len() as u64) as usize) {
            sigkill(p);
            kills += 1;
        }
    }
    kills
}

/// Sets the flag when dropped: a failing assertion must stop the killer thread, or
/// the scope would wait for it forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Map,
    Imap,
    ImapUnordered,
}

fn exactly_once(via: Via, n: usize, chunksize: Option<usize>, every: Duration) {
    let name = format!("exactly once {via:?} n={n} chunksize={chunksize:?} kill every {every:?}");
    let mut rng = Rng::new(&name);
    let mut b = Pool::builder().workers(2).retries(1000);
    if let Some(c) = chunksize {
        b = b.chunksize(c);
    }
    let pool = b.processes().unwrap();
    let stop = AtomicBool::new(false);
    let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    let wd = Watchdog::new();
    let t0 = Instant::now();
    let kills = wd.guard(&name, Duration::from_secs(600), || {
        std::thread::scope(|s| {
            let _stop = StopOnDrop(&stop);
            let k = s.spawn(|| killer(&pool, &stop, every, &mut rng));
            let mut delivered = 0usize;
            let mut note = |r: fondo::Result<u64>, pos: Option<usize>| {
                let v = r.unwrap_or_else(|e| panic!("{name}: {e:?} (retries are on)"));
                if let Some(p) = pos {
                    assert_eq!(v as usize, p, "{name}: out of order");
                }
                seen[v as usize].fetch_add(1, Ordering::Relaxed);
                delivered += 1;
            };
            match via {
                Via::Map => {
                    let v = pool.map(identity, 0..n as u64).expect("map");
                    for (i, x) in v.into_iter().enumerate() {
                        note(Ok(x), Some(i));
                    }
                }
                Via::Imap => {
                    for (i, r) in pool.imap(identity, 0..n as u64).enumerate() {
                        note(r, Some(i));
                    }
                }
                Via::ImapUnordered => {
                    for r in pool.imap_unordered(identity, 0..n as u64) {
                        note(r, None);
                    }
                }
            }
            stop.store(true, Ordering::Release);
            assert_eq!(delivered, n, "{name}: delivered count");
            k.join().unwrap()
        })
    });
    let twice: Vec<usize> = (0..n)
        .filter(|&i| seen[i].load(Ordering::Relaxed) > 1)
        .collect();
    let never: Vec<usize> = (0..n)
        .filter(|&i| seen[i].load(Ordering::Relaxed) == 0)
        .collect();
    assert!(
        twice.is_empty(),
        "{name}: delivered twice: {:?}…",
        &twice[..twice.len().min(10)]
    );
    assert!(
        never.is_empty(),
        "{name}: never delivered: {:?}…",
        &never[..never.len().min(10)]
    );
    eprintln!(
        "{name}: {n} tasks, {kills} kills, 0 lost, 0 duplicated, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        pool.apply(square, (12,)).unwrap(),
        144,
        "the pool still works"
    );
}

fn exactly_once_tasks() -> usize {
    count(100_000, 1_000_000)
}

// Kill intervals are chosen so a chunk usually finishes between two kills: a chunk
// killed every time it runs would never finish (that is a livelock of the test, not
// of the pool), so big chunks get rarer kills.

#[test]
fn exactly_once_map() {
    let n = exactly_once_tasks();
    // Auto chunks (n / 8 tasks each): rare kills; then small chunks, frequent kills.
    // At CI's full size a kill that lands while a 125k-task chunk is reported cuts
    // it into 125k single-task jobs: the cut that once took the supervisor minutes
    // (one pass over the arguments per piece) and hung this test.
    exactly_once(Via::Map, n, None, Duration::from_millis(150));
    exactly_once(Via::Map, n / 10, Some(7), Duration::from_millis(7));
}

#[test]
fn exactly_once_imap() {
    let n = exactly_once_tasks();
    exactly_once(Via::Imap, n, Some(64), Duration::from_millis(10));
    exactly_once(Via::Imap, n / 20, None, Duration::from_millis(10));
}

#[test]
fn exactly_once_imap_unordered() {
    let n = exactly_once_tasks();
    exactly_once(Via::ImapUnordered, n, Some(64), Duration::from_millis(10));
    exactly_once(Via::ImapUnordered, n / 20, None, Duration::from_millis(10));
}

/// Without retries: a task is delivered at most once and gets `WorkerDied` at most
/// once per kill; every other task its value.
#[test]
fn at_most_once_without_retries() {
    let n = exactly_once_tasks() / 5;
    let mut rng = Rng::new("at most once");
    let pool = Pool::builder()
        .workers(2)
        .chunksize(16)
        .processes()
        .unwrap();
    let stop = AtomicBool::new(false);
    let wd = Watchdog::new();
    let (died, kills, seen) = wd.guard("at most once", Duration::from_secs(300), || {
        std::thread::scope(|s| {
            let _stop = StopOnDrop(&stop);
            let k = s.spawn(|| killer(&pool, &stop, Duration::from_millis(10), &mut rng));
            let mut seen = HashSet::new();
            let mut died = 0;
            for (i, r) in pool.imap(nap_fast, 0..n as u64).enumerate() {
                match r {
                    Ok(v) => {
                        assert_eq!(v as usize, i);
                        assert!(seen.insert(v), "index {v} delivered twice");
                    }
                    Err(Error::WorkerDied { .. }) => died += 1,
                    Err(e) => panic!("{e:?}"),
                }
            }
            stop.store(true, Ordering::Release);
            (died, k.join().unwrap(), seen.len())
        })
    });
    eprintln!("at most once: {n} tasks, {kills} kills, {died} WorkerDied, {seen} values");
    assert!(died <= kills, "{died} WorkerDied for {kills} kills");
    assert_eq!(seen + died, n);
}

fn nap_fast(x: u64) -> u64 {
    if x.is_multiple_of(64) {
        std::thread::sleep(Duration::from_micros(200));
    }
    x
}
