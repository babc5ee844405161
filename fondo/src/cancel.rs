//! Cancelling: the [`Ticket`] every `AsyncResult` carries, on which `cancel()` and
//! the places where a task starts race; the [`Withdraw`] hook through which a
//! backend takes back work no worker has started; and [`Pending`], what
//! [`Pool::shutdown`](crate::Pool::shutdown) does with queued tasks.
//!
//! # The protocol
//!
//! A task *starts* at one place per backend: a worker thread about to run its batch
//! (threads), the parent handing its job to a worker's pipeline (processes; a job
//! still unclaimed there is taken back through the gate, `ipc/progress.rs`), rank
//! 0 sending it (MPI). There the backend calls [`Ticket::claim`]. `cancel()`:
//!
//! 1. sets `REQUESTED` on the ticket: from now on every claim is refused, and a
//!    refusal sets `PREVENTED`;
//! 2. asks the backend to withdraw the ticket's jobs that have not started (its
//!    queue, a process worker's pipeline, a pool's encoder backlog); finding one
//!    sets `PREVENTED` too;
//! 3. decides, in one atomic step that also clears `REQUESTED`: if anything was
//!    prevented, the result is `CANCELLED` (and completed with `Err(Cancelled)`),
//!    else every task had started and nothing changed.
//!
//! So the answer and the outcome always agree: a task refused at a claim point was
//! refused while `REQUESTED` was set, hence counted, hence `cancel()` says true and
//! the result is `Err(Cancelled)`; once `cancel()` has said false no claim is
//! refused, and the task runs. A task caught between two places at that instant
//! (being recovered after its worker died, say) counts as started.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// `cancel()` is under way: claims are refused (and set `PREVENTED`).
const REQUESTED: u64 = 1 << 63;
/// Cancelled for good: every claim is refused.
const CANCELLED: u64 = 1 << 62;
/// A claim was refused, or a job withdrawn, while `REQUESTED` was set.
const PREVENTED: u64 = 1 << 61;
/// The low bits: tasks claimed (started) so far.
const CLAIMED: u64 = PREVENTED - 1;

/// Whether a submission's tasks may still start (see the module docs).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Ticket {
    /// Flags and the count of tasks claimed.
    word: AtomicU64,
    /// Tasks with an outcome (for `running()`).
    finished: AtomicUsize,
    /// One `cancel()` at a time.
    cancelling: Mutex<()>,
}

impl Ticket {
    /// A worker is about to start `count` tasks of this submission: true if they may
    /// run, false if they are cancelled (the caller drops them without an outcome:
    /// the result gets `Err(Cancelled)` as a whole).
    pub(crate) fn claim(&self, count: usize) -> bool {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current & CANCELLED != 0 {
                return false;
            }
            let requested = current & REQUESTED != 0;
            let new = if requested {
                current | PREVENTED
            } else {
                let claimed = ((current & CLAIMED) + count as u64).min(CLAIMED);
                (current & !CLAIMED) | claimed
            };
            match self
                .word
                .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return !requested,
                Err(actual) => current = actual,
            }
        }
    }

    /// Notes that a job of this submission was withdrawn before it started.
    pub(crate) fn prevent(&self) {
        self.word.fetch_or(PREVENTED, Ordering::AcqRel);
    }

    /// True once cancelled for good.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.word.load(Ordering::Acquire) & CANCELLED != 0
    }

    /// Marks the submission cancelled (its result is `Err(Cancelled)` however it got it).
    pub(crate) fn mark_cancelled(&self) {
        self.word.fetch_or(CANCELLED, Ordering::AcqRel);
    }

    /// `count` more tasks have an outcome.
    pub(crate) fn finished(&self, count: usize) {
        self.finished.fetch_add(count, Ordering::AcqRel);
    }

    /// True while some claimed task has no outcome yet.
    pub(crate) fn has_unfinished_claims(&self) -> bool {
        let claimed = self.word.load(Ordering::Acquire) & CLAIMED;
        claimed > self.finished.load(Ordering::Acquire) as u64
    }

    /// Runs the protocol (module docs): `withdraw` takes back what has not started
    /// and says whether it found any. True if the submission is now cancelled.
    pub(crate) fn cancel(&self, withdraw: impl FnOnce() -> bool) -> bool {
        let _one = self
            .cancelling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.word.fetch_or(REQUESTED, Ordering::AcqRel) & CANCELLED != 0 {
            self.word.fetch_and(!REQUESTED, Ordering::AcqRel);
            return true;
        }
        if withdraw() {
            self.prevent();
        }
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let prevented = current & PREVENTED != 0;
            let mut new = current & !(REQUESTED | PREVENTED);
            if prevented {
                new |= CANCELLED;
            }
            match self
                .word
                .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return prevented,
                Err(actual) => current = actual,
            }
        }
    }
}

/// What a backend does for `cancel()` and `running()`.
#[doc(hidden)]
pub trait Withdraw: Send + Sync {
    /// Takes back every job of `ticket` that no worker has started, wherever the
    /// backend holds it, and drops it; true if there was one.
    fn withdraw(&self, ticket: &Ticket) -> bool;

    /// Whether a worker is running a task of `ticket` now, when the backend knows
    /// better than the ticket's count of claims (a process pool's claims are hand-
    /// overs to a pipeline, where a job may still wait).
    fn running(&self, _ticket: &Ticket) -> Option<bool> {
        None
    }
}

/// True if `job_ticket` (a queued job's) is `ticket`.
pub(crate) fn same(job_ticket: Option<&Ticket>, ticket: &Ticket) -> bool {
    job_ticket.is_some_and(|t| std::ptr::eq(t, ticket))
}

/// What [`Pool::shutdown`](crate::Pool::shutdown) does with tasks no worker has
/// started yet (Python's `Executor.shutdown(cancel_futures=…)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pending {
    /// Run them, as `join()` does.
    Finish,
    /// Cancel them: each gets `Err(Cancelled)` and never runs; tasks already
    /// running finish.
    Cancel,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_claim_before_cancel_wins_and_cancel_says_false() {
        let t = Ticket::default();
        assert!(t.claim(1));
        assert!(t.has_unfinished_claims());
        assert!(!t.cancel(|| false));
        assert!(!t.is_cancelled());
        t.finished(1);
        assert!(!t.has_unfinished_claims());
    }

    #[test]
    fn a_withdrawn_job_makes_the_cancel_stick() {
        let t = Ticket::default();
        assert!(t.cancel(|| true));
        assert!(t.is_cancelled());
        assert!(!t.claim(1), "no claim after a cancel");
        assert!(t.cancel(|| false), "cancelling again says true");
    }

    #[test]
    fn a_claim_refused_while_deciding_makes_the_cancel_stick() {
        let t = Ticket::default();
        let cancelled = t.cancel(|| {
            assert!(!t.claim(1), "refused while the cancel decides");
            false
        });
        assert!(cancelled);
        assert!(!t.claim(1));
    }

    #[test]
    fn claims_and_cancels_racing_always_agree() {
        // Exactly one of a claim and a cancel wins; the answers agree.
        for _ in 0..2_000 {
            let t = Arc::new(Ticket::default());
            let worker = {
                let t = t.clone();
                std::thread::spawn(move || t.claim(1))
            };
            let cancelled = t.cancel(|| false);
            let ran = worker.join().expect("worker");
            assert_ne!(ran, cancelled, "ran {ran}, cancelled {cancelled}");
        }
    }
}
