//! `Imap`: the lazy iterator behind `imap` and `imap_unordered`, which pulls input
//! only as results are consumed, so memory stays bounded on endless input.

use crate::backend::{Backend, Batch, Runs};
use crate::error::{Error, Result};
use crate::help::{Help, Helping};
use crate::monitor::Monitor;
use crate::pool::Pool;
use crate::sink::{Abortable, Sink};
use crate::task::Task;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, MutexGuard, Weak};

/// Which order `Imap` yields outcomes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Input order (`imap`).
    Input,
    /// Completion order (`imap_unordered`).
    Completion,
}

/// Lazy results of [`Pool::imap`] / [`Pool::imap_unordered`]: one `Result` per input
/// item. At most a few chunks per worker are in flight at any time.
pub struct Imap<'p, B: Backend, F, I: Iterator, R> {
    pool: &'p Pool<B>,
    f: Arc<F>,
    input: Option<I>,
    sink: Arc<ImapSink<R>>,
    chunk: usize,
    /// Tasks in flight at most: enough to keep every worker fed.
    window: usize,
    submitted: usize,
    delivered: usize,
    /// The pool this iterator's thread may help while it waits.
    helper: Option<Weak<dyn Help>>,
    /// The input iterator panicked after this many items: the panic is resumed
    /// once every result before it has been yielded, as Python raises the input's
    /// exception at its position.
    input_panic: Option<Box<dyn std::any::Any + Send>>,
}

impl<B: Backend, F, I: Iterator, R> std::fmt::Debug for Imap<'_, B, F, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("submitted", &self.submitted)
            .field("delivered", &self.delivered)
            .field("window", &self.window)
            .field("input_done", &self.input.is_none())
            .finish()
    }
}

impl<'p, B, F, I, R> Imap<'p, B, F, I, R>
where
    B: Runs<F, (I::Item,)>,
    F: Task<(I::Item,), Output = R>,
    I: Iterator,
    R: Send + 'static,
{
    pub(crate) fn new(pool: &'p Pool<B>, f: F, input: I, order: Order) -> Self {
        let backend = pool.backend();
        // Python's imap default chunksize is 1; map's auto rule needs the length,
        // which a lazy iterator does not have.
        let shape = backend.shape();
        let chunk = shape.chunksize.unwrap_or(1);
        // Enough tasks to keep every worker's pipeline full; still a fixed bound.
        let window = (chunk * shape.workers * (shape.prefetch + 1)).max(64 * shape.workers);
        let sink = Arc::new(ImapSink::new(order));
        pool.track(sink.clone());
        Imap {
            helper: backend.helper(),
            pool,
            f: Arc::new(f),
            input: Some(input),
            sink,
            chunk,
            window,
            submitted: 0,
            delivered: 0,
            input_panic: None,
        }
    }

    /// Once in-flight tasks drop to half the window, submits input until the window
    /// is full again (or the input runs out) in one go: refilling in bursts lets many
    /// tasks share a syscall on their way to the workers.
    fn top_up(&mut self) {
        if self.submitted - self.delivered > self.window / 2 {
            return;
        }
        // A pool that takes no more work gets one chunk, whose tasks come back as
        // `Closed`/`Terminated` (Python raises there), and no more of the input.
        let limit = if self.pool.backend().accepts_work() {
            self.window
        } else {
            self.submitted - self.delivered + 1
        };
        let mut batches = Vec::new();
        while self.submitted - self.delivered < limit {
            let Some(input) = self.input.as_mut() else {
                break;
            };
            let mut items: Vec<(I::Item,)> = Vec::with_capacity(self.chunk);
            let chunk = self.chunk;
            // The input is user code: a panic in it ends the input where it came,
            // and waits there for the results before it.
            let pulled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                items.extend(input.by_ref().take(chunk).map(|x| (x,)));
            }));
            if let Err(payload) = pulled {
                self.input_panic = Some(payload);
                self.input = None;
            } else if items.len() < self.chunk {
                self.input = None;
            }
            if items.is_empty() {
                break;
            }
            let len = items.len();
            let sink: Arc<dyn Sink<R>> = self.sink.clone();
            batches.push(Batch {
                items,
                start: self.submitted,
                sink,
            });
            self.submitted += len;
        }
        if limit < self.window {
            self.input = None;
        }
        if !batches.is_empty() {
            self.pool.submit(&self.f, batches);
        }
    }
}

impl<B, F, I, R> Iterator for Imap<'_, B, F, I, R>
where
    B: Runs<F, (I::Item,)>,
    F: Task<(I::Item,), Output = R>,
    I: Iterator,
    R: Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.top_up();
        if self.delivered == self.submitted {
            if let Some(payload) = self.input_panic.take() {
                std::panic::resume_unwind(payload);
            }
            return None;
        }
        let out = self.sink.take(self.delivered, self.helper.as_ref());
        self.delivered += 1;
        if out
            .as_ref()
            .is_err_and(|e| matches!(e, Error::Terminated | Error::Closed))
        {
            self.input = None;
        }
        Some(out)
    }
}

/// Results waiting to be yielded by an `Imap`.
pub(crate) struct ImapSink<R> {
    order: Order,
    /// Published when an outcome arrives or the submission is aborted (`monitor.rs`).
    state: Monitor<ImapState<R>>,
}

struct ImapState<R> {
    by_index: BTreeMap<usize, Result<R>>,
    by_arrival: VecDeque<Result<R>>,
    aborted: Option<Error>,
}

impl<R> ImapSink<R> {
    fn new(order: Order) -> Self {
        ImapSink {
            order,
            state: Monitor::new(ImapState {
                by_index: BTreeMap::new(),
                by_arrival: VecDeque::new(),
                aborted: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ImapState<R>> {
        self.state.lock()
    }

    /// True when the outcome [`take`](Self::take) waits for is here (or never will be).
    fn ready(&self, st: &ImapState<R>, index: usize) -> bool {
        st.aborted.is_some()
            || match self.order {
                Order::Input => st.by_index.contains_key(&index),
                Order::Completion => !st.by_arrival.is_empty(),
            }
    }

    /// Waits for the outcome of task `index` (input order) or of any task
    /// (completion order); after an abort, missing outcomes are the abort's error.
    /// While spinning, reads the pool's answers itself through `helper`, if any.
    fn take(&self, index: usize, helper: Option<&Weak<dyn Help>>) -> Result<R> {
        let mut spin = crate::spin::Spin::new();
        let mut helping: Option<Helping> = None;
        let mut st = self.lock();
        loop {
            let found = match self.order {
                Order::Input => st.by_index.remove(&index),
                Order::Completion => st.by_arrival.pop_front(),
            };
            if let Some(r) = found {
                return r;
            }
            if let Some(e) = &st.aborted {
                return Err(e.clone());
            }
            if spin.again() {
                drop(st);
                if helping.is_none() {
                    helping = helper.and_then(Helping::start);
                }
                if helping.as_ref().is_some_and(Helping::help) {
                    spin.reset();
                }
                st = self.lock();
                continue;
            }
            // Pool threads read the answers while we sleep.
            if let Some(h) = helping.take() {
                h.stop_to_block();
            }
            st = self.state.park_until(st, None, |s| self.ready(s, index)).0;
        }
    }
}

impl<R: Send> Abortable for ImapSink<R> {
    fn abort(&self, error: Error) {
        let mut st = self.lock();
        st.aborted.get_or_insert(error);
        self.state.publish(st);
    }
    fn is_complete(&self) -> bool {
        // The iterator decides when it is done; the registry only needs "not aborted yet".
        self.lock().aborted.is_some()
    }
}

impl<R: Send> Sink<R> for ImapSink<R> {
    fn put(&self, start: usize, results: Vec<Result<R>>) {
        let mut st = self.lock();
        if st.aborted.is_some() {
            return;
        }
        match self.order {
            Order::Input => st.by_index.extend((start..).zip(results)),
            Order::Completion => st.by_arrival.extend(results),
        }
        self.state.publish(st);
    }
}
