//! A worker slot: the parent-side supervisor thread of one worker process. It reads
//! results, refills the worker's pipeline, enforces timeouts, and when the worker
//! dies blames the one task that was running, requeues the rest and starts a
//! replacement. Threads waiting for results may read the results instead (`help`):
//! the supervisor then sleeps, so a round trip involves two parties, not three.

use super::Shared;
use super::job::ProcJob;
use super::lanes::{Answer, LANE_MIN, LANES, Lanes, Way};
use super::progress::Progress;
use super::recovery::{Blame, Ending, Flight, Overdue, Ruling, Sent, Verdict, overdue, recover};
use super::spawn::{WorkerOptions, WorkerProcess, poll_timeout, start_worker, write_all_blocking};
use super::wire::{Fill, FrameReader, FrameWriter, FromWorker, ToWorker, decode_header};
use crate::error::{Error, ExitCause, Result};
use crate::queue::Phase;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One worker's place in the pool; its process comes and goes, the slot stays.
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    /// The live worker's incoming side, read by the supervisor or by a helper.
    /// Lock order: `reading` before `state`.
    reading: Mutex<Option<Reading>>,
    /// Written to wake the supervisor thread out of `poll`.
    wake: OwnedFd,
}

/// The incoming side of one worker.
struct Reading {
    sock: Arc<UnixStream>,
    reader: FrameReader,
    lanes: Option<Arc<Lanes>>,
    progress: Arc<Progress>,
    /// The socket has reached its end: only the supervisor acts on that.
    eof: bool,
}

/// What reading a worker's socket found.
enum Heard {
    /// This many bytes (0: nothing yet); every whole answer among them is handled.
    Bytes(usize),
    /// The worker closed its end: it exited or died.
    Eof,
    /// The worker broke the protocol (or the socket failed); the job at the head of
    /// its pipeline has been failed with this.
    Broken(Error),
}

/// What submitters and the supervisor share, under the slot's lock.
#[derive(Default)]
struct SlotState {
    /// The live worker's socket (write side); `None` between workers.
    sock: Option<Arc<UnixStream>>,
    /// The live worker's lanes, if it has them.
    lanes: Option<Arc<Lanes>>,
    /// The live worker's progress page.
    progress: Option<Arc<Progress>>,
    /// The live worker maps the pool's arena.
    arena: bool,
    /// When a lane last carried a body, if its memory has not been given back since.
    lanes_used: Option<Instant>,
    pid: u32,
    writer: FrameWriter,
    /// Jobs sent and not yet answered, in the order the worker runs them.
    inflight: VecDeque<InFlight>,
    /// Tasks sent to the current worker: numbers its tasks like its progress page does.
    dispatched: u64,
    /// Jobs sent to the current worker: numbers its jobs as it claims them.
    sent_jobs: u64,
    /// No more work for this worker: it is being recycled or stopped.
    retiring: bool,
    /// Running estimate of one task's time on this worker, in nanoseconds (an upper
    /// bound: it includes the wait in the pipeline). Deepens the pipeline for tiny tasks.
    task_ns: Option<u64>,
    /// A helper found the worker broken and killed it: why, for the supervisor.
    broken: Option<Error>,
    /// The worker answered the job at the head of the pipeline with a bad frame:
    /// that job fails when the worker is buried.
    blame_head: bool,
}

/// Jobs kept in flight per worker when tasks are known to be tiny: deep enough that
/// frames travel many to a syscall, shallow enough to bound memory.
const DEEP_PIPELINE: usize = 32;

/// Below this per-task time a task counts as tiny.
const TINY_TASK_NS: u64 = 50_000;

/// While threads are helping, the supervisor sleeps without watching the socket and
/// looks again this often (a helper that stops with work in flight wakes it at once).
const HELPED_RECHECK: Duration = Duration::from_micros(500);

/// Lanes unused this long give their memory back: a pool moving big values keeps
/// them warm, an idle one does not hold on to them.
const LANE_IDLE: Duration = Duration::from_secs(1);

impl SlotState {
    /// How many jobs the worker may hold: `prefetch`, or more for tiny tasks (for slow
    /// ones a deep pipeline would hoard work that idle workers could take).
    fn depth(&self, prefetch: usize) -> usize {
        match self.task_ns {
            Some(ns) if ns < TINY_TASK_NS => prefetch.max(DEEP_PIPELINE),
            _ => prefetch,
        }
    }

    /// A down lane no job in flight uses.
    fn free_down_lane(&self) -> Option<usize> {
        (0..LANES).find(|&lane| self.inflight.iter().all(|f| f.lane != Some(lane)))
    }

    /// Queues job `id` for the worker: its arguments where they are when in the
    /// pool's arena, through a free down lane when big, else inline. Returns the lane
    /// used.
    fn send(&mut self, id: u64, job: &ProcJob, max_frame: usize) -> Result<Option<usize>> {
        if let Some((slot, len)) = job.args.in_arena().filter(|_| self.arena) {
            let run = ToWorker::RunInArena {
                job: id,
                entry: job.entry,
                count: job.count,
                slot: slot as u32,
                len: len as u64,
            };
            self.writer.push(&run, max_frame, |_| {})?;
            return Ok(None);
        }
        if job.args.len() >= LANE_MIN
            && let Some(lanes) = self.lanes.clone()
            && let Some(lane) = self.free_down_lane()
        {
            // SAFETY: no job in flight uses this lane: the worker has answered every
            // job that did, so it reads it no more until our next `RunInLane`.
            unsafe { lanes.write(Way::Down, lane, &job.args)? };
            let run = ToWorker::RunInLane {
                job: id,
                entry: job.entry,
                count: job.count,
                lane: lane as u8,
                len: job.args.len() as u64,
            };
            self.writer.push(&run, max_frame, |_| {})?;
            self.lanes_used = Some(Instant::now());
            return Ok(Some(lane));
        }
        let run = ToWorker::Run {
            job: id,
            entry: job.entry,
            count: job.count,
        };
        self.writer.push_shared(&run, &job.args, max_frame)?;
        Ok(None)
    }

    /// Gives the lanes' memory back once they have sat unused for `LANE_IDLE`.
    fn release_idle_lanes(&mut self) {
        if self.inflight.is_empty()
            && self.lanes_used.is_some_and(|at| at.elapsed() >= LANE_IDLE)
            && let Some(lanes) = &self.lanes
        {
            lanes.release_memory();
            self.lanes_used = None;
        }
    }

    /// Folds the time a job of `count` tasks spent in flight into the estimate.
    fn observe(&mut self, sent: Instant, count: u32) {
        let per_task = (sent.elapsed().as_nanos() / u128::from(count.max(1))) as u64;
        self.task_ns = Some(match self.task_ns {
            Some(old) => (old * 3 + per_task) / 4,
            None => per_task,
        });
    }
}

struct InFlight {
    id: u64,
    /// Its number among the jobs sent to this worker (see `Progress::claim`).
    seq: u64,
    sent: Instant,
    /// When it was sent, on the clock the worker stamps its progress with.
    sent_ns: u64,
    /// The worker-lifetime number of the job's first task.
    first_task: u64,
    /// The down lane holding the job's arguments, if they went that way.
    lane: Option<usize>,
    job: ProcJob,
}

/// Why a worker's life ended.
enum End {
    /// The pool is done with the slot.
    Stop,
    /// Start another worker in this slot.
    Replace,
    /// It died before it was set up: start another, as after a failed start.
    Unready,
}

impl Slot {
    pub(crate) fn new() -> Result<Slot> {
        use rustix::event::{EventfdFlags, eventfd};
        Ok(Slot {
            state: Mutex::new(SlotState::default()),
            reading: Mutex::new(None),
            wake: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_reading(&self) -> MutexGuard<'_, Option<Reading>> {
        self.reading.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while jobs sent to the worker are unanswered.
    pub(crate) fn is_busy(&self) -> bool {
        !self.lock().inflight.is_empty()
    }

    /// A helper's turn at the supervisor's job: if an answer is due and nobody else
    /// is reading, reads and delivers it. True if anything arrived.
    pub(crate) fn help(&self, shared: &Shared) -> bool {
        let mut guard = match self.reading.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let Some(r) = guard.as_mut().filter(|r| !r.eof) else {
            return false;
        };
        // Due when the worker has finished every task of the oldest job in flight:
        // it counts each task finished just before it answers.
        let due = self
            .lock()
            .inflight
            .front()
            .map(|f| f.first_task + u64::from(f.job.count));
        if due.is_none_or(|due| r.progress.counts().1 < due) {
            return false;
        }
        match self.read_answers(shared, r, false) {
            Heard::Bytes(n) => n > 0,
            // Deaths and broken workers are the supervisor's to handle.
            Heard::Eof => {
                drop(guard);
                self.wake();
                false
            }
            Heard::Broken(e) => {
                drop(guard);
                self.lock().broken = Some(e);
                self.kill();
                false
            }
        }
    }

    /// Reads what the worker has sent and handles every whole answer in it.
    fn read_answers(&self, shared: &Shared, r: &mut Reading, by_supervisor: bool) -> Heard {
        let n = match r.reader.fill(&*r.sock) {
            Ok(Fill::Read(n)) => n,
            Ok(Fill::Eof) => {
                r.eof = true;
                return Heard::Eof;
            }
            Err(e) => {
                r.eof = true;
                return Heard::Broken(e.into());
            }
        };
        match self.handle_frames(shared, r, by_supervisor) {
            Ok(()) => Heard::Bytes(n),
            Err(e) => {
                r.eof = true;
                // The answer at the head of the pipeline is the bad one: its job fails
                // rather than run again on the next worker, forever — once the worker
                // is reaped, as it may still be reading the job's arguments.
                self.lock().blame_head = true;
                Heard::Broken(e)
            }
        }
    }

    /// True when a worker is here with nothing in flight.
    pub(crate) fn is_idle(&self) -> bool {
        let st = self.lock();
        st.sock.is_some() && st.inflight.is_empty()
    }

    /// The current worker's PID, 0 between workers.
    pub(crate) fn pid(&self) -> u32 {
        self.lock().pid
    }

    /// Wakes the supervisor thread.
    pub(crate) fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    fn drain_wake(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut buf);
    }

    /// Kills the current worker (terminate); the supervisor sees the EOF.
    pub(crate) fn kill(&self) {
        let st = self.lock();
        if st.pid != 0
            && let Some(pid) = rustix::process::Pid::from_raw(st.pid as i32)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        drop(st);
        self.wake();
    }

    /// Sends queued jobs to this slot's worker until its pipeline is full.
    /// Called by submitters and by the supervisor; never blocks on the socket.
    /// Sends at most `max_jobs`; returns how many it sent.
    /// With `flush` false the frames wait in the writer for [`flush`](Self::flush),
    /// so a burst of jobs leaves in one `writev`.
    pub(crate) fn pump(
        &self,
        shared: &Shared,
        from_supervisor: bool,
        max_jobs: usize,
        flush: bool,
    ) -> usize {
        let mut st = self.lock();
        if st.sock.is_none() {
            return 0;
        }
        let mut sent = 0;
        while sent < max_jobs
            && !st.retiring
            && st.inflight.len() < st.depth(shared.config.prefetch)
        {
            if shared
                .config
                .max_tasks_per_child
                .is_some_and(|max| st.dispatched >= max as u64)
            {
                st.retiring = true;
                break;
            }
            let Some(job) = shared.queue.try_pop() else {
                break;
            };
            let id = shared.next_job.fetch_add(1, Ordering::Relaxed);
            let lane = match st.send(id, &job, shared.config.max_frame) {
                Ok(lane) => lane,
                Err(e) => {
                    job.fail(&e);
                    continue;
                }
            };
            let first_task = st.dispatched;
            st.dispatched += u64::from(job.count);
            let seq = st.sent_jobs;
            st.sent_jobs += 1;
            st.inflight.push_back(InFlight {
                id,
                seq,
                sent: Instant::now(),
                sent_ns: super::progress::now_ns(),
                first_task,
                lane,
                job,
            });
            sent += 1;
        }
        let retiring = st.retiring;
        drop(st);
        if flush && sent > 0 {
            self.flush(from_supervisor);
        } else if retiring && !from_supervisor {
            self.wake();
        }
        sent
    }

    /// Takes back the jobs waiting in this worker's pipeline behind the one it is
    /// running, for idle workers to run now instead.
    pub(crate) fn revoke_waiting(&self) -> Vec<ProcJob> {
        let mut st = self.lock();
        // Worth it only behind a job that is running: the others start at once.
        if st.inflight.len() < 2 {
            return Vec::new();
        }
        let Some(progress) = st.progress.clone() else {
            return Vec::new();
        };
        let Some(claimed) = progress.revoke(st.sent_jobs) else {
            return Vec::new();
        };
        let keep = st.inflight.iter().take_while(|f| f.seq < claimed).count();
        let taken: Vec<InFlight> = st.inflight.drain(keep..).collect();
        if let Some(first) = taken.first() {
            // Their tasks will never be counted by this worker: number on from here.
            st.dispatched = first.first_task;
        }
        taken.into_iter().map(|f| f.job).collect()
    }

    /// Writes what the writer holds, as far as the socket takes it now.
    pub(crate) fn flush(&self, from_supervisor: bool) {
        let mut st = self.lock();
        let Some(sock) = st.sock.clone() else {
            return;
        };
        let flushed = st.writer.flush(&*sock).unwrap_or(false);
        let retiring = st.retiring;
        drop(st);
        if (!flushed || retiring) && !from_supervisor {
            // Leftover bytes (or a retirement) are the supervisor's to handle.
            self.wake();
        }
    }

    /// The supervisor thread's body: runs workers in this slot until the pool stops.
    pub(crate) fn supervise(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        ready: std::sync::mpsc::Sender<Result<()>>,
    ) {
        let mut ready = Some(ready);
        // Workers in a row that failed to start or died before they were set up.
        let mut failures = 0u32;
        loop {
            let started = start_worker(
                &WorkerOptions::for_pool(&shared.config),
                shared.buffers.arena().map(|a| &**a),
            )
            .and_then(
                |mut w| match self.install(&mut w, shared.config.max_frame) {
                    Ok(()) => Ok(w),
                    Err(e) => {
                        let _ = w.child.kill();
                        reap(&mut w);
                        Err(e)
                    }
                },
            );
            let worker = match started {
                Ok(w) => w,
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e));
                        return;
                    }
                    failures += 1;
                    if failures >= MAX_START_FAILURES || shared.queue.phase().is_stopped() {
                        shared.slot_lost(&e);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50 << failures));
                    continue;
                }
            };
            if let Some(r) = ready.take() {
                let _ = r.send(Ok(()));
            }
            match self.run_worker(shared, worker) {
                End::Stop => return,
                End::Replace => failures = 0,
                End::Unready => {
                    // Dead before it was set up: as good as a failed start.
                    failures += 1;
                    if failures >= MAX_START_FAILURES {
                        shared.slot_lost(&Error::Spawn(format!(
                            "{failures} workers in a row died before they were set up"
                        )));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50 << failures));
                }
            }
            let phase = shared.queue.phase();
            if phase.is_stopped() || (phase == Phase::Closed && shared.queue.is_empty()) {
                return;
            }
        }
    }

    /// Makes `w` the slot's worker, reachable by submitters and helpers.
    fn install(&self, w: &mut WorkerProcess, max_frame: usize) -> Result<()> {
        let sock = w.sock.clone();
        *self.lock_reading() = Some(Reading {
            sock: sock.clone(),
            // Bytes the handshake read past `Hello` stay with the reader.
            reader: std::mem::replace(&mut w.reader, FrameReader::new(max_frame)),
            lanes: w.lanes.clone(),
            progress: w.progress.clone(),
            eof: false,
        });
        *self.lock() = SlotState {
            sock: Some(sock),
            lanes: w.lanes.clone(),
            progress: Some(w.progress.clone()),
            arena: w.arena,
            pid: w.pid,
            ..SlotState::default()
        };
        Ok(())
    }

    /// One worker's life under supervision.
    fn run_worker(&self, shared: &Shared, mut w: WorkerProcess) -> End {
        self.pump(shared, true, usize::MAX, true);
        let mut spin = crate::spin::Spin::new();
        loop {
            match shared.queue.phase() {
                phase if phase.is_stopped() => return self.bury(shared, &mut w, Why::Stopped),
                Phase::Closed if shared.queue.is_empty() && self.lock().inflight.is_empty() => {
                    return self.shut_down(&mut w);
                }
                _ => {}
            }
            {
                let st = self.lock();
                if st.retiring && st.inflight.is_empty() {
                    drop(st);
                    let _ = self.shut_down(&mut w);
                    return End::Replace;
                }
            }
            if let Some(late) = self.check_timeout(shared, &w) {
                let _ = w.child.kill();
                return self.bury(shared, &mut w, Why::Overdue(late));
            }
            let broken = self.lock().broken.take();
            if let Some(e) = broken {
                // A helper found the worker broken and killed it.
                return self.bury(shared, &mut w, Why::Broke(e));
            }
            match self.read(shared) {
                Heard::Eof => return self.bury(shared, &mut w, Why::Died),
                Heard::Broken(e) => {
                    if !matches!(e, Error::InitializerFailed { .. }) {
                        eprintln!("fondo: worker {}: {e}; killing it", w.pid);
                    }
                    let _ = w.child.kill();
                    return self.bury(shared, &mut w, Why::Broke(e));
                }
                Heard::Bytes(n) if n > 0 => {
                    spin.reset();
                    continue;
                }
                Heard::Bytes(_) => {}
            }
            let helped = shared.helpers.load(Ordering::Relaxed) > 0;
            if !helped && !self.lock().inflight.is_empty() {
                // A result is probably microseconds away: spin rather than pay a
                // wake-up — on the progress page, not on `read`, so the spin costs no
                // syscalls; the worker counts a task finished just before it answers.
                let (_, seen) = w.progress.counts();
                let mut answered = false;
                while spin.again() {
                    if w.progress.counts().1 != seen {
                        answered = true;
                        break;
                    }
                }
                if answered {
                    continue;
                }
            }
            // Helped, a waiting thread reads the answers: stay out of its way.
            spin.reset();
            if self.wait_for_events(shared, &mut w, helped) == Woke::Exited {
                return self.bury_exited(shared, &mut w);
            }
        }
    }

    /// Reads the current worker's socket, if it still has one.
    fn read(&self, shared: &Shared) -> Heard {
        match self.lock_reading().as_mut() {
            Some(r) => self.read_answers(shared, r, true),
            None => Heard::Eof,
        }
    }

    /// The worker has exited, though its socket may live on in a process its task
    /// started: takes the answers it sent before it died, then buries it.
    fn bury_exited(&self, shared: &Shared, w: &mut WorkerProcess) -> End {
        loop {
            match self.read(shared) {
                Heard::Bytes(n) if n > 0 => {}
                Heard::Broken(e) => return self.bury(shared, w, Why::Broke(e)),
                Heard::Bytes(_) | Heard::Eof => return self.bury(shared, w, Why::Died),
            }
        }
    }

    /// Blocks in poll on the socket (unless threads are helping), the wake fd and
    /// the worker's pidfd, flushing pending output.
    fn wait_for_events(&self, shared: &Shared, w: &mut WorkerProcess, helped: bool) -> Woke {
        use rustix::event::{PollFd, PollFlags, poll};
        let (want_write, lanes_used) = {
            let mut st = self.lock();
            st.release_idle_lanes();
            let want_write = match st.sock.clone() {
                Some(sock) => !st.writer.flush(&*sock).unwrap_or(true),
                None => false,
            };
            (want_write, st.lanes_used)
        };
        // Re-check a timed worker often: its stages change without telling us.
        let task_check = shared
            .config
            .task_timeout
            .map(|limit| (limit / 4).clamp(Duration::from_millis(1), Duration::from_millis(50)));
        let lanes_due = lanes_used.map(|at| LANE_IDLE.saturating_sub(at.elapsed()));
        // Free arena slots give their memory back the same way.
        let arena_due = shared
            .buffers
            .arena()
            .and_then(|a| a.release_idle(LANE_IDLE));
        let recheck = helped.then_some(HELPED_RECHECK);
        // Without a pidfd, a death shows only as EOF; look for one now and then in
        // case the worker's socket outlives it (a process its task started).
        let exit_check = w.pidfd.is_none().then_some(EXIT_RECHECK);
        let timeout = [task_check, lanes_due, arena_due, recheck, exit_check]
            .into_iter()
            .flatten()
            .min()
            .map(poll_timeout);
        // Helped, the answers are the helpers' to read (a hang-up still wakes us).
        let mut flags = if helped {
            PollFlags::empty()
        } else {
            PollFlags::IN
        };
        if want_write {
            flags |= PollFlags::OUT;
        }
        let mut fds = vec![
            PollFd::new(&*w.sock, flags),
            PollFd::new(&self.wake, PollFlags::IN),
        ];
        if let Some(pidfd) = &w.pidfd {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        let _ = poll(&mut fds, timeout.as_ref());
        let woken = fds[1].revents().contains(PollFlags::IN);
        let pidfd_ready = fds.get(2).map(|pidfd| !pidfd.revents().is_empty());
        drop(fds);
        if woken {
            self.drain_wake();
        }
        let exited = pidfd_ready.unwrap_or_else(|| has_exited(w));
        if exited {
            return Woke::Exited;
        }
        self.pump(shared, true, usize::MAX, true);
        Woke::Events
    }

    /// Handles every complete `Done` frame buffered from the worker.
    fn handle_frames(&self, shared: &Shared, r: &mut Reading, by_supervisor: bool) -> Result<()> {
        let mut any = false;
        while let Some(payload) = r.reader.next_frame()? {
            let (header, inline): (FromWorker, &[u8]) = decode_header(payload)?;
            // SAFETY: the header just came from this worker, whose lanes these are,
            // and the lane goes back to it only after `deliver`, below.
            let answer = unsafe { Answer::locate(header, inline, r.lanes.as_deref())? };
            let Answer {
                job, count, body, ..
            } = answer;
            let done = {
                let mut st = self.lock();
                match st.inflight.front() {
                    Some(f) if f.id == job => {
                        let (sent, count) = (f.sent, f.job.count);
                        st.observe(sent, count);
                        st.inflight.pop_front()
                    }
                    _ => None,
                }
            };
            let done =
                done.ok_or_else(|| Error::Protocol(format!("answer for unknown job {job}")))?;
            // Deliver without the state lock: sinks may run user callbacks.
            let delivered = done.job.deliver(count, body);
            if let Some(lane) = answer.lane {
                self.lock().lanes_used = Some(Instant::now());
                r.progress.release_up_lane(lane);
            }
            if let Err(e) = delivered {
                done.job.fail(&e);
                return Err(e);
            }
            shared.buffers.give(done.job.args);
            any = true;
        }
        if any {
            self.pump(shared, by_supervisor, usize::MAX, true);
            if self.is_idle() {
                // Idle with nothing queued: take work waiting behind busy workers.
                shared.rebalance();
            }
        }
        Ok(())
    }

    /// The stage of this worker that is over the task timeout, if any.
    fn check_timeout(&self, shared: &Shared, w: &WorkerProcess) -> Option<Overdue> {
        let limit = shared.config.task_timeout?;
        let sent: Vec<Sent> = self
            .lock()
            .inflight
            .iter()
            .map(|f| Sent {
                first_task: f.first_task,
                count: f.job.count,
                at_ns: f.sent_ns,
            })
            .collect();
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        overdue(limit_ns, w.progress.stamps(), &sent)
    }

    /// Asks the worker to exit after its queue and reaps it.
    fn shut_down(&self, w: &mut WorkerProcess) -> End {
        let mut out = FrameWriter::default();
        if out.push(&ToWorker::Shutdown, 64, |_| {}).is_ok() {
            let _ = write_all_blocking(&mut out, &w.sock);
        }
        self.lock().sock = None;
        reap(w);
        End::Stop
    }

    /// After a worker's life ended (`why`): rules on every task it held
    /// (`recovery`), carries the rulings out, and reaps it.
    fn bury(&self, shared: &Shared, w: &mut WorkerProcess, why: Why) -> End {
        // Helpers stop reading this worker (waiting out one that is delivering now).
        *self.lock_reading() = None;
        let (inflight, blame_head) = {
            let mut st = self.lock();
            st.sock = None;
            st.pid = 0;
            (
                std::mem::take(&mut st.inflight),
                std::mem::take(&mut st.blame_head),
            )
        };
        let cause = reap(w);
        let ready = w.progress.is_ready();
        let ending = match &why {
            _ if shared.queue.phase().is_stopped() => Ending::Stopped,
            Why::Stopped => Ending::Stopped,
            Why::Overdue(late) => Ending::Overdue(*late),
            Why::Broke(Error::InitializerFailed { .. }) => Ending::Stopped,
            Why::Broke(_) if blame_head => Ending::BadAnswer,
            Why::Broke(_) | Why::Died => Ending::Died,
        };
        if let Some(broken) = broken_by(shared, &why, ready, cause) {
            shared.break_pool(broken);
        }
        let flights: Vec<Flight> = inflight
            .iter()
            .map(|f| Flight {
                first_task: f.first_task,
                count: f.job.count,
                attempts: f.job.attempts,
                free_reruns: f.job.free_reruns,
            })
            .collect();
        let rulings = recover(ending, w.progress.counts(), &flights, shared.config.retries);
        let error_for = |blame: Blame| match (blame, &why) {
            (Blame::Died, _) => Error::WorkerDied { pid: w.pid, cause },
            (Blame::Timeout, _) => Error::Timeout {
                limit: shared.config.task_timeout.unwrap_or_default(),
            },
            (Blame::BadAnswer, Why::Broke(e)) => e.clone(),
            (Blame::BadAnswer, _) => Error::Protocol("the worker broke the protocol".into()),
            (Blame::Stopped, _) => shared.queue.stop_error(),
        };
        let mut requeue = Vec::new();
        for (index, flight) in inflight.into_iter().enumerate() {
            let mine: Vec<&Ruling> = rulings.iter().filter(|r| r.job == index).collect();
            let base = flight.job.start;
            let cuts: Vec<u32> = mine.iter().skip(1).map(|r| r.tasks.start).collect();
            for piece in flight.job.cut(&cuts) {
                let offset = (piece.start - base) as u32;
                let verdict = mine
                    .iter()
                    .find(|r| r.tasks.contains(&offset))
                    .map_or(Verdict::Requeue, |r| r.verdict);
                carry_out(verdict, piece, &mut requeue, &error_for);
            }
        }
        shared.requeue(requeue);
        if shared.queue.phase().is_stopped() {
            End::Stop
        } else if ready {
            End::Replace
        } else {
            End::Unready
        }
    }
}

/// Why a worker's life is being ended.
#[derive(Debug)]
enum Why {
    /// It exited, or closed its socket, on its own.
    Died,
    /// It overran the task timeout at this stage; the parent killed it.
    Overdue(Overdue),
    /// It broke the protocol (or said its initializer failed); it was killed.
    Broke(Error),
    /// The pool was terminated or broke.
    Stopped,
}

/// How a `wait_for_events` ended.
#[derive(Debug, PartialEq, Eq)]
enum Woke {
    /// Something may have changed: look again.
    Events,
    /// The worker process has exited.
    Exited,
}

/// Workers in a row that may fail to start (or die before they are set up)
/// before the slot gives up: a worker that cannot start must not respawn forever.
const MAX_START_FAILURES: u32 = 5;

/// Without a pidfd, how often the supervisor checks whether the worker exited.
const EXIT_RECHECK: Duration = Duration::from_millis(100);

/// Carries out one verdict on one piece of a job.
fn carry_out(
    verdict: Verdict,
    mut piece: ProcJob,
    requeue: &mut Vec<ProcJob>,
    error_for: &impl Fn(Blame) -> Error,
) {
    match verdict {
        Verdict::Requeue => requeue.push(piece),
        Verdict::RequeueNoted => {
            piece.free_reruns += 1;
            requeue.push(piece);
        }
        Verdict::RequeueAlone => {
            let cuts: Vec<u32> = (1..piece.count).collect();
            for mut alone in piece.cut(&cuts) {
                alone.free_reruns += 1;
                requeue.push(alone);
            }
        }
        Verdict::Retry => {
            piece.attempts += 1;
            requeue.push(piece);
        }
        Verdict::Fail(blame) => piece.fail(&error_for(blame)),
    }
}

/// The error that breaks the pool after this worker's end, if it does: its
/// initializer failed (it said so, died in it, or outran the task timeout in it).
fn broken_by(shared: &Shared, why: &Why, ready: bool, cause: ExitCause) -> Option<Error> {
    if let Why::Broke(e @ Error::InitializerFailed { .. }) = why {
        return Some(e.clone());
    }
    if ready || shared.config.initializer.is_none() || shared.queue.phase().is_stopped() {
        return None;
    }
    let message = match why {
        Why::Overdue(_) => format!(
            "it did not return within the task timeout of {:?}",
            shared.config.task_timeout.unwrap_or_default()
        ),
        _ => format!("its worker {cause} while running it"),
    };
    Some(Error::InitializerFailed { message })
}

/// True if the worker has exited (its status is kept for `reap`).
fn has_exited(w: &mut WorkerProcess) -> bool {
    matches!(w.child.try_wait(), Ok(Some(_)))
}

/// Waits for a worker that is exiting; kills it if it lingers.
fn reap(w: &mut WorkerProcess) -> ExitCause {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match w.child.try_wait() {
            Ok(Some(status)) => return super::spawn::exit_cause(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = w.child.kill();
            }
            Err(_) => return ExitCause::Unknown,
        }
    }
}
