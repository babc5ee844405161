//! `Pool`: Python's `multiprocessing.Pool` methods, written once over any backend.

use crate::backend::seam::Submit;
use crate::backend::{Backend, Batch, Encoder, Runs};
use crate::cancel::Pending;
use crate::config::Builder;
use crate::error::{Error, Result};
use crate::imap::{Imap, Order};
use crate::result::{AsyncResult, MapSink};
use crate::sink::{Registry, Sink};
use crate::task::Task;
use std::sync::Arc;

/// A pool of workers running tasks, like Python's `multiprocessing.Pool`.
///
/// The backend is chosen when the pool is made: [`Pool::threads`],
/// [`Pool::processes`], or `Pool::mpi` (feature `mpi`). The methods are the same on
/// all of them. Dropping a pool closes it and waits for its tasks (Python's `with`
/// block, minus the lost results).
///
/// ```
/// use fondo::Pool;
/// fn pow(b: u64, e: u32) -> u64 { b.pow(e) }
///
/// let pool = Pool::threads(2)?;
/// assert_eq!(pool.starmap(pow, [(2, 10), (3, 4)])?, [1024, 81]);
/// assert_eq!(pool.apply(pow, (2, 3))?, 8);
/// # Ok::<(), fondo::Error>(())
/// ```
pub struct Pool<B: Backend> {
    backend: B,
    registry: Registry,
}

impl<B: Backend> std::fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("backend", &std::any::type_name::<B>())
            .field("workers", &self.workers())
            .finish()
    }
}

impl Pool<crate::thread::Threads> {
    /// A builder for pools with more options than the worker count.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl<B: Backend> Pool<B> {
    pub(crate) fn from_backend(backend: B) -> Self {
        Pool {
            backend,
            registry: Registry::default(),
        }
    }

    /// The backend, for backend-specific extras.
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.backend.shape().workers
    }

    /// Applies `f` to every item and returns the results in input order, like
    /// Python's `Pool.map`. The first failing task's error is returned (by input
    /// position), as [`Error::Task`] with that position when the task itself
    /// failed; use [`imap`](Self::imap) to see every outcome.
    ///
    /// ```
    /// use fondo::{Error, Pool};
    /// fn inverse(x: i64) -> i64 { 1000 / x }
    ///
    /// let pool = Pool::threads(2)?;
    /// assert_eq!(pool.map(inverse, [1, 2, 4])?, [1000, 500, 250]);
    /// let e = pool.map(inverse, -5..5).unwrap_err();
    /// assert_eq!(e.index(), Some(5)); // the input 0
    /// assert!(matches!(e.inner(), Error::Panicked { .. }));
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn map<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        F: Fn(T) -> R + Task<(T,), Output = R>,
        B: Runs<F, (T,)>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, (T,)>>::ACCEPTS;
        self.starmap_by(f, items.into_iter().map(|x| (x,)), Encoder::Caller)
            .get()
    }

    /// Like [`map`](Self::map) without waiting: one `AsyncResult` for the whole list.
    ///
    /// It returns without encoding big arguments (on processes and MPI): the
    /// caller encodes what is small and hands the rest to the pool's encoder
    /// thread, so an async runtime's thread is never held by a big submission.
    /// [`cancel`](AsyncResult::cancel) cancels the tasks not started yet.
    ///
    /// ```
    /// use fondo::Pool;
    /// fn len(b: serde_bytes::ByteBuf) -> usize { b.len() }
    ///
    /// let pool = Pool::processes(2)?;
    /// let big = (0..8).map(|_| serde_bytes::ByteBuf::from(vec![7u8; 4 << 20]));
    /// let r = pool.map_async(len, big);          // returns before 32 MiB are encoded
    /// assert_eq!(r.get()?, [4 << 20; 8]);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn map_async<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> AsyncResult<Vec<R>>
    where
        F: Fn(T) -> R + Task<(T,), Output = R>,
        B: Runs<F, (T,)>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, (T,)>>::ACCEPTS;
        self.starmap_async(f, items.into_iter().map(|x| (x,)))
    }

    #[cfg(any(all(feature = "process", target_os = "linux"), feature = "mpi"))]
    /// Applies `f(&context, item)` to every item, in input order: `map` for tasks
    /// that need run-time context beside their argument. The context travels as a
    /// [`Shared`](crate::Shared) value: once to each worker process, never with
    /// each task (threads use it in place). See [`crate::shared`].
    ///
    /// ```
    /// use fondo::{Pool, Shared};
    ///
    /// fn scale(k: &u64, x: u64) -> u64 { k * x }
    ///
    /// let pool = Pool::processes(2)?;
    /// let k = Shared::new(3u64)?;
    /// assert_eq!(pool.map_with(&k, scale, 0..5)?, [0, 3, 6, 9, 12]);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn map_with<C, F, T, R>(
        &self,
        context: &crate::Shared<C>,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>>
    where
        C: ?Sized + crate::shared::Shareable + 'static,
        F: Fn(&C, T) -> R + Send + Sync + 'static,
        B: Runs<crate::shared::WithContext<F, C>, (crate::Shared<C>, T)>,
        R: Send + 'static,
    {
        let () = <B as Submit<crate::shared::WithContext<F, C>, (crate::Shared<C>, T)>>::ACCEPTS;
        let items = items.into_iter().map(|item| (context.clone(), item));
        self.starmap(crate::shared::WithContext::new(f), items)
    }

    /// Applies `f` to every tuple, spread over its arguments, like Python's
    /// `Pool.starmap`: `starmap(pow, [(2, 10)])` computes `pow(2, 10)`.
    pub fn starmap<F, Args, R>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R>>
    where
        F: Task<Args, Output = R>,
        B: Runs<F, Args>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, Args>>::ACCEPTS;
        self.starmap_by(f, items, Encoder::Caller).get()
    }

    /// Like [`starmap`](Self::starmap) without waiting; like
    /// [`map_async`](Self::map_async), it leaves big arguments to the pool to encode.
    pub fn starmap_async<F, Args, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> AsyncResult<Vec<R>>
    where
        F: Task<Args, Output = R>,
        B: Runs<F, Args>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, Args>>::ACCEPTS;
        self.starmap_by(f, items, Encoder::Pool)
    }

    /// `starmap_async`, its arguments encoded by `encoder`.
    fn starmap_by<F, Args, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        encoder: Encoder,
    ) -> AsyncResult<Vec<R>>
    where
        F: Task<Args, Output = R>,
        B: Runs<F, Args>,
        R: Send + 'static,
    {
        let items: Vec<Args> = items.into_iter().collect();
        let (result, sink) = MapSink::new(items.len());
        self.serve(&result);
        self.track(sink.clone());
        let sizes = match self.backend.shape().chunksize {
            Some(chunk) => Chunking::Fixed(chunk),
            None => Chunking::Guided {
                workers: self.workers(),
            },
        };
        self.submit(&Arc::new(f), split(items, sizes, sink), encoder);
        result
    }

    /// Runs `f(args…)` on a worker and waits for it, like Python's `Pool.apply`.
    pub fn apply<F, Args, R>(&self, f: F, args: Args) -> Result<R>
    where
        F: Task<Args, Output = R>,
        B: Runs<F, Args>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, Args>>::ACCEPTS;
        self.apply_by(f, args, Encoder::Caller).get()
    }

    /// Starts `f(args…)` on a worker and returns at once, like Python's
    /// `Pool.apply_async`; read the outcome from the `AsyncResult` (blocking, with
    /// a timeout, by callback, by `.await`, or with [`wait`](crate::wait) and
    /// [`as_completed`](crate::as_completed) among others), or
    /// [`cancel`](AsyncResult::cancel) it. Big arguments are left to the pool to
    /// encode, as in [`map_async`](Self::map_async).
    pub fn apply_async<F, Args, R>(&self, f: F, args: Args) -> AsyncResult<R>
    where
        F: Task<Args, Output = R>,
        B: Runs<F, Args>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, Args>>::ACCEPTS;
        self.apply_by(f, args, Encoder::Pool)
    }

    /// `apply_async`, its arguments encoded by `encoder`.
    fn apply_by<F, Args, R>(&self, f: F, args: Args, encoder: Encoder) -> AsyncResult<R>
    where
        F: Task<Args, Output = R>,
        B: Runs<F, Args>,
        R: Send + 'static,
    {
        let (result, slot) = AsyncResult::pending();
        self.serve(&result);
        self.track(slot.clone());
        let sink: Arc<dyn Sink<R>> = slot;
        self.submit(
            &Arc::new(f),
            vec![Batch {
                items: vec![args],
                start: 0,
                sink,
            }],
            encoder,
        );
        result
    }

    /// Ties a result to this pool: for helping while waiting, and for `cancel()`.
    fn serve<R: Send + 'static>(&self, result: &AsyncResult<R>) {
        result.served_by(self.backend.helper(), self.backend.withdrawer());
    }

    /// A lazy, ordered `map`: yields each task's outcome in input order, consuming
    /// the input only as workers free up, so an endless iterator is fine.
    pub fn imap<F, I, R>(&self, f: F, items: I) -> Imap<'_, B, F, I::IntoIter, R>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> R + Task<(I::Item,), Output = R>,
        B: Runs<F, (I::Item,)>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, (I::Item,)>>::ACCEPTS;
        Imap::new(self, f, items.into_iter(), Order::Input)
    }

    /// Like [`imap`](Self::imap) but yields outcomes as they finish, tagged with
    /// nothing: order is completion order, as in Python.
    pub fn imap_unordered<F, I, R>(&self, f: F, items: I) -> Imap<'_, B, F, I::IntoIter, R>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> R + Task<(I::Item,), Output = R>,
        B: Runs<F, (I::Item,)>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, (I::Item,)>>::ACCEPTS;
        Imap::new(self, f, items.into_iter(), Order::Completion)
    }

    /// [`imap`](Self::imap) on a shared pool: the iterator holds the `Arc`, not a
    /// borrow, so it can move into a thread or an async task (`tokio::spawn`),
    /// and be read there with [`Imap::next_async`] (or as a `Stream`, feature
    /// `stream`). The pool lives as long as its last `Arc`; dropping that one
    /// closes and joins it, as dropping a pool does — so keep one outside async
    /// code, where a join may block.
    ///
    /// ```
    /// use std::sync::Arc;
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = Arc::new(fondo::Pool::processes(2)?);
    /// let squares = pool.imap_owned(square, 0..100);
    /// let total = std::thread::spawn(move || squares.map(|r| r.unwrap()).sum::<u64>());
    /// assert_eq!(total.join().unwrap(), 328_350);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn imap_owned<F, I, R>(
        self: &Arc<Self>,
        f: F,
        items: I,
    ) -> Imap<'static, B, F, I::IntoIter, R>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> R + Task<(I::Item,), Output = R>,
        B: Runs<F, (I::Item,)>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, (I::Item,)>>::ACCEPTS;
        Imap::shared(self.clone(), f, items.into_iter(), Order::Input)
    }

    /// [`imap_unordered`](Self::imap_unordered) on a shared pool, like
    /// [`imap_owned`](Self::imap_owned).
    pub fn imap_unordered_owned<F, I, R>(
        self: &Arc<Self>,
        f: F,
        items: I,
    ) -> Imap<'static, B, F, I::IntoIter, R>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> R + Task<(I::Item,), Output = R>,
        B: Runs<F, (I::Item,)>,
        R: Send + 'static,
    {
        let () = <B as Submit<F, (I::Item,)>>::ACCEPTS;
        Imap::shared(self.clone(), f, items.into_iter(), Order::Completion)
    }

    /// Stops taking new tasks; those submitted still run (Python's `close()`).
    pub fn close(&self) {
        self.backend.close();
    }

    /// Closes the pool and waits until every submitted task has finished and the
    /// workers have exited (Python needs `close()` first; here `join` implies it).
    pub fn join(&self) {
        self.backend.close();
        self.backend.join();
    }

    /// Closes the pool and waits for its tasks, like Python's
    /// `Executor.shutdown(wait=True, cancel_futures=…)`: with [`Pending::Finish`]
    /// every submitted task runs (as [`join`](Self::join)); with
    /// [`Pending::Cancel`] the tasks no worker has started are cancelled — each
    /// gets `Err(Cancelled)` at once and never runs — while the running ones
    /// finish. Unlike [`terminate`](Self::terminate), no running task is cut short.
    ///
    /// ```
    /// use fondo::{Error, Pending, Pool};
    /// use std::sync::{Mutex, mpsc};
    ///
    /// let pool = Pool::threads(1)?;
    /// let (started, is_started) = mpsc::channel::<()>();
    /// let (release, wait) = mpsc::channel::<()>();
    /// let wait = Mutex::new(wait);
    /// let running = pool.apply_async(move || { started.send(()).unwrap(); wait.lock().unwrap().recv().ok(); 1 }, ());
    /// is_started.recv().unwrap(); // the only worker is busy
    /// let queued: Vec<_> = (0..5).map(|i| pool.apply_async(move || i, ())).collect();
    /// // Once the last one is cancelled, let the running task finish.
    /// let last = pool.apply_async(|| 5, ()).on_done(move |_| release.send(()).unwrap());
    /// pool.shutdown(Pending::Cancel);
    /// assert_eq!(running.get()?, 1);
    /// assert!(queued.iter().chain([&last]).all(|r| r.cancelled()));
    /// assert!(matches!(pool.apply(|| 0, ()), Err(Error::Closed)));
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn shutdown(&self, pending: Pending) {
        if pending == Pending::Cancel {
            self.backend.cancel_pending();
        }
        self.join();
    }

    /// Stops the workers now: every task not finished gets `Err(Terminated)` at
    /// once, so no `get()` can hang (Python's `.get()` after terminate does).
    pub fn terminate(&self) {
        self.backend.terminate();
        self.registry.abort_all(&Error::Terminated);
    }

    /// Remembers a submission's sink so `terminate()` can fail what it still waits for.
    pub(crate) fn track(&self, sink: Arc<dyn crate::sink::Abortable>) {
        self.registry.track(sink);
    }

    /// Queues batches whose sink is already tracked.
    pub(crate) fn submit<F, Args>(
        &self,
        f: &Arc<F>,
        batches: Vec<Batch<Args, F::Output>>,
        encoder: Encoder,
    ) where
        F: Task<Args>,
        B: Runs<F, Args>,
    {
        self.backend.submit(f, batches, encoder);
    }
}

impl<B: Backend> Drop for Pool<B> {
    /// Close + join, so every `AsyncResult` taken before the drop gets its value.
    fn drop(&mut self) {
        self.backend.close();
        self.backend.join();
    }
}

/// How a list of tasks is cut into batches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunking {
    /// Every batch this size (the user's `chunksize`).
    Fixed(usize),
    /// The automatic rule: each batch is a quarter of the remaining tasks' fair share,
    /// `ceil(remaining / (4 × workers))` — Python's first chunk, then shrinking (like
    /// OpenMP's guided schedule). Large batches amortise the per-batch cost on tiny
    /// tasks; the small ones at the end keep every worker busy to the last task when
    /// tasks differ in cost.
    Guided { workers: usize },
}

impl Chunking {
    fn next(self, remaining: usize) -> usize {
        match self {
            Chunking::Fixed(n) => n.max(1),
            Chunking::Guided { workers } => remaining.div_ceil(4 * workers.max(1)).max(1),
        }
    }
}

/// Cuts `items` into batches feeding one sink.
pub(crate) fn split<Args, R>(
    items: Vec<Args>,
    sizes: Chunking,
    sink: Arc<dyn Sink<R>>,
) -> Vec<Batch<Args, R>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let total = items.len();
    let mut rest = items.into_iter();
    while start < total {
        let items: Vec<Args> = rest.by_ref().take(sizes.next(total - start)).collect();
        let len = items.len();
        batches.push(Batch {
            items,
            start,
            sink: sink.clone(),
        });
        start += len;
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::Chunking;

    fn sizes(total: usize, c: Chunking) -> Vec<usize> {
        let mut out = Vec::new();
        let mut done = 0;
        while done < total {
            let n = c.next(total - done).min(total - done);
            out.push(n);
            done += n;
        }
        out
    }

    #[test]
    fn guided_chunks_start_at_pythons_size_and_shrink_to_one() {
        let s = sizes(1000, Chunking::Guided { workers: 2 });
        assert_eq!(s[0], 125); // Python's chunksize for 1000 tasks on 2 workers
        assert!(s.windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(*s.last().unwrap_or(&0), 1);
        assert_eq!(s.iter().sum::<usize>(), 1000);
        assert!(s.len() < 60, "{} batches", s.len());
    }

    #[test]
    fn fixed_chunks_are_the_given_size() {
        assert_eq!(sizes(10, Chunking::Fixed(4)), [4, 4, 2]);
        assert_eq!(sizes(3, Chunking::Fixed(0)), [1, 1, 1]);
    }
}
