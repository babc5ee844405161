//! What a worker process does with memory its tasks free: keeps it warm for the next
//! task while busy, gives it back to the system once idle.
//!
//! glibc serves every allocation over 32 MiB with a fresh `mmap` and unmaps it on
//! `free`, so a worker decoding a 64 MiB argument per task has the kernel zero and
//! fault in 16,384 new pages for each one: about 2 GB/s here, against 8 GB/s for a
//! copy into warm memory. Keeping freed memory in the heap makes the next task's
//! argument land in pages already mapped. The cost is memory held after a peak,
//! bounded in time as jemalloc bounds it (`dirty_decay_ms`, 10 s by default): given
//! back after [`IDLE_GIVE_BACK`] without a job, and at least every
//! [`BUSY_GIVE_BACK`] while jobs keep coming.

use std::time::{Duration, Instant};

/// A worker idle this long gives back the memory its tasks freed.
pub(crate) const IDLE_GIVE_BACK: Duration = Duration::from_secs(1);

/// A busy worker still gives freed memory back this often, so one big task does not
/// pin its peak for the rest of a long run.
pub(crate) const BUSY_GIVE_BACK: Duration = Duration::from_secs(10);

/// The worker's allocator policy and when it last gave memory back.
#[derive(Debug)]
pub(crate) struct WorkerHeap {
    /// Freed memory is being kept (the pool asked and the allocator allows it).
    keeping: bool,
    /// Tasks have run since memory was last given back.
    dirty: bool,
    given_back: Instant,
}

impl Default for WorkerHeap {
    /// The allocator's own policy: nothing kept, nothing to give back.
    fn default() -> Self {
        WorkerHeap {
            keeping: false,
            dirty: false,
            given_back: Instant::now(),
        }
    }
}

impl WorkerHeap {
    /// Starts keeping freed memory, where the allocator lets us.
    pub(crate) fn keep_freed_memory(&mut self) {
        self.keeping = self.keeping || allocator::keep_freed();
    }

    /// Notes that tasks (or the initializer) ran; gives memory back if a busy stretch
    /// has held it too long.
    pub(crate) fn worked(&mut self) {
        if !self.keeping {
            return;
        }
        self.dirty = true;
        if self.given_back.elapsed() >= BUSY_GIVE_BACK {
            self.give_back();
        }
    }

    /// How long the worker may wait for work before it should call [`give_back`]:
    /// `None` when there is nothing to give.
    ///
    /// [`give_back`]: WorkerHeap::give_back
    pub(crate) fn idle_limit(&self) -> Option<Duration> {
        (self.keeping && self.dirty).then_some(IDLE_GIVE_BACK)
    }

    /// Returns the freed memory the heap holds to the system.
    pub(crate) fn give_back(&mut self) {
        allocator::release_freed();
        self.dirty = false;
        self.given_back = Instant::now();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod allocator {
    /// Serves big allocations from the heap instead of fresh mappings, and stops
    /// `free` from trimming it: [`release_freed`] does that instead.
    pub(super) fn keep_freed() -> bool {
        // SAFETY: mallopt takes two integers and changes glibc's allocation
        // thresholds under glibc's own lock; no memory changes hands, and both
        // settings are valid values for these parameters (0 mappings; any
        // positive trim threshold). Allocations made before keep their mappings.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }

    /// Returns every free page of the heap to the system (the top is unmapped, free
    /// chunks inside it are `MADV_DONTNEED`ed).
    pub(super) fn release_freed() {
        // SAFETY: malloc_trim only releases memory glibc's allocator holds as free,
        // under its own locks; it never touches a live allocation.
        unsafe { libc::malloc_trim(0) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod allocator {
    /// Other allocators keep their own policy.
    pub(super) fn keep_freed() -> bool {
        false
    }

    pub(super) fn release_freed() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_give_back_unless_a_job_ran_while_keeping() {
        let mut heap = WorkerHeap::default();
        heap.worked();
        assert_eq!(heap.idle_limit(), None, "not keeping: nothing held");
        // As after `keep_freed_memory`, without changing this test process's allocator.
        heap.keeping = true;
        assert_eq!(heap.idle_limit(), None, "no job since");
        heap.worked();
        assert_eq!(heap.idle_limit(), Some(IDLE_GIVE_BACK));
        heap.give_back();
        assert_eq!(heap.idle_limit(), None);
    }

    #[test]
    fn a_busy_stretch_gives_back_every_busy_give_back() {
        let mut heap = WorkerHeap {
            keeping: true,
            dirty: false,
            given_back: Instant::now()
                .checked_sub(BUSY_GIVE_BACK)
                .expect("the clock has run longer than BUSY_GIVE_BACK"),
        };
        heap.worked();
        assert_eq!(
            heap.idle_limit(),
            None,
            "given back on the job that overran"
        );
        heap.worked();
        assert_eq!(heap.idle_limit(), Some(IDLE_GIVE_BACK));
    }
}
