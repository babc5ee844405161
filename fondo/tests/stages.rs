//! A worker dying, stuck or failing at every stage of a task (issue 13: "never hang,
//! never loop"): after its task finished (while its result is encoded, dropped or
//! reported), unnoticed (a subprocess holding its descriptors), in user code on
//! either side (serde, callbacks), past the task timeout at every stage, in its
//! initializer; plus the smaller cases (fork, `join_timeout`, a panicking `imap`
//! input, thread creation failing), head-of-line blocking and error messages.
//!
//! Every wait is bounded: a scenario that could hang runs under [`bounded`], which
//! fails the test (instead of hanging it) when it overruns, and single results are
//! read with `get_timeout`. Every process a test starts is killed by a guard. The
//! spec of what happens at each stage is `fondo/src/process/recovery.rs`.

use std::collections::BTreeSet;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{
    RESULT_LIMIT, alive, bounded, example, gone_within, must_get, settled_pids, sigkill, signal,
};

use fondo::{Error, ExitCause, Payload, Pool, Processes, SerdeStep};
use rustix::process::Signal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------
// Harness: per-test files, guards
// ---------------------------------------------------------------------------

/// Limit for a whole scenario: generous, it only tells a hang from slowness.
const SCENARIO: Duration = Duration::from_secs(60);

/// The file named `name` for the test process `owner` (tasks name it after their
/// pool's process, which is their parent, so a plain `fn()` initializer finds it).
fn path_for(owner: u32, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fondo-stages-{owner}-{name}"))
}

/// A per-test temporary file: a run log (one line per run), a PID file or a gate.
/// Removed when dropped; if it holds a PID, that process is killed first.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let path = path_for(std::process::id(), name);
        let _ = std::fs::remove_file(&path);
        TempFile(path)
    }

    /// The path, as tasks take it.
    fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    /// Lines written so far: runs logged by [`note_run`].
    fn runs(&self) -> usize {
        std::fs::read_to_string(&self.0).map_or(0, |s| s.lines().count())
    }

    /// The PID a task wrote here, if any.
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()
    }

    /// Creates the file (opens a gate).
    fn create(&self) {
        std::fs::write(&self.0, b"open").expect("create a temp file");
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            sigkill(pid);
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Appends one line to a run log: called by a task each time it runs.
fn note_run(log: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open run log");
    f.write_all(b"run\n").expect("write run log");
}

/// Opens a gate when dropped, so a task blocked on it ends even if the test fails.
struct OpenOnDrop<'a>(&'a TempFile);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.create();
    }
}

/// Resumes a stopped process when dropped (it may already be dead: harmless).
struct ContOnDrop(u32);

impl Drop for ContOnDrop {
    fn drop(&mut self) {
        signal(self.0, Signal::CONT);
    }
}

fn processes(n: usize) -> Pool<Processes> {
    Pool::processes(n).expect("start a process pool")
}

/// The text of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".to_owned()
    }
}

// ---------------------------------------------------------------------------
// Tasks (plain fns: they run in worker processes)
// ---------------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn my_pid() -> u32 {
    std::process::id()
}

/// Closes every descriptor from 3 up: the worker's socket among them.
fn close_fds_from_3() {
    for fd in 3..1024 {
        // SAFETY: deliberately pulls the worker's descriptors from under it; nothing
        // in this task uses them afterwards, and the worker's death is the point.
        unsafe {
            libc::close(fd);
        }
    }
}

fn segfault() -> ! {
    // SAFETY: deliberately invalid: a write to an address that is never mapped.
    unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u64>(16), 1) };
    unreachable!("the write above kills the process")
}

fn sigkill_self() -> ! {
    sigkill(std::process::id());
    std::thread::sleep(Duration::from_secs(10));
    unreachable!("SIGKILL is not caught")
}

// ---------------------------------------------------------------------------
// 1. Death after "finished": the result's Serialize or Drop kills the worker, or
//    the task closes the worker's socket and returns
// ---------------------------------------------------------------------------

/// What a [`Staged`] result does to its worker, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum How {
    Fine,
    SerializeAborts,
    SerializeExits5,
    SerializeSegfaults,
    SerializeSigkills,
    SerializePanics,
    DropAborts,
    DropPanics,
    /// The task itself closes fds 3..1024 (the worker's socket), then returns.
    ClosesFds,
    /// Serialize sleeps 60 s (for the task timeout).
    SerializeSleeps,
}

impl How {
    fn from_u8(v: u8) -> How {
        [
            How::Fine,
            How::SerializeAborts,
            How::SerializeExits5,
            How::SerializeSegfaults,
            How::SerializeSigkills,
            How::SerializePanics,
            How::DropAborts,
            How::DropPanics,
            How::ClosesFds,
            How::SerializeSleeps,
        ][usize::from(v)]
    }
}

/// A result armed to misbehave in the worker when it is serialised or dropped.
/// Only its number crosses the wire: the copy the caller decodes is disarmed.
#[derive(Debug)]
struct Staged {
    x: u64,
    how: How,
}

impl Serialize for Staged {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.how {
            How::SerializeAborts => std::process::abort(),
            How::SerializeExits5 => std::process::exit(5),
            How::SerializeSegfaults => segfault(),
            How::SerializeSigkills => sigkill_self(),
            How::SerializePanics => panic!("the result refuses to be serialised"),
            How::SerializeSleeps => std::thread::sleep(Duration::from_secs(60)),
            _ => {}
        }
        s.serialize_u64(self.x)
    }
}

impl<'de> Deserialize<'de> for Staged {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Staged {
            x: u64::deserialize(d)?,
            how: How::Fine,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        match self.how {
            How::DropAborts => std::process::abort(),
            How::DropPanics => panic!("the result refuses to be dropped"),
            _ => {}
        }
    }
}

/// Returns `x` as a `Staged` armed as `how` says; logs each run of an armed one.
fn staged((log, how, x): (String, u8, u64)) -> Staged {
    let how = How::from_u8(how);
    if how == How::Fine {
        return Staged { x, how };
    }
    note_run(&log);
    if how == How::ClosesFds {
        close_fds_from_3();
        return Staged { x, how: How::Fine };
    }
    Staged { x, how }
}

/// Worker PIDs before and after.
type BeforeAfter = (Vec<u32>, Vec<u32>);

/// The one misbehaving input of [`staged_imap`], in the middle of a chunk of 4.
const BAD: u64 = 6;

/// `imap` of 0..12 through [`staged`] (input [`BAD`] armed as `how`), chunks of 4
/// on 2 workers: every outcome, then a `map` to show the pool works, then
/// `drop(pool)`, all bounded. With `pids`, also the worker PIDs before and after.
fn staged_imap(
    how: How,
    retries: u32,
    log: &TempFile,
    pids: bool,
) -> (Vec<fondo::Result<u64>>, Option<BeforeAfter>) {
    let path = log.arg();
    bounded(
        &format!("{how:?} with retries({retries})"),
        SCENARIO,
        move || {
            let pool = Pool::builder()
                .workers(2)
                .chunksize(4)
                .retries(retries)
                .processes()
                .unwrap();
            let before = settled_pids(&pool);
            let input = (0..12).map(|x| {
                let armed = if x == BAD { how } else { How::Fine };
                (path.clone(), armed as u8, x)
            });
            let outcomes: Vec<_> = pool.imap(staged, input).map(|r| r.map(|s| s.x)).collect();
            let after = settled_pids(&pool);
            assert_eq!(
                pool.map(square, 0..8).unwrap(),
                [0, 1, 4, 9, 16, 25, 36, 49],
                "the pool works after"
            );
            drop(pool);
            (outcomes, pids.then_some((before, after)))
        },
    )
}

/// The task [`BAD`] gets `WorkerDied` (cause as `cause_ok` says), every other task
/// its value, and the bad task ran at most `retries + 2` times — for retries 0 and 2.
fn death_after_finished(how: How, cause_ok: fn(ExitCause) -> bool) {
    for retries in [0, 2] {
        let log = TempFile::new(&format!("runs-{how:?}-{retries}"));
        let (outcomes, _) = staged_imap(how, retries, &log, false);
        for (i, o) in outcomes.iter().enumerate() {
            if i as u64 == BAD {
                match o {
                    Err(Error::WorkerDied { cause, .. }) => {
                        assert!(cause_ok(*cause), "{how:?}: cause {cause:?}")
                    }
                    other => {
                        panic!("{how:?} retries({retries}): expected WorkerDied, got {other:?}")
                    }
                }
            } else {
                assert_eq!(o.as_ref().ok(), Some(&(i as u64)), "{how:?}: task {i}");
            }
        }
        let runs = log.runs();
        eprintln!("{how:?} retries({retries}): the bad task ran {runs} times");
        assert!(
            (1..=retries as usize + 2).contains(&runs),
            "{how:?} retries({retries}): the bad task ran {runs} times (at most {} allowed)",
            retries + 2
        );
    }
}

// Item 1 / contract "worker dies" at the stage "encoding the result".
#[test]
fn a_result_whose_serialize_aborts_is_worker_died() {
    death_after_finished(How::SerializeAborts, |c| c == ExitCause::Signal(6));
}

// Item 1 / contract "worker dies": `exit` while encoding the result.
#[test]
fn a_result_whose_serialize_exits_is_worker_died() {
    death_after_finished(How::SerializeExits5, |c| c == ExitCause::Code(5));
}

// Item 1 / contract "worker dies": a segfault while encoding the result.
#[test]
fn a_result_whose_serialize_segfaults_is_worker_died() {
    death_after_finished(How::SerializeSegfaults, |c| c == ExitCause::Signal(11));
}

// Item 1 / contract "worker dies": SIGKILL to its own worker while encoding.
#[test]
fn a_result_whose_serialize_sigkills_is_worker_died() {
    death_after_finished(How::SerializeSigkills, |c| c == ExitCause::Signal(9));
}

// Item 1 / contract "worker dies": the result's `Drop` aborts (after encoding).
#[test]
fn a_result_whose_drop_aborts_is_worker_died() {
    death_after_finished(How::DropAborts, |c| c == ExitCause::Signal(6));
}

// Item 1 / recovery.rs "finished, unreported": the task closes the worker's socket
// and returns; the worker dies reporting. Run again alone once, then charged.
#[test]
fn a_task_that_closes_the_workers_socket_is_worker_died() {
    death_after_finished(How::ClosesFds, |_| true);
}

// Item 1 / contract "result cannot be serialised": a `Serialize` that panics is
// that task's `Serialization` error; the worker lives on.
#[test]
fn a_result_whose_serialize_panics_is_a_serialization_error() {
    let log = TempFile::new("runs-serialize-panics");
    let (outcomes, pids) = staged_imap(How::SerializePanics, 0, &log, true);
    for (i, o) in outcomes.iter().enumerate() {
        if i as u64 == BAD {
            match o {
                Err(Error::Serialization {
                    what: Payload::Result,
                    step: SerdeStep::Serialize,
                    message,
                    ..
                }) => assert!(
                    message.contains("the result refuses to be serialised"),
                    "{message}"
                ),
                other => panic!("expected Serialization(Result, Serialize), got {other:?}"),
            }
        } else {
            assert_eq!(o.as_ref().ok(), Some(&(i as u64)), "task {i}");
        }
    }
    let (before, after) = pids.unwrap();
    assert_eq!(
        before, after,
        "a panicking Serialize must not cost the worker"
    );
    assert_eq!(log.runs(), 1, "ran once, not retried");
}

// Item 1 / contract "task panics": a result whose `Drop` panics is `Panicked`, and
// the message says it was the drop.
#[test]
fn a_result_whose_drop_panics_is_panicked() {
    let log = TempFile::new("runs-drop-panics");
    let (outcomes, pids) = staged_imap(How::DropPanics, 0, &log, true);
    for (i, o) in outcomes.iter().enumerate() {
        if i as u64 == BAD {
            match o {
                Err(Error::Panicked { message, .. }) => assert!(
                    message.contains("dropping the result")
                        && message.contains("the result refuses to be dropped"),
                    "{message}"
                ),
                other => panic!("expected Panicked, got {other:?}"),
            }
        } else {
            assert_eq!(o.as_ref().ok(), Some(&(i as u64)), "task {i}");
        }
    }
    let (before, after) = pids.unwrap();
    assert_eq!(before, after, "a panicking Drop must not cost the worker");
    assert_eq!(log.runs(), 1, "ran once, not retried");
}

// ---------------------------------------------------------------------------
// 2. A death nobody notices: a subprocess holds the worker's descriptors
// ---------------------------------------------------------------------------

/// Starts `sleep 30` (its PID into `pidfile`), leaves it running, aborts the worker.
fn spawn_sleep_then_abort(pidfile: String) -> u64 {
    let child = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sleep");
    std::fs::write(&pidfile, child.id().to_string()).expect("write pid file");
    std::mem::forget(child);
    std::process::abort()
}

/// Forks a bare child that sleeps 30 s holding every descriptor of the worker (its
/// socket too: CLOEXEC does nothing without an exec), then aborts the worker.
fn fork_sleeper_then_abort(pidfile: String) -> u64 {
    // SAFETY: the child only makes async-signal-safe calls (close, sleep, _exit).
    match unsafe { libc::fork() } {
        // SAFETY: in the forked child: close, sleep and _exit are async-signal-safe.
        0 => unsafe {
            // Not the test's output, though: a reader of it would wait 30 s.
            libc::close(1);
            libc::close(2);
            libc::sleep(30);
            libc::_exit(0)
        },
        -1 => panic!("fork failed"),
        pid => {
            std::fs::write(&pidfile, pid.to_string()).expect("write pid file");
            std::process::abort()
        }
    }
}

/// The task's worker aborts while a process it started lives on: the task gets
/// `WorkerDied` within 10 s (the subprocess lives 30), and the pool works after.
fn death_with_a_survivor<F>(task: F, name: &str)
where
    F: fondo::Task<(String,), Output = u64> + Copy,
{
    let pidfile = TempFile::new(name);
    let pool = processes(1);
    let victim = settled_pids(&pool)[0];
    let t0 = Instant::now();
    let r = pool.apply_async(task, (pidfile.arg(),));
    match r.get_timeout(Duration::from_secs(10)) {
        Err(Error::WorkerDied { pid, cause }) => {
            assert_eq!(pid, victim);
            assert_eq!(cause, ExitCause::Signal(6));
        }
        Err(Error::WaitTimeout { .. }) => {
            panic!("{name}: the worker's death went unnoticed for 10 s")
        }
        other => panic!("{name}: expected WorkerDied, got {other:?}"),
    }
    let took = t0.elapsed();
    let survivor = pidfile.pid().expect("the task wrote its subprocess's PID");
    assert!(alive(survivor), "the subprocess should still be sleeping");
    eprintln!("{name}: WorkerDied after {took:?} with the subprocess alive");
    assert_eq!(
        pool.apply(square, (7,)).unwrap(),
        49,
        "the pool works after"
    );
    // `pidfile` kills the subprocess when dropped.
}

// Item 2: a `Command` child started by the task outlives its worker.
#[test]
fn a_worker_death_is_seen_though_its_command_child_lives_on() {
    death_with_a_survivor(spawn_sleep_then_abort, "sleep-child-pid");
}

// Item 2: a bare `fork` child holds the worker's socket open after it dies.
#[test]
fn a_worker_death_is_seen_though_a_forked_child_holds_its_socket() {
    death_with_a_survivor(fork_sleeper_then_abort, "fork-child-pid");
}

// Item 2, for `fondo::spawn`: the child aborts while a bare `fork` child of its
// task holds its socket; `join_timeout` reports the death, not a wait timeout.
#[test]
fn a_spawned_childs_death_is_seen_though_a_forked_child_holds_its_socket() {
    let pidfile = TempFile::new("spawn-fork-child-pid");
    let mut child = fondo::spawn(fork_sleeper_then_abort, (pidfile.arg(),)).unwrap();
    let pid = child.pid();
    let t0 = Instant::now();
    let r = child.join_timeout(Duration::from_secs(10));
    let took = t0.elapsed();
    if let Some(survivor) = pidfile.pid() {
        sigkill(survivor);
    }
    match r {
        Err(Error::WorkerDied { pid: p, cause }) => {
            assert_eq!(p, pid);
            assert_eq!(cause, ExitCause::Signal(6));
        }
        other => panic!("after {took:?}: expected WorkerDied, got {other:?}"),
    }
}

/// `ls -l /proc/self/fd` as a subprocess of the task sees it.
fn list_fds() -> String {
    let out = Command::new("ls")
        .args(["-l", "/proc/self/fd"])
        .stdin(Stdio::null())
        .output()
        .expect("run ls");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The descriptors an `ls -l /proc/self/fd` listing shows, with their targets.
fn parse_fds(listing: &str) -> Vec<(u32, String)> {
    listing
        .lines()
        .filter_map(|line| {
            let (left, target) = line.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_owned()))
        })
        .collect()
}

/// Descriptors above 2 in a listing, but for ls's own directory descriptor.
fn extra_fds(listing: &str) -> BTreeSet<(u32, String)> {
    parse_fds(listing)
        .into_iter()
        .filter(|(fd, target)| {
            *fd > 2 && !(target.starts_with("/proc/") && target.ends_with("/fd"))
        })
        .collect()
}

/// Only 0, 1, 2 and ls's own directory descriptor — and whatever this test process
/// itself was started with and passes on to every subprocess (`outside`: the
/// harness's pipes, say), which is no business of fondo's.
fn assert_only_stdio(who: &str, listing: &str, outside: &BTreeSet<(u32, String)>) {
    let numbers: BTreeSet<u32> = parse_fds(listing).iter().map(|(fd, _)| *fd).collect();
    assert!(
        [0, 1, 2].iter().all(|fd| numbers.contains(fd)),
        "{who}: {listing}"
    );
    let extra: Vec<_> = extra_fds(listing).difference(outside).cloned().collect();
    assert!(
        extra.is_empty(),
        "{who}: a subprocess inherited {extra:?}:\n{listing}"
    );
}

// Item 2: what a task starts inherits none of fondo's descriptors (socket, progress
// page, lanes, arena are CLOEXEC in workers) — in a pool and in `fondo::spawn`.
#[test]
fn a_tasks_subprocess_inherits_only_stdio() {
    let outside = extra_fds(&list_fds());
    if !outside.is_empty() {
        eprintln!("this test process passes on {outside:?} to its subprocesses");
    }
    let pool = processes(1);
    let listing = pool.apply(list_fds, ()).unwrap();
    assert_only_stdio("pool worker", &listing, &outside);
    let child = fondo::spawn(list_fds, ()).unwrap();
    assert_only_stdio("fondo::spawn", &child.join().unwrap(), &outside);
}

// ---------------------------------------------------------------------------
// 3. User code in the caller and the worker: serde and callbacks
// ---------------------------------------------------------------------------

/// A result whose `Deserialize` (in the caller) panics on 13.
#[derive(Debug, Serialize)]
struct PanicsComingBack(u64);

impl<'de> Deserialize<'de> for PanicsComingBack {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != 13, "13 will not come back");
        Ok(PanicsComingBack(v))
    }
}

fn comes_back(x: u64) -> PanicsComingBack {
    PanicsComingBack(x)
}

fn is_deserialize_panic(e: &Error, what: Payload, text: &str) -> bool {
    matches!(e.inner(), Error::Serialization { what: w, step: SerdeStep::Deserialize, message, .. }
        if *w == what && message.contains(text))
}

// Item 3 / contract "result cannot be deserialised": a `Deserialize` that panics in
// the caller fails that task only — through imap, map and apply_async (read by the
// waiting thread itself); callbacks, later work and worker replacement still work.
#[test]
fn a_result_whose_deserialize_panics_in_the_caller_fails_that_task_only() {
    bounded("deserialize panic in the caller", SCENARIO, || {
        let pool = processes(2);
        let outcomes: Vec<_> = pool.imap(comes_back, 0..20).collect();
        for (i, o) in outcomes.iter().enumerate() {
            match o {
                Ok(v) => assert_eq!(v.0, i as u64),
                Err(e) if i == 13 => assert!(
                    is_deserialize_panic(e, Payload::Result, "13 will not come back"),
                    "{e:?}"
                ),
                Err(e) => panic!("task {i}: {e:?}"),
            }
        }
        let whole = pool.map(comes_back, 0..20);
        assert!(
            matches!(&whole, Err(e) if e.index() == Some(13)
                && is_deserialize_panic(e, Payload::Result, "13 will not come back")),
            "{whole:?}"
        );
        // apply_async + get_timeout: the waiting thread reads (and decodes) the answer.
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let bad = pool
            .apply_async(comes_back, (13,))
            .on_done(move |r| tx.send(("bad", r.is_err())).unwrap());
        let good = pool
            .apply_async(comes_back, (12,))
            .on_done(move |r| tx2.send(("good", r.is_ok())).unwrap());
        let got = bad.get_timeout(RESULT_LIMIT);
        assert!(
            matches!(&got, Err(e) if is_deserialize_panic(e, Payload::Result, "13 will not come back")),
            "{got:?}"
        );
        assert_eq!(must_get(&good, "good").unwrap().0, 12);
        let mut fired: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(RESULT_LIMIT).expect("callback fired"))
            .collect();
        fired.sort();
        assert_eq!(fired, [("bad", true), ("good", true)]);
        // The pool works, and a worker killed now is replaced.
        assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
        let before = settled_pids(&pool);
        sigkill(before[0]);
        assert!(gone_within(before[0], Duration::from_secs(5)));
        let outcomes: Vec<_> = (0..10).map(|i| pool.apply_async(square, (i,))).collect();
        for (i, r) in outcomes.iter().enumerate() {
            assert_eq!(must_get(r, "after the kill").unwrap(), (i * i) as u64);
        }
        let after = settled_pids(&pool);
        assert!(!after.contains(&before[0]), "{before:?} -> {after:?}");
        assert!(after.iter().all(|&p| alive(p)), "{after:?}");
        // `fondo::spawn` decodes its child's result the same way.
        let got = fondo::spawn(comes_back, (13,)).unwrap().join();
        assert!(
            matches!(&got, Err(e) if is_deserialize_panic(e, Payload::Result, "13 will not come back")),
            "{got:?}"
        );
    });
}

/// An argument whose `Deserialize` (in the worker) panics on 13.
#[derive(Debug, Serialize)]
struct PanicsArriving(u64);

impl<'de> Deserialize<'de> for PanicsArriving {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != 13, "argument 13 will not arrive");
        Ok(PanicsArriving(v))
    }
}

fn arriving(a: PanicsArriving) -> u64 {
    a.0
}

// Item 3 / contract "argument cannot be deserialised": a panic in the worker's
// `Deserialize` fails that task only; the worker lives on.
#[test]
fn an_argument_whose_deserialize_panics_in_the_worker_fails_that_task_only() {
    bounded("deserialize panic in the worker", SCENARIO, || {
        let pool = Pool::builder().workers(2).chunksize(4).processes().unwrap();
        let before = settled_pids(&pool);
        let outcomes: Vec<_> = pool.imap(arriving, (10..18).map(PanicsArriving)).collect();
        for (i, o) in (10..).zip(&outcomes) {
            match o {
                Ok(v) => assert_eq!(*v, i),
                Err(e) if i == 13 => assert!(
                    is_deserialize_panic(e, Payload::Arguments, "argument 13 will not arrive"),
                    "{e:?}"
                ),
                Err(e) => panic!("task {i}: {e:?}"),
            }
        }
        let r = pool.apply_async(arriving, (PanicsArriving(13),));
        let got = must_get(&r, "apply_async");
        assert!(
            matches!(&got, Err(e) if is_deserialize_panic(e, Payload::Arguments, "argument 13 will not arrive")),
            "{got:?}"
        );
        assert_eq!(settled_pids(&pool), before, "the worker lives on");
    });
}

/// An argument whose `Serialize` (in the caller) panics on 13.
#[derive(Debug, Deserialize)]
struct PanicsLeaving(u64);

impl Serialize for PanicsLeaving {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 13, "argument 13 will not leave");
        s.serialize_u64(self.0)
    }
}

fn leaving(a: PanicsLeaving) -> u64 {
    a.0
}

fn is_serialize_panic(e: &Error) -> bool {
    matches!(e.inner(), Error::Serialization { what: Payload::Arguments, step: SerdeStep::Serialize, message, .. }
        if message.contains("argument 13 will not leave"))
}

// Item 3 / contract "argument cannot be serialised": a panic in the caller's
// `Serialize` is that task's error, not a panic in the caller.
#[test]
fn an_argument_whose_serialize_panics_in_the_caller_fails_that_task_only() {
    bounded("serialize panic in the caller", SCENARIO, || {
        let pool = Pool::builder().workers(2).chunksize(4).processes().unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.apply_async(leaving, (PanicsLeaving(13),))
        }))
        .expect("apply_async must not panic in the caller");
        let got = must_get(&r, "apply_async");
        assert!(matches!(&got, Err(e) if is_serialize_panic(e)), "{got:?}");
        let outcomes: Vec<_> = catch_unwind(AssertUnwindSafe(|| {
            pool.imap(leaving, (10..18).map(PanicsLeaving)).collect()
        }))
        .expect("imap must not panic in the caller");
        for (i, o) in (10..).zip(&outcomes) {
            match o {
                Ok(v) => assert_eq!(*v, i),
                Err(e) if i == 13 => assert!(is_serialize_panic(e), "{e:?}"),
                Err(e) => panic!("task {i}: {e:?}"),
            }
        }
        let whole = catch_unwind(AssertUnwindSafe(|| {
            pool.map(leaving, (10..18).map(PanicsLeaving))
        }))
        .expect("map must not panic in the caller");
        assert!(
            matches!(&whole, Err(e) if e.index() == Some(3) && is_serialize_panic(e)),
            "{whole:?}"
        );
        assert_eq!(pool.apply(leaving, (PanicsLeaving(12),)).unwrap(), 12);
        // `fondo::spawn` refuses the same argument with the same error.
        let spawned = catch_unwind(|| fondo::spawn(leaving, (PanicsLeaving(13),)).map(|c| c.pid()))
            .expect("spawn must not panic in the caller");
        assert!(
            matches!(&spawned, Err(e) if is_serialize_panic(e)),
            "{spawned:?}"
        );
    });
}

/// A panicking `on_done` harms neither the callbacks after it (on the same result
/// and on others) nor any result.
macro_rules! panicking_callback {
    ($pool:expr) => {{
        let pool = $pool;
        let (tx, rx) = mpsc::channel::<(u64, fondo::Result<u64>)>();
        let first = {
            let tx = tx.clone();
            pool.apply_async(square, (2,))
                .on_done(|_| panic!("the callback panics"))
                .on_done(move |r| tx.send((2, r.clone())).unwrap())
        };
        assert_eq!(must_get(&first, "first").unwrap(), 4);
        let later: Vec<_> = (0..20u64)
            .map(|i| {
                let tx = tx.clone();
                let r = pool.apply_async(square, (i,));
                if i % 5 == 0 {
                    r.on_done(|_| panic!("another callback panics"))
                        .on_done(move |r| tx.send((100 + i, r.clone())).unwrap())
                } else {
                    r.on_done(move |r| tx.send((100 + i, r.clone())).unwrap())
                }
            })
            .collect();
        for (i, r) in (0u64..).zip(&later) {
            assert_eq!(must_get(r, "later").unwrap(), i * i);
        }
        let mut fired: Vec<(u64, u64)> = (0..21)
            .map(|_| {
                let (k, r) = rx.recv_timeout(RESULT_LIMIT).expect("a callback fired");
                (k, r.expect("callback saw the value"))
            })
            .collect();
        fired.sort();
        let mut want = vec![(2, 4)];
        want.extend((0..20).map(|i| (100 + i, i * i)));
        assert_eq!(fired, want);
        assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    }};
}

// Item 3: a panicking `on_done` on processes (run by a pool thread or by the
// waiting thread).
#[test]
fn processes_a_panicking_callback_harms_nothing() {
    bounded("panicking callback (processes)", SCENARIO, || {
        panicking_callback!(processes(2))
    });
}

// Item 3: the same on threads.
#[test]
fn threads_a_panicking_callback_harms_nothing() {
    bounded("panicking callback (threads)", SCENARIO, || {
        panicking_callback!(Pool::threads(2).unwrap())
    });
}

// ---------------------------------------------------------------------------
// 4. task_timeout at every stage
// ---------------------------------------------------------------------------

const LIMIT: Duration = Duration::from_secs(1);
/// How long a timed-out task may take to be reported: the limit plus slack.
const TIMEOUT_BOUND: Duration = Duration::from_secs(15);

fn hang_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn reads_init_flag(_: u64) -> bool {
    INIT_RAN.load(std::sync::atomic::Ordering::Acquire)
}

// Item 4 / recovery.rs `Overdue::Stalled`: an initializer that never returns. The
// task sent to it times out within about the limit; the pool is then broken.
#[test]
fn an_initializer_that_hangs_times_out_then_breaks_the_pool() {
    let pool = Pool::builder()
        .workers(1)
        .initializer(hang_forever)
        .task_timeout(LIMIT)
        .processes()
        .unwrap();
    let t0 = Instant::now();
    let r = pool.apply_async(reads_init_flag, (0,));
    match r.get_timeout(TIMEOUT_BOUND) {
        Err(Error::Timeout { limit }) => assert_eq!(limit, LIMIT),
        other => panic!("expected Timeout, got {other:?}"),
    }
    eprintln!("hung initializer: Timeout after {:?}", t0.elapsed());
    let later = pool.apply_async(reads_init_flag, (1,));
    let got = later.get_timeout(TIMEOUT_BOUND);
    assert!(
        matches!(got, Err(Error::InitializerFailed { .. })),
        "{got:?}"
    );
    assert!(matches!(
        pool.map(reads_init_flag, 0..4),
        Err(Error::InitializerFailed { .. })
    ));
    bounded("drop after a hung initializer", SCENARIO, move || {
        drop(pool)
    });
}

// Item 4 / recovery.rs `Overdue::Running`: the result's `Serialize` sleeps 60 s.
#[test]
fn a_result_whose_serialize_hangs_times_out() {
    let pool = Pool::builder()
        .workers(1)
        .task_timeout(LIMIT)
        .processes()
        .unwrap();
    let victim = settled_pids(&pool)[0];
    let log = TempFile::new("runs-serialize-sleeps");
    let t0 = Instant::now();
    let r = pool.apply_async(staged, ((log.arg(), How::SerializeSleeps as u8, 1),));
    match r.get_timeout(TIMEOUT_BOUND) {
        Err(Error::Timeout { limit }) => assert_eq!(limit, LIMIT),
        other => panic!("expected Timeout, got {:?}", other.map(|s| s.x)),
    }
    eprintln!("hung Serialize: Timeout after {:?}", t0.elapsed());
    assert!(gone_within(victim, Duration::from_secs(5)), "killed");
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
    assert_ne!(settled_pids(&pool)[0], victim, "replaced");
    // Once, or not at all on a machine so loaded it did not start within the limit
    // (it then times out waiting to start): never again.
    assert!(log.runs() <= 1, "timeouts are not retried");
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A worker stopped (SIGSTOP) with jobs in its pipeline: each of its tasks times
/// out or completes elsewhere, nothing waits forever, and the stopped worker is
/// killed. `idle`: stopped before the work is submitted (so nothing of it ever
/// starts there), else right after.
fn stopped_worker(idle: bool) {
    let pool = Pool::builder()
        .workers(2)
        .prefetch(2)
        .task_timeout(LIMIT)
        .processes()
        .unwrap();
    let victim = settled_pids(&pool)[0];
    let _cont = ContOnDrop(victim);
    if idle {
        signal(victim, Signal::STOP);
    }
    let pending: Vec<_> = (0..8).map(|_| pool.apply_async(sleep_ms, (200,))).collect();
    if !idle {
        signal(victim, Signal::STOP);
    }
    let t0 = Instant::now();
    let mut timed_out = 0;
    for (i, r) in pending.iter().enumerate() {
        match r.get_timeout(Duration::from_secs(20)) {
            Ok(ms) => assert_eq!(ms, 200),
            Err(Error::Timeout { .. }) => timed_out += 1,
            Err(Error::WaitTimeout { .. }) => panic!("task {i} still waiting after 20 s"),
            Err(e) => panic!("task {i}: {e:?}"),
        }
    }
    eprintln!(
        "stopped worker (idle: {idle}): {timed_out} timed out, all done in {:?}",
        t0.elapsed()
    );
    assert!(
        gone_within(victim, Duration::from_secs(10)),
        "the stopped worker {victim} was not killed"
    );
    assert_eq!(pool.map(square, 0..6).unwrap(), [0, 1, 4, 9, 16, 25]);
}

// Item 4 / recovery.rs `Overdue::Stalled`: stopped with jobs sent, none started.
#[test]
fn a_worker_stopped_while_idle_with_jobs_sent_is_killed() {
    bounded("stopped idle worker", SCENARIO, || stopped_worker(true));
}

// Item 4 / recovery.rs `Overdue::Running` or `Stalled` (whichever stage the stop
// caught) + requeue: stopped right after the work was sent.
#[test]
fn a_worker_stopped_while_busy_is_killed() {
    bounded("stopped busy worker", SCENARIO, || stopped_worker(false));
}

// ---------------------------------------------------------------------------
// 5. Initializers
// ---------------------------------------------------------------------------

static INIT_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes one run of the initializer `name` in the log of the pool's process.
fn note_init(name: &str) {
    let log = path_for(std::os::unix::process::parent_id(), name);
    note_run(&log.to_string_lossy());
}

fn init_panics() {
    note_init("init-panics");
    INIT_RAN.store(true, std::sync::atomic::Ordering::Release);
    panic!("the initializer refuses");
}

fn init_exits() {
    note_init("init-exits");
    INIT_RAN.store(true, std::sync::atomic::Ordering::Release);
    std::process::exit(1);
}

/// Every task of a pool whose initializer fails gets `InitializerFailed` (with
/// `text` in its message), never a value; later submissions too; and the workers
/// are not restarted without end.
fn failing_initializer(init: fn(), log_name: &str, text: &str) {
    let log = TempFile::new(log_name);
    let (text, name) = (text.to_owned(), log_name.to_owned());
    bounded(log_name, SCENARIO, move || {
        let workers = 2;
        let pool = Pool::builder()
            .workers(workers)
            .initializer(init)
            .processes()
            .expect("the pool starts; its initializer fails later");
        let failed = |o: &fondo::Result<bool>| matches!(o, Err(Error::InitializerFailed { message }) if message.contains(&text));
        let outcomes: Vec<_> = pool.imap(reads_init_flag, 0..8).collect();
        for (i, o) in outcomes.iter().enumerate() {
            assert!(failed(o), "task {i}: {o:?} (Ok(true): it ran initialised)");
        }
        let whole = pool.map(reads_init_flag, 0..8);
        assert!(
            matches!(&whole, Err(Error::InitializerFailed { .. })),
            "{whole:?}"
        );
        let later = pool.apply_async(reads_init_flag, (0,));
        let got = must_get(&later, "later");
        assert!(failed(&got), "{got:?}");
        // Give a respawn storm time to show.
        std::thread::sleep(Duration::from_millis(500));
        let runs = log.runs();
        eprintln!("{name}: the initializer ran {runs} times; {got:?}");
        assert!(
            (1..=2 * workers).contains(&runs),
            "the initializer ran {runs} times for {workers} workers"
        );
        drop(pool);
    });
}

// Item 5: an initializer that panics breaks the pool, with its message.
#[test]
fn processes_an_initializer_that_panics_breaks_the_pool() {
    failing_initializer(init_panics, "init-panics", "the initializer refuses");
}

// Item 5: an initializer that exits breaks the pool.
#[test]
fn processes_an_initializer_that_exits_breaks_the_pool() {
    failing_initializer(init_exits, "init-exits", "exit");
}

fn init_panics_on_a_thread() {
    panic!("the thread initializer refuses");
}

// Item 5: the same on threads.
#[test]
fn threads_an_initializer_that_panics_breaks_the_pool() {
    bounded("thread initializer", SCENARIO, || {
        let pool = Pool::builder()
            .workers(2)
            .initializer(init_panics_on_a_thread)
            .threads()
            .unwrap();
        let failed = |o: &fondo::Result<u64>| {
            matches!(o, Err(Error::InitializerFailed { message })
                if message.contains("the thread initializer refuses"))
        };
        let r = pool.apply_async(square, (3,));
        let got = must_get(&r, "apply_async");
        assert!(failed(&got), "{got:?}");
        let outcomes: Vec<_> = pool.imap(square, 0..4).collect();
        assert!(outcomes.iter().all(failed), "{outcomes:?}");
        assert!(matches!(
            pool.map(square, 0..4),
            Err(Error::InitializerFailed { .. })
        ));
        drop(pool);
    });
}

// ---------------------------------------------------------------------------
// 6. Smaller: fork, join_timeout, a panicking imap input, thread creation failing
// ---------------------------------------------------------------------------

/// Runs a helper program to its end, bounded: its status and output.
fn run_helper(name: &str, args: &[&str], limit: Duration) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let bin = example(name);
    let child = Command::new(&bin)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start helper");
    let pgid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(limit);
    // Whatever is left of its group (a hung child, workers) goes now.
    if let Some(p) = rustix::process::Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(p, Signal::KILL);
    }
    match out {
        Ok(out) => out.expect("wait for helper"),
        Err(_) => panic!("{name} {args:?} did not finish in {limit:?}: hang"),
    }
}

// Item 6a: a child forked after the parent used a process pool makes pools and
// spawns of its own (fondo's spawner thread does not survive a fork).
#[test]
fn a_forked_child_makes_its_own_process_pools() {
    for mode in ["pool-dropped", "pool-alive"] {
        let out = run_helper("fault_fork_after_pool", &[mode], Duration::from_secs(10));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD OK"),
            "{mode}: {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn close_fds_then_sleep(secs: u64) -> u64 {
    close_fds_from_3();
    std::thread::sleep(Duration::from_secs(secs));
    secs
}

// Item 6b: `join_timeout` is bounded even when the child's socket is closed but the
// child lives on; `kill` + `join` then reap it.
#[test]
fn join_timeout_is_bounded_when_the_child_closes_its_socket() {
    let mut child = fondo::spawn(close_fds_then_sleep, (30,)).unwrap();
    let pid = child.pid();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = child.join_timeout(Duration::from_secs(1));
        let _ = tx.send((r, t0.elapsed()));
        child
    });
    let Ok((r, took)) = rx.recv_timeout(Duration::from_secs(10)) else {
        sigkill(pid);
        let _ = waiter.join();
        panic!("join_timeout(1 s) did not return within 10 s");
    };
    let mut child = waiter.join().unwrap();
    assert!(
        matches!(r, Err(Error::WaitTimeout { .. })),
        "{r:?} after {took:?}"
    );
    assert!(alive(pid), "the child sleeps on");
    child.kill().unwrap();
    let r = bounded("join after kill", Duration::from_secs(10), move || {
        child.join()
    });
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

// Item 6b: `join_timeout(Duration::MAX)` means "no deadline", not an overflow.
#[test]
fn join_timeout_of_duration_max_waits_for_the_value() {
    let r = bounded("join_timeout(MAX)", SCENARIO, || {
        let mut child = fondo::spawn(square, (12,)).unwrap();
        child.join_timeout(Duration::MAX)
    });
    assert_eq!(r.unwrap(), 144);
}

/// `0..10` whose item 5 panics.
fn input_panicking_at_5() -> impl Iterator<Item = u64> {
    (0..10u64).inspect(|&x| assert!(x != 5, "the input runs dry at 5"))
}

/// `imap` over an input that panics at item 5 yields the results of items 0..5 in
/// order, then the panic comes out of `next()`; the pool works after.
macro_rules! imap_input_panics {
    ($pool:expr) => {{
        let pool = $pool;
        let mut it = pool.imap(square, input_panicking_at_5());
        for i in 0..5u64 {
            let got = catch_unwind(AssertUnwindSafe(|| it.next()));
            match got {
                Ok(Some(Ok(v))) => assert_eq!(v, i * i),
                Ok(other) => panic!("item {i}: {other:?}"),
                Err(p) => panic!(
                    "item {i}: the input's panic came out early: {}",
                    panic_text(&*p)
                ),
            }
        }
        match catch_unwind(AssertUnwindSafe(|| it.next())) {
            Err(p) => assert!(
                panic_text(&*p).contains("the input runs dry at 5"),
                "{}",
                panic_text(&*p)
            ),
            Ok(other) => panic!("item 5: expected the input's panic, got {other:?}"),
        }
        drop(it);
        assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
        drop(pool);
    }};
}

// Item 6c: a panicking `imap` input on processes.
#[test]
fn processes_imap_input_that_panics_yields_what_came_before() {
    bounded("imap input panics (processes)", SCENARIO, || {
        imap_input_panics!(processes(2))
    });
}

// Item 6c: the same on threads.
#[test]
fn threads_imap_input_that_panics_yields_what_came_before() {
    bounded("imap input panics (threads)", SCENARIO, || {
        imap_input_panics!(Pool::threads(2).unwrap())
    });
}

// Item 6d: `Pool::threads(n)` when thread creation fails part-way: `Err`, and the
// threads it did start are gone (whole program: the limit is process-wide).
#[test]
fn threads_that_cannot_all_start_are_an_error_and_leave_none_behind() {
    let out = run_helper("fault_thread_limit", &[], Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "{:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// 7. Head-of-line blocking: a long task holds up no short one while a worker is free
// ---------------------------------------------------------------------------

/// Blocks until `gate` exists (or 20 s pass); returns its worker's PID.
fn wait_for_gate(gate: String) -> u32 {
    let t0 = Instant::now();
    while !std::path::Path::new(&gate).exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::process::id()
}

// Item 7: a gated task on one of 2 workers, then two fast ones back to back: both
// complete on the other worker while the gated one is still blocked. 10 rounds.
#[test]
fn a_blocked_task_holds_up_no_task_behind_it() {
    let pool = processes(2);
    for round in 0..10 {
        let gate = TempFile::new(&format!("gate-{round}"));
        let opener = OpenOnDrop(&gate);
        let gated = pool.apply_async(wait_for_gate, (gate.arg(),));
        let fast = [pool.apply_async(my_pid, ()), pool.apply_async(my_pid, ())];
        let mut ran_on = Vec::new();
        for (k, r) in fast.iter().enumerate() {
            match r.get_timeout(Duration::from_secs(10)) {
                Ok(pid) => ran_on.push(pid),
                other => {
                    panic!("round {round}: fast task {k} stuck behind the gated one: {other:?}")
                }
            }
        }
        assert!(
            !gated.ready(),
            "round {round}: the gated task ended before its gate opened"
        );
        drop(opener);
        let gated_pid = gated
            .get_timeout(Duration::from_secs(10))
            .expect("the gated task ends once its gate opens");
        assert!(
            !ran_on.contains(&gated_pid),
            "round {round}: fast tasks ran on the blocked worker? {ran_on:?} vs {gated_pid}"
        );
    }
}

/// Item 0 waits for `gate`, the others sleep 20 ms and log their index.
fn long_or_short((gate, log, x): (String, String, u64)) -> u64 {
    if x == 0 {
        wait_for_gate(gate);
    } else {
        std::thread::sleep(Duration::from_millis(20));
        note_run(&log);
    }
    x
}

// Item 7: `imap_unordered` and `imap` with default chunks and prefetch, a long task
// first and 8 short ones: every short one completes while the long one is blocked.
#[test]
fn imap_of_long_and_short_tasks_is_not_held_up_by_the_long_one() {
    for round in 0..10 {
        for ordered in [false, true] {
            let gate = TempFile::new(&format!("imap-gate-{round}-{ordered}"));
            let log = TempFile::new(&format!("imap-log-{round}-{ordered}"));
            let opener = OpenOnDrop(&gate);
            let (tx, rx) = mpsc::channel();
            let (g, l) = (gate.arg(), log.arg());
            let reader = std::thread::spawn(move || {
                let pool = processes(2);
                let input = (0..9).map(|x| (g.clone(), l.clone(), x));
                if ordered {
                    for r in pool.imap(long_or_short, input) {
                        let _ = tx.send(r);
                    }
                } else {
                    for r in pool.imap_unordered(long_or_short, input) {
                        let _ = tx.send(r);
                    }
                }
            });
            let what = format!("round {round}, ordered {ordered}");
            if ordered {
                // In input order nothing can be yielded before the long task; the
                // short ones must still have run.
                let all_ran = common::eventually(Duration::from_secs(10), || log.runs() == 8);
                assert!(all_ran, "{what}: only {} short tasks ran", log.runs());
            } else {
                for k in 0..8 {
                    match rx.recv_timeout(Duration::from_secs(10)) {
                        Ok(Ok(x)) => assert_ne!(x, 0, "{what}: the long one ended early"),
                        Ok(other) => panic!("{what}: short result {k}: {other:?}"),
                        Err(_) => panic!(
                            "{what}: short result {k} not in 10 s: stuck behind the long one"
                        ),
                    }
                }
            }
            drop(opener);
            let rest: Vec<u64> = (0..if ordered { 9 } else { 1 })
                .map(|_| {
                    rx.recv_timeout(Duration::from_secs(10))
                        .expect("results after the gate opens")
                        .expect("a value")
                })
                .collect();
            if ordered {
                assert_eq!(rest, (0..9).collect::<Vec<_>>(), "{what}");
            } else {
                assert_eq!(rest, [0], "{what}");
            }
            reader.join().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// 8. Messages
// ---------------------------------------------------------------------------

const PANIC_LINE: u32 = line!() + 2;
fn panics_on_a_known_line() -> u64 {
    panic!("here and nowhere else")
}

fn assert_location(backend: &str, r: fondo::Result<u64>) {
    match r {
        Err(Error::Panicked { message, location }) => {
            assert_eq!(message, "here and nowhere else");
            let location = location.unwrap_or_else(|| panic!("{backend}: no location"));
            let prefix = format!("{}:{PANIC_LINE}:", file!());
            let column = location.strip_prefix(&prefix);
            assert!(
                column.is_some_and(|c| c.parse::<u32>().is_ok_and(|c| c > 0)),
                "{backend}: location {location:?}, expected {prefix}<column>"
            );
        }
        other => panic!("{backend}: expected Panicked, got {other:?}"),
    }
}

// Item 8 / contract "task panics": `location` names the panicking line.
#[test]
fn a_panics_location_names_its_line_on_threads_and_processes() {
    assert_location(
        "threads",
        Pool::threads(1).unwrap().apply(panics_on_a_known_line, ()),
    );
    assert_location("processes", processes(1).apply(panics_on_a_known_line, ()));
    let child = fondo::spawn(panics_on_a_known_line, ()).unwrap();
    assert_location("fondo::spawn", child.join());
}

/// A port number: its `Deserialize` refuses 65536 and up, with its own message.
#[derive(Debug, Serialize)]
struct Port(u32);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v >= 65536 {
            return Err(serde::de::Error::custom("port must be below 65536"));
        }
        Ok(Port(v))
    }
}

fn port_in(p: Port) -> u32 {
    p.0
}

fn port_out(v: u32) -> Port {
    Port(v)
}

fn assert_port_message(r: fondo::Result<impl std::fmt::Debug>, what: Payload) {
    match r {
        Err(Error::Serialization {
            what: w,
            step: SerdeStep::Deserialize,
            type_name,
            message,
        }) => {
            assert_eq!(w, what);
            assert!(type_name.contains("Port"), "type_name {type_name:?}");
            assert!(
                message.contains("port must be below 65536"),
                "{what}: message {message:?} lost the type's own words"
            );
        }
        other => panic!("{what}: expected Serialization(Deserialize), got {other:?}"),
    }
}

// Item 8 / contract "(de)serialised": a `Deserialize`'s own error message reaches
// the caller, with the type's name, both ways.
#[test]
fn a_deserialize_errors_own_message_reaches_the_caller() {
    let pool = processes(1);
    assert_port_message(pool.apply(port_in, (Port(70_000),)), Payload::Arguments);
    assert_port_message(pool.apply(port_out, (70_000,)), Payload::Result);
    assert_eq!(pool.apply(port_in, (Port(8080),)).unwrap(), 8080);
}

fn abort_now() -> u64 {
    std::process::abort()
}

// Item 8: a worker killed by SIGABRT says "SIGABRT", not just a number.
#[test]
fn exit_cause_names_the_signal() {
    assert!(ExitCause::Signal(6).to_string().contains("SIGABRT"));
    let pool = processes(1);
    match pool.apply(abort_now, ()) {
        Err(e @ Error::WorkerDied { .. }) => {
            let Error::WorkerDied { cause, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*cause, ExitCause::Signal(6));
            assert!(cause.to_string().contains("SIGABRT"), "{cause}");
            assert!(e.to_string().contains("SIGABRT"), "{e}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

/// Fails at a chosen stage, by its value: `1` will not decode (in the worker), `105`
/// will not encode, `107` will not drop (once encoded).
#[derive(Debug)]
struct AtStage(u32);

impl Serialize for AtStage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 105, "105 will not encode");
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AtStage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        assert!(v != 1, "1 will not decode");
        Ok(AtStage(v))
    }
}

impl Drop for AtStage {
    fn drop(&mut self) {
        if self.0 == 107 && !std::thread::panicking() {
            panic!("107 will not drop");
        }
    }
}

/// `3` will not run.
fn at_stage(x: AtStage) -> AtStage {
    assert!(x.0 != 3, "3 will not run");
    AtStage(x.0 + 100)
}

// A batch runs under one catch (`panic::catch_each`): panics at four stages of four
// tasks of one batch fail those four alone, each with its stage's error, and the
// tasks between and after them give their values — from the same worker.
#[test]
fn panics_at_every_stage_of_one_batch_fail_only_their_tasks() {
    bounded("panics in one batch", SCENARIO, || {
        let pool = Pool::builder()
            .workers(1)
            .chunksize(10)
            .processes()
            .expect("pool");
        let pid = pool.pids()[0];
        let outcomes: Vec<_> = pool.imap(at_stage, (0..10).map(AtStage)).collect();
        for (i, outcome) in outcomes.iter().enumerate() {
            // The stage a serialisation error names (none for a task's panic), and
            // the message.
            let seen = |e: &Error| match e {
                Error::Panicked { message, .. } => (None, message.clone()),
                Error::Serialization {
                    what,
                    step,
                    message,
                    ..
                } => (Some((*what, *step)), message.clone()),
                other => panic!("task {i}: {other:?}"),
            };
            let text = |e: &Error| seen(e).1;
            match (i, outcome) {
                (1, Err(e)) => assert_eq!(
                    seen(e),
                    (
                        Some((Payload::Arguments, SerdeStep::Deserialize)),
                        "panicked: 1 will not decode".into()
                    )
                ),
                (3, Err(e)) => assert_eq!(text(e), "3 will not run"),
                (5, Err(e)) => assert_eq!(
                    seen(e),
                    (
                        Some((Payload::Result, SerdeStep::Serialize)),
                        "panicked: 105 will not encode".into()
                    )
                ),
                (7, Err(e)) => assert_eq!(text(e), "dropping the result: 107 will not drop"),
                (_, Ok(v)) if ![1, 3, 5, 7].contains(&i) => assert_eq!(v.0, i as u32 + 100),
                (_, other) => panic!("task {i}: {other:?}"),
            }
        }
        assert_eq!(pool.pids(), [pid], "the worker lived through them all");
    });
}
