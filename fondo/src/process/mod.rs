//! The process backend: workers are copies of this executable, tasks are plain
//! `fn`s (or capture-free closures) with serde data; [`Processes`] says exactly
//! what a process task may be.

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod forge;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod ipc;
pub(crate) mod parent;
pub(crate) mod worker;

pub use parent::child::{Child, spawn};

use crate::backend::seam::{Submit, Workers};
use crate::backend::{Backend, Batch, Encoder};
use crate::config::Builder;
use crate::error::{Error, Result};
use crate::pool::Pool;
use parent::Shared;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Marker and state of a pool whose workers are processes (`Pool::processes`).
///
/// Each worker is this executable started again (never a bare `fork` of a threaded
/// parent), diverted into a task loop before `main`. Arguments and results are
/// `serde` types. The task itself does not travel, only its type does (as the
/// offset of the code compiled for it), and the worker makes its own value of that
/// type out of nothing. So a process task is exactly
///
/// - a `fn` item (`square`; not a `fn` pointer: a value of type `fn(u64) -> u64`
///   is an address, refused), or
/// - a closure that captures nothing,
///
/// which the compiler checks: the task's type must be zero-sized and `Copy`.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = fondo::Pool::processes(1)?;
/// assert_eq!(pool.map(square, 1..=3)?, [1, 4, 9]);
/// assert_eq!(pool.map(|x: u64| x + 1, 1..=3)?, [2, 3, 4]);
/// # Ok::<(), fondo::Error>(())
/// ```
///
/// A closure that captures a value is refused (the worker would need the value):
///
/// ```compile_fail
/// let pool = fondo::Pool::processes(1).unwrap();
/// let offset = 10u64;
/// let _ = pool.map(move |x: u64| x + offset, 0..4);
/// ```
///
/// and so is one that captures a zero-sized value that is not `Copy` — a token, a
/// guard, a handle to a singleton: the worker could only make one up, in a process
/// where the code that creates it never ran.
///
/// ```compile_fail
/// struct Token; // made, say, only by a set-up function in `main`
/// let token = Token;
/// let pool = fondo::Pool::processes(1).unwrap();
/// let _ = pool.map(move |x: u64| { let _proof = &token; x }, 0..4);
/// ```
///
/// What the compiler cannot tell from a capture-free closure, and stays yours to
/// avoid: a closure that captures a zero-sized `Copy` value (`PhantomData`, `()`, a
/// `Copy` unit struct) is accepted, and the worker gets such a value without the
/// code that made it having run there. That is harmless for a type anyone may
/// make; do not capture one whose existence vouches for something this process did
/// (a proof of initialisation): call, in the task, the code that makes it.
///
/// Workers serve only the process that started them (RELIABILITY.md, "Security", in
/// the repository); a setuid, setgid or file-capability program gets `Error::Spawn`.
pub struct Processes {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processes")
            .field("workers", &self.shared.config.workers)
            .field(
                "pids",
                &self
                    .shared
                    .slots
                    .iter()
                    .map(|s| s.pid())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Pool<Processes> {
    /// A pool of `n` worker processes, like Python's `multiprocessing.Pool(n)`.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = fondo::Pool::processes(2)?;
    /// assert_eq!(pool.map(square, 1..=4)?, [1, 4, 9, 16]);
    /// # Ok::<(), fondo::Error>(())
    /// ```
    pub fn processes(n: usize) -> Result<Self> {
        Builder::default().workers(n).processes()
    }

    /// The PIDs of the current worker processes (0 for a slot between workers).
    pub fn pids(&self) -> Vec<u32> {
        self.backend()
            .shared
            .slots
            .iter()
            .map(|s| s.pid())
            .collect()
    }
}

impl Builder {
    /// Builds a pool of worker processes with these options. Returns once every
    /// worker has started and proved it runs this same executable.
    pub fn processes(self) -> Result<Pool<Processes>> {
        let shared = Arc::new(Shared::new(self.settle()?)?);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut supervisors = Vec::with_capacity(shared.slots.len());
        for slot in &shared.slots {
            let (slot, shared2, ready) = (slot.clone(), shared.clone(), ready_tx.clone());
            let spawned = std::thread::Builder::new()
                .name("fondo-supervisor".into())
                .spawn(move || slot.supervise(&shared2, ready));
            match spawned {
                Ok(h) => supervisors.push(h),
                Err(e) => {
                    let backend = Processes {
                        shared,
                        supervisors: Mutex::new(supervisors),
                    };
                    backend.terminate();
                    backend.join();
                    return Err(e.into());
                }
            }
        }
        drop(ready_tx);
        let backend = Processes {
            shared,
            supervisors: Mutex::new(supervisors),
        };
        let mut first_error = None;
        for _ in 0..backend.shared.slots.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(Error::Spawn("a supervisor thread exited".into()));
                }
            }
        }
        if let Some(e) = first_error {
            backend.terminate();
            backend.join();
            return Err(e);
        }
        Ok(Pool::from_backend(backend))
    }
}

impl Backend for Processes {}

impl Workers for Processes {
    fn shape(&self) -> crate::backend::Shape {
        self.shared.config.shape()
    }
    fn accepts_work(&self) -> bool {
        self.shared.queue.accepts_work()
    }
    fn close(&self) {
        self.shared.queue.close();
        for slot in &self.shared.slots {
            slot.wake();
        }
    }
    fn join(&self) {
        // The encoder first: supervisors wait for the submissions it carries.
        self.shared.handoff.join();
        crate::join::join_taken(&self.supervisors);
    }
    fn helper(&self) -> Option<std::sync::Weak<dyn crate::help::Help>> {
        let shared: Arc<dyn crate::help::Help> = self.shared.clone();
        Some(Arc::downgrade(&shared))
    }
    fn terminate(&self) {
        for job in self.shared.queue.terminate() {
            job.fail(&Error::Terminated);
        }
        for slot in &self.shared.slots {
            slot.kill();
        }
    }
    fn withdrawer(&self) -> Option<std::sync::Weak<dyn crate::cancel::Withdraw>> {
        let shared: Arc<dyn crate::cancel::Withdraw> = self.shared.clone();
        Some(Arc::downgrade(&shared))
    }
    fn cancel_pending(&self) {
        self.shared.cancel_pending();
    }
}

impl<F, Args> Submit<F, Args> for Processes
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
