//! `JobQueue`: the pool's FIFO of pending work and its open → closed → terminated
//! life cycle, shared by the backends.

use crate::error::Error;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Where a pool is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Takes new work.
    Open,
    /// Takes no new work; finishes what it has (Python's `close()`).
    Closed,
    /// Dropped its work; workers are being stopped (Python's `terminate()`).
    Terminated,
}

/// A job that can be failed without running: what the queue does with refused work.
pub(crate) trait Refusable {
    /// Fails every task of the job with `error`.
    fn refuse(self, error: &Error);
}

/// A FIFO of jobs with the pool's phase, for workers that block waiting for work.
pub(crate) struct JobQueue<J> {
    state: Mutex<QueueState<J>>,
    /// Signalled when a job arrives or the phase changes.
    changed: Condvar,
    /// Mirrors `jobs.len()`, so idle workers can spin on it without the lock.
    queued: AtomicUsize,
}

struct QueueState<J> {
    jobs: VecDeque<J>,
    phase: Phase,
    /// Workers blocked on `changed`: a job arriving wakes them only if there are
    /// some (a futex wake is a syscall even with nobody waiting).
    sleepers: usize,
}

impl<J> Default for JobQueue<J> {
    fn default() -> Self {
        JobQueue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                phase: Phase::Open,
                sleepers: 0,
            }),
            changed: Condvar::new(),
            queued: AtomicUsize::new(0),
        }
    }
}

impl<J> JobQueue<J> {
    fn lock(&self) -> MutexGuard<'_, QueueState<J>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `jobs`; gives them back with `Closed`/`Terminated` if the pool takes no work.
    pub(crate) fn push_all(
        &self,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<(), (Error, Vec<J>)> {
        let mut st = self.lock();
        match st.phase {
            Phase::Open => {
                st.jobs.extend(jobs);
                self.publish(st);
                Ok(())
            }
            Phase::Closed => Err((Error::Closed, jobs.into_iter().collect())),
            Phase::Terminated => Err((Error::Terminated, jobs.into_iter().collect())),
        }
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
        let mut spin = crate::spin::Spin::new();
        let mut st = self.lock();
        loop {
            if st.phase == Phase::Terminated {
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
            while self.queued.load(Ordering::Acquire) == 0 && spin.again() {}
            st = self.lock();
            if st.jobs.is_empty() && st.phase == Phase::Open {
                st.sleepers += 1;
                st = self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
                st.sleepers -= 1;
                spin.reset();
            }
        }
    }

    /// The next job if one is queued and the pool is not terminated.
    pub(crate) fn try_pop(&self) -> Option<J> {
        let mut st = self.lock();
        if st.phase == Phase::Terminated {
            return None;
        }
        let job = st.jobs.pop_front();
        self.queued.store(st.jobs.len(), Ordering::Release);
        job
    }

    /// Puts a job back at the front (work a dead worker never started).
    pub(crate) fn push_front(&self, job: J) -> Result<(), J> {
        let mut st = self.lock();
        if st.phase == Phase::Terminated {
            return Err(job);
        }
        st.jobs.push_front(job);
        self.publish(st);
        Ok(())
    }

    /// After jobs were added: updates the lock-free count, unlocks, and wakes the
    /// workers asleep on the queue, if any.
    fn publish(&self, st: MutexGuard<'_, QueueState<J>>) {
        self.queued.store(st.jobs.len(), Ordering::Release);
        let wake = st.sleepers > 0;
        drop(st);
        if wake {
            self.changed.notify_all();
        }
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// True when no job is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().jobs.is_empty()
    }

    /// Stops taking work; queued jobs still run.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if st.phase == Phase::Open {
            st.phase = Phase::Closed;
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Stops everything and hands back the jobs that never started.
    pub(crate) fn terminate(&self) -> Vec<J> {
        let mut st = self.lock();
        st.phase = Phase::Terminated;
        let dropped = st.jobs.drain(..).collect();
        self.queued.store(0, Ordering::Release);
        drop(st);
        self.changed.notify_all();
        dropped
    }
}
