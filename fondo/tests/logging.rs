//! `log` records from tasks in worker processes reach the parent's logger, with
//! their level, target, module, file and line, and the worker's PID (in the
//! message and as the key-value `worker_pid`); records below the parent's level
//! are not sent; a long task's records arrive while it runs; an initializer that
//! installs a logger of its own keeps it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use fondo::Pool;

mod common;
use common::{Deadline, Gate, eventually, gated};

const LIMIT: Duration = Duration::from_secs(60);

/// A record as this test's logger kept it.
#[derive(Debug, Clone)]
struct Kept {
    level: log::Level,
    target: String,
    message: String,
    module_path: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    worker_pid: Option<u64>,
}

static KEPT: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

/// The parent's logger: keeps every record.
struct Keeper;

impl log::Log for Keeper {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let worker_pid = record
            .key_values()
            .get(log::kv::Key::from_str("worker_pid"))
            .and_then(|v| v.to_u64());
        KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(Kept {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
            module_path: record.module_path().map(str::to_owned),
            file: record.file().map(str::to_owned),
            line: record.line(),
            worker_pid,
        });
    }

    fn flush(&self) {}
}

static KEEPER: Keeper = Keeper;

/// Installs the keeper at level Info, once for the whole test binary (workers are
/// this binary started again, diverted before `main`: they never run this).
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&KEEPER).expect("the only logger");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The kept records whose message contains `needle`.
fn kept(needle: &str) -> Vec<Kept> {
    KEPT.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|k| k.message.contains(needle))
        .cloned()
        .collect()
}

/// A task that logs at info and at debug, and says where it ran.
fn logs(x: u32) -> u32 {
    log::info!(target: "app::work", "pool task {x} at info");
    log::debug!(target: "app::work", "pool task {x} at debug");
    std::process::id()
}

#[test]
fn records_from_tasks_reach_the_parent_logger_with_the_worker_pid() {
    install();
    let _wd = Deadline::arm("records from tasks", LIMIT);
    let pool = Pool::processes(2).expect("pool");
    let pids = pool.map(logs, 0..20).expect("map");
    // A job's records travel before its answer: all here once `map` returns.
    for (x, pid) in pids.into_iter().enumerate() {
        let records = kept(&format!("pool task {x} at info"));
        assert_eq!(records.len(), 1, "task {x}: {records:?}");
        let r = &records[0];
        assert_ne!(pid, std::process::id());
        assert_eq!(r.message, format!("(worker {pid}) pool task {x} at info"));
        assert_eq!(r.worker_pid, Some(u64::from(pid)), "{r:?}");
        assert_eq!(r.level, log::Level::Info);
        assert_eq!(r.target, "app::work");
        assert_eq!(r.module_path.as_deref(), Some("logging"));
        assert!(
            r.file.as_deref().is_some_and(|f| f.ends_with("logging.rs")),
            "{r:?}"
        );
        assert!(r.line.is_some(), "{r:?}");
    }
    // Below the parent's level: not even sent.
    assert!(kept("pool task 3 at debug").is_empty());
}

/// Logs, then waits for the gate.
fn logs_then_waits(gate: String) -> u32 {
    log::warn!("long task started");
    gated(gate, 7)
}

#[test]
fn a_long_task_s_records_arrive_while_it_runs() {
    install();
    let _wd = Deadline::arm("a long task's records", LIMIT);
    let pool = Pool::processes(1).expect("pool");
    let gate = Gate::new();
    let result = pool.apply_async(logs_then_waits, (gate.arg(),));
    // The task cannot finish before the gate opens, and the gate opens only once
    // its record has arrived.
    assert!(
        eventually(LIMIT, || !kept("long task started").is_empty()),
        "no record while the task ran"
    );
    assert!(!result.ready());
    gate.open();
    assert_eq!(result.get().expect("result"), 7);
    let records = kept("long task started");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].level, log::Level::Warn);
    assert_eq!(records[0].target, "logging");
}

fn logs_in_a_child(x: u32) -> u32 {
    log::error!("spawned child {x}");
    std::process::id()
}

#[test]
fn a_spawned_child_s_records_reach_the_parent() {
    install();
    let _wd = Deadline::arm("a child's records", LIMIT);
    let pid = fondo::spawn(logs_in_a_child, (5,))
        .expect("spawn")
        .join()
        .expect("join");
    let records = kept("spawned child 5");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0].message,
        format!("(worker {pid}) spawned child 5")
    );
    assert_eq!(records[0].worker_pid, Some(u64::from(pid)));
}

/// A logger an initializer installs in each worker: counts what it gets.
struct Counter;

static COUNTED: AtomicUsize = AtomicUsize::new(0);

impl log::Log for Counter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, _: &log::Record<'_>) {
        COUNTED.fetch_add(1, Ordering::SeqCst);
    }
    fn flush(&self) {}
}

static COUNTER: Counter = Counter;

/// As `env_logger::init()` would, in a worker: fails (here: panics) if a logger
/// is already set.
fn own_logger() {
    log::set_logger(&COUNTER).expect("no logger before the initializer");
    log::set_max_level(log::LevelFilter::Trace);
}

fn logs_to_its_own(_: u32) -> usize {
    log::info!("initializer's own logger");
    COUNTED.load(Ordering::SeqCst)
}

#[test]
fn an_initializer_that_installs_a_logger_keeps_it() {
    install();
    let _wd = Deadline::arm("an initializer's logger", LIMIT);
    let pool = Pool::builder()
        .workers(1)
        .initializer(own_logger)
        .processes()
        .expect("pool");
    let counted = pool.map(logs_to_its_own, 0..3).expect("map");
    assert_eq!(counted, [1, 2, 3]);
    assert!(kept("initializer's own logger").is_empty());
}
