//! `Imap`: the lazy iterator behind `imap` and `imap_unordered`, which pulls input
//! only as results are consumed, so memory stays bounded on endless input.

use crate::backend::{Backend, Batch, Encoder, Runs};
use crate::cancel::{Ticket, Withdraw};
use crate::error::{Error, Result};
use crate::help::{Help, Helping};
use crate::monitor::{Monitor, Parked};
use crate::pool::Pool;
use crate::sink::{Abortable, Sink};
use crate::task::Task;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Which order `Imap` yields outcomes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Input order (`imap`).
    Input,
    /// Completion order (`imap_unordered`).
    Completion,
}

/// The pool an `Imap` submits to: borrowed (`imap`) or shared (`imap_owned`).
enum PoolRef<'p, B: Backend> {
    Borrowed(&'p Pool<B>),
    Shared(Arc<Pool<B>>),
}

impl<B: Backend> std::ops::Deref for PoolRef<'_, B> {
    type Target = Pool<B>;
    fn deref(&self) -> &Pool<B> {
        match self {
            PoolRef::Borrowed(pool) => pool,
            PoolRef::Shared(pool) => pool,
        }
    }
}

/// Lazy results of [`Pool::imap`] / [`Pool::imap_unordered`]: one `Result` per input
/// item. At most a few chunks per worker are in flight at any time.
///
/// Besides iterating, an `Imap` can wait with a limit ([`next_timeout`](Self::next_timeout),
/// Python's `IMapIterator.next(timeout)`) or without blocking, in async code
/// ([`next_async`](Self::next_async), or `into_stream` with
/// feature `stream`). Dropped before its end, it cancels the tasks it submitted
/// that no worker has started (as closing a `concurrent.futures` map does; the
/// running ones finish). Its `size_hint` is exact when its input's is, and it is an
/// [`ExactSizeIterator`] when its input is one — so progress bars know its length:
///
/// ```
/// fn square(x: u32) -> u64 { u64::from(x) * u64::from(x) }
///
/// let pool = fondo::Pool::threads(2)?;
/// let squares = pool.imap(square, 0..1000); // a `Range<u32>`: an ExactSizeIterator
/// assert_eq!(squares.len(), 1000);
/// assert_eq!(squares.map(|r| r.unwrap()).sum::<u64>(), 332_833_500);
/// # Ok::<(), fondo::Error>(())
/// ```
///
/// (A `Range<u64>`'s `size_hint` is exact, but std does not make it an
/// `ExactSizeIterator` — it may be longer than `usize` —, so neither is an `Imap`
/// over one: give indicatif `.progress_count(n)` for it, or use a `u32` / `usize` range.)
pub struct Imap<'p, B: Backend, F, I: Iterator, R> {
    pool: PoolRef<'p, B>,
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
    /// How a drop before the end takes back the tasks not started (`cancel.rs`).
    withdraw: Option<Weak<dyn Withdraw>>,
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
        Self::on(PoolRef::Borrowed(pool), f, input, order)
    }

    fn on(pool: PoolRef<'p, B>, f: F, input: I, order: Order) -> Self {
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
            withdraw: backend.withdrawer(),
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
            // Big arguments go to the pool's encoder: an async reader never blocks.
            self.pool.submit(&self.f, batches, Encoder::Pool);
        }
    }

    /// Counts an outcome yielded; the input ends with the pool.
    fn yielded(&mut self, out: Result<R>) -> Result<R> {
        self.delivered += 1;
        if out
            .as_ref()
            .is_err_and(|e| matches!(e, Error::Terminated | Error::Closed))
        {
            self.input = None;
        }
        out
    }

    /// Tops up and says whether anything is left to yield; at the end, resumes an
    /// input's panic.
    fn more(&mut self) -> bool {
        self.top_up();
        if self.delivered == self.submitted {
            if let Some(payload) = self.input_panic.take() {
                std::panic::resume_unwind(payload);
            }
            return false;
        }
        true
    }

    /// Like `next()`, but waits at most `timeout` for the outcome:
    /// `Some(Err(Error::WaitTimeout))` if it is not there by then, and the
    /// iterator stays usable — the next call waits for the same outcome (Python's
    /// `IMapIterator.next(timeout)`).
    ///
    /// ```
    /// use fondo::Error;
    /// use std::time::Duration;
    ///
    /// let pool = fondo::Pool::threads(1)?;
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let gate = std::sync::Mutex::new(gate);
    /// let mut it = pool.imap(move |x: u32| { if x == 0 { gate.lock().unwrap().recv().ok(); } x }, 0..3);
    /// assert!(matches!(it.next_timeout(Duration::from_millis(10)), Some(Err(Error::WaitTimeout { .. }))));
    /// release.send(()).unwrap();
    /// assert_eq!(it.next_timeout(Duration::from_secs(60)).unwrap()?, 0);
    /// assert_eq!(it.map(|r| r.unwrap()).collect::<Vec<_>>(), [1, 2]);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        if !self.more() {
            return None;
        }
        let deadline = Instant::now().checked_add(timeout);
        match self
            .sink
            .take(self.delivered, self.helper.as_ref(), deadline)
        {
            Some(out) => Some(self.yielded(out)),
            None => Some(Err(Error::WaitTimeout { waited: timeout })),
        }
    }

    /// The next outcome without blocking the thread: a future to `.await` in async
    /// code (`None` at the end, as `next()`). Use it on an
    /// [`imap_owned`](Pool::imap_owned) iterator moved into a task.
    ///
    /// ```
    /// use std::sync::Arc;
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = Arc::new(fondo::Pool::processes(2)?);
    /// let mut squares = pool.imap_owned(square, 1..=3);
    /// let sum = pollster::block_on(async move {
    ///     let mut sum = 0;
    ///     while let Some(r) = squares.next_async().await {
    ///         sum += r?;
    ///     }
    ///     Ok::<u64, fondo::Error>(sum)
    /// })?;
    /// assert_eq!(sum, 14);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn next_async(&mut self) -> NextAsync<'_, 'p, B, F, I, R> {
        NextAsync { imap: self }
    }

    /// `next()` as a poll: ready with the outcome, or pending with `cx`'s waker
    /// registered, woken when it arrives.
    fn poll_next_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        if !self.more() {
            return Poll::Ready(None);
        }
        match self.sink.poll_take(self.delivered, cx.waker()) {
            Poll::Ready(out) => Poll::Ready(Some(self.yielded(out))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// This iterator as a `futures_core::Stream` of outcomes (feature `stream`),
    /// for `StreamExt` and friends. (A separate type, so that `StreamExt::next`
    /// and `Iterator::next` never clash.)
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use std::sync::Arc;
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = Arc::new(fondo::Pool::processes(2)?);
    /// let squares = pool.imap_owned(square, 1..=3).into_stream();
    /// let all: Vec<u64> = pollster::block_on(squares.map(|r| r.unwrap()).collect());
    /// assert_eq!(all, [1, 4, 9]);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    #[cfg(feature = "stream")]
    pub fn into_stream(self) -> ImapStream<'p, B, F, I, R> {
        ImapStream { imap: self }
    }
}

impl<B, F, I, R> Imap<'static, B, F, I, R>
where
    B: Runs<F, (I::Item,)>,
    F: Task<(I::Item,), Output = R>,
    I: Iterator,
    R: Send + 'static,
{
    pub(crate) fn shared(pool: Arc<Pool<B>>, f: F, input: I, order: Order) -> Self {
        Self::on(PoolRef::Shared(pool), f, input, order)
    }
}

/// The future [`Imap::next_async`] returns: the next outcome, `None` at the end.
#[must_use = "futures do nothing unless awaited"]
pub struct NextAsync<'a, 'p, B: Backend, F, I: Iterator, R> {
    imap: &'a mut Imap<'p, B, F, I, R>,
}

impl<B: Backend, F, I: Iterator, R> std::fmt::Debug for NextAsync<'_, '_, B, F, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextAsync")
            .field("imap", &self.imap)
            .finish()
    }
}

impl<B, F, I, R> Future for NextAsync<'_, '_, B, F, I, R>
where
    B: Runs<F, (I::Item,)>,
    F: Task<(I::Item,), Output = R>,
    I: Iterator,
    R: Send + 'static,
{
    type Output = Option<Result<R>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        self.get_mut().imap.poll_next_outcome(cx)
    }
}

/// An [`Imap`] as a `futures_core::Stream` ([`Imap::into_stream`], feature `stream`).
#[cfg(feature = "stream")]
pub struct ImapStream<'p, B: Backend, F, I: Iterator, R> {
    imap: Imap<'p, B, F, I, R>,
}

#[cfg(feature = "stream")]
impl<B: Backend, F, I: Iterator, R> std::fmt::Debug for ImapStream<'_, B, F, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapStream")
            .field("imap", &self.imap)
            .finish()
    }
}

#[cfg(feature = "stream")]
impl<B, F, I, R> futures_core::Stream for ImapStream<'_, B, F, I, R>
where
    B: Runs<F, (I::Item,)>,
    F: Task<(I::Item,), Output = R>,
    I: Iterator + Unpin,
    R: Send + 'static,
{
    type Item = Result<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        self.get_mut().imap.poll_next_outcome(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        Iterator::size_hint(&self.imap)
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
        if !self.more() {
            return None;
        }
        let out = self.sink.take(self.delivered, self.helper.as_ref(), None)?;
        Some(self.yielded(out))
    }

    /// One outcome per input item not yet yielded: exact when the input's hint is.
    /// (Fewer come if the pool is closed or terminated meanwhile, or the input
    /// panics: the iterator then ends early.)
    fn size_hint(&self) -> (usize, Option<usize>) {
        let in_flight = self.submitted - self.delivered;
        match &self.input {
            None => (in_flight, Some(in_flight)),
            Some(input) => {
                let (low, high) = input.size_hint();
                (
                    low.saturating_add(in_flight),
                    high.and_then(|h| h.checked_add(in_flight)),
                )
            }
        }
    }
}

/// As long as its input is: `len()` outcomes are left to yield, unless the pool
/// is closed or terminated meanwhile or the input panics (see `size_hint`).
impl<B, F, I, R> ExactSizeIterator for Imap<'_, B, F, I, R>
where
    B: Runs<F, (I::Item,)>,
    F: Task<(I::Item,), Output = R>,
    I: ExactSizeIterator,
    R: Send + 'static,
{
}

/// Dropped before its end, an `Imap` cancels the tasks it submitted that no worker
/// has started (they never run; the running ones finish, their outcomes unread),
/// as closing a `concurrent.futures` map does.
impl<B: Backend, F, I: Iterator, R> Drop for Imap<'_, B, F, I, R> {
    fn drop(&mut self) {
        if self.delivered == self.submitted {
            return;
        }
        let withdraw = self.withdraw.as_ref().and_then(Weak::upgrade);
        let ticket = &self.sink.ticket;
        ticket.cancel(|| withdraw.is_some_and(|w| w.withdraw(ticket)));
    }
}

/// Results waiting to be yielded by an `Imap`.
pub(crate) struct ImapSink<R> {
    order: Order,
    /// Claimed where its tasks start; cancelled when the `Imap` is dropped early.
    ticket: Ticket,
    /// Published when an outcome arrives or the submission is aborted (`monitor.rs`).
    state: Monitor<ImapState<R>>,
}

struct ImapState<R> {
    by_index: BTreeMap<usize, Result<R>>,
    by_arrival: VecDeque<Result<R>>,
    aborted: Option<Error>,
    /// An async reader waiting for the next outcome (`Imap::next_async`).
    waker: Option<Waker>,
}

impl<R> ImapSink<R> {
    fn new(order: Order) -> Self {
        ImapSink {
            order,
            ticket: Ticket::default(),
            state: Monitor::new(ImapState {
                by_index: BTreeMap::new(),
                by_arrival: VecDeque::new(),
                aborted: None,
                waker: None,
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

    /// The outcome [`take`](Self::take) waits for, if it is here.
    fn pop(&self, st: &mut ImapState<R>, index: usize) -> Option<Result<R>> {
        let found = match self.order {
            Order::Input => st.by_index.remove(&index),
            Order::Completion => st.by_arrival.pop_front(),
        };
        found.or_else(|| st.aborted.clone().map(Err))
    }

    /// Waits for the outcome of task `index` (input order) or of any task
    /// (completion order), until `deadline` (`None` if it passed first); after an
    /// abort, missing outcomes are the abort's error. While spinning, reads the
    /// pool's answers itself through `helper`, if any.
    fn take(
        &self,
        index: usize,
        helper: Option<&Weak<dyn Help>>,
        deadline: Option<Instant>,
    ) -> Option<Result<R>> {
        let mut spin = crate::spin::Spin::new();
        let mut helping: Option<Helping> = None;
        let mut st = self.lock();
        loop {
            if let Some(r) = self.pop(&mut st, index) {
                return Some(r);
            }
            let late = deadline.is_some_and(|d| Instant::now() >= d);
            if !late && spin.again() {
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
            let parked;
            (st, parked) = self
                .state
                .park_until(st, deadline, |s| self.ready(s, index));
            if parked == Parked::TimedOut {
                return self.pop(&mut st, index);
            }
        }
    }

    /// The outcome [`take`](Self::take) waits for if it is here, else `waker`
    /// is woken once one arrives.
    fn poll_take(&self, index: usize, waker: &Waker) -> Poll<Result<R>> {
        let mut st = self.lock();
        match self.pop(&mut st, index) {
            Some(r) => Poll::Ready(r),
            None => {
                if !st.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    st.waker = Some(waker.clone());
                }
                Poll::Pending
            }
        }
    }

    /// Publishes a change and wakes an async reader, if one waits.
    fn publish(&self, mut st: MutexGuard<'_, ImapState<R>>) {
        let waker = st.waker.take();
        self.state.publish(st);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<R: Send> Abortable for ImapSink<R> {
    fn abort(&self, error: Error) {
        let mut st = self.lock();
        st.aborted.get_or_insert(error);
        self.publish(st);
    }
    fn is_complete(&self) -> bool {
        // The iterator decides when it is done; the registry only needs "not aborted yet".
        self.lock().aborted.is_some()
    }
    fn ticket(&self) -> Option<&Ticket> {
        Some(&self.ticket)
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
        self.publish(st);
    }
}
