//! `Progress`: a page of memory shared with one worker. The worker stamps its
//! tasks there (a [`TaskClock`]: which task runs, since when), says when it is set
//! up, and claims each job before running it; the parent reads the stamps to blame
//! the right task when the worker dies and to time tasks without a message per
//! task, hands up lanes back, and takes waiting jobs back for idle workers.

use super::lanes::LANES;
use super::shm::Region;
use crate::boundary::clock::{Stamps, TaskClock};
use crate::error::Result;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared cells, at the start of the page.
#[repr(C)]
struct Cells {
    /// The worker's task stamps.
    tasks: TaskClock,
    /// Non-zero once the worker is set up (its initializer, if any, returned).
    ready: AtomicU64,
    /// Which jobs the worker has dealt with and which the parent took back (see
    /// [`Progress::claim`]).
    gate: AtomicU64,
    /// How many times the parent has handed each up lane back (see `lanes`).
    up_released: [AtomicU64; LANES],
}

/// The page's length: one page of the smallest size Linux uses.
const PAGE_LEN: usize = 4096;
const _: () = assert!(std::mem::size_of::<Cells>() <= PAGE_LEN);

/// What a worker does with the next job it read (see [`Progress::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// It is the worker's: run it.
    Run,
    /// The parent took it back to give an idle worker: skip it, answer nothing.
    Skip,
}

/// One side's view of a worker's progress page.
pub(crate) struct Progress {
    region: Region,
}

impl Progress {
    /// A fresh zeroed page (parent side), backed by a memfd the worker inherits.
    pub(crate) fn create() -> Result<Progress> {
        Ok(Progress {
            region: Region::create("fondo-progress", PAGE_LEN)?,
        })
    }

    /// Maps a page the parent created (worker side).
    pub(crate) fn open(fd: OwnedFd) -> Result<Progress> {
        Ok(Progress {
            region: Region::open(fd, PAGE_LEN)?,
        })
    }

    fn cells(&self) -> &Cells {
        let base = self.region.base().cast::<Cells>();
        // SAFETY: the region is a page-aligned mapping of PAGE_LEN ≥
        // size_of::<Cells>() bytes that lives as long as `self`; `Cells` holds only
        // atomics, for which zero bytes (a fresh memfd) are valid and which both
        // processes may touch concurrently.
        unsafe { base.as_ref() }
    }

    /// The memfd, to hand to the worker.
    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.region.fd()
    }

    /// Closes the memfd once the worker has its own copy.
    pub(crate) fn close_fd(&mut self) {
        self.region.close_fd();
    }

    /// The worker's task stamps.
    pub(crate) fn tasks(&self) -> &TaskClock {
        &self.cells().tasks
    }

    /// Parent: `(started, finished)` counts.
    pub(crate) fn counts(&self) -> (u64, u64) {
        self.tasks().counts()
    }

    /// Parent: the counts and clocks of a timed worker, read at one moment.
    pub(crate) fn stamps(&self) -> Stamps {
        self.tasks().stamps()
    }

    /// Worker: set up (initializer done); tasks may run.
    pub(crate) fn set_ready(&self) {
        self.cells().ready.store(1, Ordering::Release);
    }

    /// Parent: the worker got through its set-up (its initializer returned).
    pub(crate) fn is_ready(&self) -> bool {
        self.cells().ready.load(Ordering::Acquire) != 0
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

    /// Parent: how many of the `sent` jobs the worker was sent it has not dealt
    /// with yet (the last ones sent: it deals with them in order).
    pub(crate) fn unclaimed(&self, sent: u64) -> u64 {
        let gate = self.cells().gate.load(Ordering::Acquire);
        let waiting = (sent as u32).wrapping_sub(gate as u32);
        if waiting > u32::MAX / 2 {
            0
        } else {
            u64::from(waiting)
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

    /// Parent: as [`revoke`](Self::revoke), but trying again whenever the worker
    /// dealt with a job meanwhile, so that no job is left waiting: `None` only if
    /// none was. (Giving up on a lost race left a short job behind a long one with
    /// nothing to retry the take-back until the long one ended.) Each retry follows a
    /// claim, so this ends.
    pub(crate) fn revoke_all(&self, sent: u64) -> Option<u64> {
        loop {
            if let Some(dealt) = self.revoke(sent) {
                return Some(dealt);
            }
            if self.unclaimed(sent) == 0 {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// The parent takes back what waits while the worker claims job after job: the
    /// take-back's compare-exchange keeps meeting the worker's, and whatever it
    /// loses, it must not give up while jobs still wait.
    #[test]
    fn a_take_back_racing_claims_leaves_nothing_waiting() {
        const JOBS: u64 = 1024;
        let page = Arc::new(Progress::create().expect("page"));
        let go = Arc::new(std::sync::Barrier::new(2));
        let rounds = 1_000u64;
        let worker = {
            let (page, go) = (page.clone(), go.clone());
            std::thread::spawn(move || {
                for round in 0..rounds {
                    go.wait();
                    for seq in round * JOBS..(round + 1) * JOBS {
                        let _ = page.claim(seq);
                    }
                }
            })
        };
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..rounds {
            let sent = (round + 1) * JOBS;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            go.wait();
            // Land somewhere in the worker's stream of claims.
            for _ in 0..rng % 2048 {
                std::hint::spin_loop();
            }
            let dealt = page.revoke_all(sent);
            assert!(
                dealt.is_some() || page.unclaimed(sent) == 0,
                "round {round}: gave up with jobs still waiting"
            );
            // The worker deals with the rest (skipping them) before the next round.
            let t0 = std::time::Instant::now();
            while page.unclaimed(sent) != 0 {
                assert!(
                    t0.elapsed().as_secs() < 10,
                    "round {round}: the worker stopped"
                );
                std::hint::spin_loop();
            }
        }
        worker.join().expect("worker");
    }

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
