//! `fondo::spawn`: one function call in a new process, joined like a thread.

use super::spawn::{
    WorkerOptions, WorkerProcess, start_worker, wait_for_worker, write_all_blocking,
};
use crate::boundary::entry::offset_of_entry;
use crate::boundary::item::{decode_outcome, encode_item, next_item};
use crate::boundary::shares::Collector;
use crate::config::DEFAULT_MAX_FRAME;
use crate::error::{Error, Payload, Result};
use crate::process::ipc::frames::{Fill, FrameWriter, decode_header};
use crate::process::ipc::lanes::Answer;
use crate::process::ipc::messages::{FromWorker, ToWorker};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// Runs `f(args…)` in a new process — this executable started again — and returns
/// a handle to join it, like `std::thread::spawn` but with its own PID, its own
/// memory, and a return value (which Python's `Process` cannot give).
///
/// `f` must be a `fn` item or a closure that captures nothing (its type zero-sized
/// and `Copy`, checked at compile time: see [`Processes`](crate::Processes) for
/// exactly what a process task may be); `args` and the result are `serde` types.
///
/// ```compile_fail
/// struct Token; // zero-sized, but not `Copy`: a worker could only make one up
/// let token = Token;
/// let _ = fondo::spawn(move |x: u64| { let _proof = &token; x }, (1,));
/// ```
///
/// ```
/// fn pow(b: u64, e: u32) -> u64 { b.pow(e) }
///
/// let child = fondo::spawn(pow, (2, 10))?;
/// assert_ne!(child.pid(), std::process::id());
/// assert_eq!(child.join()?, 1024);
/// # Ok::<(), fondo::Error>(())
/// ```
pub fn spawn<F, Args>(f: F, args: Args) -> Result<Child<F::Output>>
where
    F: crate::task::ProcessTask<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    const { crate::task::assert_zero_sized::<F>() };
    let _ = f; // zero-sized: the worker conjures its own copy from the offset
    let mut body = Vec::new();
    let collector = Collector::start();
    encode_item(&mut body, &args, Payload::Arguments)?;
    let shares = collector.take();
    drop(collector);
    let mut worker = start_worker(&WorkerOptions::for_child(), None)?;
    let mut out = FrameWriter::default();
    for share in &shares {
        let header = ToWorker::Share {
            id: share.id(),
            len: share.len() as u64,
        };
        match share.fd() {
            Some(fd) => out.push_with_fd(&header, DEFAULT_MAX_FRAME, fd.try_clone_to_owned()?)?,
            None => out.push(&header, DEFAULT_MAX_FRAME, |_| {})?,
        }
    }
    let run = ToWorker::Run {
        job: 0,
        entry: offset_of_entry::<F, Args>(),
        count: 1,
    };
    out.push(&run, DEFAULT_MAX_FRAME, |b| b.extend_from_slice(&body))?;
    out.push(&ToWorker::Shutdown, DEFAULT_MAX_FRAME, |_| {})?;
    if let Err(e) = write_all_blocking(&mut out, &worker.sock) {
        let _ = worker.child.kill();
        let _ = worker.child.wait();
        return Err(e);
    }
    Ok(Child {
        worker: Some(worker),
        _result: PhantomData,
    })
}

/// A process started by [`spawn`]: its PID, and its result once joined.
///
/// Dropping a `Child` without joining waits for it, as dropping a pool does: a
/// process is never left behind as an orphan or a zombie.
pub struct Child<R> {
    worker: Option<WorkerProcess>,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Child<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child").field("pid", &self.pid()).finish()
    }
}

impl<R> Child<R> {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.worker.as_ref().map_or(0, |w| w.pid)
    }

    /// Kills the child (SIGKILL); `join` then returns `Err(WorkerDied)`.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(w) = self.worker.as_mut() {
            w.child.kill()?;
        }
        Ok(())
    }
}

impl<R: DeserializeOwned> Child<R> {
    /// Waits for the function to return and gives its value; a panic in it gives
    /// `Err(Panicked)`, a crash `Err(WorkerDied)`.
    pub fn join(mut self) -> Result<R> {
        self.join_inner(None)
    }

    /// Like [`join`](Self::join) but gives up after `timeout` with
    /// `Err(WaitTimeout)`, leaving the child running; join again later.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R> {
        // A timeout too long to add to the clock is no deadline at all.
        self.join_inner(Instant::now().checked_add(timeout))
            .map_err(|e| match e {
                Error::WaitTimeout { .. } => Error::WaitTimeout { waited: timeout },
                other => other,
            })
    }

    fn join_inner(&mut self, deadline: Option<Instant>) -> Result<R> {
        let Some(w) = self.worker.as_mut() else {
            return Err(Error::ResultTaken);
        };
        match await_answer(w, deadline)? {
            Some(outcome) => {
                // It answered and was told to exit; one that lingers past the
                // deadline (an `atexit` handler that hangs, say) has nothing left
                // to give and is killed.
                let mut w = self.worker.take().ok_or(Error::ResultTaken)?;
                if await_exit(&mut w, deadline)?.is_none() {
                    let _ = w.child.kill();
                }
                let _ = w.child.wait();
                outcome
            }
            None => {
                // No answer: its exit status says how it died. Until it exits (its
                // task may have closed the socket and gone on), keep it for a later
                // join.
                let status = await_exit(w, deadline)?.ok_or(Error::WaitTimeout {
                    waited: Duration::ZERO,
                })?;
                let pid = w.pid;
                self.worker = None;
                Err(Error::WorkerDied {
                    pid,
                    cause: super::spawn::exit_cause(status),
                })
            }
        }
    }
}

/// Waits for the child's answer (`Some`), or its end without one (`None`): EOF on
/// its socket, or its exit even while a process it started holds the socket.
fn await_answer<R: DeserializeOwned>(
    w: &mut WorkerProcess,
    deadline: Option<Instant>,
) -> Result<Option<Result<R>>> {
    loop {
        while w.reader.has_frame() {
            if let Some(outcome) = read_frame::<R>(w) {
                return Ok(Some(outcome));
            }
        }
        let exited = w.child.try_wait()?.is_some();
        match w.reader.fill(&*w.sock)? {
            Fill::Eof => return Ok(None),
            Fill::Read(n) if n > 0 => continue,
            Fill::Read(_) if exited => return Ok(None),
            Fill::Read(_) => {}
        }
        wait_for_worker(w, time_left(deadline)?)?;
    }
}

/// Waits for the child to exit; `None` if the deadline passed first.
fn await_exit(
    w: &mut WorkerProcess,
    deadline: Option<Instant>,
) -> Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(status) = w.child.try_wait()? {
            return Ok(Some(status));
        }
        match time_left(deadline) {
            Ok(left) => wait_for_worker(w, left)?,
            Err(_) => return Ok(None),
        }
    }
}

/// Time to the deadline (a long while without one); `WaitTimeout` once it passed.
fn time_left(deadline: Option<Instant>) -> Result<Duration> {
    let Some(deadline) = deadline else {
        return Ok(Duration::from_secs(3600));
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::WaitTimeout {
            waited: Duration::ZERO,
        });
    }
    Ok(left)
}

/// Decodes the child's next frame: its one answer gives the outcome; a log record
/// goes to this process's logger (`None`).
fn read_frame<R: DeserializeOwned>(w: &mut WorkerProcess) -> Option<Result<R>> {
    let header = w
        .reader
        .next_frame()
        .and_then(|payload| decode_header::<FromWorker>(payload.unwrap_or_default()));
    match header {
        Ok((FromWorker::Log(record), _)) => {
            super::logs::emit(w.pid, &record);
            None
        }
        Ok((header, inline)) => Some(read_outcome(header, inline, w.lanes.as_deref())),
        Err(e) => Some(Err(e)),
    }
}

/// Decodes the child's one answer.
fn read_outcome<R: DeserializeOwned>(
    header: FromWorker,
    inline: &[u8],
    lanes: Option<&crate::process::ipc::lanes::Lanes>,
) -> Result<R> {
    // SAFETY: the header just came from this child, which owns these lanes and
    // sends one answer only: nobody writes its up lane any more.
    let answer = unsafe { Answer::locate(header, inline, lanes)? };
    if answer.count != 1 {
        return Err(Error::Protocol("unexpected frame from child".into()));
    }
    let mut body = answer.body;
    decode_outcome(next_item(&mut body))
}

impl<R> Drop for Child<R> {
    fn drop(&mut self) {
        if let Some(mut w) = self.worker.take() {
            let _ = w.child.wait();
        }
    }
}
