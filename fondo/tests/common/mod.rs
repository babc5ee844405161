//! Helpers shared by the integration tests: polling, bounded waits (a watchdog, a
//! result that must come), signals, processes as `/proc` shows them, and the helper
//! programs `examples/fault_*.rs`. Each test binary uses its own part, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

pub mod both;
pub mod crash;
pub mod gate;

// Each test binary uses its own part (see `dead_code` above).
#[allow(unused_imports)]
pub use gate::{Gate, TempDir, eventually, gated};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use fondo::{AsyncResult, Error, Pool, Processes};

/// A process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// `R`, `S`, `Z` (zombie), …
    pub state: char,
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
}

impl ProcStat {
    /// Running or sleeping, not a zombie or dead.
    pub fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// `pid`'s `/proc/<pid>/stat`, if the process exists.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp …": comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|p| p.is_live())
}

/// Every process `/proc` lists now.
pub fn processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(proc_stat)
        .collect()
}

/// A size line of `/proc/<pid>/status` in kB (`field` as `"RssShmem"`, `"RssAnon"`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Bounded waits: a watchdog for whole trials, a limit for single results
// ---------------------------------------------------------------------------

/// Aborts the test process, with a message naming the trial, if a trial armed on it
/// runs past its limit: a hang becomes a loud failure, never a stuck CI job.
pub struct Watchdog {
    shared: Arc<WatchdogState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct WatchdogState {
    /// The armed trial: its deadline and its name.
    armed: Mutex<Option<(Instant, String)>>,
    stop: AtomicBool,
}

impl Default for Watchdog {
    fn default() -> Self {
        Self::new()
    }
}

impl Watchdog {
    pub fn new() -> Watchdog {
        let shared = Arc::new(WatchdogState::default());
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
                let armed = s.armed.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((deadline, what)) = &*armed
                    && Instant::now() > *deadline
                {
                    // Straight to fd 2: the test harness captures eprintln! and
                    // would swallow the message when the process aborts.
                    let msg = format!(
                        "\nWATCHDOG: {what} did not finish in time: the pool hung. Aborting.\n"
                    );
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
                    std::process::abort();
                }
            }
        });
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    /// Runs `f`, aborting the process if it takes longer than `limit`.
    pub fn guard<T>(&self, what: impl Into<String>, limit: Duration, f: impl FnOnce() -> T) -> T {
        *self.shared.armed.lock().unwrap() = Some((Instant::now() + limit, what.into()));
        let out = f();
        *self.shared.armed.lock().unwrap() = None;
        out
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `f` on a thread of its own and returns what it returns (or re-raises its
/// panic), failing the test — not hanging it — if it takes longer than `limit`.
/// The overrunning thread is left behind; its pool's workers end with the test
/// process (PR_SET_PDEATHSIG).
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let runner = std::thread::Builder::new()
        .name(what.chars().take(15).collect())
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .expect("start a thread");
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => {
            let _ = runner.join();
            value
        }
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: did not finish in {limit:?}: hang"),
    }
}

/// Limit for one trial: generous, since it only has to tell a hang from slowness.
pub const TRIAL_LIMIT: Duration = Duration::from_secs(30);
/// Limit for reading one result that must come.
pub const RESULT_LIMIT: Duration = Duration::from_secs(30);

/// Sends `sig` to `pid` (ignoring a process already gone).
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// SIGKILL to `pid`.
pub fn sigkill(pid: u32) {
    signal(pid, rustix::process::Signal::KILL);
}

/// Waits (bounded) until `pid` is gone.
pub fn gone_within(pid: u32, limit: Duration) -> bool {
    eventually(limit, || !alive(pid))
}

/// Reads a result that must arrive, failing the test (not hanging it) if it doesn't.
pub fn must_get<R: Send + 'static>(r: &AsyncResult<R>, what: &str) -> fondo::Result<R> {
    match r.get_timeout(RESULT_LIMIT) {
        Err(Error::WaitTimeout { .. }) => panic!("{what}: no result after {RESULT_LIMIT:?}: hang"),
        other => other,
    }
}

/// The current worker PIDs, once every slot has a live worker (after a replacement).
pub fn settled_pids(pool: &Pool<Processes>) -> Vec<u32> {
    let end = Instant::now() + RESULT_LIMIT;
    loop {
        let pids = pool.pids();
        if pids.iter().all(|&p| p != 0) || Instant::now() > end {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------
// Helper programs (`examples/fault_*.rs`)
// ---------------------------------------------------------------------------

/// Builds `examples/<name>.rs` with the same cargo and profile as this test (a no-op
/// after `cargo test`, which builds examples anyway) and returns its binary's path.
pub fn example(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _serial = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    // target/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "fondo", "--example", name])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// Makes this process the reaper of orphaned descendants (once).
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// A random test's seed: `FONDO_SEED` when set (to repeat a run), else the clock.
pub fn seed() -> u64 {
    std::env::var("FONDO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// A one-shot [`Watchdog`]: aborts the test binary with a message naming `what` unless dropped within
/// `limit`: for blocking calls that have no timeout of their own (`map`, `imap`,
/// dropping a pool). Written straight to fd 2, past the harness's capture.
#[must_use = "the watchdog is disarmed when dropped"]
pub struct Deadline {
    disarm: Option<std::sync::mpsc::Sender<()>>,
}

impl Deadline {
    pub fn arm(what: &str, limit: Duration) -> Deadline {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let what = what.to_owned();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                let msg = format!(
                    "\nWATCHDOG: {what} did not finish within {limit:?}: hang. Aborting.\n"
                );
                let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
                std::process::abort();
            }
        });
        Deadline { disarm: Some(tx) }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(tx) = self.disarm.take() {
            let _ = tx.send(());
        }
    }
}

/// A pool that is terminated, not joined, when a failing test unwinds through it:
/// a test that found a hang fails at once instead of hanging in the pool's drop
/// (close + join), which would wait for the stuck task.
pub struct TerminateOnPanic<B: fondo::Backend>(pub fondo::Pool<B>);

impl<B: fondo::Backend> std::ops::Deref for TerminateOnPanic<B> {
    type Target = fondo::Pool<B>;
    fn deref(&self) -> &fondo::Pool<B> {
        &self.0
    }
}

impl<B: fondo::Backend> Drop for TerminateOnPanic<B> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.terminate();
        }
    }
}

// ---------------------------------------------------------------------------
// Whole programs: this test binary run again as a helper
// ---------------------------------------------------------------------------

/// Runs this test binary again with only the test `helper` selected, and `env` set
/// to its name so that test acts (helper tests return at once unless [`is_helper`]).
pub fn helper_command(env: &str, helper: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    // --quiet: the harness prints no "test name ... " in front of the helper's output.
    cmd.args([
        helper,
        "--exact",
        "--nocapture",
        "--quiet",
        "--test-threads=1",
    ])
    .env(env, helper)
    .stdin(Stdio::null());
    cmd
}

/// True in the copy of the binary [`helper_command`] started for `helper`.
pub fn is_helper(env: &str, helper: &str) -> bool {
    std::env::var_os(env).is_some_and(|h| h == helper)
}

/// Sends SIGKILL to `pid` if it is still a child of `parent` (never to a stranger
/// that inherited a recycled PID).
pub fn kill_child_of(parent: u32, pid: u32) {
    if proc_stat(pid).is_some_and(|p| p.ppid == parent && p.is_live())
        && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Runs `cmd` to completion with its output captured, like `Command::output`, but
/// kills it and fails the test if it has not ended within `limit`.
pub fn output_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the helper");
    let mut pipes = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    let readers: Vec<_> = pipes
        .iter_mut()
        .map(|p| {
            let mut pipe = p.take().expect("piped");
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        })
        .collect();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the helper") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the helper {cmd:?} did not end within {limit:?}: hang");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = readers.into_iter().map(|r| r.join().unwrap_or_default());
    std::process::Output {
        status,
        stdout: out.next().unwrap_or_default(),
        stderr: out.next().unwrap_or_default(),
    }
}

/// Copies an executable file in a child process (`cp`). A file this process has open
/// for writing is, for a moment, open in every child another test thread forks then
/// (until it execs), and running the file fails meanwhile with "text file busy"
/// (ETXTBSY): a copy made in-process failed `hostile_launch.rs` so, once in a few runs.
pub fn copy_executable(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp {from:?} {to:?}: {status}");
}
