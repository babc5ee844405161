//! `Builder`: the options a pool is created with, shared by every backend.

use crate::error::{Error, Result};
use std::time::Duration;

/// The settled options a backend starts from.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) chunksize: Option<usize>,
    pub(crate) initializer: Option<fn()>,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) prefetch: usize,
    pub(crate) max_frame: usize,
    pub(crate) keep_freed_memory: bool,
    /// Threads each worker process's own thread pools get; `None`: the default
    /// (`process/parent/threads_env.rs`).
    pub(crate) threads_per_worker: Option<usize>,
}

/// Default cap on one wire frame: large enough for real payloads, small enough that a
/// corrupt length can never make a process allocate without bound.
pub(crate) const DEFAULT_MAX_FRAME: usize = 1 << 30;

/// Builds a pool with options beyond the worker count, like Python's
/// `Pool(processes, initializer, maxtasksperchild)` and more.
///
/// ```
/// use fondo::Pool;
/// fn double(x: u32) -> u32 { 2 * x }
///
/// let pool = Pool::builder().workers(2).chunksize(8).max_tasks_per_child(100).threads()?;
/// assert_eq!(pool.map(double, 0..4)?, [0, 2, 4, 6]);
/// # Ok::<(), fondo::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a Builder does nothing until .threads(), .processes() or .mpi() is called"]
pub struct Builder {
    workers: Option<usize>,
    chunksize: Option<usize>,
    initializer: Option<fn()>,
    max_tasks_per_child: Option<usize>,
    task_timeout: Option<Duration>,
    retries: u32,
    prefetch: Option<usize>,
    max_frame: Option<usize>,
    return_freed_memory: bool,
    threads_per_worker: Option<usize>,
}

impl Builder {
    /// Number of workers (default: [`cpu_count()`](crate::cpu_count)).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Tasks sent to a worker at a time by `map`/`starmap` and `imap`.
    ///
    /// Default for `map`/`starmap`: guided — the first batch is Python's
    /// `ceil(len / (4 × workers))`, each next one a quarter of the remaining tasks'
    /// fair share, down to 1, so tiny tasks travel in bulk and uneven ones still
    /// balance. Default for `imap`: 1, as in Python.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// A function every worker runs once when it starts (again after each recycle).
    /// A plain `fn` so it can cross into worker processes.
    pub fn initializer(mut self, f: fn()) -> Self {
        self.initializer = Some(f);
        self
    }

    /// Replace a worker after it has run this many tasks (Python's `maxtasksperchild`):
    /// a cure for tasks that leak memory.
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Kill a task's worker when the task runs longer than this; the task gets
    /// `Err(Timeout)`. Process and MPI backends only: a thread cannot be killed.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Run a task again, up to `n` times, when its worker dies under it
    /// (default 0: the task gets `Err(WorkerDied)`).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Chunks queued ahead in each worker so it never waits for the parent
    /// (default 2; 1 turns pipelining off).
    pub fn prefetch(mut self, chunks: usize) -> Self {
        self.prefetch = Some(chunks);
        self
    }

    /// Largest frame accepted on the wire, in bytes (default 1 GiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = Some(bytes);
        self
    }

    /// Have worker processes return memory their tasks free to the system at once,
    /// instead of keeping it for the next task while they are busy.
    ///
    /// By default a process worker on Linux with glibc keeps what its tasks free, so
    /// a task decoding a big argument fills pages already mapped instead of having
    /// the kernel zero fresh ones (with 64 MiB arguments: about 8 GB/s instead of 2
    /// on the machine the benchmarks ran on). It gives it all back after 1 s without
    /// work, and at least every 10 s while busy, as jemalloc does with its default
    /// decay. Set this when a worker's peak must not outlive the task that made it.
    ///
    /// Thread workers and MPI ranks, and process workers elsewhere, always follow
    /// the allocator's own policy, as if this were set.
    pub fn return_freed_memory(mut self) -> Self {
        self.return_freed_memory = true;
        self
    }

    /// Threads each worker process's own thread pools may start: rayon's global
    /// pool, OpenMP, OpenBLAS, Intel MKL, BLIS, Apple's Accelerate and Polars,
    /// through the variables they read when they start (`RAYON_NUM_THREADS`,
    /// `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`,
    /// `BLIS_NUM_THREADS`, `VECLIB_MAXIMUM_THREADS`, `POLARS_MAX_THREADS`), set in
    /// each worker's environment when it starts.
    ///
    /// Without it, a task that calls rayon would start [`cpu_count()`](crate::cpu_count)
    /// threads in every worker: `workers × CPUs` threads fighting for the CPUs.
    /// The default is `cpu_count() / workers`, at least 1, so the workers'
    /// threads together fit the CPUs — except for a variable already set in this
    /// process's environment, which workers then inherit as it is (an explicit
    /// `RAYON_NUM_THREADS=8` wins over the default). Given here, `n` is set in
    /// every variable, whatever the environment says.
    ///
    /// ```
    /// fn rayon_threads(_: u32) -> String {
    ///     std::env::var("RAYON_NUM_THREADS").unwrap_or_default()
    /// }
    ///
    /// let pool = fondo::Pool::builder().workers(2).threads_per_worker(3).processes()?;
    /// assert_eq!(pool.map(rayon_threads, 0..2)?, ["3", "3"]);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    ///
    /// Process workers only: thread workers share this process's pools, and each
    /// MPI rank is a program of its own (`mpirun -x OMP_NUM_THREADS=…`). A
    /// `fondo::spawn` child, alone, inherits the environment unchanged.
    /// [`cpu_count()`](crate::cpu_count) in a worker still counts the CPUs: size
    /// a pool a task makes itself accordingly.
    pub fn threads_per_worker(mut self, n: usize) -> Self {
        self.threads_per_worker = Some(n);
        self
    }

    /// Checks the options and settles the defaults.
    pub(crate) fn settle(&self) -> Result<Config> {
        let workers = self.workers.unwrap_or_else(crate::cpu_count);
        let positive = |name: &str, v: Option<usize>| match v {
            Some(0) => Err(Error::Config(format!("{name} must be at least 1"))),
            _ => Ok(()),
        };
        positive("workers", Some(workers))?;
        positive("chunksize", self.chunksize)?;
        positive("max_tasks_per_child", self.max_tasks_per_child)?;
        positive("prefetch", self.prefetch)?;
        positive("threads_per_worker", self.threads_per_worker)?;
        if self.task_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::Config(
                "task_timeout must be longer than zero".into(),
            ));
        }
        Ok(Config {
            workers,
            chunksize: self.chunksize,
            initializer: self.initializer,
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
            retries: self.retries,
            prefetch: self.prefetch.unwrap_or(2),
            max_frame: self.max_frame.unwrap_or(DEFAULT_MAX_FRAME).max(64),
            keep_freed_memory: !self.return_freed_memory,
            threads_per_worker: self.threads_per_worker,
        })
    }
}
