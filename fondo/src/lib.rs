//! Python's `multiprocessing.Pool` for Rust — `map`, `starmap`, `imap`, `apply`,
//! `apply_async` — over threads, real OS processes and MPI ranks, without the hangs.
//!
//! The model is the one the `multiprocessing` notebook teaches ("fondo común" is its
//! word for a pool): you make a [`Pool`] of workers, hand it work, and read results.
//! What differs from Python is what happens when things go wrong: a task that
//! panics, a worker that dies, a pool dropped with work pending or terminated while
//! someone waits — each gives a clear [`Error`] for the tasks it touched, and never
//! a hang or a lost result.
//!
//! # Threads
//!
//! ```
//! use fondo::{Pool, Timer};
//!
//! fn factorial(x: u64) -> f64 { (1..=x).map(|i| i as f64).product() }
//!
//! let t = Timer::start();
//! let pool = Pool::threads(2)?;
//! let v = pool.map(factorial, 10..20)?;          // in input order, like Python's map
//! assert_eq!(v[0], 3628800.0);
//! let p = pool.starmap(|b: u64, e: u32| b.pow(e), [(2, 10), (3, 4)])?;
//! assert_eq!(p, [1024, 81]);
//! let a = pool.apply_async(factorial, (5,));     // AsyncResult: get, wait, ready, await…
//! assert_eq!(a.get()?, 120.0);
//! println!("{:.4} s", t.elapsed_secs());
//! # Ok::<(), fondo::Error>(())
//! ```
//!
//! # Failures are per task
//!
//! ```
//! use fondo::{Error, Pool};
//!
//! fn check(x: i32) -> i32 { assert!(x != 2, "two is not allowed"); x }
//!
//! let pool = Pool::threads(2)?;
//! let outcomes: Vec<_> = pool.imap(check, 0..4).collect();
//! assert!(matches!(&outcomes[2], Err(Error::Panicked { message, .. }) if message.contains("two")));
//! assert_eq!(outcomes[3].as_ref().ok(), Some(&3)); // the worker lived on
//! # Ok::<(), fondo::Error>(())
//! ```
#![warn(missing_docs)]

mod config;
pub mod cpu;
mod error;
mod imap;
#[cfg(feature = "mpi")]
pub mod mpi;
mod pool;
pub mod process;
mod queue;
mod result;
mod sink;
mod spin;
mod task;
pub mod thread;
pub mod timer;

pub use config::Builder;
pub use cpu::{CpuInfo, cpu_count, cpu_info};
pub use error::{Error, ExitCause, Result};
pub use imap::Imap;
pub use pool::{Backend, Pool};
pub use process::{Child, Processes, spawn};
pub use result::AsyncResult;
pub use task::Task;
pub use thread::Threads;
pub use timer::{Timer, TimerGuard};

#[doc(hidden)]
pub use pool::{Batch, Runs};
#[doc(hidden)]
pub use sink::{Abortable, Sink};
