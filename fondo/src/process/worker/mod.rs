//! The worker side: a constructor that diverts a re-executed process into the task
//! loop before `main` runs, and the loop itself.

pub(crate) mod heap;
mod logs;
pub(crate) mod trust;

use crate::boundary::entry::{EntryFn, Resolver, initialize};
use crate::boundary::failure::{TaskFailure, WireResult};
use crate::boundary::item::push_item;
use crate::boundary::shares::{self, FrozenBytes, Share};
use crate::boundary::spill::{AnswerBuf, FreeWindow, Place};
use crate::error::{Error, Result};
use crate::process::ipc::arena::Arena;
use crate::process::ipc::frames::{Fill, FrameReader, FrameWriter, decode_header};
use crate::process::ipc::lanes::{LANES, Lanes, Way};
use crate::process::ipc::messages::{ExeId, FromWorker, PROTOCOL_VERSION, ToWorker, body_len};
use crate::process::ipc::progress::{Claim, Progress};
use crate::process::parent::spawn::{WORKER_ENV, poll_timeout};
use heap::WorkerHeap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use trust::{Handed, Refusal};

/// Runs before `main` in every process of an executable linking fondo; returns at
/// once unless this process was started as a worker, which then never reaches `main`.
///
/// `unsafe` because ctor requires it of constructors: the C runtime calls this once,
/// before `main`, on the only thread. It uses nothing std initialises lazily in
/// `main` (glibc hands constructors argv and the environment), which is why the
/// threads, sockets and `catch_unwind` of a worker work here.
#[ctor::ctor]
unsafe fn divert_worker() {
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    // SAFETY: constructors run before main, on the only thread: nothing reads the
    // environment concurrently. Removing it keeps pools made by tasks from diverting.
    unsafe { std::env::remove_var(WORKER_ENV) };
    // A setuid (or setgid, or file-capability) launch: whoever set the marker may
    // have fewer privileges than we now have. The program runs as written.
    if trust::launch() == trust::Launch::Secure {
        return;
    }
    become_worker();
    let code = match serve(&spec.to_string_lossy()) {
        Ok(()) => 0,
        // Said already: every task of the pool gets this error (with the panic's
        // message and location), as on threads, where nothing is printed either.
        Err(Error::InitializerFailed { .. }) => 70,
        Err(e) => {
            crate::diag::diag!("fondo worker {}: {e}", std::process::id());
            70
        }
    };
    std::process::exit(code);
}

/// Referenced from the spawn path so the linker keeps this module (and its
/// constructor) in every binary that can start workers.
pub(crate) fn keep_linked() {
    std::hint::black_box(divert_worker as unsafe fn());
}

/// Makes this process look and behave as a worker: named so in `ps`, and with
/// SIGPIPE ignored, as std does for `main` (this runs before std's set-up), so a
/// task writing to a closed pipe gets an error (a panic in `println!`), as on threads.
fn become_worker() {
    // SAFETY: SIG_IGN installs no handler, so no code can run in signal context;
    // constructors run before main, on the only thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // `ps` would show "exe" (we run /proc/self/exe); the full command line keeps
    // the program's name with " [fondo worker]" after it.
    let _ = rustix::thread::set_name(c"fondo-worker");
}

/// What the parent passed in the environment.
struct Spec {
    sock: i32,
    progress: i32,
    lanes: i32,
    /// The pool's arena and its slot count; -1 and 0 for none.
    arena: i32,
    arena_slots: usize,
    parent: u32,
    max_frame: usize,
}

impl Spec {
    /// The descriptors and parent this spec names, for the checks before serving.
    fn handed(&self) -> Handed {
        let sent = |fd: i32| (fd >= 0).then_some(fd);
        let memory = vec![
            ("progress page", Some(self.progress)),
            ("lanes", sent(self.lanes)),
            ("arena", sent(self.arena)),
        ];
        Handed {
            sock: self.sock,
            memory,
            parent: self.parent,
        }
    }
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let mut it = spec.split(',');
    let spec = Spec {
        sock: it.next()?.parse().ok()?,
        progress: it.next()?.parse().ok()?,
        lanes: it.next()?.parse().ok()?,
        arena: it.next()?.parse().ok()?,
        arena_slots: it.next()?.parse().ok()?,
        parent: it.next()?.parse().ok()?,
        max_frame: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(spec)
}

/// The worker's connection to its parent: never blocks on a write while the parent
/// might be blocked writing to us, so neither side can deadlock on full buffers.
struct Link {
    sock: UnixStream,
    reader: FrameReader,
    writer: FrameWriter,
    max_frame: usize,
}

impl Link {
    /// Waits until a whole frame is buffered; false on EOF (the parent is gone or done).
    /// Gives the heap's freed memory back if the wait outlasts its idle limit.
    fn await_frame(&mut self, heap: &mut WorkerHeap) -> Result<bool> {
        let mut spin = crate::spin::Spin::new();
        while !self.reader.has_frame() {
            if !self.writer.is_empty() {
                self.writer.flush(&self.sock)?;
            }
            match self.reader.fill(&self.sock)? {
                Fill::Eof => return Ok(false),
                Fill::Read(n) if n > 0 => continue,
                Fill::Read(_) => {}
            }
            // Spin briefly: the next task usually follows within microseconds, and
            // sleeping in poll costs a ~20 µs wake-up on these machines.
            if spin.again() {
                continue;
            }
            if self.wait(!self.writer.is_empty(), heap.idle_limit())? == Waited::TimedOut {
                heap.give_back();
            }
        }
        Ok(true)
    }

    /// Sleeps until the socket is ready (readable, or writable if `want_write`), a
    /// signal arrives or `limit` passes.
    fn wait(&self, want_write: bool, limit: Option<Duration>) -> Result<Waited> {
        use rustix::event::{PollFd, PollFlags, poll};
        let mut flags = PollFlags::IN;
        if want_write {
            flags |= PollFlags::OUT;
        }
        let mut fds = [PollFd::new(&self.sock, flags)];
        let timeout = limit.map(poll_timeout);
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => Ok(Waited::TimedOut),
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(Waited::Woken),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes everything queued, reading (and buffering) incoming frames meanwhile.
    fn drain_output(&mut self) -> Result<()> {
        while !self.writer.flush(&self.sock)? {
            if self.reader.fill(&self.sock)? == Fill::Eof {
                return Ok(());
            }
            self.wait(true, None)?;
        }
        Ok(())
    }
}

/// How a [`Link::wait`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    Woken,
    TimedOut,
}

/// The worker's life: hello, setup, then run batches until shutdown or EOF.
fn serve(spec: &str) -> Result<()> {
    let spec = parse_spec(spec).unwrap_or_else(|| Refusal::Malformed(spec.into()).exit());
    if let Err(refusal) = trust::admit(&spec.handed()) {
        refusal.exit();
    }
    // SAFETY: the parent cleared CLOEXEC on exactly these descriptors for us, nothing
    // else in this fresh process owns them, and `admit` found each open and distinct.
    let (sock, progress, lanes, arena) = unsafe {
        (
            UnixStream::from_raw_fd(spec.sock),
            OwnedFd::from_raw_fd(spec.progress),
            (spec.lanes >= 0).then(|| OwnedFd::from_raw_fd(spec.lanes)),
            (spec.arena >= 0).then(|| OwnedFd::from_raw_fd(spec.arena)),
        )
    };
    // What a task starts (`Command`, a bare `fork` + exec) must not hold our socket
    // or shared memory open: the parent would not see this worker's death.
    for fd in [
        Some(sock.as_fd()),
        Some(progress.as_fd()),
        lanes.as_ref().map(|l| l.as_fd()),
        arena.as_ref().map(|a| a.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    sock.set_nonblocking(true)?;
    let mut link = Link {
        sock,
        reader: FrameReader::taking_descriptors(spec.max_frame),
        writer: FrameWriter::default(),
        max_frame: spec.max_frame,
    };
    // Shared memory we cannot map (an address-space limit, say) we go without, and
    // say so in `Hello`: big bodies then travel through the socket.
    let lanes = lanes.and_then(|fd| Lanes::open(fd, spec.max_frame).ok());
    let arena = arena.and_then(|fd| Arena::open(fd, spec.arena_slots, spec.max_frame).ok());
    let mut answers = Answers {
        progress: Progress::open(progress)?,
        lanes: lanes.as_ref(),
        up_sent: [0; LANES],
        outcomes: Vec::new(),
        jobs_seen: 0,
    };
    let hello = FromWorker::Hello {
        protocol: PROTOCOL_VERSION,
        pid: std::process::id(),
        exe: ExeId::current()?,
        lanes: lanes.is_some(),
        arena: arena.is_some(),
    };
    link.writer.push(&hello, link.max_frame, |_| {})?;
    link.drain_output()?;
    let resolver = Resolver::new();
    let mut heap = WorkerHeap::default();
    while link.await_frame(&mut heap)? {
        let payload = link.reader.next_frame()?.unwrap_or_default();
        let (header, body): (ToWorker, &[u8]) = decode_header(payload)?;
        match header {
            ToWorker::Setup {
                initializer,
                keep_freed_memory,
                max_log_level,
            } => {
                if keep_freed_memory {
                    heap.keep_freed_memory();
                }
                if let Err(message) = initialize(&resolver, initializer) {
                    // No task may run uninitialised: say why, and stop.
                    let failed = FromWorker::InitFailed {
                        message: message.clone(),
                    };
                    link.writer.push(&failed, link.max_frame, |_| {})?;
                    link.drain_output()?;
                    return Err(Error::InitializerFailed { message });
                }
                // After the initializer: one that installs a logger keeps it.
                logs::install(max_log_level, link.sock.as_raw_fd(), link.max_frame);
                answers.progress.set_ready();
            }
            ToWorker::Shutdown => break,
            ToWorker::Share { id, len: 0 } => {
                Share::receive(id, FrozenBytes::Empty, None);
            }
            ToWorker::Share { id, len } => {
                let fd = link.reader.take_descriptor().ok_or_else(|| {
                    Error::Protocol(format!("shared value {id} came without its memory"))
                })?;
                let bytes = FrozenBytes::map(fd.as_fd(), body_len(len)?)?;
                Share::receive(id, bytes, Some(fd));
            }
            ToWorker::Forget { id } => shares::registry().forget(id),
            _ if answers.claim_next() == Claim::Skip => {
                // The parent took this job back for an idle worker.
            }
            run => {
                // SAFETY: the header just came from the parent, which wrote any lane or
                // arena slot it names before sending it and leaves it alone until our
                // answer for this job reaches it.
                let job = unsafe { Job::locate(run, body, lanes.as_ref(), arena.as_ref())? };
                match resolver.entry(job.entry) {
                    Some(entry) => answers.run(&mut link.writer, link.max_frame, &job, entry)?,
                    // Refused, not died: a death would only send the job elsewhere.
                    None => answers.refuse(
                        &mut link.writer,
                        link.max_frame,
                        &job,
                        "the task's function is outside this executable's code",
                    )?,
                }
            }
        }
        // Answer now, even with more work buffered: holding a finished result
        // behind a task that may hang would delay it, or run it twice if that
        // task's worker is then killed.
        logs::take_back(&mut link.writer);
        link.writer.flush(&link.sock)?;
        heap.worked();
    }
    logs::take_back(&mut link.writer);
    link.drain_output()
}

/// A job to run, its arguments found wherever they travelled.
struct Job<'a> {
    id: u64,
    entry: i64,
    count: u32,
    args: &'a [u8],
}

impl<'a> Job<'a> {
    /// The job a `Run*` header announces, its arguments `inline` after it, in a down
    /// lane or in an arena slot.
    ///
    /// # Safety
    /// Worker side, with `header` just received from the parent: any lane or slot it
    /// names was written before it was sent and is left alone until the answer.
    unsafe fn locate(
        header: ToWorker,
        inline: &'a [u8],
        lanes: Option<&'a Lanes>,
        arena: Option<&'a Arena>,
    ) -> Result<Job<'a>> {
        let (id, entry, count, args) = match header {
            ToWorker::Run { job, entry, count } => (job, entry, count, inline),
            ToWorker::RunInLane {
                job,
                entry,
                count,
                lane,
                len,
            } => {
                let lanes =
                    lanes.ok_or_else(|| Error::Protocol("arguments in lanes we lack".into()))?;
                // SAFETY: forwarded from the caller's contract.
                let args = unsafe { lanes.read(Way::Down, usize::from(lane), body_len(len)?)? };
                (job, entry, count, args)
            }
            ToWorker::RunInArena {
                job,
                entry,
                count,
                slot,
                len,
            } => {
                let arena =
                    arena.ok_or_else(|| Error::Protocol("arguments in an arena we lack".into()))?;
                // SAFETY: forwarded from the caller's contract.
                let args = unsafe { arena.read(slot as usize, body_len(len)?)? };
                (job, entry, count, args)
            }
            ToWorker::Setup { .. }
            | ToWorker::Shutdown
            | ToWorker::Share { .. }
            | ToWorker::Forget { .. } => {
                return Err(Error::Protocol("not a job".into()));
            }
        };
        Ok(Job {
            id,
            entry,
            count,
            args,
        })
    }
}

/// Runs jobs and queues their answers: inline for small bodies, through a free up
/// lane for big ones.
struct Answers<'l> {
    progress: Progress,
    lanes: Option<&'l Lanes>,
    /// Bodies sent through each up lane; a lane is free when the parent has handed
    /// it back as many times.
    up_sent: [u64; LANES],
    /// The outcomes being encoded, kept for the next job.
    outcomes: Vec<u8>,
    /// Jobs received so far: the next one's number for [`Progress::claim`].
    jobs_seen: u64,
}

impl Answers<'_> {
    /// Runs `count` tasks of `job` through `run` and queues the answer on `writer`:
    /// encoded straight into a free up lane once it grows big, else inline.
    fn run(
        &mut self,
        writer: &mut FrameWriter,
        max_frame: usize,
        job: &Job<'_>,
        run: EntryFn,
    ) -> Result<()> {
        let (id, count) = (job.id, job.count);
        let (lane, window) = match (self.lanes, self.free_up_lane()) {
            // SAFETY: the parent has handed this lane back after every body we sent
            // through it, so it reads it no more until our next `DoneInLane`; the
            // window is the only slice of it, and it dies with `out` below.
            (Some(lanes), Some(lane)) => (lane, Some(unsafe { lanes.up_window(lane)? })),
            _ => (0, None),
        };
        let mut heap = std::mem::take(&mut self.outcomes);
        heap.clear();
        let mut out = AnswerBuf::new(heap, Some(FreeWindow(window)));
        // The tasks' log records go to the parent as they come, before the answer.
        logs::lend(writer);
        run(job.args, count, &mut out, self.progress.tasks());
        logs::take_back(writer);
        let sent = match out.finish() {
            (Place::Window { len, .. }, spare) => {
                self.outcomes = spare;
                self.up_sent[lane] += 1;
                let done = FromWorker::DoneInLane {
                    job: id,
                    count,
                    lane: lane as u8,
                    len: len as u64,
                };
                writer.push(&done, max_frame, |_| {})
            }
            (Place::Heap(body), _) => {
                let sent = writer.push(&FromWorker::Done { job: id, count }, max_frame, |out| {
                    out.extend_from_slice(&body)
                });
                self.outcomes = body;
                sent
            }
        };
        if let Err(e) = sent {
            // The outcomes do not fit a frame: the tasks ran, so report that instead
            // of making the parent refuse the frame and rerun them.
            let failure: WireResult<()> = Err(TaskFailure::Protocol {
                message: format!("the job's results cannot be sent: {e}"),
            });
            writer.push(&FromWorker::Done { job: id, count }, max_frame, |out| {
                for _ in 0..count {
                    let _ = push_item(out, &failure);
                }
            })?;
        }
        Ok(())
    }

    /// Answers every task of `job` with `why` instead of running it; each still
    /// counts as started and finished, so the parent's numbering stays in step.
    fn refuse(
        &mut self,
        writer: &mut FrameWriter,
        max_frame: usize,
        job: &Job<'_>,
        why: &str,
    ) -> Result<()> {
        let failure: WireResult<()> = Err(TaskFailure::Protocol {
            message: why.to_owned(),
        });
        writer.push(
            &FromWorker::Done {
                job: job.id,
                count: job.count,
            },
            max_frame,
            |out| {
                for _ in 0..job.count {
                    self.progress.tasks().start_task();
                    let _ = push_item(out, &failure);
                    self.progress.tasks().finish_task();
                }
            },
        )
    }

    /// Claims the job just received, unless the parent took it back.
    fn claim_next(&mut self) -> Claim {
        let seq = self.jobs_seen;
        self.jobs_seen += 1;
        self.progress.claim(seq)
    }

    fn free_up_lane(&self) -> Option<usize> {
        (0..LANES).find(|&lane| {
            let released = self.progress.up_lane_releases(lane);
            debug_assert!(
                released <= self.up_sent[lane],
                "up lane {lane} handed back {released} times for {} bodies",
                self.up_sent[lane]
            );
            released == self.up_sent[lane]
        })
    }
}
