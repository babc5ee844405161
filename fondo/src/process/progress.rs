//! `Progress`: a page of memory shared with one worker, where it records which task
//! it is running, so the parent can blame the right task when the worker dies and
//! time a task without a message per task.

use super::lanes::LANES;
use crate::error::Result;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The shared cells. Counts are over the worker's whole life, in dispatch order.
#[repr(C)]
struct Cells {
    /// Tasks the worker has started.
    started: AtomicU64,
    /// Tasks the worker has finished (outcome encoded and dropped).
    finished: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds when the running task started.
    started_at_ns: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds when the last task finished (timed workers only).
    finished_at_ns: AtomicU64,
    /// Non-zero once the worker is set up (its initializer, if any, returned).
    ready: AtomicU64,
    /// Which jobs the worker has dealt with and which the parent took back (see
    /// [`Progress::claim`]).
    gate: AtomicU64,
    /// Non-zero when the parent enforces a timeout and so needs `started_at_ns`:
    /// reading the clock costs a fifth of a no-op task.
    timed: AtomicU64,
    /// How many times the parent has handed each up lane back (see `lanes`).
    up_released: [AtomicU64; LANES],
}

const MAP_LEN: usize = 4096;

/// What a worker does with the next job it read (see [`Progress::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// It is the worker's: run it.
    Run,
    /// The parent took it back to give an idle worker: skip it, answer nothing.
    Skip,
}
const _: () = assert!(std::mem::size_of::<Cells>() <= MAP_LEN);

/// One side's view of a worker's progress page.
pub(crate) struct Progress {
    cells: NonNull<Cells>,
    /// The memfd, until the worker has its own copy (the mapping needs none).
    fd: Option<OwnedFd>,
}

// SAFETY: `Cells` holds only atomics, which are safe to use from any thread; the
// mapping lives until `Progress` is dropped.
unsafe impl Send for Progress {}
// SAFETY: as above: all access goes through atomics.
unsafe impl Sync for Progress {}

impl Progress {
    /// A fresh zeroed page (parent side), backed by a memfd the worker inherits.
    pub(crate) fn create() -> Result<Progress> {
        use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
        let fd = memfd_create("fondo-progress", MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, MAP_LEN as u64)?;
        Self::map(fd)
    }

    /// Maps a page the parent created (worker side).
    pub(crate) fn open(fd: OwnedFd) -> Result<Progress> {
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> Result<Progress> {
        use rustix::mm::{MapFlags, ProtFlags, mmap};
        let size = rustix::fs::fstat(&fd)?.st_size;
        if size < MAP_LEN as i64 {
            return Err(crate::Error::Protocol("progress page is too small".into()));
        }
        // SAFETY: we map a fresh region (no address hint, so nothing existing is
        // replaced) of a memfd at least MAP_LEN long; it stays mapped until Drop.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                MAP_LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let cells = NonNull::new(ptr.cast::<Cells>())
            .ok_or_else(|| crate::Error::Protocol("mmap returned null".into()))?;
        Ok(Progress {
            cells,
            fd: Some(fd),
        })
    }

    fn cells(&self) -> &Cells {
        // SAFETY: the mapping is page-aligned, MAP_LEN ≥ size_of::<Cells>(), zero
        // bytes are valid atomics, and it lives as long as `self`.
        unsafe { self.cells.as_ref() }
    }

    /// The memfd, to hand to the worker.
    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or_else(|| crate::Error::Spawn("the progress page's descriptor is closed".into()))
    }

    /// Closes the memfd once the worker has its own copy.
    pub(crate) fn close_fd(&mut self) {
        self.fd = None;
    }

    /// Worker: a task is starting.
    pub(crate) fn start_task(&self) {
        let c = self.cells();
        if c.timed.load(Ordering::Relaxed) != 0 {
            c.started_at_ns.store(now_ns(), Ordering::Relaxed);
        }
        c.started.fetch_add(1, Ordering::Release);
    }

    /// Worker: the task has finished.
    pub(crate) fn finish_task(&self) {
        let c = self.cells();
        if c.timed.load(Ordering::Relaxed) != 0 {
            c.finished_at_ns.store(now_ns(), Ordering::Relaxed);
        }
        c.finished.fetch_add(1, Ordering::Release);
    }

    /// Worker: set up (initializer done); tasks may run.
    pub(crate) fn set_ready(&self) {
        self.cells().ready.store(1, Ordering::Release);
    }

    /// Parent: the worker got through its set-up (its initializer returned).
    pub(crate) fn is_ready(&self) -> bool {
        self.cells().ready.load(Ordering::Acquire) != 0
    }

    /// Parent: asks the worker to time each task (set before the worker starts).
    pub(crate) fn set_timed(&self, timed: bool) {
        self.cells()
            .timed
            .store(u64::from(timed), Ordering::Relaxed);
    }

    /// Parent: done reading up lane `lane`; the worker may write it again.
    pub(crate) fn release_up_lane(&self, lane: usize) {
        if let Some(cell) = self.cells().up_released.get(lane) {
            cell.fetch_add(1, Ordering::Release);
        }
    }

    /// Worker: how many times the parent has handed up lane `lane` back. The lane is
    /// free when this equals the number of bodies the worker sent through it.
    pub(crate) fn up_lane_releases(&self, lane: usize) -> u64 {
        self.cells()
            .up_released
            .get(lane)
            .map_or(u64::MAX, |cell| cell.load(Ordering::Acquire))
    }

    /// Parent: `(started, finished)` counts.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let c = self.cells();
        // Read `finished` first: it never exceeds `started` read after it.
        let finished = c.finished.load(Ordering::Acquire);
        (c.started.load(Ordering::Acquire), finished)
    }

    /// Worker: claims job `seq` (its number among the jobs this worker was sent)
    /// before starting it — unless the parent took it back first.
    ///
    /// The protocol is one atomic word between two processes, the gate: the jobs
    /// the worker has dealt with (run or skipped) in its low half, and in its high
    /// half where the jobs the parent took back end (job numbers modulo 2³², as a
    /// pipeline never holds 2³¹ jobs). The worker deals with job `seq` by moving the
    /// low half from `seq` to `seq + 1` with a compare-exchange, skipping the job if
    /// it lies below the high half; the parent takes back every job not yet dealt
    /// with by raising the high half with a compare-exchange on the same word.
    /// Exactly one of them wins for each job: it is run by this worker or requeued
    /// by the parent, never both, never neither.
    pub(crate) fn claim(&self, seq: u64) -> Claim {
        let c = self.cells();
        let me = seq as u32;
        loop {
            let gate = c.gate.load(Ordering::Acquire);
            let (dealt, until) = (gate as u32, (gate >> 32) as u32);
            debug_assert_eq!(dealt, me, "jobs are dealt with in order");
            let taken_back = (until.wrapping_sub(me) as i32) > 0;
            let next = me.wrapping_add(1);
            let new = if taken_back {
                u64::from(until) << 32 | u64::from(next)
            } else {
                u64::from(next) << 32 | u64::from(next)
            };
            if c.gate
                .compare_exchange(gate, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return if taken_back { Claim::Skip } else { Claim::Run };
            }
        }
    }

    /// Parent: takes back every job the worker has not dealt with, of the `sent`
    /// it was sent so far. `Some(dealt)` — jobs numbered `dealt..sent` are the
    /// parent's again — or `None` if there were none (or the worker moved first).
    pub(crate) fn revoke(&self, sent: u64) -> Option<u64> {
        let c = self.cells();
        let gate = c.gate.load(Ordering::Acquire);
        let waiting = (sent as u32).wrapping_sub(gate as u32);
        if waiting == 0 || waiting > u32::MAX / 2 {
            return None;
        }
        let new = u64::from(sent as u32) << 32 | (gate & u64::from(u32::MAX));
        c.gate
            .compare_exchange(gate, new, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| sent - u64::from(waiting))
    }

    /// Parent: the counts and clocks of a timed worker, read at one moment.
    pub(crate) fn stamps(&self) -> Stamps {
        let (started, finished) = self.counts();
        let c = self.cells();
        Stamps {
            started,
            finished,
            started_at_ns: c.started_at_ns.load(Ordering::Relaxed),
            finished_at_ns: c.finished_at_ns.load(Ordering::Relaxed),
            now_ns: now_ns(),
        }
    }

    /// How long the running task has run, if one is running (an MPI rank's own
    /// watchdog reads its page this way).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn running_for(&self) -> Option<Duration> {
        let s = self.stamps();
        (s.started > s.finished)
            .then(|| Duration::from_nanos(s.now_ns.saturating_sub(s.started_at_ns)))
    }
}

/// A worker's progress as the parent read it: counts over the worker's life, and
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

impl Drop for Progress {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this region in `map` and nothing borrows it past `self`.
        unsafe {
            let _ = rustix::mm::munmap(self.cells.as_ptr().cast(), MAP_LEN);
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine.
pub(crate) fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// Worker and parent race over `jobs` jobs from `start` (job numbers near the
    /// 2³² wrap when asked): every job is run by the worker or taken back by the
    /// parent, exactly once.
    fn race(start: u64, jobs: u64) {
        let page = Arc::new(Progress::create().expect("page"));
        page.cells()
            .gate
            .store(start << 32 | (start & 0xffff_ffff), Ordering::Release);
        let sent = Arc::new(AtomicU64::new(start));
        let done = Arc::new(AtomicBool::new(false));
        let worker = {
            let (page, sent, done) = (page.clone(), sent.clone(), done.clone());
            std::thread::spawn(move || {
                let mut ran = Vec::new();
                let mut seq = start;
                while seq < start + jobs {
                    if seq < sent.load(Ordering::Acquire) {
                        if page.claim(seq) == Claim::Run {
                            ran.push(seq);
                        }
                        seq += 1;
                    } else if done.load(Ordering::Acquire) {
                        // `sent` may have grown after our look at it: look again.
                        if seq >= sent.load(Ordering::Acquire) {
                            break;
                        }
                    } else {
                        std::hint::spin_loop();
                    }
                }
                ran
            })
        };
        let mut taken = Vec::new();
        let mut taken_until = start;
        let mut now = start;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        while now < start + jobs {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            now = (now + rng % 4 + 1).min(start + jobs);
            sent.store(now, Ordering::Release);
            // Keep the worker within a short pipeline of the parent, as a real one
            // is: both sides then win races.
            let dealt = || page.cells().gate.load(Ordering::Acquire) as u32;
            while (now as u32).wrapping_sub(dealt()) > 16 {
                std::thread::yield_now();
            }
            // Like the parent's pipeline: jobs taken back earlier are no longer in
            // it, so only those from the last revocation on are taken now.
            if rng.is_multiple_of(3)
                && let Some(dealt) = page.revoke(now)
            {
                taken.extend(dealt.max(taken_until)..now);
                taken_until = now;
            }
        }
        done.store(true, Ordering::Release);
        let ran = worker.join().expect("worker thread");
        let mut all: Vec<u64> = ran.iter().chain(&taken).copied().collect();
        all.sort_unstable();
        let expected = start..start + jobs;
        let wrong = all
            .iter()
            .zip(expected.clone())
            .find(|(got, want)| **got != *want);
        assert!(
            all.len() as u64 == jobs && wrong.is_none(),
            "ran {} taken {}: first difference {wrong:?}",
            ran.len(),
            taken.len()
        );
        assert!(
            !taken.is_empty() && !ran.is_empty(),
            "ran {} taken {}",
            ran.len(),
            taken.len()
        );
    }

    #[test]
    fn every_job_is_run_or_taken_back_exactly_once() {
        race(0, 20_000);
    }

    #[test]
    fn the_gate_survives_the_wrap_of_job_numbers() {
        race((1 << 32) - 10_000, 20_000);
    }

    #[test]
    fn nothing_to_take_back_is_none() {
        let page = Progress::create().expect("page");
        assert_eq!(page.revoke(0), None);
        assert_eq!(page.claim(0), Claim::Run);
        assert_eq!(page.revoke(1), None, "job 0 is the worker's");
        assert_eq!(page.revoke(3), Some(1), "jobs 1 and 2 are taken back");
        assert_eq!(page.claim(1), Claim::Skip);
        assert_eq!(page.revoke(4), Some(2), "job 3 joins them");
        assert_eq!(page.claim(2), Claim::Skip);
        assert_eq!(page.claim(3), Claim::Skip);
        assert_eq!(page.claim(4), Claim::Run, "sent after the revocation");
    }
}
