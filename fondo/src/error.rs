//! The one error type every backend reports through.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Shorthand for `Result<T, fondo::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a worker stopped: the signal that killed it or the code it exited with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitCause {
    /// Killed by this signal number (9 = SIGKILL, 6 = SIGABRT, 11 = SIGSEGV…).
    Signal(i32),
    /// Called `exit` with this code.
    Code(i32),
    /// The worker is gone but its status could not be read (e.g. a remote MPI rank).
    Unknown,
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Signal(s) => write!(f, "killed by signal {s}"),
            ExitCause::Code(c) => write!(f, "exited with code {c}"),
            ExitCause::Unknown => f.write_str("exit status unknown"),
        }
    }
}

/// Everything that can go wrong with a task or a pool, on any backend.
///
/// Errors are per task: one task's `Panicked` or `WorkerDied` never spoils the
/// results of the others. The type is `Clone` because one event (a worker dying,
/// the pool being terminated) can fail many tasks at once.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked; the worker caught it and lives on.
    #[error("task panicked: {message}")]
    Panicked {
        /// The panic payload, when it was a string.
        message: String,
        /// `file:line` of the panic, when known.
        location: Option<String>,
    },
    /// The worker process running the task died (signal, abort, segfault, `exit`).
    #[error("worker {pid} died while running the task ({cause})")]
    WorkerDied {
        /// The PID (or MPI rank) of the worker that died.
        pid: u32,
        /// How it died.
        cause: ExitCause,
    },
    /// The task ran longer than the pool's per-task timeout; its worker was killed.
    #[error("task exceeded its timeout of {limit:?}; its worker was killed and replaced")]
    Timeout {
        /// The timeout that was exceeded.
        limit: Duration,
    },
    /// `get_timeout`/`wait_timeout` gave up waiting; the task is still running and
    /// its result can be read later.
    #[error("result not ready after waiting {waited:?}")]
    WaitTimeout {
        /// How long the caller waited.
        waited: Duration,
    },
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// A task was submitted to a pool that is closed.
    #[error("the pool is closed and takes no new tasks")]
    Closed,
    /// An argument or a result could not be (de)serialised for the trip to a worker.
    #[error("could not serialise or deserialise the {what}: {message}")]
    Serialization {
        /// What failed: "arguments", "result", "frame"…
        what: &'static str,
        /// The serialiser's message.
        message: String,
    },
    /// A frame broke the protocol (truncated, oversized, unknown kind…).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The worker is a different executable than the parent.
    #[error("the worker runs a different executable than the parent ({0})")]
    ExecutableMismatch(String),
    /// A worker could not be started.
    #[error("could not start a worker: {0}")]
    Spawn(String),
    /// The value was already taken out of this result by an earlier `get_timeout`.
    #[error("the result was already taken")]
    ResultTaken,
    /// The pool was configured with options that cannot work together.
    #[error("invalid pool configuration: {0}")]
    Config(String),
    /// An error from the MPI library or the MPI job.
    #[error("MPI: {0}")]
    Mpi(String),
    /// An operating-system error.
    #[error("I/O error: {0}")]
    Io(Arc<io::Error>),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(Arc::new(e.into()))
    }
}

impl Error {
    /// Builds `Panicked` from a `catch_unwind` payload.
    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        Error::Panicked {
            message: panic_message(payload),
            location: None,
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
