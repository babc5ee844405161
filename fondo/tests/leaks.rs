//! Repeated create/drop and floods of panicking tasks leave nothing behind: the
//! counts of open descriptors, threads and child processes come back to where they
//! were, and no child is left a zombie.
//!
//! These counts are process-wide, and the test harness runs the tests of one file on
//! parallel threads, so this file holds exactly one `#[test]` that runs every phase
//! in turn. Counts: `FONDO_FULL=1` for the full ones (1000 cycles), see RELIABILITY.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{ProcStat, processes};

use fondo::{Error, Pool};

fn full() -> bool {
    std::env::var("FONDO_FULL").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// What the process holds: open descriptors, threads, live children, zombie children.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holdings {
    fds: usize,
    threads: usize,
    children: Vec<u32>,
    zombies: Vec<u32>,
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map_or(0, |d| d.count())
}

fn holdings() -> Holdings {
    let me = std::process::id();
    let (zombies, children): (Vec<ProcStat>, Vec<ProcStat>) = processes()
        .into_iter()
        .filter(|p| p.ppid == me)
        .partition(|p| p.state == 'Z');
    let pids = |ps: Vec<ProcStat>| ps.into_iter().map(|p| p.pid).collect();
    let (children, zombies) = (pids(children), pids(zombies));
    Holdings {
        // read_dir holds one descriptor of its own while counting; it is the same
        // one every time, so the comparison is fair.
        fds: count_dir("/proc/self/fd"),
        threads: count_dir("/proc/self/task"),
        children,
        zombies,
    }
}

/// Waits briefly for the counts to come back (a supervisor thread may be a moment
/// from exiting after `join` returned), then asserts they did.
fn assert_back_to(base: &Holdings, phase: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    let mut now = holdings();
    while now != *base && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        now = holdings();
    }
    assert_eq!(now, *base, "{phase}: leaked (before vs after)");
    eprintln!("{phase}: no leak ({base:?})");
}

/// Aborts the process if the test as a whole hangs.
struct Watchdog(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Watchdog {
    fn new(limit: Duration, what: &'static str) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let h = std::thread::spawn(move || {
            let end = Instant::now() + limit;
            while !d.load(Ordering::Acquire) {
                if Instant::now() > end {
                    let msg =
                        format!("\nWATCHDOG: {what} did not finish in {limit:?}. Aborting.\n");
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watchdog(done, Some(h))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn always_panics(x: u64) -> u64 {
    panic!("leak check panic {x}")
}

fn die(_: u64) -> u64 {
    std::process::abort()
}

/// Worker initializer: no panic message on stderr for the 10,000 panics.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// One create/drop cycle, in one of several shapes so every way a pool can end is
/// covered: drop after work, drop with work pending, terminate, a dead worker,
/// recycling, a timeout, drop without any task.
fn process_cycle(i: usize) {
    match i % 7 {
        0 => {
            let pool = Pool::processes(2).unwrap();
            assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
        }
        1 => {
            let pool = Pool::processes(2).unwrap();
            let pending: Vec<_> = (0..4).map(|x| pool.apply_async(sleep_ms, (x,))).collect();
            drop(pool);
            assert!(pending.into_iter().all(|r| r.get().is_ok()));
        }
        2 => {
            let pool = Pool::processes(2).unwrap();
            let r = pool.apply_async(sleep_ms, (10_000,));
            pool.terminate();
            assert!(matches!(r.get(), Err(Error::Terminated)));
        }
        3 => {
            let pool = Pool::processes(2).unwrap();
            assert!(matches!(
                pool.apply(die, (1,)),
                Err(Error::WorkerDied { .. })
            ));
            assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
        }
        4 => {
            let pool = Pool::builder()
                .workers(1)
                .max_tasks_per_child(2)
                .processes()
                .unwrap();
            assert_eq!(pool.map(square, 0..6).unwrap().len(), 6);
        }
        5 => {
            let pool = Pool::builder()
                .workers(1)
                .task_timeout(Duration::from_millis(20))
                .processes()
                .unwrap();
            assert!(matches!(
                pool.apply(sleep_ms, (10_000,)),
                Err(Error::Timeout { .. })
            ));
        }
        _ => {
            let pool = Pool::processes(1).unwrap();
            drop(pool);
        }
    }
}

fn thread_cycle(i: usize) {
    let pool = Pool::threads(2).unwrap();
    match i % 3 {
        0 => assert_eq!(pool.map(square, 0..10).unwrap().len(), 10),
        1 => {
            let r = pool.apply_async(sleep_ms, (1,));
            drop(pool);
            assert!(r.get().is_ok());
        }
        _ => {
            let r = pool.apply_async(sleep_ms, (1,));
            pool.terminate();
            let _ = r.get();
            // The terminated pool's thread finishes its 1 ms task on its own.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn create_drop_and_panics_leak_nothing() {
    let cycles = if full() { 1000 } else { 150 };
    let panics = 10_000;
    let _wd = Watchdog::new(Duration::from_secs(300), "leak checks");
    let t0 = Instant::now();
    // Warm up: the one-time global spawner thread starts on the first worker spawn.
    drop(Pool::processes(1).unwrap());
    let base = holdings();
    assert!(
        base.children.is_empty() && base.zombies.is_empty(),
        "{base:?}"
    );

    for i in 0..cycles {
        process_cycle(i);
    }
    assert_back_to(&base, &format!("{cycles} process pool create/drop cycles"));

    for _ in 0..100 {
        let child = fondo::spawn(square, (7,)).unwrap();
        assert_eq!(child.join().unwrap(), 49);
    }
    assert_back_to(&base, "100 fondo::spawn + join");

    {
        let pool = Pool::builder()
            .workers(2)
            .chunksize(50)
            .initializer(quiet_panics)
            .processes()
            .unwrap();
        let failed = pool
            .imap(always_panics, 0..panics)
            .filter(|r| matches!(r, Err(Error::Panicked { .. })))
            .count();
        assert_eq!(failed, panics as usize);
        let again = pool.imap(always_panics, 0..10).count();
        assert_eq!(again, 10);
        // apply too: one round trip per panic.
        for i in 0..200 {
            assert!(pool.apply(always_panics, (i,)).is_err());
        }
    }
    assert_back_to(&base, &format!("{panics} panicking tasks on processes"));

    for i in 0..cycles {
        thread_cycle(i);
    }
    assert_back_to(&base, &format!("{cycles} thread pool create/drop cycles"));

    {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let pool = Pool::threads(2).unwrap();
        let failed = pool
            .imap(always_panics, 0..panics)
            .filter(|r| matches!(r, Err(Error::Panicked { .. })))
            .count();
        drop(pool);
        std::panic::set_hook(hook);
        assert_eq!(failed, panics as usize);
    }
    assert_back_to(&base, &format!("{panics} panicking tasks on threads"));
    eprintln!(
        "leaks: {cycles} process cycles, {cycles} thread cycles, 100 spawns, 2 x {panics} panics: 0 leaks in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
