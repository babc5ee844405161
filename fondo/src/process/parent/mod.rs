//! The parent side of the process backend: the state its threads share
//! ([`Shared`]: the job queue, the slots, how work is handed out and taken back),
//! one supervisor thread per worker slot (`supervisor`), the reading of answers
//! that supervisors and waiting threads share (`reader`), recovery after a
//! worker's end as a pure function (`recovery`), starting workers (`spawn`), and
//! `fondo::spawn`'s lone children (`child`).

mod buffers;
pub(crate) mod child;
mod logs;
mod reader;
mod recovery;
mod slot;
pub(crate) mod spawn;
mod supervisor;
mod threads_env;

pub(crate) use buffers::{Buffers, ProcJob};
pub(crate) use slot::Slot;
use slot::{Caller, Flush};

use crate::cancel::{self, Ticket, Withdraw};
use crate::config::Config;
use crate::error::Error;
use crate::handoff::{Encodes, Handoff};
use crate::process::ipc::arena::Arena;
use crate::queue::JobQueue;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What the pool's supervisor threads and submitters share.
pub(crate) struct Shared {
    pub(crate) queue: JobQueue<ProcJob>,
    pub(crate) config: Config,
    pub(crate) slots: Vec<Arc<Slot>>,
    pub(crate) next_job: AtomicU64,
    /// Slots that gave up starting workers.
    pub(crate) lost: Mutex<usize>,
    /// Argument buffers of finished jobs, for the next ones.
    pub(crate) buffers: Buffers,
    /// Threads waiting for results that read answers meanwhile (see `help`).
    pub(crate) helpers: AtomicUsize,
    /// The encoder thread big `*_async` submissions are handed to (`handoff.rs`).
    pub(crate) handoff: Handoff,
}

impl Withdraw for Shared {
    /// Looks where a job goes next after each place: the encoder's backlog, the
    /// queue, the workers' pipelines (a job claimed there has started).
    fn withdraw(&self, ticket: &Ticket) -> bool {
        let mut found = self.handoff.withdraw(ticket);
        found |= !self
            .queue
            .withdraw(|job| cancel::same(job.ticket(), ticket))
            .is_empty();
        let mut others = Vec::new();
        for slot in &self.slots {
            for job in slot.take_back_unclaimed(|job| cancel::same(job.ticket(), ticket)) {
                if cancel::same(job.ticket(), ticket) {
                    found = true;
                } else {
                    others.push(job);
                }
            }
        }
        // Jobs taken back with them run elsewhere, first.
        self.requeue(others);
        self.rebalance();
        found
    }

    fn running(&self, ticket: &Ticket) -> Option<bool> {
        Some(self.slots.iter().any(|slot| slot.runs(ticket)))
    }
}

impl Encodes for Shared {
    type Store = Buffers;
    fn queue(&self) -> &JobQueue<ProcJob> {
        &self.queue
    }
    fn store(&self) -> &Buffers {
        &self.buffers
    }
    fn max_frame(&self) -> usize {
        self.config.max_frame
    }
    fn handoff(&self) -> &Handoff {
        &self.handoff
    }
    fn queued(&self) {
        self.kick();
    }
    fn submission_ended(&self) {
        if !self.queue.accepts_work() {
            // A close() may have waited for this submission: supervisors idle in
            // poll must see the pool closed.
            for slot in &self.slots {
                slot.wake();
            }
        }
    }
}

impl crate::help::Help for Shared {
    fn enter(&self) {
        self.helpers.fetch_add(1, Ordering::Relaxed);
    }

    fn leave(&self, to_block: bool) {
        // Otherwise supervisors notice within `HELPED_RECHECK`.
        if self.helpers.fetch_sub(1, Ordering::Relaxed) == 1 && to_block {
            // The last helper is going to sleep: supervisors read the answers again.
            for slot in self.slots.iter().filter(|s| s.is_busy()) {
                slot.wake();
            }
        }
    }

    fn help(&self) -> bool {
        let mut any = false;
        for slot in &self.slots {
            any |= slot.help(self);
        }
        any
    }
}

impl Shared {
    /// The state of a new pool with these options: its slots, its queue, and its
    /// arena for big arguments when the system grants one.
    pub(crate) fn new(config: Config) -> crate::error::Result<Shared> {
        let slots = (0..config.workers)
            .map(|_| Slot::new().map(Arc::new))
            .collect::<crate::error::Result<Vec<_>>>()?;
        // Without an arena (an address-space limit, say) big arguments take the
        // lanes or the socket: slower, never wrong.
        let arena = Arena::for_pool(config.workers, config.max_frame)
            .ok()
            .flatten();
        Ok(Shared {
            queue: JobQueue::default(),
            config,
            slots,
            next_job: AtomicU64::new(0),
            lost: Mutex::new(0),
            buffers: Buffers::new(arena),
            helpers: AtomicUsize::new(0),
            handoff: Handoff::default(),
        })
    }

    /// Offers queued work to the workers; then, if one is still idle, gives it
    /// work waiting in a busy worker's pipeline (`rebalance`).
    pub(crate) fn kick(&self) {
        self.distribute();
        self.rebalance();
    }

    /// Offers queued work to the slots one job at a time, round after round, so idle
    /// workers all get work before any worker's pipeline is filled.
    fn distribute(&self) {
        // Idle workers first: otherwise the first worker's pipeline soaks up work
        // that an idle one could start at once.
        for slot in self.slots.iter().filter(|s| s.is_idle()) {
            slot.pump(self, Caller::Other, 1, Flush::Now);
        }
        // Then round after round, one job per slot; each slot's frames leave together.
        let mut touched = vec![false; self.slots.len()];
        loop {
            let mut sent = false;
            for (slot, touched) in self.slots.iter().zip(touched.iter_mut()) {
                if slot.pump(self, Caller::Other, 1, Flush::Later) > 0 {
                    *touched = true;
                    sent = true;
                }
            }
            if !sent || self.queue.is_empty() {
                break;
            }
        }
        for (slot, _) in self.slots.iter().zip(&touched).filter(|(_, t)| **t) {
            slot.flush(Caller::Other);
        }
    }

    /// Puts tasks a dead worker did not finish back at the head of the queue.
    fn requeue(&self, jobs: Vec<ProcJob>) {
        if jobs.is_empty() {
            return;
        }
        if let Err((error, jobs)) = self.queue.push_front(jobs) {
            for job in jobs {
                job.fail(&error);
            }
        }
        self.distribute();
    }

    /// Gives idle workers the jobs waiting in busy workers' pipelines: no task
    /// waits behind a long one while a worker is idle.
    fn rebalance(&self) {
        if !self.queue.is_empty() || !self.slots.iter().any(|s| s.is_idle()) {
            return;
        }
        let taken: Vec<ProcJob> = self
            .slots
            .iter()
            .flat_map(|slot| slot.revoke_waiting())
            .collect();
        self.requeue(taken);
    }

    /// Closes the pool and cancels every task no worker has started (queued, in the
    /// encoder's backlog, or unclaimed in a pipeline): each gets `Err(Cancelled)`.
    pub(crate) fn cancel_pending(&self) {
        let mut dropped = self.queue.close_and_cancel();
        for slot in &self.slots {
            dropped.extend(slot.take_back_unclaimed(|_| true));
        }
        for job in dropped {
            job.fail(&Error::Cancelled);
        }
        for slot in &self.slots {
            slot.wake();
        }
    }

    /// Breaks the pool with `error` (a worker's initializer failed): every task
    /// queued now or later fails with it, and every worker is stopped.
    fn break_pool(&self, error: Error) {
        for job in self.queue.break_with(error.clone()) {
            job.fail(&error);
        }
        for slot in &self.slots {
            slot.kill();
        }
    }

    /// A slot could not start workers any more; with none left, queued work fails.
    fn slot_lost(&self, why: &Error) {
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        *lost += 1;
        if *lost == self.slots.len() {
            for job in self.queue.terminate() {
                job.fail(why);
            }
        }
    }
}
