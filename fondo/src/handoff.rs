//! Submitting to a backend that encodes arguments (processes, MPI) without
//! holding the caller: [`submit`] encodes small arguments on the calling thread
//! and hands big ones to the pool's encoder thread ([`Handoff`]), so `map_async`,
//! `apply_async` and `imap` return at once however big their arguments — an async
//! runtime's thread is never held by a submission.
//!
//! How big is "big" is known only by encoding, so the caller first *probes* each
//! batch: it serialises it into a counter that gives up past a budget
//! ([`INLINE_BYTES`] for the whole submission). A batch within the budget is
//! encoded on the spot (so a small `apply_async` costs no thread hop), the first
//! one past it and every one after go to the encoder thread, in order. The probe
//! costs at most the budget's worth of serialising; a value's `Serialize` may so
//! run twice (as it already does to recover a custom error's message).
//!
//! While a submission waits in the encoder's backlog it is still under way for
//! the queue (`JobQueue::begin`): `close()` waits for its last part; `cancel()`
//! takes its batches out of the backlog (`withdraw`); a shutdown that cancels what
//! is pending, or `terminate()`, fails them unencoded.

use crate::backend::{Batch, Encoder};
use crate::boundary::job::{ArgStore, EncodedJob};
use crate::cancel::{self, Ticket};
use crate::error::Error;
use crate::monitor::Monitor;
use crate::queue::{JobQueue, Submission};
use crate::task::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// Encoded bytes a caller encodes itself, at most, in one `*_async` submission:
/// about 0.1 ms of encoding.
pub(crate) const INLINE_BYTES: usize = 64 << 10;

/// A submission's encoded jobs are queued in parts of at least this many bytes,
/// so workers start on the first values while the rest is being encoded.
const EARLY_PART_BYTES: usize = 1 << 20;

/// A backend that encodes batches into jobs for its queue.
pub(crate) trait Encodes: Send + Sync + Sized + 'static {
    /// Where its jobs' arguments live.
    type Store: ArgStore;
    /// Its queue of encoded jobs.
    fn queue(&self) -> &JobQueue<EncodedJob<Self::Store>>;
    /// Where arguments are encoded.
    fn store(&self) -> &Self::Store;
    /// The frame limit a job's arguments must fit.
    fn max_frame(&self) -> usize;
    /// Its encoder thread.
    fn handoff(&self) -> &Handoff;
    /// Jobs were queued: hand them to workers.
    fn queued(&self);
    /// A submission ended (a `close()` may have waited for it).
    fn submission_ended(&self);
}

/// Queues `batches` of `F` on `shared`, encoded by `encoder`'s rule (module docs).
/// A pool that takes no work fails every task with the reason, unencoded.
pub(crate) fn submit<E, F, Args>(
    shared: &Arc<E>,
    batches: Vec<Batch<Args, F::Output>>,
    encoder: Encoder,
) where
    E: Encodes,
    F: Task<Args> + Copy,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    let Some(submission) = JobQueue::begin_on(QueueIn(shared.clone())) else {
        let error = shared.queue().refusal();
        for batch in batches {
            batch.fail(&error);
        }
        return;
    };
    let ongoing = Arc::new(Ongoing {
        submission: Some(submission),
        shared: shared.clone(),
    });
    let mut batches: VecDeque<Batch<Args, F::Output>> = batches.into();
    let mut inline = batches.len();
    if encoder == Encoder::Pool {
        inline = if shared.handoff().busy() {
            // Behind a submission the encoder has: after it, in order.
            0
        } else {
            within_budget(&batches)
        };
    }
    let rest = batches.split_off(inline);
    let (mut part, mut bytes) = (Vec::new(), 0);
    while let Some(batch) = batches.pop_front() {
        for job in EncodedJob::encode::<F, Args>(batch, shared.max_frame(), shared.store()) {
            bytes += job.args.len();
            part.push(job);
        }
        if bytes >= EARLY_PART_BYTES || batches.is_empty() {
            if !ongoing.offer(std::mem::take(&mut part)) {
                let error = shared.queue().part_refusal().unwrap_or(Error::Terminated);
                for b in batches.into_iter().chain(rest) {
                    b.fail(&error);
                }
                return;
            }
            bytes = 0;
        }
    }
    if !rest.is_empty() {
        shared.handoff().push(Box::new(Group::<E, F, Args> {
            ongoing,
            batches: rest,
            _task: PhantomData,
        }));
    }
}

/// How many of `batches`, from the first, fit the caller's budget together.
fn within_budget<Args: Serialize, R>(batches: &VecDeque<Batch<Args, R>>) -> usize {
    let mut left = INLINE_BYTES;
    for (i, batch) in batches.iter().enumerate() {
        match probe(&batch.items, left) {
            Some(n) => left -= n,
            None => return i,
        }
    }
    batches.len()
}

/// The encoded size of `items` if it is at most `cap` bytes, `None` if more. Stops
/// serialising past `cap`. A `Serialize` that fails or panics counts as small:
/// encoding it (on the caller's thread) reports that for its task.
fn probe<Args: Serialize>(items: &[Args], cap: usize) -> Option<usize> {
    match crate::panic::catch(|| postcard::serialize_with_flavor(items, Count { n: 0, cap })) {
        Ok(Ok(n)) => Some(n.min(cap)),
        Ok(Err(postcard::Error::SerializeBufferFull)) => None,
        Ok(Err(_)) | Err(_) => Some(0),
    }
}

/// A postcard output that only counts, and gives up past `cap` bytes.
struct Count {
    n: usize,
    cap: usize,
}

impl postcard::ser_flavors::Flavor for Count {
    type Output = usize;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.n = self.n.saturating_add(data.len());
        self.check()
    }

    fn try_push(&mut self, _: u8) -> postcard::Result<()> {
        self.n += 1;
        self.check()
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.n)
    }
}

impl Count {
    fn check(&self) -> postcard::Result<()> {
        if self.n > self.cap {
            Err(postcard::Error::SerializeBufferFull)
        } else {
            Ok(())
        }
    }
}

/// The queue behind an `Arc` of its backend, for a submission another thread ends.
struct QueueIn<E>(Arc<E>);

impl<E: Encodes> Deref for QueueIn<E> {
    type Target = JobQueue<EncodedJob<E::Store>>;
    fn deref(&self) -> &Self::Target {
        self.0.queue()
    }
}

/// A submission under way, on whichever thread encodes it; dropped by the last
/// of them, it ends.
struct Ongoing<E: Encodes> {
    submission: Option<Submission<QueueIn<E>, EncodedJob<E::Store>>>,
    shared: Arc<E>,
}

impl<E: Encodes> Ongoing<E> {
    /// Queues a part and hands it to workers; false if the pool refused it (its
    /// tasks have failed with the reason).
    fn offer(&self, jobs: Vec<EncodedJob<E::Store>>) -> bool {
        let queued = self.submission.as_ref().is_some_and(|s| s.offer(jobs));
        if queued {
            self.shared.queued();
        }
        queued
    }

    /// Encodes and queues one batch, unless it is cancelled or the pool takes no
    /// more (then it fails unencoded).
    fn encode<F, Args>(&self, batch: Batch<Args, F::Output>)
    where
        F: Task<Args> + Copy,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        // A claim of no task: refused (and counted) only if it is being cancelled.
        if batch.sink.ticket().is_some_and(|t| !t.claim(0)) {
            return;
        }
        if let Some(error) = self.shared.queue().part_refusal() {
            batch.fail(&error);
            return;
        }
        let jobs =
            EncodedJob::encode::<F, Args>(batch, self.shared.max_frame(), self.shared.store());
        self.offer(jobs);
    }
}

impl<E: Encodes> Drop for Ongoing<E> {
    fn drop(&mut self) {
        drop(self.submission.take());
        self.shared.submission_ended();
    }
}

/// A submission's batches waiting in the encoder's backlog.
trait Backlogged: Send {
    /// The next batch to encode, as a step to run outside the backlog's lock.
    fn next_step(&mut self) -> Option<Box<dyn Step>>;
    /// Drops the batches of `ticket`; true if there were any.
    fn withdraw(&mut self, ticket: &Ticket) -> bool;
}

/// One batch on its way from the backlog to the queue.
trait Step: Send {
    /// Encodes and queues it.
    fn run(self: Box<Self>);
}

struct Group<E: Encodes, F: Task<Args>, Args> {
    ongoing: Arc<Ongoing<E>>,
    batches: VecDeque<Batch<Args, F::Output>>,
    _task: PhantomData<fn(F)>,
}

impl<E, F, Args> Backlogged for Group<E, F, Args>
where
    E: Encodes,
    F: Task<Args> + Copy,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    fn next_step(&mut self) -> Option<Box<dyn Step>> {
        let batch = self.batches.pop_front()?;
        Some(Box::new(OneBatch::<E, F, Args> {
            ongoing: self.ongoing.clone(),
            batch: Some(batch),
            _task: PhantomData,
        }))
    }

    fn withdraw(&mut self, ticket: &Ticket) -> bool {
        let before = self.batches.len();
        self.batches
            .retain(|b| !cancel::same(b.sink.ticket(), ticket));
        self.batches.len() != before
    }
}

/// Batches never encoded (the encoder thread could not run them) fail: a
/// submission never vanishes.
impl<E: Encodes, F: Task<Args>, Args> Drop for Group<E, F, Args> {
    fn drop(&mut self) {
        if self.batches.is_empty() {
            return;
        }
        let error = self
            .ongoing
            .shared
            .queue()
            .part_refusal()
            .unwrap_or(Error::Terminated);
        for batch in self.batches.drain(..) {
            batch.fail(&error);
        }
    }
}

struct OneBatch<E: Encodes, F: Task<Args>, Args> {
    ongoing: Arc<Ongoing<E>>,
    batch: Option<Batch<Args, F::Output>>,
    _task: PhantomData<fn(F)>,
}

impl<E, F, Args> Step for OneBatch<E, F, Args>
where
    E: Encodes,
    F: Task<Args> + Copy,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    fn run(mut self: Box<Self>) {
        if let Some(batch) = self.batch.take() {
            self.ongoing.encode::<F, Args>(batch);
        }
    }
}

/// A batch dropped unencoded (a fondo bug unwound through its step) fails.
impl<E: Encodes, F: Task<Args>, Args> Drop for OneBatch<E, F, Args> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            batch.fail(&Error::Terminated);
        }
    }
}

/// A pool's encoder thread (`fondo-encoder`), started on first use, and its
/// backlog of submissions to encode, in order.
#[derive(Default)]
pub(crate) struct Handoff {
    backlog: Arc<Monitor<Backlog>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("busy", &self.busy())
            .finish()
    }
}

#[derive(Default)]
struct Backlog {
    groups: VecDeque<Box<dyn Backlogged>>,
    /// The encoder is running a step.
    working: bool,
    /// The pool is being joined: the encoder exits once the backlog is empty.
    closing: bool,
    /// The encoder thread is running.
    started: bool,
}

impl Handoff {
    /// True while the encoder has work: a new submission goes behind it.
    pub(crate) fn busy(&self) -> bool {
        let b = self.backlog.lock();
        b.working || !b.groups.is_empty()
    }

    /// Adds a submission's batches to the backlog, starting the encoder if need
    /// be; if it cannot run (the pool is being joined, no thread can be made),
    /// encodes them here instead.
    fn push(&self, mut group: Box<dyn Backlogged>) {
        let mut b = self.backlog.lock();
        if !b.closing && (b.started || self.start(&mut b)) {
            b.groups.push_back(group);
            self.backlog.publish(b);
            return;
        }
        drop(b);
        while let Some(step) = group.next_step() {
            step.run();
        }
    }

    /// Starts the encoder thread; false if it cannot be made.
    fn start(&self, b: &mut Backlog) -> bool {
        let backlog = self.backlog.clone();
        let spawned = std::thread::Builder::new()
            .name("fondo-encoder".into())
            .spawn(move || encode_backlog(&backlog));
        match spawned {
            Ok(handle) => {
                *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
                b.started = true;
                true
            }
            Err(e) => {
                crate::diag::diag!(
                    "fondo: could not start the encoder thread ({e}); encoding on the caller"
                );
                false
            }
        }
    }

    /// Drops the backlog's batches of `ticket`; true if there were any.
    pub(crate) fn withdraw(&self, ticket: &Ticket) -> bool {
        let mut b = self.backlog.lock();
        let mut any = false;
        for group in b.groups.iter_mut() {
            any |= group.withdraw(ticket);
        }
        any
    }

    /// Lets the encoder finish the backlog and joins it.
    pub(crate) fn join(&self) {
        let mut b = self.backlog.lock();
        b.closing = true;
        self.backlog.publish(b);
        crate::join::join_taken(&self.thread);
    }
}

/// The encoder thread: runs the backlog's steps in order until the pool is joined.
fn encode_backlog(backlog: &Monitor<Backlog>) {
    loop {
        let mut b = backlog.lock();
        let step = loop {
            if let Some(group) = b.groups.front_mut() {
                match group.next_step() {
                    Some(step) => break step,
                    None => {
                        // Dropped unlocked: ending a submission takes the queue's lock.
                        let done = b.groups.pop_front();
                        drop(b);
                        drop(done);
                        b = backlog.lock();
                        continue;
                    }
                }
            }
            if b.closing {
                b.started = false;
                return;
            }
            b = backlog
                .park_until(b, None, |b| !b.groups.is_empty() || b.closing)
                .0;
        };
        b.working = true;
        drop(b);
        // User code runs only under fondo's own catches; this one keeps the thread.
        if let Err(caught) = crate::panic::catch(|| step.run()) {
            crate::diag::diag!(
                "fondo: the encoder thread caught a panic: {}",
                caught.message
            );
        }
        let mut b = backlog.lock();
        b.working = false;
        backlog.publish(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_counts_small_values_and_gives_up_on_big_ones() {
        let small = [1u32, 2, 3];
        assert_eq!(probe(&small, 100), Some(4)); // a length, then three bytes
        let big = vec![serde_bytes::ByteBuf::from(vec![0u8; 1 << 20])];
        assert_eq!(probe(&big, INLINE_BYTES), None);
        let seq = vec![vec![0u8; 1 << 20]];
        assert_eq!(probe(&seq, INLINE_BYTES), None, "stops at the cap");
    }
}
