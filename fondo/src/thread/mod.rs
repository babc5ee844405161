//! The thread backend: workers are threads of this process, tasks any closure.

use crate::backend::seam::{Submit, Workers};
use crate::backend::{Backend, Batch, Encoder};
use crate::cancel::{self, Ticket, Withdraw};
use crate::config::{Builder, Config};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::queue::{JobQueue, Phase};
use crate::task::Task;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// Marker and state of a pool whose workers are threads (`Pool::threads`).
///
/// Tasks may be any `Fn` closure, capturing or not, with any `Send` data: nothing
/// is serialised. A panicking task gives `Err(Panicked)` and its thread lives on.
/// A thread cannot be killed, so per-task timeouts need the process backend.
pub struct Threads {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("workers", &self.shared.config.workers)
            .finish()
    }
}

struct Shared {
    queue: JobQueue<Box<dyn ThreadJob>>,
    config: Config,
    /// Live worker threads; recycled workers add their replacement here.
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// A batch bound to its function, ready to run on any worker thread.
trait ThreadJob: Send {
    /// Runs every task, delivering the outcomes, unless they were cancelled;
    /// returns how many ran.
    fn run(self: Box<Self>) -> usize;
    /// Fails every task without running it.
    fn fail(self: Box<Self>, error: &Error);
    /// The cancel ticket of its submission, if it has one.
    fn ticket(&self) -> Option<&Ticket>;
}

struct Job<F: Task<Args>, Args> {
    f: Arc<F>,
    batch: Batch<Args, F::Output>,
}

impl crate::queue::Refusable for Box<dyn ThreadJob> {
    fn refuse(self, error: &Error) {
        self.fail(error);
    }
}

impl<F: Task<Args>, Args: Send> ThreadJob for Job<F, Args>
where
    F::Output: Send,
{
    fn run(self: Box<Self>) -> usize {
        let Job { f, batch } = *self;
        let ran = batch.items.len();
        // Where a task starts on threads: it runs, or was cancelled before (`cancel.rs`).
        if batch.sink.ticket().is_some_and(|t| !t.claim(ran)) {
            return 0;
        }
        let results = batch
            .items
            .into_iter()
            .map(|args| crate::panic::catch(|| f.call(args)).map_err(Error::from))
            .collect();
        batch.sink.put(batch.start, results);
        ran
    }

    fn fail(self: Box<Self>, error: &Error) {
        self.batch.fail(error);
    }

    fn ticket(&self) -> Option<&Ticket> {
        self.batch.sink.ticket()
    }
}

impl Withdraw for Shared {
    fn withdraw(&self, ticket: &Ticket) -> bool {
        // Dropped without an outcome: the result is `Err(Cancelled)` as a whole.
        !self
            .queue
            .withdraw(|job| cancel::same(job.ticket(), ticket))
            .is_empty()
    }
}

impl Pool<Threads> {
    /// A pool of `n` worker threads, like `multiprocessing.pool.ThreadPool(n)`.
    ///
    /// ```
    /// let pool = fondo::Pool::threads(2)?;
    /// let squares = pool.map(|x: u64| x * x, 1..=4)?;
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn threads(n: usize) -> Result<Self> {
        Builder::default().workers(n).threads()
    }
}

impl Builder {
    /// Builds a pool of worker threads with these options.
    pub fn threads(self) -> Result<Pool<Threads>> {
        let config = self.settle()?;
        if config.task_timeout.is_some() {
            return Err(Error::Config(
                "task_timeout needs Pool::processes or Pool::mpi: a thread cannot be killed".into(),
            ));
        }
        let shared = Arc::new(Shared {
            queue: JobQueue::default(),
            handles: Mutex::new(Vec::with_capacity(config.workers)),
            config,
        });
        let backend = Threads { shared };
        for _ in 0..backend.shared.config.workers {
            if let Err(e) = start_worker(&backend.shared) {
                // Those already started must not outlive the pool that failed.
                backend.close();
                backend.join();
                return Err(e);
            }
        }
        Ok(Pool::from_backend(backend))
    }
}

/// Starts one worker thread and records its handle.
fn start_worker(shared: &Arc<Shared>) -> Result<()> {
    let for_thread = shared.clone();
    let handle = std::thread::Builder::new()
        .name("fondo-worker".into())
        .spawn(move || worker_loop(for_thread))?;
    shared
        .handles
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(handle);
    Ok(())
}

fn worker_loop(shared: Arc<Shared>) {
    if let Some(init) = shared.config.initializer
        && let Err(caught) = crate::panic::catch(init)
    {
        // No task runs uninitialised: the pool is broken, as `concurrent.futures`
        // makes a thread pool whose initializer failed.
        let broken = Error::InitializerFailed {
            message: match caught.location {
                Some(at) => format!("panicked at {at}: {}", caught.message),
                None => format!("panicked: {}", caught.message),
            },
        };
        for job in shared.queue.break_with(broken.clone()) {
            job.fail(&broken);
        }
        return;
    }
    let mut ran = 0;
    while let Some(job) = shared.queue.pop_blocking() {
        ran += job.run();
        if shared
            .config
            .max_tasks_per_child
            .is_some_and(|max| ran >= max)
        {
            // Recycle: a fresh thread (and initializer) takes this one's place.
            if (shared.queue.phase() == Phase::Open || !shared.queue.is_empty())
                && let Err(e) = start_worker(&shared)
            {
                crate::diag::diag!("fondo: could not replace a recycled worker thread: {e}");
                continue;
            }
            return;
        }
    }
}

impl Backend for Threads {}

impl Workers for Threads {
    fn shape(&self) -> crate::backend::Shape {
        self.shared.config.shape()
    }
    fn accepts_work(&self) -> bool {
        self.shared.queue.accepts_work()
    }
    fn close(&self) {
        self.shared.queue.close();
    }
    fn join(&self) {
        if self.shared.queue.phase() == Phase::Terminated {
            // A terminated pool's threads may be stuck in a task that never ends; they
            // finish on their own and touch only results already failed. Don't wait.
            self.shared
                .handles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            return;
        }
        // Recycling adds handles while we join: drain until none are left.
        loop {
            let handles = std::mem::take(
                &mut *self
                    .shared
                    .handles
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if handles.is_empty() {
                return;
            }
            crate::join::join_others(handles);
        }
    }
    fn terminate(&self) {
        for job in self.shared.queue.terminate() {
            job.fail(&Error::Terminated);
        }
    }
    fn withdrawer(&self) -> Option<std::sync::Weak<dyn Withdraw>> {
        let shared: Arc<dyn Withdraw> = self.shared.clone();
        Some(Arc::downgrade(&shared))
    }
    fn cancel_pending(&self) {
        for job in self.shared.queue.close_and_cancel() {
            job.fail(&Error::Cancelled);
        }
    }
}

impl<F, Args> Submit<F, Args> for Threads
where
    F: Task<Args>,
    F::Output: Send + 'static,
    Args: Send + 'static,
{
    fn submit(&self, f: &Arc<F>, batches: Vec<Batch<Args, F::Output>>, _: Encoder) {
        let jobs = batches.into_iter().map(|batch| {
            Box::new(Job {
                f: f.clone(),
                batch,
            }) as Box<dyn ThreadJob>
        });
        self.shared.queue.offer(jobs);
    }
}
