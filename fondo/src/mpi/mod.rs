//! The MPI backend: rank 0 runs the program and the pool, the other ranks serve tasks.
//!
//! This is the static mode of mpi4py's `MPIPoolExecutor`: start the program with
//! `mpirun -np N ./program`. Every rank runs `main` from the top; when a rank
//! reaches [`Pool::mpi`]:
//!
//! - **rank 0** gets a `Pool<Mpi>` with N − 1 workers, one per other rank, and goes
//!   on with the program;
//! - **ranks 1..N−1** never return: they serve tasks until rank 0 closes the pool
//!   (drop, `join`, `terminate`), then finalize MPI and exit with status 0.
//!
//! So call `Pool::mpi()` first thing in `main`: whatever runs before it runs on
//! every rank, whatever runs after it runs on rank 0 only.
//!
//! ```no_run
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> Result<(), fondo::Error> {
//!     let pool = fondo::Pool::mpi()?;          // ranks ≥ 1 serve here, never return
//!     assert_eq!(pool.map(square, 1..=4)?, [1, 4, 9, 16]);
//!     Ok(())                                   // drop: the worker ranks exit cleanly
//! }
//! ```
//!
//! Tasks are sent the way the process backend sends them: the function as the
//! offset of its entry point in the executable (so it must be a `fn` item or a
//! closure that captures nothing), arguments and results as `serde` data. The
//! offsets are valid because every rank runs the same executable: the handshake
//! compares the size and a hash of the executable's bytes on every rank with rank
//! 0's and refuses the pool (`Error::ExecutableMismatch`) if any differs.
//!
//! # Semantics, and what MPI changes
//!
//! - `map`, `starmap`, `imap`, `imap_unordered`, `apply`, `apply_async`, `close`,
//!   `join`, `terminate` and drop behave as on the other backends. Each rank holds
//!   up to `prefetch + 1` batches (default 3), so it never waits for rank 0.
//! - A task that panics gives `Err(Panicked)`; the rank lives on.
//! - **A rank that dies** (abort, segfault, `SIGKILL`, `exit` inside a task, the
//!   out-of-memory killer) ends the whole job: that is MPI's default and there is
//!   no fault-tolerant MPI underneath. Open MPI's `mpirun` notices the dead rank,
//!   prints which rank died and how ("mpirun noticed that process rank 1 … exited
//!   on signal 6 (Aborted)"), kills every other rank — rank 0 included, so results
//!   not yet read are lost — and exits non-zero. Nothing hangs: with
//!   `--mca odls_base_sigkill_timeout 0` the job is gone within ~0.3 s, with the
//!   default settings within about 1.3 s. `retries` has nothing to retry.
//! - `task_timeout`: an MPI rank cannot be killed and replaced, so a worker rank
//!   whose task runs over the limit prints the reason and aborts, which ends the
//!   job as above (a run that ends with a message instead of hanging forever).
//! - `terminate()` fails every unfinished task with `Err(Terminated)` at once and
//!   drops queued batches; the worker ranks skip the batches they hold, but each
//!   finishes the batch (chunk) it is running before it exits, and dropping the
//!   pool waits for that.
//! - The worker count is the world size minus one; `Builder::workers` is ignored.
//!   `max_tasks_per_child` is refused: a rank cannot be replaced.
//! - One MPI pool per program: MPI cannot be initialized again once the pool has
//!   closed and the worker ranks have exited. `Pool::mpi()` initializes MPI itself;
//!   don't initialize it yourself.
//! - Rank 0 must drop (or `join`) the pool before it exits: a rank that exits
//!   without finalizing MPI makes `mpirun` abort the job with an error.
//!
//! # Threads and polling
//!
//! One thread per rank makes every MPI call (`MPI_THREAD_FUNNELED`): on rank 0 the
//! dispatcher, to which submitting threads hand batches through a queue; on the
//! other ranks the thread that runs the tasks. Nobody blocks inside MPI (Open MPI
//! spins a whole core while blocked in a probe): idle ranks poll with
//! `MPI_Improbe`, yielding the CPU between polls for the first 250 µs, then
//! sleeping for growing intervals of up to 0.5 ms; rank 0 sleeps outright while
//! no batch is out and nothing is submitted.

mod comm;
mod proto;
mod rank0;
mod worker;

use crate::backend::seam::{Submit, Workers};
use crate::backend::{Backend, Batch, Encoder};
use crate::boundary::job::{EncodedJob, HeapArgs};
use crate::config::{Builder, Config};
use crate::error::{Error, Result};
use crate::pool::Pool;

/// A batch of an MPI pool, encoded (ranks share no memory: arguments stay on the heap).
pub(crate) type MpiJob = EncodedJob<HeapArgs>;
use crate::queue::JobQueue;
use mpi::traits::Communicator;
use proto::ExeDigest;
use rank0::Shared;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

/// Marker and state of a pool whose workers are MPI ranks (`Pool::mpi`).
///
/// Exists on rank 0 only; see the [module docs](self) for how the other ranks
/// serve it and what a dying rank does to the job.
pub struct Mpi {
    shared: Arc<Shared>,
    /// The thread that owns MPI: dispatcher, then `MPI_Finalize`.
    thread: Mutex<Option<JoinHandle<i32>>>,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("workers", &self.shared.workers)
            .finish()
    }
}

/// Set once `Pool::mpi()` has initialized (or tried to initialize) MPI.
static STARTED: AtomicBool = AtomicBool::new(false);

/// Stack of the thread that owns MPI (on worker ranks it runs the tasks): the size
/// of a main thread's, so a task that fits in a worker process fits here.
const MPI_THREAD_STACK: usize = 8 << 20;

impl Pool<Mpi> {
    /// A pool whose workers are the other ranks of this MPI job (run the program
    /// with `mpirun -np N`, N ≥ 2). Returns on rank 0 only; on every other rank it
    /// serves tasks and exits the process when rank 0 closes the pool.
    ///
    /// Errors: `Error::Mpi` when the program was not started by an MPI launcher,
    /// when the job has a single rank, or on a second call;
    /// `Error::ExecutableMismatch` when a rank runs a different executable.
    pub fn mpi() -> Result<Self> {
        Builder::default().mpi()
    }
}

impl Builder {
    /// Builds an MPI pool with these options; see [`Pool::mpi`]. `chunksize`,
    /// `prefetch`, `initializer` (run once on every worker rank), `max_frame` and
    /// `task_timeout` (a task over it aborts the job) apply; the worker count is
    /// the world size minus one.
    pub fn mpi(self) -> Result<Pool<Mpi>> {
        let config = self.settle()?;
        if config.max_tasks_per_child.is_some() {
            return Err(Error::Config(
                "max_tasks_per_child needs Pool::processes or Pool::threads: an MPI rank cannot be replaced"
                    .into(),
            ));
        }
        match comm::launched_size() {
            None => {
                return Err(Error::Mpi(
                    "Pool::mpi() needs the program started by an MPI launcher with at least 2 ranks, \
                     e.g. `mpirun -np 3 ./program` (rank 0 runs the program, the others serve tasks); \
                     no launcher variables (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK, PMI_SIZE) are set"
                        .into(),
                ));
            }
            Some(Some(size)) if size < 2 => return Err(single_rank(size)),
            Some(_) => {}
        }
        if STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::Mpi(
                "Pool::mpi() was already called in this program: MPI can be initialized once per \
                 process and the worker ranks exit when the pool closes, so a program makes one MPI pool"
                    .into(),
            ));
        }
        // Hash the executable while MPI_Init runs.
        let exe = std::thread::Builder::new()
            .name("fondo-mpi-exe".into())
            .spawn(ExeDigest::current)?;
        let (started_tx, started_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fondo-mpi".into())
            .stack_size(MPI_THREAD_STACK)
            .spawn(move || mpi_thread(config, exe, started_tx))?;
        match started_rx.recv() {
            Ok(Start::Pool(shared)) => Ok(Pool::from_backend(Mpi {
                shared,
                thread: Mutex::new(Some(thread)),
            })),
            Ok(Start::Worker) => {
                // This rank served the pool; its MPI is finalized. User code after
                // `Pool::mpi()` runs on rank 0 only.
                let code = thread.join().unwrap_or(70);
                std::process::exit(code)
            }
            Ok(Start::Failed(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::Mpi("the MPI thread ended during start-up".into()))
            }
        }
    }
}

fn single_rank(size: usize) -> Error {
    Error::Mpi(format!(
        "Pool::mpi() needs at least 2 MPI ranks (rank 0 runs the program, the others serve tasks); \
         this job has {size}: run it with `mpirun -np N`, N ≥ 2"
    ))
}

/// What the MPI thread tells `Builder::mpi` once this rank's role is settled.
enum Start {
    /// Rank 0, handshake done: the pool is ready.
    Pool(Arc<Shared>),
    /// A worker rank: the thread serves, then returns the exit code.
    Worker,
    /// No pool (MPI already finalized again if it was initialized).
    Failed(Error),
}

/// The thread that owns MPI on every rank: `MPI_Init_thread`, the rank's role, and
/// `MPI_Finalize`. A panic here must never unwind into `MPI_Finalize` (which would
/// wait for the other ranks forever): it aborts the job instead.
fn mpi_thread(
    config: Config,
    exe: JoinHandle<Result<ExeDigest>>,
    started: mpsc::Sender<Start>,
) -> i32 {
    comm::tighten_timer_slack();
    let Some((universe, _threading)) = mpi::initialize_with_threading(mpi::Threading::Funneled)
    else {
        let _ = started.send(Start::Failed(Error::Mpi(
            "MPI is already initialized in this process: Pool::mpi() initializes MPI itself \
             and owns it until the pool closes"
                .into(),
        )));
        return 0;
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let world = universe.world();
        let exe = exe
            .join()
            .unwrap_or_else(|_| Err(Error::Mpi("fingerprinting the executable panicked".into())));
        let size = world.size();
        if size < 2 {
            let _ = started.send(Start::Failed(single_rank(size as usize)));
            return 0;
        }
        if world.rank() != 0 {
            let _ = started.send(Start::Worker);
            return worker::serve(&world, exe);
        }
        if let Err(e) = rank0::handshake(&world, &exe, &config) {
            let _ = started.send(Start::Failed(e));
            return 0;
        }
        let shared = Arc::new(Shared {
            queue: JobQueue::default(),
            config,
            workers: (size - 1) as usize,
            dispatcher: std::thread::current(),
            handoff: crate::handoff::Handoff::default(),
        });
        if started.send(Start::Pool(shared.clone())).is_err() {
            shared.queue.close();
        }
        rank0::dispatch(&world, &shared);
        0
    }));
    match outcome {
        Ok(code) => {
            drop(universe); // MPI_Finalize
            code
        }
        Err(p) => {
            crate::diag::diag!(
                "fondo: the MPI thread panicked ({}); aborting the MPI job",
                crate::panic::message(&*p)
            );
            universe.world().abort(70)
        }
    }
}

impl Backend for Mpi {}

impl Workers for Mpi {
    fn shape(&self) -> crate::backend::Shape {
        // The worker count is the world's size less rank 0, not the builder's.
        crate::backend::Shape {
            workers: self.shared.workers,
            ..self.shared.config.shape()
        }
    }
    fn accepts_work(&self) -> bool {
        self.shared.queue.accepts_work()
    }
    fn close(&self) {
        self.shared.queue.close();
        self.shared.wake();
    }
    fn join(&self) {
        // The encoder first: the dispatcher waits for the submissions it carries.
        self.shared.handoff.join();
        // Dropped from a result callback on the dispatcher itself, it is already on
        // its way out: `join_taken` skips it.
        crate::join::join_taken(&self.thread);
    }
    fn terminate(&self) {
        for job in self.shared.queue.terminate() {
            job.fail(&Error::Terminated);
        }
        self.shared.wake();
    }
    fn withdrawer(&self) -> Option<std::sync::Weak<dyn crate::cancel::Withdraw>> {
        let shared: Arc<dyn crate::cancel::Withdraw> = self.shared.clone();
        Some(Arc::downgrade(&shared))
    }
    fn cancel_pending(&self) {
        for job in self.shared.queue.close_and_cancel() {
            job.fail(&Error::Cancelled);
        }
        self.shared.wake();
    }
}

impl<F, Args> Submit<F, Args> for Mpi
where
    F: crate::task::ProcessTask<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    const ACCEPTS: () = crate::task::assert_zero_sized::<F>();

    fn submit(&self, _f: &Arc<F>, batches: Vec<Batch<Args, F::Output>>, encoder: Encoder) {
        crate::handoff::submit::<_, F, Args>(&self.shared, batches, encoder);
    }
}
