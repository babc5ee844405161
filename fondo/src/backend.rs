//! The seam between [`Pool`](crate::Pool)'s methods, written once, and the three
//! places its workers can live: threads, processes and MPI ranks.
//!
//! Users name two traits here: [`Backend`] (any pool) and [`Runs`] (a pool that can
//! run a given task on given arguments — threads take any closure, processes and
//! ranks a zero-sized `fn` with serde data). Both are sealed: what a backend must do
//! lives in the private `seam` traits, which only fondo's backends implement.
//!
//! ```
//! use fondo::{Backend, Pool, Runs, Task};
//!
//! /// Squares on whatever pool it is given.
//! fn squares<B, F>(pool: &Pool<B>, square: F) -> fondo::Result<Vec<u64>>
//! where
//!     B: Backend + Runs<F, (u64,)>,
//!     F: Fn(u64) -> u64 + Task<(u64,), Output = u64>,
//! {
//!     pool.map(square, 1..=3)
//! }
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! assert_eq!(squares(&Pool::threads(2)?, square)?, [1, 4, 9]);
//! assert_eq!(squares(&Pool::processes(2)?, square)?, [1, 4, 9]);
//! # Ok::<(), fondo::Error>(())
//! ```

use crate::task::Task;

/// Where a pool's workers live: [`Threads`](crate::Threads),
/// [`Processes`](crate::Processes) or `Mpi` (feature `mpi`). Sealed.
pub trait Backend: Send + Sync + Sized + 'static + seam::Workers {}

/// A backend that can run task `F` on argument tuples `Args`. Sealed.
///
/// [`Threads`](crate::Threads) runs any `F: Task<Args>` with `Send` data;
/// [`Processes`](crate::Processes) and `Mpi` need `F` zero-sized and `Copy` (a `fn`
/// item or a closure that captures nothing) and serde arguments and results.
pub trait Runs<F: Task<Args>, Args>: Backend + seam::Submit<F, Args> {}

impl<B: Backend + seam::Submit<F, Args>, F: Task<Args>, Args> Runs<F, Args> for B {}

pub(crate) use seam::Encoder;
pub use seam::{Batch, Shape};

/// What a backend does for the pool. Public traits in a private module: nameable
/// by fondo's backends only, so [`Backend`] and [`Runs`] stay sealed.
pub(crate) mod seam {
    use crate::error::Error;
    use crate::sink::Sink;
    use crate::task::Task;
    use std::sync::Arc;

    /// How work reaches a backend's workers and how they stop.
    pub trait Workers {
        /// The options the pool's methods need: worker count, chunk size, prefetch.
        fn shape(&self) -> Shape;
        /// True while the pool takes new work (neither closed nor terminated).
        fn accepts_work(&self) -> bool {
            true
        }
        /// Stop taking work; what is queued still runs.
        fn close(&self);
        /// Wait until every queued task has finished and the workers are gone.
        fn join(&self);
        /// Drop queued work and stop the workers now.
        fn terminate(&self);
        /// What a thread waiting for a result can do meanwhile instead of a pool
        /// thread (see `help`).
        fn helper(&self) -> Option<std::sync::Weak<dyn crate::help::Help>> {
            None
        }
        /// How `cancel()` takes back this pool's jobs that have not started.
        fn withdrawer(&self) -> Option<std::sync::Weak<dyn crate::cancel::Withdraw>>;
        /// Stops taking work and cancels every task not started: each gets
        /// `Err(Cancelled)`; tasks running finish (`join` waits for them).
        fn cancel_pending(&self);
    }

    /// Who encodes a submission's arguments, on a backend that encodes them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Encoder {
        /// The submitting thread, which waits for the outcome anyway (`map`, `apply`).
        Caller,
        /// The submitting thread while the arguments are small, the pool's encoder
        /// thread for big ones: `*_async` and `imap` return without encoding them,
        /// so an async runtime's thread is never held.
        Pool,
    }

    /// How a backend queues batches of `F` on `Args`.
    pub trait Submit<F: Task<Args>, Args> {
        /// Evaluated (at compile time) by every pool method that takes a task, so a
        /// task the backend refuses is reported at the user's call: processes
        /// refuse what is not zero-sized.
        const ACCEPTS: () = ();
        /// Queues the batches. A backend that refuses them (closed or terminated
        /// pool) fails their tasks with the reason: a submission never vanishes.
        fn submit(&self, f: &Arc<F>, batches: Vec<Batch<Args, F::Output>>, encoder: Encoder);
    }

    /// What the backend-independent methods need to know of a pool's configuration.
    #[derive(Debug, Clone, Copy)]
    pub struct Shape {
        /// How many workers the pool keeps.
        pub workers: usize,
        /// The chunk size the user asked for, if any.
        pub chunksize: Option<usize>,
        /// Chunks each worker may hold ahead of the one it runs.
        pub prefetch: usize,
    }

    /// A run of consecutive tasks of one submission, headed for one worker.
    pub struct Batch<Args, R> {
        /// The tasks' arguments.
        pub(crate) items: Vec<Args>,
        /// Index of the first task within its submission.
        pub(crate) start: usize,
        /// Where the outcomes go.
        pub(crate) sink: Arc<dyn Sink<R>>,
    }

    impl<Args, R> std::fmt::Debug for Batch<Args, R> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Batch")
                .field("start", &self.start)
                .field("len", &self.items.len())
                .finish()
        }
    }

    impl<Args, R> Batch<Args, R> {
        /// Fails every task of the batch.
        pub(crate) fn fail(&self, error: &Error) {
            self.sink.fail(self.start, self.items.len(), error);
        }
    }

    impl crate::config::Config {
        /// The part of the configuration the pool's methods read.
        pub(crate) fn shape(&self) -> Shape {
            Shape {
                workers: self.workers,
                chunksize: self.chunksize,
                prefetch: self.prefetch,
            }
        }
    }
}
