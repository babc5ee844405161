//! `AsyncResult`: the handle `apply_async` and `map_async` return, readable by
//! blocking, with a timeout, through callbacks or as a `Future`.

use crate::error::{Error, Result};
use crate::help::{Help, Helping};
use crate::monitor::Monitor;
use crate::sink::{Abortable, Sink};
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

    /// Lets threads waiting for this result do the pool's work meanwhile.
    pub(crate) fn helped_by(&self, helper: Option<Weak<dyn Help>>) {
        if let Some(helper) = helper {
            let _ = self.slot.helper.set(helper);
        }
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

    /// True once the task has finished (successfully or not).
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
}

enum State<R> {
    Pending {
        waker: Option<Waker>,
        callbacks: Vec<Callback<R>>,
    },
    /// Callbacks are running outside the lock; `late` holds callbacks registered
    /// meanwhile, run before the outcome is stored.
    Completing {
        late: Vec<Callback<R>>,
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
            }),
            done: AtomicBool::new(false),
            helper: OnceLock::new(),
        }
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
            match std::mem::replace(&mut *st, State::Completing { late: Vec::new() }) {
                State::Pending { waker, callbacks } => (waker, callbacks),
                other => {
                    *st = other;
                    return;
                }
            }
        };
        self.run_then_store(callbacks, result);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Runs `callbacks` (and any registered while they run) unlocked, so they may use
    /// this result's methods, then stores the outcome and wakes waiters.
    fn run_then_store(&self, mut callbacks: Vec<Callback<R>>, result: Result<R>) {
        loop {
            for cb in callbacks.drain(..) {
                run_callback(cb, &result);
            }
            let mut st = self.lock();
            if let State::Completing { late } = &mut *st
                && !late.is_empty()
            {
                callbacks = std::mem::take(late);
                continue;
            }
            *st = State::Done(result);
            self.done.store(true, Ordering::Release);
            self.state.publish(st);
            return;
        }
    }

    fn on_done(&self, callback: Callback<R>) {
        let mut st = self.lock();
        match &mut *st {
            State::Pending { callbacks, .. } => callbacks.push(callback),
            State::Completing { late } => late.push(callback),
            State::Done(_) => {
                let previous = std::mem::replace(&mut *st, State::Completing { late: Vec::new() });
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
        eprintln!("fondo: a result callback panicked: {}", caught.message);
    }
}

impl<R: Send> Abortable for ResultCell<R> {
    fn abort(&self, error: Error) {
        self.complete(Err(error));
    }
    fn is_complete(&self) -> bool {
        self.done.load(Ordering::Acquire)
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
            Some((_, e)) => Err(e),
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
}

impl<R: Send + 'static> Sink<R> for MapSink<R> {
    fn put(&self, start: usize, results: Vec<Result<R>>) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        if parts.missing == 0 {
            return;
        }
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
        if parts.missing == 0 {
            self.finish(&mut parts);
        }
    }
}
