//! A worker slot: the parent-side supervisor thread of one worker process. It reads
//! results, refills the worker's pipeline, enforces timeouts, and when the worker
//! dies blames the one task that was running, requeues the rest and starts a
//! replacement. Threads waiting for results may read the results instead (`help`):
//! the supervisor then sleeps, so a round trip involves two parties, not three.

use super::Shared;
use super::job::ProcJob;
use super::lanes::{Answer, LANE_MIN, LANES, Lanes, Way};
use super::progress::Progress;
use super::spawn::{WorkerOptions, WorkerProcess, poll_timeout, start_worker, write_all_blocking};
use super::wire::{Fill, FrameReader, FrameWriter, FromWorker, ToWorker, decode_header};
use crate::error::{Error, ExitCause, Result};
use crate::queue::Phase;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
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
    sent: Instant,
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
            st.inflight.push_back(InFlight {
                id,
                sent: Instant::now(),
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
                Ok(w) => {
                    failures = 0;
                    w
                }
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e));
                        return;
                    }
                    failures += 1;
                    if failures >= 5 || shared.queue.phase() == Phase::Terminated {
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
                End::Replace => {
                    if shared.queue.phase() == Phase::Terminated
                        || (shared.queue.phase() == Phase::Closed && shared.queue.is_empty())
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Makes `w` the slot's worker, reachable by submitters and helpers.
    fn install(&self, w: &mut WorkerProcess, max_frame: usize) -> Result<()> {
        let sock = Arc::new(w.sock.try_clone()?);
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
                Phase::Terminated => return self.bury(shared, &mut w, Some(Error::Terminated)),
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
            if let Some(end) = self.check_timeout(shared, &mut w) {
                return end;
            }
            let broken = self.lock().broken.take();
            if let Some(e) = broken {
                // A helper found the worker broken and killed it.
                return self.bury(shared, &mut w, Some(e));
            }
            let heard = match self.lock_reading().as_mut() {
                Some(r) => self.read_answers(shared, r, true),
                None => Heard::Eof,
            };
            match heard {
                Heard::Eof => return self.bury(shared, &mut w, None),
                Heard::Broken(e) => {
                    eprintln!("fondo: worker {}: {e}; killing it", w.pid);
                    let _ = w.child.kill();
                    return self.bury(shared, &mut w, Some(e));
                }
                Heard::Bytes(n) if n > 0 => {
                    spin.reset();
                    continue;
                }
                Heard::Bytes(_) => {}
            }
            let helped = shared.helpers.load(Ordering::Relaxed) > 0;
            if helped {
                // A waiting thread reads the answers: stay out of its way.
                spin.reset();
                self.wait_for_events(shared, &w, true);
                continue;
            }
            let busy = !self.lock().inflight.is_empty();
            if busy {
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
            spin.reset();
            self.wait_for_events(shared, &w, false);
        }
    }

    /// Blocks in poll on the socket (unless threads are helping) and the wake fd,
    /// flushing pending output.
    fn wait_for_events(&self, shared: &Shared, w: &WorkerProcess, helped: bool) {
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
        let task_check = shared.config.task_timeout.map(|limit| {
            let left = w
                .progress
                .running_for()
                .map_or(limit, |ran| limit.saturating_sub(ran));
            // Re-check at least this often: a queued task starts without telling us.
            left.clamp(Duration::from_millis(1), Duration::from_millis(50))
        });
        let lanes_due = lanes_used.map(|at| LANE_IDLE.saturating_sub(at.elapsed()));
        // Free arena slots give their memory back the same way.
        let arena_due = shared
            .buffers
            .arena()
            .and_then(|a| a.release_idle(LANE_IDLE));
        let recheck = helped.then_some(HELPED_RECHECK);
        let timeout = [task_check, lanes_due, arena_due, recheck]
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
        let mut fds = [
            PollFd::new(&w.sock, flags),
            PollFd::new(&self.wake, PollFlags::IN),
        ];
        let _ = poll(&mut fds, timeout.as_ref());
        if fds[1].revents().contains(PollFlags::IN) {
            self.drain_wake();
        }
        self.pump(shared, true, usize::MAX, true);
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
        }
        Ok(())
    }

    /// Kills the worker if its running task is over the timeout.
    fn check_timeout(&self, shared: &Shared, w: &mut WorkerProcess) -> Option<End> {
        let limit = shared.config.task_timeout?;
        let ran = w.progress.running_for()?;
        if ran <= limit {
            return None;
        }
        let _ = w.child.kill();
        Some(self.bury(shared, w, Some(Error::Timeout { limit })))
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

    /// After a worker died (or was killed with `reason`): blames the task it was
    /// running, requeues the tasks it had not finished reporting, and reaps it.
    fn bury(&self, shared: &Shared, w: &mut WorkerProcess, reason: Option<Error>) -> End {
        // Helpers stop reading this worker (waiting out one that is delivering now).
        *self.lock_reading() = None;
        let (mut inflight, blame_head) = {
            let mut st = self.lock();
            st.sock = None;
            st.pid = 0;
            (
                std::mem::take(&mut st.inflight),
                std::mem::take(&mut st.blame_head),
            )
        };
        let cause = reap(w);
        if blame_head && let Some(head) = inflight.pop_front() {
            head.job.fail(
                reason
                    .as_ref()
                    .unwrap_or(&Error::Protocol("the worker broke the protocol".into())),
            );
        }
        let (started, finished) = w.progress.counts();
        let culprit_error = match reason {
            Some(e) => e,
            // terminate() killed it: its tasks end as `Terminated`, not as a death.
            None if shared.queue.phase() == Phase::Terminated => Error::Terminated,
            None => Error::WorkerDied { pid: w.pid, cause },
        };
        let running = (started > finished).then_some(finished);
        let mut requeue = Vec::new();
        for InFlight {
            first_task,
            mut job,
            ..
        } in inflight
        {
            if let Error::Terminated = culprit_error {
                job.fail(&Error::Terminated);
                continue;
            }
            let Some(r) =
                running.filter(|r| (first_task..first_task + u64::from(job.count)).contains(r))
            else {
                requeue.push(job);
                continue;
            };
            // Split around the task that was running: before it (finished but not
            // reported: run again), it, after it (never started).
            let at = (r - first_task) as u32;
            let mut culprit = match job.split_off(at) {
                Some(tail) => {
                    if job.count > 0 {
                        requeue.push(job);
                    }
                    tail
                }
                None => job,
            };
            let after = culprit.split_off(1);
            if culprit.attempts < shared.config.retries
                && !matches!(culprit_error, Error::Timeout { .. })
            {
                culprit.attempts += 1;
                requeue.push(culprit);
            } else {
                culprit.fail(&culprit_error);
            }
            requeue.extend(after);
        }
        shared.requeue(requeue);
        match culprit_error {
            Error::Terminated => End::Stop,
            _ => End::Replace,
        }
    }
}

/// Waits for a worker that is exiting; kills it if it lingers.
fn reap(w: &mut WorkerProcess) -> ExitCause {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match w.child.try_wait() {
            Ok(Some(status)) => {
                return match (status.signal(), status.code()) {
                    (Some(sig), _) => ExitCause::Signal(sig),
                    (None, Some(code)) => ExitCause::Code(code),
                    (None, None) => ExitCause::Unknown,
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = w.child.kill();
            }
            Err(_) => return ExitCause::Unknown,
        }
    }
}
