//! `JobQueue`: the pool's FIFO of pending work and its open → closed → terminated
//! life cycle, shared by the backends.

use crate::error::Error;
use crate::monitor::{Monitor, spin_until};
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a pool is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Takes new work.
    Open,
    /// Takes no new work; finishes what it has (Python's `close()`).
    Closed,
    /// Dropped its work; workers are being stopped (Python's `terminate()`).
    Terminated,
    /// A worker could not be set up (its initializer failed): like `Terminated`,
    /// with that error for every task (`concurrent.futures`' broken pool).
    Broken,
}

impl Phase {
    /// True once the pool has dropped its work (terminated or broken).
    pub(crate) fn is_stopped(self) -> bool {
        matches!(self, Phase::Terminated | Phase::Broken)
    }
}

/// A job that can be failed without running: what the queue does with refused work.
pub(crate) trait Refusable {
    /// Fails every task of the job with `error`.
    fn refuse(self, error: &Error);
}

/// A FIFO of jobs with the pool's phase, for workers that block waiting for work.
pub(crate) struct JobQueue<J> {
    /// Published when a job arrives or the phase changes (`monitor.rs`).
    state: Monitor<QueueState<J>>,
    /// Mirrors `jobs.len()`, so idle workers can spin on it without the lock.
    queued: AtomicUsize,
}

struct QueueState<J> {
    jobs: VecDeque<J>,
    phase: Phase,
    /// Submissions still queueing their jobs part by part (see [`Submission`]).
    submitting: usize,
    /// `close()` came while submissions were in progress: the phase turns `Closed`
    /// when the last of them ends, so an accepted submission is never cut short.
    close_requested: bool,
    /// Why the pool is broken, once it is.
    broken: Option<Error>,
    /// `shutdown(Pending::Cancel)` came: the rest of submissions in progress is
    /// cancelled instead of queued.
    cancel_rest: bool,
}

impl<J> QueueState<J> {
    /// An open queue closes now, or once the submissions in progress end.
    fn close(&mut self) {
        if self.phase == Phase::Open {
            if self.submitting > 0 {
                self.close_requested = true;
            } else {
                self.phase = Phase::Closed;
            }
        }
    }

    /// Why the next part of a submission in progress is refused now, if it is.
    fn part_refusal(&self) -> Option<Error> {
        if self.cancel_rest && !self.phase.is_stopped() {
            return Some(Error::Cancelled);
        }
        self.refusal()
    }

    /// Why a job is refused now, if it is.
    fn refusal(&self) -> Option<Error> {
        match self.phase {
            Phase::Open => None,
            Phase::Closed => Some(Error::Closed),
            Phase::Terminated => Some(Error::Terminated),
            Phase::Broken => Some(self.broken.clone().unwrap_or(Error::Terminated)),
        }
    }
}

impl<J> Default for JobQueue<J> {
    fn default() -> Self {
        JobQueue {
            state: Monitor::new(QueueState {
                jobs: VecDeque::new(),
                phase: Phase::Open,
                submitting: 0,
                close_requested: false,
                broken: None,
                cancel_rest: false,
            }),
            queued: AtomicUsize::new(0),
        }
    }
}

impl<J> JobQueue<J> {
    fn lock(&self) -> MutexGuard<'_, QueueState<J>> {
        self.state.lock()
    }

    /// Queues `jobs`; gives them back with `Closed`/`Terminated` if the pool takes no work.
    pub(crate) fn push_all(
        &self,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<(), (Error, Vec<J>)> {
        let st = self.lock();
        if st.close_requested {
            return Err((Error::Closed, jobs.into_iter().collect()));
        }
        let refusal = st.refusal();
        self.push_locked(st, refusal, jobs)
    }

    fn push_locked(
        &self,
        mut st: MutexGuard<'_, QueueState<J>>,
        refusal: Option<Error>,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<(), (Error, Vec<J>)> {
        match refusal {
            None => {
                st.jobs.extend(jobs);
                self.publish(st);
                Ok(())
            }
            Some(error) => Err((error, jobs.into_iter().collect())),
        }
    }

    /// Starts a submission that queues its jobs part by part, so workers start on
    /// the first part while the rest is being prepared; `None` if the pool takes no
    /// new work. A `close()` meanwhile waits for the submission to end.
    #[cfg(test)]
    pub(crate) fn begin(&self) -> Option<Submission<&Self, J>> {
        Self::begin_on(self)
    }

    /// [`begin`](Self::begin) through any handle on the queue (an `Arc` of what
    /// holds it, say), so another thread may carry the submission on.
    pub(crate) fn begin_on<Q: Deref<Target = Self>>(queue: Q) -> Option<Submission<Q, J>> {
        let mut st = queue.lock();
        if st.phase != Phase::Open || st.close_requested {
            return None;
        }
        st.submitting += 1;
        drop(st);
        Some(Submission { queue })
    }

    /// Why a part of a submission in progress would be refused now, if it would:
    /// to fail it without the work of preparing it.
    pub(crate) fn part_refusal(&self) -> Option<Error> {
        self.lock().part_refusal()
    }

    /// Why a new submission is refused now (`Closed` while a close waits for
    /// submissions in progress).
    pub(crate) fn refusal(&self) -> Error {
        self.lock().refusal().unwrap_or(Error::Closed)
    }

    /// Takes every queued job `wanted` picks out of the queue.
    pub(crate) fn withdraw(&self, mut wanted: impl FnMut(&J) -> bool) -> Vec<J> {
        let mut st = self.lock();
        let mut taken = Vec::new();
        if st.jobs.iter().any(&mut wanted) {
            let (out, keep): (VecDeque<J>, VecDeque<J>) = std::mem::take(&mut st.jobs)
                .into_iter()
                .partition(&mut wanted);
            st.jobs = keep;
            taken.extend(out);
            self.queued.store(st.jobs.len(), Ordering::Release);
        }
        taken
    }

    /// Closes the pool and hands back every queued job, to be cancelled; parts of
    /// submissions in progress are refused with `Cancelled` from now on (Python's
    /// `shutdown(cancel_futures=True)`). Jobs put back after a worker's death still run.
    pub(crate) fn close_and_cancel(&self) -> Vec<J> {
        let mut st = self.lock();
        st.close();
        st.cancel_rest = true;
        let dropped = st.jobs.drain(..).collect();
        self.publish(st);
        dropped
    }

    /// True while the pool takes new submissions.
    pub(crate) fn accepts_work(&self) -> bool {
        let st = self.lock();
        st.phase == Phase::Open && !st.close_requested
    }

    /// Queues `jobs`; if the pool takes no work, fails them with the reason.
    /// Returns true when they were queued.
    pub(crate) fn offer(&self, jobs: impl IntoIterator<Item = J>) -> bool
    where
        J: Refusable,
    {
        match self.push_all(jobs) {
            Ok(()) => true,
            Err((error, refused)) => {
                for job in refused {
                    job.refuse(&error);
                }
                false
            }
        }
    }

    /// The next job, waiting for one (spinning briefly first: work often follows
    /// within microseconds, and a wake-up costs ~20 µs); `None` once the pool is
    /// closed and drained, or terminated.
    pub(crate) fn pop_blocking(&self) -> Option<J> {
        let mut st = self.lock();
        loop {
            if st.phase.is_stopped() {
                return None;
            }
            if let Some(job) = st.jobs.pop_front() {
                self.queued.store(st.jobs.len(), Ordering::Release);
                return Some(job);
            }
            if st.phase == Phase::Closed {
                return None;
            }
            drop(st);
            spin_until(|| self.queued.load(Ordering::Acquire) != 0);
            let idle = |s: &QueueState<J>| s.jobs.is_empty() && s.phase == Phase::Open;
            st = self.state.park_until(self.lock(), None, |s| !idle(s)).0;
        }
    }

    /// The next job if one is queued and the pool is not terminated.
    pub(crate) fn try_pop(&self) -> Option<J> {
        let mut st = self.lock();
        if st.phase.is_stopped() {
            return None;
        }
        let job = st.jobs.pop_front();
        self.queued.store(st.jobs.len(), Ordering::Release);
        job
    }

    /// Puts jobs back at the front, first job first (work a dead worker never
    /// started, or that waited in a busy worker's pipeline). One lock and one
    /// wake-up for them all: a death can hand back a job cut into 100k pieces.
    pub(crate) fn push_front(&self, jobs: Vec<J>) -> Result<(), (Error, Vec<J>)> {
        let mut st = self.lock();
        if let Some(error) = st.refusal().filter(|_| st.phase.is_stopped()) {
            return Err((error, jobs));
        }
        for job in jobs.into_iter().rev() {
            st.jobs.push_front(job);
        }
        self.publish(st);
        Ok(())
    }

    /// After jobs were added: updates the lock-free count, unlocks, and wakes the
    /// workers asleep on the queue, if any.
    fn publish(&self, st: MutexGuard<'_, QueueState<J>>) {
        self.queued.store(st.jobs.len(), Ordering::Release);
        self.state.publish(st);
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// True when no job is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().jobs.is_empty()
    }

    /// Stops taking work; queued jobs (and submissions in progress) still run.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.close();
        self.state.publish(st);
    }

    /// Stops everything and hands back the jobs that never started.
    pub(crate) fn terminate(&self) -> Vec<J> {
        self.stop(Phase::Terminated, None)
    }

    /// Breaks the pool with `error` (unless it is already stopped) and hands back
    /// the jobs that never started, for the caller to fail with it.
    pub(crate) fn break_with(&self, error: Error) -> Vec<J> {
        self.stop(Phase::Broken, Some(error))
    }

    /// The error every pending task gets once the pool is stopped.
    pub(crate) fn stop_error(&self) -> Error {
        self.lock().refusal().unwrap_or(Error::Terminated)
    }

    fn stop(&self, phase: Phase, broken: Option<Error>) -> Vec<J> {
        let mut st = self.lock();
        if !st.phase.is_stopped() {
            st.phase = phase;
            st.broken = broken;
        }
        let dropped = st.jobs.drain(..).collect();
        self.publish(st);
        dropped
    }
}

/// A submission in progress (see [`JobQueue::begin`]), on a queue reached through
/// `Q`; ending it (dropping it) completes a `close()` that came meanwhile.
pub(crate) struct Submission<Q: Deref<Target = JobQueue<J>>, J> {
    queue: Q,
}

impl<Q: Deref<Target = JobQueue<J>>, J: Refusable> Submission<Q, J> {
    /// Queues the next part; fails it with the reason if the pool was terminated
    /// (or is shutting down cancelling what is pending).
    pub(crate) fn offer(&self, jobs: impl IntoIterator<Item = J>) -> bool {
        let st = self.queue.lock();
        let refusal = st.part_refusal();
        match self.queue.push_locked(st, refusal, jobs) {
            Ok(()) => true,
            Err((error, refused)) => {
                for job in refused {
                    job.refuse(&error);
                }
                false
            }
        }
    }
}

impl<Q: Deref<Target = JobQueue<J>>, J> Drop for Submission<Q, J> {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.submitting -= 1;
        if st.submitting == 0 && st.close_requested {
            st.close_requested = false;
            if st.phase == Phase::Open {
                st.phase = Phase::Closed;
            }
            self.queue.state.publish(st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// A job that records whether it was refused.
    struct Probe(Arc<AtomicBool>);

    impl Refusable for Probe {
        fn refuse(self, _: &Error) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    fn probe() -> (Probe, Arc<AtomicBool>) {
        let refused = Arc::new(AtomicBool::new(false));
        (Probe(refused.clone()), refused)
    }

    #[test]
    fn a_close_during_a_submission_waits_for_its_last_part() {
        let queue = JobQueue::default();
        let submission = queue.begin().expect("open pool");
        let (first, first_refused) = probe();
        assert!(submission.offer([first]));
        queue.close();
        assert!(
            !queue.accepts_work(),
            "no new submissions once close() came"
        );
        assert!(queue.begin().is_none());
        let (other, other_refused) = probe();
        assert!(!queue.offer([other]), "a new submission is refused");
        assert!(other_refused.load(Ordering::Relaxed));
        assert_eq!(queue.phase(), Phase::Open, "workers keep going meanwhile");
        let (second, second_refused) = probe();
        assert!(
            submission.offer([second]),
            "the rest of an accepted submission is taken"
        );
        drop(submission);
        assert_eq!(queue.phase(), Phase::Closed);
        assert!(!first_refused.load(Ordering::Relaxed) && !second_refused.load(Ordering::Relaxed));
        assert!(queue.try_pop().is_some() && queue.try_pop().is_some());
        assert!(queue.pop_blocking().is_none(), "closed and drained");
    }

    #[test]
    fn terminate_refuses_the_rest_of_a_submission() {
        let queue = JobQueue::default();
        let submission = queue.begin().expect("open pool");
        let (first, _) = probe();
        assert!(submission.offer([first]));
        assert_eq!(queue.terminate().len(), 1);
        let (second, refused) = probe();
        assert!(!submission.offer([second]));
        assert!(refused.load(Ordering::Relaxed));
        drop(submission);
        assert_eq!(queue.phase(), Phase::Terminated);
    }

    /// A job known by its number.
    #[derive(Debug, PartialEq)]
    struct Numbered(u32);

    impl Refusable for Numbered {
        fn refuse(self, _: &Error) {}
    }

    #[test]
    fn jobs_put_back_go_first_in_their_order_until_the_pool_stops() {
        let queue = JobQueue::default();
        assert!(queue.offer([Numbered(9)]));
        queue
            .push_front(vec![Numbered(1), Numbered(2), Numbered(3)])
            .expect("an open pool takes them back");
        let order: Vec<u32> = std::iter::from_fn(|| queue.try_pop())
            .map(|n| n.0)
            .collect();
        assert_eq!(order, [1, 2, 3, 9]);
        queue.terminate();
        let (error, back) = queue
            .push_front(vec![Numbered(4)])
            .expect_err("a terminated pool takes nothing back");
        assert_eq!(back, [Numbered(4)], "handed back to be failed");
        assert!(matches!(error, Error::Terminated), "{error:?}");
    }
}
