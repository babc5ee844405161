//! [`wait`] and [`as_completed`]: Python's `concurrent.futures.wait` and
//! `as_completed`, over any set of results — from one pool or several, of any
//! backend, finished already or not.
//!
//! Nothing polls: each call makes one [`WatchSet`](seam::WatchSet) (a `Monitor`,
//! `monitor.rs`) and registers it with every result it watches; a result, once its
//! outcome is stored, appends its index there and wakes the waiter. Results
//! finished already append theirs at once. While it spins before sleeping, the
//! waiting thread reads the answers of the pools behind the results itself
//! (`help.rs`), as `get()` does.

use crate::error::{Error, Result};
use crate::help::{Help, Helping};
use crate::spin::Spin;
use seam::{WatchSet, Watched};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The parts of a watchable result only fondo sees. Public traits in a private
/// module: [`Watchable`] stays sealed.
pub(crate) mod seam {
    use crate::help::Help;
    use crate::monitor::Monitor;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Weak};

    /// What [`wait`](super::wait) and [`as_completed`](super::as_completed) watch.
    pub trait Watched {
        /// The cell the outcome lands in.
        fn cell(&self) -> &dyn WatchCell;
    }

    /// A result's cell, as a watcher sees it.
    pub trait WatchCell: Send + Sync {
        /// Registers `set`: once the outcome is stored (at once if it is), `index`
        /// is appended to it.
        fn watch(&self, set: &Arc<WatchSet>, index: usize);
        /// Forgets `set`, if it is still registered.
        fn unwatch(&self, set: &Arc<WatchSet>);
        /// True once the outcome is stored.
        fn is_done(&self) -> bool;
        /// True if the outcome is an error other than `Cancelled`.
        fn failed(&self) -> bool;
        /// The pool a waiting thread may help.
        fn helper(&self) -> Option<&Weak<dyn Help>>;
    }

    /// The indices of the watched results that completed, in the order they did.
    #[derive(Debug, Default)]
    pub struct WatchSet {
        pub(super) done: Monitor<Vec<usize>>,
        /// Mirrors `done.len()`, for spinning without the lock.
        pub(super) count: AtomicUsize,
    }

    impl WatchSet {
        /// Result `index` has its outcome.
        pub(crate) fn notify(&self, index: usize) {
            let mut done = self.done.lock();
            done.push(index);
            self.count.store(done.len(), Ordering::Release);
            self.done.publish(done);
        }
    }
}

/// Something [`wait`] and [`as_completed`] can watch: an
/// [`AsyncResult`](crate::AsyncResult) of any type, a reference or box to one, or
/// a `&dyn Watchable` (to watch results of different types together). Sealed.
///
/// ```
/// use fondo::{Pool, ReturnWhen, Watchable};
///
/// let pool = Pool::threads(2)?;
/// let number = pool.apply_async(|| 42, ());
/// let text = pool.apply_async(|| "done".to_string(), ());
/// let both: [&dyn Watchable; 2] = [&number, &text];
/// let waited = fondo::wait(both, ReturnWhen::AllCompleted, None);
/// assert_eq!(waited.done, [0, 1]);
/// # Ok::<(), fondo::Error>(())
/// ```
pub trait Watchable: Watched {}

impl<T: Watched + ?Sized> Watchable for T {}

impl<T: Watched + ?Sized> Watched for &T {
    fn cell(&self) -> &dyn seam::WatchCell {
        (**self).cell()
    }
}

impl<T: Watched + ?Sized> Watched for &mut T {
    fn cell(&self) -> &dyn seam::WatchCell {
        (**self).cell()
    }
}

impl<T: Watched + ?Sized> Watched for Box<T> {
    fn cell(&self) -> &dyn seam::WatchCell {
        (**self).cell()
    }
}

impl<T: Watched + ?Sized> Watched for Arc<T> {
    fn cell(&self) -> &dyn seam::WatchCell {
        (**self).cell()
    }
}

/// When [`wait`] returns: Python's `return_when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as any result is complete (`FIRST_COMPLETED`).
    FirstCompleted,
    /// As soon as any result is an error — a cancelled one does not count — or
    /// once all are complete (`FIRST_EXCEPTION`).
    FirstException,
    /// Once every result is complete (`ALL_COMPLETED`).
    AllCompleted,
}

/// What [`wait`] found: the positions (in the order the results were given) of
/// those complete and of those still pending when it returned, each ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waited {
    /// Results complete (a value, an error, or cancelled).
    pub done: Vec<usize>,
    /// Results not complete yet.
    pub pending: Vec<usize>,
}

impl Waited {
    /// True when every result was complete.
    pub fn all_done(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Waits until `return_when` holds of `results` or `timeout` passes (`None`: no
/// limit), and says which are complete: Python's `concurrent.futures.wait`. A
/// timeout is no error — the results still pending are listed in `pending`; read
/// their outcomes later.
///
/// The results may come from different pools and backends, and be complete
/// already. Pass them by reference (`&results`: they stay yours) and read them
/// with `get_timeout` or `ready()`, or by value.
///
/// ```
/// use fondo::{Pool, ReturnWhen};
/// use std::time::Duration;
///
/// fn slow_square(x: u64) -> u64 { std::thread::sleep(Duration::from_millis(10 * x)); x * x }
///
/// let pool = Pool::processes(2)?;
/// let results: Vec<_> = (1..=4).map(|x| pool.apply_async(slow_square, (x,))).collect();
/// let first = fondo::wait(&results, ReturnWhen::FirstCompleted, None);
/// assert!(!first.done.is_empty());
/// let all = fondo::wait(&results, ReturnWhen::AllCompleted, Some(Duration::from_secs(60)));
/// assert_eq!((all.done, all.pending), (vec![0, 1, 2, 3], vec![]));
/// # Ok::<(), fondo::Error>(())
/// ```
pub fn wait<W: Watchable>(
    results: impl IntoIterator<Item = W>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> Waited {
    let items: Vec<W> = results.into_iter().collect();
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let set = Arc::new(WatchSet::default());
    for (i, item) in items.iter().enumerate() {
        item.cell().watch(&set, i);
    }
    let helpers = helpers_of(items.iter().map(|w| w.cell()));
    let mut seen = 0;
    let mut failed = false;
    loop {
        let news: Vec<usize> = set.done.lock()[seen..].to_vec();
        seen += news.len();
        if return_when == ReturnWhen::FirstException {
            failed |= news.iter().any(|&i| items[i].cell().failed());
        }
        let enough = match return_when {
            ReturnWhen::FirstCompleted => seen > 0,
            ReturnWhen::FirstException => failed,
            ReturnWhen::AllCompleted => false,
        };
        if enough || seen >= items.len() || !wait_for_news(&set, seen, &helpers, deadline) {
            break;
        }
    }
    for item in &items {
        item.cell().unwatch(&set);
    }
    let (done, pending) = (0..items.len()).partition(|&i| items[i].cell().is_done());
    Waited { done, pending }
}

/// Yields each result as it completes, with its position among `results`:
/// Python's `concurrent.futures.as_completed`. With a `timeout`, the whole
/// iteration is bounded by it: once it passes, the iterator yields one
/// `Err(Error::WaitTimeout)` and ends; [`AsCompleted::into_pending`] hands back
/// the results still pending.
///
/// Give the results by value to get them back one by one, ready to `get()`
/// without waiting; or by reference (`&results`) to keep them where they are. A
/// result given twice (by reference) is yielded once, at its first position.
///
/// ```
/// use fondo::Pool;
///
/// fn cube(x: u64) -> u64 { x * x * x }
///
/// let pool = Pool::processes(2)?;
/// let results: Vec<_> = (0..8).map(|x| pool.apply_async(cube, (x,))).collect();
/// let mut sum = 0;
/// for done in fondo::as_completed(results, None) {
///     let (input, result) = done?;   // `Err(WaitTimeout)` only with a timeout
///     assert_eq!(result.get()?, cube(input as u64));
///     sum += input;
/// }
/// assert_eq!(sum, 28); // each exactly once
/// # Ok::<(), fondo::Error>(())
/// ```
pub fn as_completed<W: Watchable>(
    results: impl IntoIterator<Item = W>,
    timeout: Option<Duration>,
) -> AsCompleted<W> {
    let mut items: Vec<Option<W>> = results.into_iter().map(Some).collect();
    // A result given twice is yielded once, at its first position (as Python's).
    let mut seen = std::collections::HashSet::new();
    for item in items.iter_mut() {
        if let Some(w) = item
            && !seen.insert(std::ptr::from_ref(w.cell()).cast::<()>())
        {
            *item = None;
        }
    }
    let set = Arc::new(WatchSet::default());
    for (i, item) in items.iter().enumerate() {
        if let Some(item) = item {
            item.cell().watch(&set, i);
        }
    }
    let helpers = helpers_of(items.iter().flatten().map(|w| w.cell()));
    AsCompleted {
        left: items.iter().flatten().count(),
        items,
        set,
        seen: 0,
        deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
        timeout,
        timed_out: false,
        helpers,
    }
}

/// The iterator [`as_completed`] returns: `(position, result)` in completion order.
pub struct AsCompleted<W: Watchable> {
    items: Vec<Option<W>>,
    set: Arc<WatchSet>,
    /// Completions already yielded (or skipped) from `set`.
    seen: usize,
    /// Results not yielded yet.
    left: usize,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    timed_out: bool,
    helpers: Vec<Weak<dyn Help>>,
}

impl<W: Watchable> std::fmt::Debug for AsCompleted<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .field("timeout", &self.timeout)
            .field("timed_out", &self.timed_out)
            .finish()
    }
}

impl<W: Watchable> AsCompleted<W> {
    /// The results not yielded yet, with their positions: after a timeout, to wait
    /// for them again, cancel them or read them later.
    ///
    /// ```
    /// use fondo::{Error, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::threads(1)?;
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let gate = std::sync::Mutex::new(gate);
    /// let slow = pool.apply_async(move || gate.lock().unwrap().recv().is_ok(), ());
    /// let mut it = fondo::as_completed(vec![slow], Some(Duration::from_millis(10)));
    /// assert!(matches!(it.next(), Some(Err(Error::WaitTimeout { .. }))));
    /// assert!(it.next().is_none());
    /// let rest = it.into_pending();
    /// assert_eq!(rest.len(), 1);
    /// release.send(()).unwrap();
    /// let (_, slow) = rest.into_iter().next().unwrap();
    /// assert!(slow.get()?);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn into_pending(mut self) -> Vec<(usize, W)> {
        let pending: Vec<(usize, W)> = std::mem::take(&mut self.items)
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| Some((i, w?)))
            .collect();
        for (_, w) in &pending {
            w.cell().unwatch(&self.set);
        }
        pending
    }

    /// True once the timeout has passed.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl<W: Watchable> Iterator for AsCompleted<W> {
    type Item = Result<(usize, W)>;

    fn next(&mut self) -> Option<Result<(usize, W)>> {
        if self.left == 0 || self.timed_out {
            return None;
        }
        loop {
            let next = self.set.done.lock().get(self.seen).copied();
            if let Some(i) = next {
                self.seen += 1;
                if let Some(w) = self.items.get_mut(i).and_then(Option::take) {
                    self.left -= 1;
                    return Some(Ok((i, w)));
                }
                continue;
            }
            if !wait_for_news(&self.set, self.seen, &self.helpers, self.deadline) {
                self.timed_out = true;
                return Some(Err(Error::WaitTimeout {
                    waited: self.timeout.unwrap_or_default(),
                }));
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.timed_out {
            return (0, Some(0));
        }
        let least = match self.timeout {
            Some(_) => self.left.min(1),
            None => self.left,
        };
        (least, Some(self.left))
    }
}

impl<W: Watchable> std::iter::FusedIterator for AsCompleted<W> {}

impl<W: Watchable> Drop for AsCompleted<W> {
    fn drop(&mut self) {
        for w in self.items.iter().flatten() {
            w.cell().unwatch(&self.set);
        }
    }
}

/// The distinct pools behind `cells` that a waiting thread may help.
fn helpers_of<'a>(cells: impl Iterator<Item = &'a dyn seam::WatchCell>) -> Vec<Weak<dyn Help>> {
    let mut helpers: Vec<Weak<dyn Help>> = Vec::new();
    for cell in cells.filter(|c| !c.is_done()) {
        if let Some(h) = cell.helper()
            && !helpers.iter().any(|known| Weak::ptr_eq(known, h))
        {
            helpers.push(h.clone());
        }
    }
    helpers
}

/// Waits (spinning first, reading the pools' answers meanwhile, then parked on
/// `set`) until `set` holds more than `seen` completions or `deadline` passes;
/// true if it does.
fn wait_for_news(
    set: &WatchSet,
    seen: usize,
    helpers: &[Weak<dyn Help>],
    deadline: Option<Instant>,
) -> bool {
    let news = || set.count.load(Ordering::Acquire) > seen;
    let mut spin = Spin::new();
    let mut helping: Option<Vec<Helping>> = None;
    while !news() && spin.again() {
        let helping =
            helping.get_or_insert_with(|| helpers.iter().filter_map(Helping::start).collect());
        // Help every pool once per round (no short cut: each may have answers).
        let arrived = helping.iter().fold(false, |any, h| h.help() | any);
        if arrived && deadline.is_none_or(|d| Instant::now() < d) {
            spin.reset();
        } else if helping.is_empty() {
            std::hint::spin_loop();
        }
    }
    if let Some(helping) = helping
        && !news()
    {
        // Pool threads read the answers while we sleep.
        for h in helping {
            h.stop_to_block();
        }
    }
    let (done, _) = set
        .done
        .park_until(set.done.lock(), deadline, |d| d.len() > seen);
    done.len() > seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AsyncResult;

    #[test]
    fn results_already_complete_are_seen_at_once() {
        let rs = [
            AsyncResult::completed(Ok(1)),
            AsyncResult::completed(Err(Error::Closed)),
        ];
        let waited = wait(&rs, ReturnWhen::AllCompleted, Some(Duration::ZERO));
        assert_eq!((waited.done, waited.pending), (vec![0, 1], vec![]));
        let order: Vec<usize> = as_completed(&rs, None)
            .map(|r| r.expect("no timeout").0)
            .collect();
        assert_eq!(order, [0, 1]);
    }

    #[test]
    fn nothing_to_wait_for_returns_at_once() {
        let none: Vec<AsyncResult<u8>> = Vec::new();
        assert_eq!(
            wait(&none, ReturnWhen::FirstCompleted, None),
            Waited::default()
        );
        assert!(as_completed(none, None).next().is_none());
    }

    #[test]
    fn a_watcher_is_forgotten_when_its_wait_returns() {
        let (pending, cell) = AsyncResult::<u8>::pending();
        for _ in 0..3 {
            let waited = wait([&pending], ReturnWhen::FirstCompleted, Some(Duration::ZERO));
            assert_eq!(waited.pending, [0]);
        }
        let it = as_completed([&pending], None);
        assert_eq!(cell.watchers(), 1);
        drop(it);
        assert_eq!(cell.watchers(), 0, "every watcher forgotten");
        cell.complete(Ok(1));
        assert!(pending.ready());
    }
}
