//! `AsyncResult`: the handle `apply_async` and `map_async` return, readable by
//! blocking, with a timeout, through callbacks or as a `Future`.

use crate::cancel::{Ticket, Withdraw};
use crate::error::{Error, Result};
use crate::help::{Help, Helping};
use crate::monitor::Monitor;
use crate::sink::{Abortable, Sink};
use crate::watch::seam::{WatchCell, WatchSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

type Callback<R> = Box<dyn FnOnce(&Result<R>) + Send>;

/// The result of a task submitted without waiting, like Python's `AsyncResult`.
///
/// Unlike Python's, it can never hang: dropping the pool finishes the task first
/// (the result stays readable afterwards) and `terminate()` turns it into
/// `Err(Terminated)` at once.
///
/// ```
/// use fondo::Pool;
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::threads(2)?;
/// let r = pool.apply_async(square, (5,));
/// drop(pool); // close + join: the task still finishes
/// assert_eq!(r.get()?, 25);
/// # Ok::<(), fondo::Error>(())
/// ```
#[must_use = "an AsyncResult does nothing unless read; drop it to ignore the outcome"]
pub struct AsyncResult<R> {
    slot: Arc<ResultCell<R>>,
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.slot.done.load(Ordering::Relaxed))
            .finish()
    }
}

impl<R: Send + 'static> AsyncResult<R> {
    /// A result and the sink a backend completes it through.
    pub(crate) fn pending() -> (Self, Arc<ResultCell<R>>) {
        let slot = Arc::new(ResultCell::new());
        (AsyncResult { slot: slot.clone() }, slot)
    }

    /// A result that is complete already, with `outcome`: to mix values at hand
    /// with a pool's results in [`wait`](crate::wait) or
    /// [`as_completed`](crate::as_completed) (Python's tests make such futures by
    /// hand). `Err(Error::Cancelled)` makes a cancelled one.
    ///
    /// ```
    /// use fondo::{AsyncResult, Error};
    ///
    /// let done = AsyncResult::completed(Ok(5));
    /// assert!(done.ready());
    /// assert_eq!(done.get()?, 5);
    /// assert!(AsyncResult::<u8>::completed(Err(Error::Cancelled)).cancelled());
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn completed(outcome: Result<R>) -> Self {
        let (result, slot) = Self::pending();
        slot.complete(outcome);
        result
    }

    /// Ties the result to the pool that runs its task: threads waiting for it may
    /// do the pool's work meanwhile (`help`), and `cancel()` withdraws its jobs there.
    pub(crate) fn served_by(
        &self,
        helper: Option<Weak<dyn Help>>,
        withdraw: Option<Weak<dyn Withdraw>>,
    ) {
        if let Some(helper) = helper {
            let _ = self.slot.helper.set(helper);
        }
        if let Some(withdraw) = withdraw {
            let _ = self.slot.withdraw.set(withdraw);
        }
    }

    /// Cancels the task if no worker has started it, like Python's
    /// `Future.cancel()`: it then never runs, and the result is
    /// `Err(Error::Cancelled)` at once. True if the result is cancelled (now or
    /// before); false if its task is running or finished, which `cancel` leaves alone.
    ///
    /// For a `map_async`, every task not started yet is cancelled and the map's
    /// result is `Err(Cancelled)`, unless every task had started (then false).
    ///
    /// When a task starts depends on the backend: on threads, when a worker thread
    /// takes its batch; on processes, when a worker process claims its job — a job
    /// waiting in a worker's pipeline behind another is taken back and cancelled;
    /// on MPI, when rank 0 sends it (a task a rank has received runs). A task the
    /// pool is moving between workers at that instant (after a worker died) counts
    /// as started.
    ///
    /// ```
    /// use fondo::{Error, Pool};
    /// use std::sync::{Mutex, mpsc};
    ///
    /// let pool = Pool::threads(1)?;
    /// let (release, wait) = mpsc::channel::<()>();
    /// let (started, is_started) = mpsc::channel::<()>();
    /// let wait = Mutex::new(wait);
    /// let busy = pool.apply_async(move || { started.send(()).unwrap(); wait.lock().unwrap().recv().ok(); 1 }, ());
    /// is_started.recv().unwrap(); // the only worker is busy
    /// let queued = pool.apply_async(|| 2, ());
    /// assert!(queued.cancel());    // not started: it never will
    /// assert!(!busy.cancel());     // running: left alone
    /// assert!(busy.running() && queued.cancelled());
    /// release.send(()).unwrap();
    /// assert_eq!(busy.get()?, 1);
    /// assert!(matches!(queued.get(), Err(Error::Cancelled)));
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        let ticket = &self.slot.ticket;
        if ticket.is_cancelled() {
            return true;
        }
        if self.ready() {
            return false;
        }
        let withdraw = self.slot.withdraw.get().and_then(Weak::upgrade);
        let cancelled = ticket.cancel(|| withdraw.is_some_and(|w| w.withdraw(ticket)));
        if cancelled {
            self.slot.complete(Err(Error::Cancelled));
        }
        cancelled
    }

    /// True if the task was cancelled ([`cancel`](Self::cancel), or
    /// [`Pool::shutdown`](crate::Pool::shutdown) with
    /// [`Pending::Cancel`](crate::Pending::Cancel)): its outcome is `Err(Cancelled)`.
    pub fn cancelled(&self) -> bool {
        self.slot.ticket.is_cancelled()
    }

    /// True while a worker runs the task: started and not finished (for a
    /// `map_async`, while one of its tasks runs). What "started" means on each
    /// backend is said at [`cancel`](Self::cancel); a task that finished but whose
    /// outcome is still being delivered may read false for an instant.
    ///
    /// ```
    /// use fondo::Pool;
    ///
    /// let pool = Pool::threads(1)?;
    /// let r = pool.apply_async(|| 6 * 7, ());
    /// r.wait();
    /// assert!(!r.running() && r.ready());
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn running(&self) -> bool {
        if self.ready() || self.slot.ticket.is_cancelled() {
            return false;
        }
        let known = self
            .slot
            .withdraw
            .get()
            .and_then(Weak::upgrade)
            .and_then(|w| w.running(&self.slot.ticket));
        let running = known.unwrap_or_else(|| self.slot.ticket.has_unfinished_claims());
        running && !self.ready()
    }

    /// Blocks until the task finishes and returns its value or error.
    pub fn get(self) -> Result<R> {
        let mut st = self.slot.wait_until(|s| !s.is_pending(), None);
        st.take()
    }

    /// Like [`get`](Self::get) but gives up after `timeout` with `Err(WaitTimeout)`,
    /// leaving the task running: a later call can still return its value.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        let mut st = self.slot.wait_until(|s| !s.is_pending(), Some(timeout));
        if st.is_pending() {
            return Err(Error::WaitTimeout { waited: timeout });
        }
        st.take()
    }

    /// Blocks until the task finishes, without taking its value.
    pub fn wait(&self) {
        drop(self.slot.wait_until(|s| !s.is_pending(), None));
    }

    /// Blocks until the task finishes or `timeout` passes; true if it finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        !self
            .slot
            .wait_until(|s| !s.is_pending(), Some(timeout))
            .is_pending()
    }

    /// True once the task has finished (successfully or not), or was cancelled.
    pub fn ready(&self) -> bool {
        self.slot.done.load(Ordering::Acquire)
    }

    /// `Some(true)` if the task finished with a value, `Some(false)` if with an
    /// error, `None` while it is still running (Python raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        match &*self.slot.lock() {
            State::Done(r) => Some(r.is_ok()),
            State::Taken { ok } => Some(*ok),
            State::Pending { .. } | State::Completing { .. } => None,
        }
    }

    /// Calls `callback` with the outcome as soon as the task finishes (at once if it
    /// already has). The callback runs on a pool thread, or on a thread waiting for
    /// another result of the same pool (waiting threads read workers' answers
    /// themselves): keep it short, and do not wait in it for the same pool.
    pub fn on_done(self, callback: impl FnOnce(&Result<R>) + Send + 'static) -> Self {
        self.slot.on_done(Box::new(callback));
        self
    }

    /// Calls `callback` with the value if the task succeeds (Python's `callback=`).
    pub fn on_success(self, callback: impl FnOnce(&R) + Send + 'static) -> Self {
        self.on_done(move |r| {
            if let Ok(v) = r {
                callback(v)
            }
        })
    }

    /// Calls `callback` with the error if the task fails (Python's `error_callback=`).
    pub fn on_error(self, callback: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.on_done(move |r| {
            if let Err(e) = r {
                callback(e)
            }
        })
    }
}

impl<R: Send + 'static> crate::watch::seam::Watched for AsyncResult<R> {
    fn cell(&self) -> &dyn WatchCell {
        &*self.slot
    }
}

/// Awaiting an `AsyncResult` yields the task's outcome, so pools mix with async code.
impl<R: Send + 'static> Future for AsyncResult<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let mut st = self.slot.lock();
        match &mut *st {
            State::Pending { waker, .. } => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            // A callback is running; it finishes in a moment and wakes us then.
            State::Completing { .. } => {
                drop(st);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            State::Done(_) | State::Taken { .. } => Poll::Ready(st.take()),
        }
    }
}

/// The shared cell behind an `AsyncResult`.
pub(crate) struct ResultCell<R> {
    /// Published when the outcome is stored (`monitor.rs`).
    state: Monitor<State<R>>,
    /// Mirrors "state is Done or Taken" so `ready()` and the spin in `wait_until` need no lock.
    done: AtomicBool,
    /// The pool a waiting thread may help (see `help`), if its backend takes help.
    helper: OnceLock<Weak<dyn Help>>,
    /// Whether the task(s) may still start (`cancel.rs`).
    ticket: Ticket,
    /// The pool that takes back jobs not started, for `cancel()`.
    withdraw: OnceLock<Weak<dyn Withdraw>>,
}

/// A `wait` or `as_completed` watching this result as its member `index`.
struct Watcher {
    set: Arc<WatchSet>,
    index: usize,
}

enum State<R> {
    Pending {
        waker: Option<Waker>,
        callbacks: Vec<Callback<R>>,
        watchers: Vec<Watcher>,
    },
    /// Callbacks are running outside the lock; `late` holds callbacks registered
    /// meanwhile, run before the outcome is stored; `watchers` are told once it is.
    Completing {
        late: Vec<Callback<R>>,
        watchers: Vec<Watcher>,
    },
    Done(Result<R>),
    /// The value was handed out; `ok` remembers whether it was a value or an error.
    Taken {
        ok: bool,
    },
}

impl<R> State<R> {
    fn is_pending(&self) -> bool {
        matches!(self, State::Pending { .. } | State::Completing { .. })
    }

    fn take(&mut self) -> Result<R> {
        match std::mem::replace(self, State::Taken { ok: false }) {
            State::Done(r) => {
                *self = State::Taken { ok: r.is_ok() };
                r
            }
            other => {
                *self = other;
                Err(Error::ResultTaken)
            }
        }
    }
}

impl<R> ResultCell<R> {
    fn new() -> Self {
        ResultCell {
            state: Monitor::new(State::Pending {
                waker: None,
                callbacks: Vec::new(),
                watchers: Vec::new(),
            }),
            done: AtomicBool::new(false),
            helper: OnceLock::new(),
            ticket: Ticket::default(),
            withdraw: OnceLock::new(),
        }
    }

    /// How many `wait`s and `as_completed`s watch it now.
    #[cfg(test)]
    pub(crate) fn watchers(&self) -> usize {
        match &*self.lock() {
            State::Pending { watchers, .. } | State::Completing { watchers, .. } => watchers.len(),
            State::Done(_) | State::Taken { .. } => 0,
        }
    }

    /// The cancel ticket its jobs carry.
    pub(crate) fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        // A panicking callback cannot leave the state half-written: it runs unlocked.
        self.state.lock()
    }

    /// Waits (spinning briefly first: a cross-CPU wake-up costs ~20 µs here) until
    /// `cond` holds or `timeout` passes, and returns the locked state.
    fn wait_until(
        &self,
        cond: impl Fn(&State<R>) -> bool,
        timeout: Option<Duration>,
    ) -> MutexGuard<'_, State<R>> {
        // A timeout too large to add to the clock means no deadline at all.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut spin = crate::spin::Spin::new();
        // While spinning, read the pool's answers ourselves when it lets us: the
        // pool thread that would read them can then sleep, and nobody has to wake us.
        let mut helping = None;
        while !self.done.load(Ordering::Acquire) && spin.again() {
            if helping.is_none() {
                helping = self.helper.get().and_then(Helping::start);
            }
            match &helping {
                Some(h) if h.help() && deadline.is_none_or(|d| Instant::now() < d) => spin.reset(),
                Some(_) => {}
                None => std::hint::spin_loop(),
            }
        }
        match helping {
            Some(h) if !self.done.load(Ordering::Acquire) => h.stop_to_block(),
            other => drop(other),
        }
        self.state.park_until(self.lock(), deadline, cond).0
    }

    /// Stores the outcome unless one is already there (first writer wins), running
    /// callbacks first, as Python does.
    pub(crate) fn complete(&self, result: Result<R>) {
        let (waker, callbacks) = {
            let mut st = self.lock();
            let State::Pending {
                waker,
                callbacks,
                watchers,
            } = &mut *st
            else {
                return;
            };
            let taken = (waker.take(), std::mem::take(callbacks));
            let watchers = std::mem::take(watchers);
            *st = State::Completing {
                late: Vec::new(),
                watchers,
            };
            taken
        };
        if matches!(result, Err(Error::Cancelled)) {
            self.ticket.mark_cancelled();
        }
        self.run_then_store(callbacks, result);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Runs `callbacks` (and any registered while they run) unlocked, so they may use
    /// this result's methods, then stores the outcome and wakes waiters and watchers.
    fn run_then_store(&self, mut callbacks: Vec<Callback<R>>, result: Result<R>) {
        loop {
            for cb in callbacks.drain(..) {
                run_callback(cb, &result);
            }
            let mut st = self.lock();
            let watchers = match &mut *st {
                State::Completing { late, .. } if !late.is_empty() => {
                    callbacks = std::mem::take(late);
                    continue;
                }
                State::Completing { watchers, .. } => std::mem::take(watchers),
                _ => Vec::new(),
            };
            *st = State::Done(result);
            self.done.store(true, Ordering::Release);
            self.state.publish(st);
            for w in watchers {
                w.set.notify(w.index);
            }
            return;
        }
    }

    fn on_done(&self, callback: Callback<R>) {
        let mut st = self.lock();
        match &mut *st {
            State::Pending { callbacks, .. } => callbacks.push(callback),
            State::Completing { late, .. } => late.push(callback),
            State::Done(_) => {
                let completing = State::Completing {
                    late: Vec::new(),
                    watchers: Vec::new(),
                };
                let previous = std::mem::replace(&mut *st, completing);
                drop(st);
                if let State::Done(result) = previous {
                    self.run_then_store(vec![callback], result);
                }
            }
            // The value was handed out by `get_timeout`: say so rather than stay silent.
            State::Taken { .. } => {
                drop(st);
                run_callback(callback, &Err(Error::ResultTaken));
            }
        }
    }
}

/// Runs a user callback; a panic in it must not take down the pool thread delivering results.
fn run_callback<R>(cb: Callback<R>, result: &Result<R>) {
    if let Err(caught) = crate::panic::catch(|| cb(result)) {
        crate::diag::diag!("fondo: a result callback panicked: {}", caught.message);
    }
}

impl<R: Send> Abortable for ResultCell<R> {
    fn abort(&self, error: Error) {
        self.complete(Err(error));
    }
    fn is_complete(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
    fn ticket(&self) -> Option<&Ticket> {
        Some(&self.ticket)
    }
}

impl<R: Send + 'static> WatchCell for ResultCell<R> {
    fn watch(&self, set: &Arc<WatchSet>, index: usize) {
        let mut st = self.lock();
        match &mut *st {
            State::Pending { watchers, .. } | State::Completing { watchers, .. } => {
                watchers.push(Watcher {
                    set: set.clone(),
                    index,
                });
            }
            State::Done(_) | State::Taken { .. } => {
                drop(st);
                set.notify(index);
            }
        }
    }

    fn unwatch(&self, set: &Arc<WatchSet>) {
        let mut st = self.lock();
        if let State::Pending { watchers, .. } | State::Completing { watchers, .. } = &mut *st {
            watchers.retain(|w| !Arc::ptr_eq(&w.set, set));
        }
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn failed(&self) -> bool {
        if self.ticket.is_cancelled() {
            return false;
        }
        match &*self.lock() {
            State::Done(r) => r.is_err(),
            State::Taken { ok } => !ok,
            State::Pending { .. } | State::Completing { .. } => false,
        }
    }

    fn helper(&self) -> Option<&Weak<dyn Help>> {
        self.helper.get()
    }
}

impl<R: Send> Sink<R> for ResultCell<R> {
    fn put(&self, start: usize, results: Vec<Result<R>>) {
        if start == 0
            && let Some(r) = results.into_iter().next()
        {
            self.complete(r);
        }
    }
}

/// Collects the results of `map_async`, in input order, into one `AsyncResult<Vec<R>>`.
///
/// `map` returns the values or the first error by input position, so only values and
/// that one error are kept: `Option<R>` per task rather than a full `Result`.
pub(crate) struct MapSink<R> {
    parts: Mutex<MapParts<R>>,
    out: Arc<ResultCell<Vec<R>>>,
}

struct MapParts<R> {
    values: Vec<Option<R>>,
    /// The failure with the lowest index so far.
    first_error: Option<(usize, Error)>,
    /// Indices that already have an outcome (a value or an error).
    seen: Vec<bool>,
    missing: usize,
}

impl<R: Send + 'static> MapSink<R> {
    /// A sink for `len` results and the `AsyncResult` it completes.
    pub(crate) fn new(len: usize) -> (AsyncResult<Vec<R>>, Arc<Self>) {
        let (handle, out) = AsyncResult::pending();
        let mut values = Vec::new();
        values.resize_with(len, || None);
        let sink = Arc::new(MapSink {
            parts: Mutex::new(MapParts {
                values,
                first_error: None,
                seen: vec![false; len],
                missing: len,
            }),
            out,
        });
        if len == 0 {
            sink.out.complete(Ok(Vec::new()));
        }
        (handle, sink)
    }

    fn finish(&self, parts: &mut MapParts<R>) {
        let outcome = match parts.first_error.take() {
            Some((index, e)) => Err(e.at(index)),
            None => std::mem::take(&mut parts.values)
                .into_iter()
                .map(|v| v.ok_or(Error::Terminated))
                .collect(),
        };
        parts.values = Vec::new();
        parts.seen = Vec::new();
        self.out.complete(outcome);
    }
}

impl<R> MapParts<R> {
    fn record_error(&mut self, index: usize, error: Error) {
        if self.first_error.as_ref().is_none_or(|(i, _)| index < *i) {
            self.first_error = Some((index, error));
        }
    }
}

impl<R: Send + 'static> Abortable for MapSink<R> {
    fn abort(&self, error: Error) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        if parts.missing == 0 {
            return;
        }
        if let Some(i) = parts.seen.iter().position(|s| !s) {
            parts.record_error(i, error);
        }
        parts.missing = 0;
        self.finish(&mut parts);
    }
    fn is_complete(&self) -> bool {
        self.out.is_complete()
    }
    fn ticket(&self) -> Option<&Ticket> {
        Some(self.out.ticket())
    }
}

impl<R: Send + 'static> Sink<R> for MapSink<R> {
    fn put(&self, start: usize, results: Vec<Result<R>>) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        if parts.missing == 0 {
            return;
        }
        if self.out.is_complete() {
            // Cancelled: what running tasks still deliver is not kept.
            parts.missing = 0;
            parts.values = Vec::new();
            parts.seen = Vec::new();
            return;
        }
        let before = parts.missing;
        for (index, r) in (start..).zip(results) {
            match parts.seen.get_mut(index) {
                Some(seen @ false) => *seen = true,
                _ => continue,
            }
            parts.missing -= 1;
            match r {
                Ok(v) => parts.values[index] = Some(v),
                Err(e) => parts.record_error(index, e),
            }
        }
        self.out.ticket().finished(before - parts.missing);
        if parts.missing == 0 {
            self.finish(&mut parts);
        }
    }
}
