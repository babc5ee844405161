//! A worker slot: one worker's place in the pool (its process comes and goes, the
//! slot stays) — the jobs in its pipeline and how queued work is sent to it. The
//! slot's supervisor thread (`supervisor.rs`) and the threads reading its answers
//! (`reader.rs`) work on the same slot.
//!
//! Lock order: a slot's `reading` before its `state`; a slot's lock never while
//! another slot's is held, but for `state` locks taken one at a time.

use super::reader::Reading;
use super::{ProcJob, Shared};
use crate::boundary::spill::SPILL_MIN;
use crate::cancel::{self, Ticket};
use crate::error::{Error, Result};
use crate::process::ipc::frames::FrameWriter;
use crate::process::ipc::lanes::{LANES, Lanes, Way};
use crate::process::ipc::messages::ToWorker;
use crate::process::ipc::progress::Progress;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One worker's place in the pool; its process comes and goes, the slot stays.
pub(crate) struct Slot {
    pub(super) state: Mutex<SlotState>,
    /// The live worker's incoming side, read by the supervisor or by a helper.
    /// Lock order: `reading` before `state`.
    pub(super) reading: Mutex<Option<Reading>>,
    /// Written to wake the supervisor thread out of `poll`.
    pub(super) wake: OwnedFd,
}

/// What submitters and the supervisor share, under the slot's lock.
#[derive(Default)]
pub(super) struct SlotState {
    /// The live worker's socket (write side); `None` between workers.
    pub(super) sock: Option<Arc<UnixStream>>,
    /// The live worker's lanes, if it has them.
    pub(super) lanes: Option<Arc<Lanes>>,
    /// The live worker's progress page.
    pub(super) progress: Option<Arc<Progress>>,
    /// The live worker maps the pool's arena.
    pub(super) arena: bool,
    /// When a lane last carried a body, if its memory has not been given back since.
    pub(super) lanes_used: Option<Instant>,
    pub(super) pid: u32,
    pub(super) writer: FrameWriter,
    /// Jobs sent and not yet answered, in the order the worker runs them.
    pub(super) inflight: VecDeque<InFlight>,
    /// Tasks sent to the current worker: numbers its tasks like its progress page does.
    pub(super) dispatched: u64,
    /// Jobs sent to the current worker: numbers its jobs as it claims them.
    pub(super) sent_jobs: u64,
    /// Shared values the current worker has (see `boundary::shares`).
    pub(super) shares: crate::boundary::shares::Delivered,
    /// No more work for this worker: it is being recycled or stopped.
    pub(super) retiring: bool,
    /// Running estimate of one task's time on this worker, in nanoseconds (an upper
    /// bound: it includes the wait in the pipeline). Deepens the pipeline for tiny tasks.
    pub(super) task_ns: Option<u64>,
    /// A helper found the worker broken and killed it: why, for the supervisor.
    pub(super) broken: Option<Error>,
    /// The worker answered the job at the head of the pipeline with a bad frame:
    /// that job fails when the worker is buried.
    pub(super) blame_head: bool,
}

/// Jobs kept in flight per worker when tasks are known to be tiny: deep enough that
/// frames travel many to a syscall, shallow enough to bound memory.
const DEEP_PIPELINE: usize = 32;

/// Below this per-task time a task counts as tiny.
const TINY_TASK_NS: u64 = 50_000;

/// Lanes unused this long give their memory back: a pool moving big values keeps
/// them warm, an idle one does not hold on to them.
pub(super) const LANE_IDLE: Duration = Duration::from_secs(1);

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

    /// Queues what the worker needs before job `job` and does not have yet: the
    /// shared values its arguments name (each with its memfd); and tells it to
    /// forget those whose last handle the parent dropped.
    fn deliver_shares(&mut self, job: &ProcJob, max_frame: usize) -> Result<()> {
        for id in self.shares.gone() {
            self.writer
                .push(&ToWorker::Forget { id }, max_frame, |_| {})?;
        }
        for share in self.shares.missing(&job.shares) {
            let header = ToWorker::Share {
                id: share.id(),
                len: share.len() as u64,
            };
            match share.fd() {
                Some(fd) => {
                    self.writer
                        .push_with_fd(&header, max_frame, fd.try_clone_to_owned()?)?
                }
                None => self.writer.push(&header, max_frame, |_| {})?,
            }
        }
        Ok(())
    }

    /// Queues job `id` for the worker: its arguments where they are when in the
    /// pool's arena, through a free down lane when big, else inline. Returns the lane
    /// used.
    fn send(&mut self, id: u64, job: &ProcJob, max_frame: usize) -> Result<Option<usize>> {
        self.deliver_shares(job, max_frame)?;
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
        if job.args.len() >= SPILL_MIN
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
    pub(super) fn release_idle_lanes(&mut self) {
        if self.inflight.is_empty()
            && self.lanes_used.is_some_and(|at| at.elapsed() >= LANE_IDLE)
            && let Some(lanes) = &self.lanes
        {
            lanes.release_memory();
            self.lanes_used = None;
        }
    }

    /// Folds the time a job of `count` tasks spent in flight into the estimate.
    pub(super) fn observe(&mut self, sent: Instant, count: u32) {
        let per_task = (sent.elapsed().as_nanos() / u128::from(count.max(1))) as u64;
        self.task_ns = Some(match self.task_ns {
            Some(old) => (old * 3 + per_task) / 4,
            None => per_task,
        });
    }
}

pub(super) struct InFlight {
    pub(super) id: u64,
    /// Its number among the jobs sent to this worker (see `Progress::claim`).
    pub(super) seq: u64,
    pub(super) sent: Instant,
    /// When it was sent, on the clock the worker stamps its progress with.
    pub(super) sent_ns: u64,
    /// The worker-lifetime number of the job's first task.
    pub(super) first_task: u64,
    /// The down lane holding the job's arguments, if they went that way.
    pub(super) lane: Option<usize>,
    pub(super) job: ProcJob,
}

/// A slot's state, locked. Debug builds count the state locks a thread holds, to
/// check the lock order (a `reading` lock is never taken under a `state` lock).
pub(super) struct StateGuard<'a> {
    guard: MutexGuard<'a, SlotState>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = SlotState;
    fn deref(&self) -> &SlotState {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut SlotState {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        lock_order::released_state();
    }
}

/// The lock-order check behind [`StateGuard`]: free in release builds.
pub(super) mod lock_order {
    #[cfg(debug_assertions)]
    thread_local! {
        static STATE_LOCKS_HELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    pub(in crate::process::parent) fn took_state() {
        #[cfg(debug_assertions)]
        STATE_LOCKS_HELD.with(|n| n.set(n.get() + 1));
    }

    pub(in crate::process::parent) fn released_state() {
        #[cfg(debug_assertions)]
        STATE_LOCKS_HELD.with(|n| n.set(n.get() - 1));
    }

    /// Asserts (debug builds) that no slot's state is locked on this thread.
    pub(in crate::process::parent) fn may_take_reading() {
        #[cfg(debug_assertions)]
        STATE_LOCKS_HELD
            .with(|n| debug_assert_eq!(n.get(), 0, "lock order: `reading` after a `state` lock"));
    }
}

/// Takes the jobs from number `claimed` on out of the pipeline: the gate gave them
/// back (`Progress::revoke`), so the worker skips them unread.
fn take_from(st: &mut SlotState, claimed: u64) -> Vec<ProcJob> {
    let keep = st.inflight.iter().take_while(|f| f.seq < claimed).count();
    let taken: Vec<InFlight> = st.inflight.drain(keep..).collect();
    if let Some(first) = taken.first() {
        // Their tasks will never be counted by this worker: number on from here.
        st.dispatched = first.first_task;
    }
    taken.into_iter().map(|f| f.job).collect()
}

/// Who is calling into a slot: its own supervisor, or another thread (a submitter,
/// a thread waiting for a result, another slot's supervisor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The slot's supervisor thread, which does not need waking.
    Supervisor,
    /// Any other thread: leftover work is the supervisor's, so it is woken.
    Other,
}

/// Whether queued frames leave at once or wait for a burst to gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Write to the socket now.
    Now,
    /// Leave the frames in the writer; the caller flushes once for many slots.
    Later,
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

    pub(super) fn lock(&self) -> StateGuard<'_> {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        lock_order::took_state();
        StateGuard { guard }
    }

    pub(super) fn lock_reading(&self) -> MutexGuard<'_, Option<Reading>> {
        lock_order::may_take_reading();
        self.reading.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while jobs sent to the worker are unanswered.
    pub(crate) fn is_busy(&self) -> bool {
        !self.lock().inflight.is_empty()
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

    pub(super) fn drain_wake(&self) {
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
    /// Sends at most `max_jobs`; returns how many it sent. With [`Flush::Later`]
    /// the frames wait in the writer for [`flush`](Self::flush), so a burst of jobs
    /// leaves in one `sendmsg`.
    pub(crate) fn pump(
        &self,
        shared: &Shared,
        caller: Caller,
        max_jobs: usize,
        flush: Flush,
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
            if !job.claim() {
                // Cancelled before it started (`cancel.rs`): dropped unrun.
                continue;
            }
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
                sent_ns: crate::boundary::clock::now_ns(),
                first_task,
                lane,
                job,
            });
            sent += 1;
        }
        let retiring = st.retiring;
        drop(st);
        if flush == Flush::Now && sent > 0 {
            self.flush(caller);
        } else if retiring && caller == Caller::Other {
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
        match progress.revoke_all(st.sent_jobs) {
            Some(claimed) => take_from(&mut st, claimed),
            None => Vec::new(),
        }
    }

    /// Takes back every job of the pipeline the worker has not claimed yet, if one
    /// of them is `wanted` (for `cancel()`, or a shutdown that cancels what is
    /// pending): the gate makes sure none of them ever runs here.
    pub(crate) fn take_back_unclaimed(&self, wanted: impl Fn(&ProcJob) -> bool) -> Vec<ProcJob> {
        let mut st = self.lock();
        let Some(progress) = st.progress.clone() else {
            return Vec::new();
        };
        loop {
            let first = st
                .sent_jobs
                .saturating_sub(progress.unclaimed(st.sent_jobs));
            if !st.inflight.iter().any(|f| f.seq >= first && wanted(&f.job)) {
                return Vec::new();
            }
            if let Some(claimed) = progress.revoke(st.sent_jobs) {
                return take_from(&mut st, claimed);
            }
            // The worker claimed a job meanwhile: look again.
        }
    }

    /// True if the worker has claimed (started) a job of `ticket` it has not
    /// answered yet.
    pub(crate) fn runs(&self, ticket: &Ticket) -> bool {
        let st = self.lock();
        let Some(progress) = &st.progress else {
            return false;
        };
        let first_unclaimed = st
            .sent_jobs
            .saturating_sub(progress.unclaimed(st.sent_jobs));
        st.inflight
            .iter()
            .any(|f| f.seq < first_unclaimed && cancel::same(f.job.ticket(), ticket))
    }

    /// Writes what the writer holds, as far as the socket takes it now.
    pub(crate) fn flush(&self, caller: Caller) {
        let mut st = self.lock();
        let Some(sock) = st.sock.clone() else {
            return;
        };
        let flushed = st.writer.flush(&*sock).unwrap_or(false);
        let retiring = st.retiring;
        drop(st);
        if (!flushed || retiring) && caller == Caller::Other {
            // Leftover bytes (or a retirement) are the supervisor's to handle.
            self.wake();
        }
    }
}
