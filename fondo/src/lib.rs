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
//! # Processes
//!
//! Moving to processes is a one-line change when the task is a plain `fn` (or a
//! closure that captures nothing) and its data is `serde`. Each worker is this same
//! executable started again — no fork of a threaded parent, no set-up code in
//! `main`: a constructor diverts the worker before `main` runs, in binaries,
//! examples, tests and doctests alike.
//!
//! ```
//! use fondo::Pool;
//!
//! fn pid_of(_: u32) -> u32 { std::process::id() }
//!
//! let pool = Pool::processes(2)?;
//! let pids = pool.map(pid_of, 0..8)?;
//! assert!(pids.iter().all(|&p| p != std::process::id())); // other processes did the work
//!
//! // One call in a new process, joined like a thread — with its return value.
//! let child = fondo::spawn(pid_of, (0,))?;
//! let pid = child.pid();
//! assert_eq!(child.join()?, pid);
//! # Ok::<(), fondo::Error>(())
//! ```
//!
//! A worker that dies — killed, aborted, segfaulted — costs only the task it was
//! running ([`Error::WorkerDied`]); the pool starts a replacement and every other
//! task completes. `Pool::builder().task_timeout(..)` kills a task that hangs, and
//! `.retries(n)` runs again a task whose worker died. Tasks a dying worker had
//! finished but not yet reported run again elsewhere, so each result is delivered
//! exactly once (a side effect may then happen twice).
//!
//! # Which backend
//!
//! | | [`Pool::threads`] | [`Pool::processes`] | `Pool::mpi` (feature `mpi`) |
//! |---|---|---|---|
//! | tasks | any `Fn` closure | `fn` items, capture-free closures | same as processes |
//! | data | any `Send` type | `serde` types | `serde` types |
//! | isolation | none: a crash ends the program | a crash ends one worker | one rank |
//! | timeouts | no (a thread cannot be killed) | yes | yes |
//! | `apply_async().get()` round trip (2 CPUs) | 1.2 µs | 5.5–8.5 µs | 9 µs |
//! | `map` of no-op tasks | ~160 M/s | ~30–35 M/s | ~29 M/s |
//!
//! On processes, small values travel through each worker's socket; a value of 1 MiB
//! or more is encoded straight into memory shared with the worker (an arena every
//! worker maps for arguments, per-worker lanes for answers) and decoded from there,
//! so it is copied no more than encoding and decoding require. A thread waiting for
//! a result reads the workers' answers itself meanwhile, so a callback may run on
//! it. Byte buffers move fastest as `serde_bytes::ByteBuf` (a plain `Vec<u8>` is a
//! sequence to serde, sent one element at a time). A worker keeps the memory its
//! tasks free (on glibc Linux) so the next big argument lands in pages already
//! mapped, and gives it back after a second without work, or every 10 s while busy;
//! [`Builder::return_freed_memory`] makes it give memory back at once instead.
//!
//! # Context and shared data
//!
//! Worker processes never run `main`: statics it filled and files it opened do not
//! exist there (their log records do reach `main`'s logger: fondo forwards them).
//! Tasks get what they need as arguments — or
//! as a [`Shared`] value, sent once to each worker and never with each task:
//! [`Pool::map_with`] runs `f(&context, item)`, [`partial!`] lists a closure's
//! captured values as such a context, and [`Shared::from_slice`] holds a big array
//! every worker reads in place. [`Array`] moves numeric vectors as raw bytes.
//!
//! ```
//! use fondo::{Pool, Shared};
//!
//! fn scale(k: &u64, x: u64) -> u64 { k * x }
//!
//! let pool = Pool::processes(2)?;
//! let k = Shared::new(3u64)?;
//! assert_eq!(pool.map_with(&k, scale, 1..=3)?, [3, 6, 9]);
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
//!
//! # Inside a task: logs, panics, threads
//!
//! - **Logs**: `log` records from tasks in worker processes (and `fondo::spawn`
//!   children) reach this process's logger, with their level, target, module, file
//!   and line, the message prefixed with the worker's PID (`(worker 4242) …`, also
//!   the key-value `worker_pid`). Set the logger up before making the pool; workers
//!   forward what `log::max_level()` let through when they started. An initializer
//!   that installs a logger keeps it. `tracing` events reach it too with
//!   `tracing`'s `log` feature on.
//! - **Panics**: a panicking task is reported by its error alone
//!   ([`Error::Panicked`], with message and location), on every backend: nothing
//!   is printed from the worker. `FONDO_PRINT_PANICS=1` in the environment has
//!   each such panic printed where it happened too.
//! - **Threads**: each worker process starts with rayon's, OpenMP's and the BLAS
//!   libraries' thread counts set to `cpu_count() / workers` (a variable the
//!   environment sets is kept), or to [`Builder::threads_per_worker`], so nested
//!   parallelism does not start `workers × CPUs` threads.
//!
//! # Features and platforms
//!
//! - `process` (default): [`Pool::processes`], `fondo::spawn`. Linux only; on
//!   any other target the build stops with an error that says so.
//! - `mpi`: `Pool::mpi`, through Open MPI.
//!
//! With `default-features = false`, [`Pool::threads`], [`Timer`] and
//! [`cpu_count`] build on any target with `std`.
//! A `map` reports its first failing task (by input position) with that position:
//! [`Error::Task`]` { index, error }`; [`Error::inner`] is the task's own error.
//!
//! # Waiting on many, cancelling, async
//!
//! Python's `concurrent.futures` functions, over any [`AsyncResult`]s — of one pool
//! or several, of any backend, finished already or not: [`wait`] (with
//! [`ReturnWhen`]) and [`as_completed`], both with an optional timeout.
//! [`AsyncResult::cancel`] keeps a task that has not started from ever running
//! (`Err(`[`Error::Cancelled`]`)`), and [`Pool::shutdown`] with [`Pending::Cancel`]
//! does so for every pending task. An [`Imap`] waits with a limit
//! ([`Imap::next_timeout`]), knows its length when its input does (progress bars),
//! and cancels what it has not started when dropped early.
//!
//! ```
//! use fondo::{Error, Pool, ReturnWhen};
//! use std::time::Duration;
//!
//! fn cube(x: u64) -> u64 { x * x * x }
//!
//! let pool = Pool::processes(2)?;
//! let results: Vec<_> = (0..10).map(|x| pool.apply_async(cube, (x,))).collect();
//! let waited = fondo::wait(&results, ReturnWhen::AllCompleted, Some(Duration::from_secs(60)));
//! assert_eq!(waited.done.len(), 10);
//! let mut total = 0;
//! for done in fondo::as_completed(results, None) {
//!     let (_input, result) = done?;
//!     total += result.get()?;
//! }
//! assert_eq!(total, 2025);
//! let e = pool.map(|x: i64| 10 / (5 - x), 0..10).unwrap_err();
//! assert_eq!(e.index(), Some(5));
//! # Ok::<(), fondo::Error>(())
//! ```
//!
//! In async code an `AsyncResult` is a `Future`; [`Pool::imap_owned`] gives an
//! iterator that owns its (shared) pool, to move into a spawned task and read with
//! [`Imap::next_async`] — or as a `futures_core::Stream` with feature `stream`
//! (`Imap::into_stream`). The `*_async` methods and `imap` never hold the calling
//! thread for long: big arguments are encoded by the pool's encoder thread.
//!
//! # Who a worker serves
//!
//! Every program that links fondo can become a worker before `main`, so a process
//! started with fondo's worker marker serves only the parent that started it: over
//! a Unix socket that parent made (checked with the kernel's peer credentials),
//! with its user and group, or it refuses with a message and exit code 77. A
//! setuid, setgid or file-capability launch ignores the marker and runs `main`, and
//! such a program gets [`Error::Spawn`] instead of workers. Writes to workers never
//! raise SIGPIPE, whatever the program did with that signal; workers ignore it, as
//! `main` does, so a task writing to a closed pipe gets an error there as on
//! threads. The threat model and its tests: RELIABILITY.md, "Security", in the
//! repository.
#![warn(missing_docs, missing_debug_implementations)]
// Built without the process backend (threads only, or threads and MPI), parts of
// the core only it calls are unused: that build is checked in CI, and dead code is
// left to the default build's warnings, where everything is used.
#![cfg_attr(not(feature = "process"), allow(dead_code))]

// Where it cannot run, the process backend is left out, so this is the one error.
#[cfg(all(feature = "process", not(target_os = "linux")))]
compile_error!(
    "fondo's process backend needs Linux (memfd, pidfd, PR_SET_PDEATHSIG); \
     build with default-features = false for threads only"
);

pub mod array;
mod backend;
#[cfg(any(all(feature = "process", target_os = "linux"), feature = "mpi"))]
mod boundary;
mod cancel;
mod config;
pub mod cpu;
mod diag;
mod error;
#[cfg(any(all(feature = "process", target_os = "linux"), feature = "mpi"))]
mod handoff;
mod help;
mod imap;
mod join;
#[cfg(any(all(feature = "process", target_os = "linux"), feature = "mpi"))]
pub mod journal;
mod monitor;
#[cfg(feature = "mpi")]
pub mod mpi;
mod panic;
mod pool;
#[cfg(all(feature = "process", target_os = "linux"))]
pub mod process;
mod queue;
mod result;
#[cfg(any(all(feature = "process", target_os = "linux"), feature = "mpi"))]
pub mod shared;
mod sink;
mod spin;
mod task;
pub mod thread;
pub mod timer;
mod watch;

pub use array::Array;
pub use backend::{Backend, Runs};
pub use cancel::Pending;
pub use config::Builder;
pub use cpu::{CpuInfo, cpu_count, cpu_info};
pub use error::{Error, ExitCause, Payload, Result, SerdeStep};
#[cfg(feature = "stream")]
pub use imap::ImapStream;
pub use imap::{Imap, NextAsync};
#[cfg(any(all(feature = "process", target_os = "linux"), feature = "mpi"))]
pub use journal::Journal;
pub use pool::Pool;
#[cfg(all(feature = "process", target_os = "linux"))]
pub use process::{Child, Processes, spawn};
pub use result::AsyncResult;
#[cfg(any(all(feature = "process", target_os = "linux"), feature = "mpi"))]
pub use shared::Shared;
pub use task::{ProcessTask, Task};
pub use thread::Threads;
pub use timer::{Timer, TimerGuard};
pub use watch::{AsCompleted, ReturnWhen, Waited, Watchable, as_completed, wait};
