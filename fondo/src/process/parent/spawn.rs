//! Starting a worker process: the same executable re-executed with a private
//! socketpair and progress page, then a handshake that proves it is the same program.

use super::threads_env::ThreadLimit;
use crate::config::{Config, DEFAULT_MAX_FRAME};
use crate::error::{Error, Result};
use crate::process::ipc::arena::Arena;
use crate::process::ipc::frames::{Fill, FrameReader, FrameWriter, decode_header};
use crate::process::ipc::lanes::Lanes;
use crate::process::ipc::messages::{ExeId, FromWorker, PROTOCOL_VERSION, ToWorker};
use crate::process::ipc::progress::Progress;
use crate::process::worker::trust;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The environment variable that diverts a re-executed process into a worker.
pub(crate) const WORKER_ENV: &str = "__FONDO_WORKER";

/// How long a new worker may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);

/// A started worker, handshake done.
pub(crate) struct WorkerProcess {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    /// Shared with the slot's submitters and readers: one descriptor per worker.
    pub(crate) sock: std::sync::Arc<UnixStream>,
    pub(crate) progress: std::sync::Arc<Progress>,
    /// Shared memory for big bodies, both ways; `None` where it could not be mapped
    /// (an address-space limit, say): bodies then all go through the socket.
    pub(crate) lanes: Option<std::sync::Arc<Lanes>>,
    /// The worker mapped the pool's arena (it says so in `Hello`).
    pub(crate) arena: bool,
    pub(crate) reader: FrameReader,
    /// Readable once the worker has exited, whoever still holds its socket (a
    /// process the task started, say); `None` where the kernel has no pidfds.
    pub(crate) pidfd: Option<std::os::fd::OwnedFd>,
}

/// What a new worker is started with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerOptions {
    pub(crate) initializer: Option<fn()>,
    pub(crate) max_frame: usize,
    /// Tasks have a time limit: the worker stamps when each starts.
    pub(crate) timed: bool,
    pub(crate) keep_freed_memory: bool,
    /// Threads for the worker's own thread pools (rayon, OpenMP, BLAS), set in its
    /// environment; `None`: the environment is inherited unchanged.
    pub(crate) threads: Option<ThreadLimit>,
}

impl WorkerOptions {
    /// A pool's workers, as its options say.
    pub(crate) fn for_pool(config: &Config) -> Self {
        WorkerOptions {
            initializer: config.initializer,
            max_frame: config.max_frame,
            timed: config.task_timeout.is_some(),
            keep_freed_memory: config.keep_freed_memory,
            threads: Some(ThreadLimit::for_pool(config)),
        }
    }

    /// A lone child running one task: nothing to keep memory warm for.
    pub(crate) fn for_child() -> Self {
        WorkerOptions {
            initializer: None,
            max_frame: DEFAULT_MAX_FRAME,
            timed: false,
            keep_freed_memory: false,
            threads: None,
        }
    }
}

/// Starts a worker and completes the handshake.
pub(crate) fn start_worker(
    options: &WorkerOptions,
    arena: Option<&Arena>,
) -> Result<WorkerProcess> {
    let WorkerOptions {
        max_frame, timed, ..
    } = *options;
    crate::process::worker::keep_linked();
    trust::may_start_workers(trust::launch())?;
    let (ours, theirs) = UnixStream::pair()?;
    let mut progress = Progress::create()?;
    progress.tasks().set_timed(timed);
    let mut lanes = Lanes::create(max_frame).ok();
    let inherited = [
        theirs.as_raw_fd(),
        progress.fd()?.as_raw_fd(),
        match &lanes {
            Some(l) => l.fd()?.as_raw_fd(),
            None => -1,
        },
        match arena {
            Some(a) => a.fd()?.as_raw_fd(),
            None => -1,
        },
    ];
    let arena_slots = arena.map_or(0, Arena::slots);
    let mut command = worker_command(inherited, arena_slots, max_frame);
    if let Some(threads) = options.threads {
        threads.apply(&mut command);
    }
    let child = spawn_on_keeper(command, inherited)?;
    // The worker has its own copies now; a pool of many workers must not keep two
    // descriptors per worker it no longer needs.
    drop(theirs);
    progress.close_fd();
    if let Some(l) = lanes.as_mut() {
        l.close_fd();
    }
    ours.set_nonblocking(true)?;
    let pid = child.id();
    let pidfd = rustix::process::Pid::from_raw(pid as i32)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let mut worker = WorkerProcess {
        pidfd,
        child,
        pid,
        sock: std::sync::Arc::new(ours),
        progress: std::sync::Arc::new(progress),
        lanes: lanes.map(std::sync::Arc::new),
        arena: false,
        reader: FrameReader::new(max_frame),
    };
    match handshake(&mut worker, options) {
        Ok(()) => Ok(worker),
        Err(e) => {
            let _ = worker.child.kill();
            let _ = worker.child.wait();
            Err(e)
        }
    }
}

/// `/proc/self/exe`, told where its socket, progress page, lanes and arena are.
fn worker_command(inherited: Inherited, arena_slots: usize, max_frame: usize) -> Command {
    let [sock, progress, lanes, arena] = inherited;
    let mut cmd = Command::new("/proc/self/exe");
    let name = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fondo".into());
    cmd.arg0(format!("{name} [fondo worker]"))
        .env(
            WORKER_ENV,
            format!(
                "{sock},{progress},{lanes},{arena},{arena_slots},{},{max_frame}",
                std::process::id(),
            ),
        )
        .stdin(Stdio::null());
    cmd
}

/// The descriptors a worker inherits: socket, progress page, lanes and the pool's
/// arena (-1 for those it goes without).
type Inherited = [i32; 4];

type SpawnRequest = (Command, Inherited, mpsc::Sender<std::io::Result<Child>>);

/// The thread that forks workers, and the process it belongs to.
struct Keeper {
    /// A process forked from this one (by the program, not by fondo) inherits the
    /// channel but not the thread: it must start its own.
    pid: u32,
    requests: mpsc::Sender<SpawnRequest>,
}

/// Forks happen on one long-lived thread: PR_SET_PDEATHSIG fires when the *thread*
/// that forked exits, so forking from a short-lived thread would kill its workers.
fn spawn_on_keeper(command: Command, inherited: Inherited) -> Result<Child> {
    static KEEPER: Mutex<Option<Keeper>> = Mutex::new(None);
    let (reply_tx, reply_rx) = mpsc::channel();
    {
        let mut keeper = KEEPER.lock().unwrap_or_else(PoisonError::into_inner);
        let me = std::process::id();
        let requests = match &*keeper {
            Some(k) if k.pid == me => k.requests.clone(),
            _ => {
                let requests = start_keeper()?;
                *keeper = Some(Keeper {
                    pid: me,
                    requests: requests.clone(),
                });
                requests
            }
        };
        requests
            .send((command, inherited, reply_tx))
            .map_err(|_| Error::Spawn("the spawner thread is gone".into()))?;
    }
    let child = reply_rx
        .recv()
        .map_err(|_| Error::Spawn("the spawner thread is gone".into()))?;
    child.map_err(|e| Error::Spawn(e.to_string()))
}

/// Starts the spawner thread; the channel that feeds it.
fn start_keeper() -> Result<mpsc::Sender<SpawnRequest>> {
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("fondo-spawner".into())
        .spawn(move || {
            for (mut cmd, inherited, reply) in rx {
                let _ = reply.send(spawn_now(&mut cmd, inherited));
            }
        })
        .map_err(|e| Error::Spawn(format!("could not start the spawner thread: {e}")))?;
    Ok(tx)
}

/// Forks and execs, arranging in the child that it dies with its parent and keeps
/// exactly the descriptors it needs.
fn spawn_now(cmd: &mut Command, inherited: Inherited) -> std::io::Result<Child> {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes raw
    // syscalls (prctl, getppid, fcntl): async-signal-safe, no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            use rustix::process::{Signal, getppid, set_parent_process_death_signal};
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died before the prctl: then nobody would kill us.
            if getppid() != Some(parent) {
                // from_raw_os_error does not allocate, unlike io::Error::other.
                return Err(std::io::Error::from_raw_os_error(
                    rustix::io::Errno::SRCH.raw_os_error(),
                ));
            }
            for fd in inherited.into_iter().filter(|&fd| fd >= 0) {
                let fd = BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        })
    };
    cmd.spawn()
}

/// Waits for `Hello`, checks protocol and executable, sends `Setup`.
fn handshake(w: &mut WorkerProcess, options: &WorkerOptions) -> Result<()> {
    let deadline = Instant::now() + HELLO_TIMEOUT;
    let hello = loop {
        if w.reader.has_frame() {
            let payload = w.reader.next_frame()?.unwrap_or_default();
            let (hello, _): (FromWorker, _) = decode_header(payload)?;
            break hello;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Spawn(format!(
                "worker {} did not say hello in {HELLO_TIMEOUT:?}",
                w.pid
            )));
        }
        wait_readable(&*w.sock, left)?;
        if w.reader.fill(&*w.sock)? == Fill::Eof {
            let status = w.child.wait()?;
            return Err(Error::Spawn(format!(
                "worker {} exited before the handshake ({status})",
                w.pid
            )));
        }
    };
    let FromWorker::Hello {
        protocol,
        pid,
        exe,
        lanes,
        arena,
    } = hello
    else {
        return Err(Error::Protocol("expected Hello from a new worker".into()));
    };
    if protocol != PROTOCOL_VERSION {
        return Err(Error::Protocol(format!(
            "worker speaks protocol {protocol}, parent {PROTOCOL_VERSION}"
        )));
    }
    let ours = ExeId::current()?;
    if exe != ours || pid != w.pid {
        return Err(Error::ExecutableMismatch(format!(
            "worker {pid}: {exe:?}, parent: {ours:?}"
        )));
    }
    // What the worker could not map, we do not use.
    if !lanes {
        w.lanes = None;
    }
    w.arena = arena;
    let setup = ToWorker::Setup {
        initializer: options
            .initializer
            .map(crate::boundary::entry::offset_of_fn),
        keep_freed_memory: options.keep_freed_memory,
        max_log_level: super::logs::max_level(),
    };
    let mut out = FrameWriter::default();
    out.push(&setup, options.max_frame, |_| {})?;
    write_all_blocking(&mut out, &w.sock)
}

/// `poll`'s form of a timeout (saturating: longer than `i64` seconds is forever).
pub(crate) fn poll_timeout(d: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: d.subsec_nanos().into(),
    }
}

/// Blocks until `fd` is readable (or hung up) or `timeout` passes.
fn wait_readable(fd: impl AsFd, timeout: Duration) -> Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    match poll(&mut fds, Some(&poll_timeout(timeout))) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Blocks until the worker's socket is readable (or hung up), the worker exits
/// (where pidfds exist; else it looks again within 10 ms), or `timeout` passes.
pub(crate) fn wait_for_worker(w: &WorkerProcess, timeout: Duration) -> Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = vec![PollFd::new(&*w.sock, PollFlags::IN)];
    let timeout = match &w.pidfd {
        Some(pidfd) => {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
            timeout
        }
        None => timeout.min(Duration::from_millis(10)),
    };
    match poll(&mut fds, Some(&poll_timeout(timeout))) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How a process ended, from its wait status.
pub(crate) fn exit_cause(status: std::process::ExitStatus) -> crate::error::ExitCause {
    use crate::error::ExitCause;
    use std::os::unix::process::ExitStatusExt;
    match (status.signal(), status.code()) {
        (Some(s), _) => ExitCause::Signal(s),
        (None, Some(c)) => ExitCause::Code(c),
        _ => ExitCause::Unknown,
    }
}

/// Writes everything queued, waiting for the socket when it is full.
pub(crate) fn write_all_blocking(out: &mut FrameWriter, sock: &UnixStream) -> Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    while !out.flush(sock)? {
        let mut fds = [PollFd::new(sock, PollFlags::OUT)];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
