//! `TaskClock`: where a worker stamps the stages of its tasks — started, finished,
//! and when — so whoever watches it (the parent of a worker process through shared
//! memory, an MPI rank's own watchdog) can blame the right task when the worker
//! dies and time a task without a message per task.
//!
//! Counts are over the worker's whole life, in dispatch order. A task counts as
//! started before its arguments are decoded and as finished once its outcome is
//! encoded and dropped (`entry.rs`): every stage of a task lies between the two.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The stamps of one worker's tasks. Plain atomics, `repr(C)`: it may live in
/// memory shared between processes (the progress page) as well as on the heap.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct TaskClock {
    /// Tasks the worker has started.
    started: AtomicU64,
    /// Tasks the worker has finished (outcome encoded and dropped).
    finished: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds when the running task started (timed only).
    started_at_ns: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds when the last task finished (timed only).
    finished_at_ns: AtomicU64,
    /// Non-zero when someone enforces a timeout and so needs the clock readings:
    /// reading the clock costs a fifth of a no-op task.
    timed: AtomicU64,
}

impl TaskClock {
    /// Worker: a task is starting.
    #[inline]
    pub(crate) fn start_task(&self) {
        if self.timed.load(Ordering::Relaxed) != 0 {
            self.started_at_ns.store(now_ns(), Ordering::Relaxed);
        }
        bump(&self.started);
    }

    /// Worker: the task has finished (outcome encoded and dropped).
    #[inline]
    pub(crate) fn finish_task(&self) {
        if self.timed.load(Ordering::Relaxed) != 0 {
            self.finished_at_ns.store(now_ns(), Ordering::Relaxed);
        }
        bump(&self.finished);
        debug_assert!(
            self.finished.load(Ordering::Relaxed) <= self.started.load(Ordering::Relaxed),
            "a task finished that never started"
        );
    }

    /// Asks the worker to read the clock at each stage (set before it starts).
    pub(crate) fn set_timed(&self, timed: bool) {
        self.timed.store(u64::from(timed), Ordering::Relaxed);
    }

    /// `(started, finished)`, read so that `finished <= started`.
    pub(crate) fn counts(&self) -> (u64, u64) {
        // Read `finished` first: it never exceeds `started` read after it.
        let finished = self.finished.load(Ordering::Acquire);
        let started = self.started.load(Ordering::Acquire);
        debug_assert!(
            finished <= started,
            "finished {finished} > started {started}"
        );
        (started, finished)
    }

    /// The counts and clocks, read at one moment.
    pub(crate) fn stamps(&self) -> Stamps {
        let (started, finished) = self.counts();
        Stamps {
            started,
            finished,
            started_at_ns: self.started_at_ns.load(Ordering::Relaxed),
            finished_at_ns: self.finished_at_ns.load(Ordering::Relaxed),
            now_ns: now_ns(),
        }
    }

    /// How long the running task has run, if one is running (timed only).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn running_for(&self) -> Option<Duration> {
        let s = self.stamps();
        (s.started > s.finished)
            .then(|| Duration::from_nanos(s.now_ns.saturating_sub(s.started_at_ns)))
    }
}

/// A worker's task stamps as read at one moment: counts over its life, and
/// CLOCK_MONOTONIC nanoseconds (the clocks only on timed workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Stamps {
    /// Tasks started.
    pub(crate) started: u64,
    /// Tasks finished (outcome encoded and dropped).
    pub(crate) finished: u64,
    /// When the last task started.
    pub(crate) started_at_ns: u64,
    /// When the last task finished.
    pub(crate) finished_at_ns: u64,
    /// When these were read.
    pub(crate) now_ns: u64,
}

/// Adds one to a count only the worker's thread writes: a load and a release
/// store, not a locked read-modify-write (twice per task, it showed in a no-op's
/// cost). Readers see each new value whole, after what it stamps.
#[inline]
fn bump(count: &AtomicU64) {
    let n = count.load(Ordering::Relaxed);
    count.store(n + 1, Ordering::Release);
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine.
pub(crate) fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_clock_stamps_each_stage() {
        let clock = TaskClock::default();
        clock.set_timed(true);
        assert_eq!(clock.running_for(), None);
        clock.start_task();
        let running = clock.stamps();
        assert_eq!((running.started, running.finished), (1, 0));
        assert!(running.started_at_ns > 0 && running.started_at_ns <= running.now_ns);
        assert!(clock.running_for().is_some());
        clock.finish_task();
        let done = clock.stamps();
        assert_eq!((done.started, done.finished), (1, 1));
        assert!(done.finished_at_ns >= running.started_at_ns);
        assert_eq!(clock.running_for(), None);
    }

    #[test]
    fn an_untimed_clock_only_counts() {
        let clock = TaskClock::default();
        clock.start_task();
        clock.finish_task();
        let s = clock.stamps();
        assert_eq!(
            (s.started, s.finished, s.started_at_ns, s.finished_at_ns),
            (1, 1, 0, 0)
        );
    }
}
