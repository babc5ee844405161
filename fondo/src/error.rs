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
    /// Killed by this signal number (9 = SIGKILL, 6 = SIGABRT, 11 = SIGSEGV…);
    /// its `Display` names it, and [`ExitCause::signal_name`] gives the name.
    Signal(i32),
    /// Called `exit` with this code.
    Code(i32),
    /// The worker is gone but its status could not be read (e.g. a remote MPI rank).
    Unknown,
}

impl ExitCause {
    /// The conventional name of the signal (`"SIGABRT"`), when it is one this
    /// platform names.
    pub fn signal_name(&self) -> Option<&'static str> {
        match self {
            ExitCause::Signal(s) => signal_name(*s),
            _ => None,
        }
    }
}

/// `SIGxxx` for the signals a worker commonly dies of, by this platform's numbers
/// (Linux's: the process backend runs there; elsewhere signals keep their numbers).
fn signal_name(raw: i32) -> Option<&'static str> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let names = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let names: [(i32, &'static str); 0] = [];
    names
        .iter()
        .find(|(number, _)| *number == raw)
        .map(|(_, name)| *name)
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Signal(s) => match signal_name(*s) {
                Some(name) => write!(f, "killed by {name} (signal {s})"),
                None => write!(f, "killed by signal {s}"),
            },
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
    /// The task panicked; the worker caught it and lives on. Its message and
    /// location are here, and in the error's `Display` (`task panicked: boom (at
    /// src/main.rs:7:5)`): the worker prints nothing (set `FONDO_PRINT_PANICS=1`
    /// to have the panic printed where it happened, as Rust prints any panic).
    #[error("task panicked: {message}{}", at_location(.location))]
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
    /// An argument or a result could not be (de)serialised for the trip to or from
    /// a worker: its `Serialize` or `Deserialize` returned an error or panicked.
    #[error("{step} of the {what} (`{type_name}`) failed in the {side}: {message}", side = step.side(*what))]
    Serialization {
        /// Which value: the task's arguments or its result.
        what: Payload,
        /// Which way it failed: encoding (`Serialize`) or decoding (`Deserialize`).
        step: SerdeStep,
        /// The Rust type being (de)serialised.
        type_name: String,
        /// The type's own error message (or its panic's), else the encoder's.
        message: String,
    },
    /// A worker's initializer failed (panicked, exited, was killed, or outlived the
    /// task timeout): no task runs on a worker that was not initialised, and the
    /// pool is broken — every pending and later task gets this error, as
    /// `concurrent.futures` reports a `BrokenProcessPool`.
    #[error("the pool is broken: a worker's initializer failed: {message}")]
    InitializerFailed {
        /// What happened to the initializer.
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
    /// The task was cancelled before it started ([`AsyncResult::cancel`](crate::AsyncResult::cancel),
    /// or [`Pool::shutdown`](crate::Pool::shutdown) with [`Pending::Cancel`](crate::Pending::Cancel)):
    /// it never ran.
    #[error("the task was cancelled before it started")]
    Cancelled,
    /// Task `index` of a `map` or `starmap` (its position in the input) failed with
    /// `error`: how `map` reports the first failing task (by input position) among
    /// many. Only a task's own failure is wrapped so — it panicked, its worker died,
    /// it timed out, its value could not be (de)serialised; what befalls the whole
    /// pool (`Terminated`, `Closed`, `Cancelled`, `InitializerFailed`…) comes as it
    /// is. [`Error::inner`] sees through it:
    ///
    /// ```
    /// use fondo::{Error, Pool};
    /// fn check(x: u32) -> u32 { assert!(x != 7, "seven"); x }
    ///
    /// let pool = Pool::threads(2)?;
    /// let e = pool.map(check, 0..10_000).unwrap_err();
    /// assert_eq!(e.index(), Some(7));
    /// assert!(matches!(e.inner(), Error::Panicked { message, .. } if message == "seven"));
    /// assert!(e.to_string().starts_with("task 7: task panicked: seven"));
    /// # Ok::<(), fondo::Error>(())
    /// ```
    #[error("task {index}: {error}")]
    Task {
        /// The failing task's position in the input.
        index: usize,
        /// Why it failed.
        #[source]
        error: Box<Error>,
    },
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
    /// A [`Journal`](crate::Journal) cannot be used: written by another executable, for
    /// another function or other inputs, locked by another run, or not readable or
    /// writable; the message says which.
    #[error("{0}")]
    Journal(String),
}

/// ` (at file:line:column)`, or nothing when the location is unknown.
fn at_location(location: &Option<String>) -> String {
    location
        .as_deref()
        .map_or_else(String::new, |at| format!(" (at {at})"))
}

impl Error {
    /// The error itself, without the task index a `map` adds ([`Error::Task`]):
    /// match on this to tell a panic from a worker's death whatever reported it.
    ///
    /// ```
    /// use fondo::Error;
    ///
    /// let e = Error::Task { index: 3, error: Box::new(Error::Closed) };
    /// assert!(matches!(e.inner(), Error::Closed));
    /// assert!(matches!(Error::Closed.inner(), Error::Closed));
    /// ```
    pub fn inner(&self) -> &Error {
        match self {
            Error::Task { error, .. } => error.inner(),
            other => other,
        }
    }

    /// Like [`inner`](Self::inner), by value.
    ///
    /// ```
    /// use fondo::Error;
    ///
    /// let e = Error::Task { index: 3, error: Box::new(Error::Closed) };
    /// assert!(matches!(e.into_inner(), Error::Closed));
    /// ```
    pub fn into_inner(self) -> Error {
        match self {
            Error::Task { error, .. } => error.into_inner(),
            other => other,
        }
    }

    /// The position of the failing task in its `map`'s input, when this error says
    /// ([`Error::Task`]).
    ///
    /// ```
    /// use fondo::Error;
    ///
    /// assert_eq!(Error::Task { index: 3, error: Box::new(Error::Closed) }.index(), Some(3));
    /// assert_eq!(Error::Closed.index(), None);
    /// ```
    pub fn index(&self) -> Option<usize> {
        match self {
            Error::Task { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// This error as the failure of task `index` of a map: wrapped in
    /// [`Error::Task`] if it is the task's own failure, as it is otherwise.
    pub(crate) fn at(self, index: usize) -> Error {
        match self {
            Error::Panicked { .. }
            | Error::WorkerDied { .. }
            | Error::Timeout { .. }
            | Error::Serialization { .. } => Error::Task {
                index,
                error: Box::new(self),
            },
            other => other,
        }
    }
}

/// Which value of a task failed to cross a process boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Payload {
    /// The task's arguments (encoded by the caller, decoded by the worker).
    Arguments,
    /// The task's result (encoded by the worker, decoded by the caller).
    Result,
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Payload::Arguments => "arguments",
            Payload::Result => "result",
        })
    }
}

/// Which half of serde failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SerdeStep {
    /// The value's `Serialize` (encoding).
    Serialize,
    /// The value's `Deserialize` (decoding).
    Deserialize,
}

impl SerdeStep {
    /// Where this step runs for `what`: the caller's process or the worker.
    fn side(self, what: Payload) -> &'static str {
        match (what, self) {
            (Payload::Arguments, SerdeStep::Serialize)
            | (Payload::Result, SerdeStep::Deserialize) => "caller",
            _ => "worker",
        }
    }
}

impl fmt::Display for SerdeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SerdeStep::Serialize => "Serialize",
            SerdeStep::Deserialize => "Deserialize",
        })
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

#[cfg(any(feature = "process", feature = "mpi"))]
impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(Arc::new(e.into()))
    }
}

impl From<crate::panic::Caught> for Error {
    fn from(caught: crate::panic::Caught) -> Self {
        Error::Panicked {
            message: caught.message,
            location: caught.location,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn signals_are_named() {
        let abort = ExitCause::Signal(libc::SIGABRT);
        assert_eq!(abort.signal_name(), Some("SIGABRT"));
        assert!(abort.to_string().contains("SIGABRT"), "{abort}");
        assert_eq!(ExitCause::Signal(250).signal_name(), None);
        assert_eq!(ExitCause::Signal(250).to_string(), "killed by signal 250");
        assert_eq!(ExitCause::Code(3).to_string(), "exited with code 3");
    }

    #[test]
    fn a_panic_says_where_it_happened_when_known() {
        let at = Error::Panicked {
            message: "boom".into(),
            location: Some("src/main.rs:7:5".into()),
        };
        assert_eq!(at.to_string(), "task panicked: boom (at src/main.rs:7:5)");
        let nowhere = Error::Panicked {
            message: "boom".into(),
            location: None,
        };
        assert_eq!(nowhere.to_string(), "task panicked: boom");
    }

    #[test]
    fn serialization_errors_say_which_value_which_way_and_where() {
        let e = Error::Serialization {
            what: Payload::Result,
            step: SerdeStep::Deserialize,
            type_name: "app::Port".into(),
            message: "port must be below 65536".into(),
        };
        assert_eq!(
            e.to_string(),
            "Deserialize of the result (`app::Port`) failed in the caller: port must be below 65536"
        );
    }
}
