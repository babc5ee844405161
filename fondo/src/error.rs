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

/// `SIGxxx` for the signals a worker commonly dies of, by this platform's numbers.
fn signal_name(raw: i32) -> Option<&'static str> {
    use rustix::process::Signal;
    let signal = Signal::from_named_raw(raw)?;
    let names = [
        (Signal::HUP, "SIGHUP"),
        (Signal::INT, "SIGINT"),
        (Signal::QUIT, "SIGQUIT"),
        (Signal::ILL, "SIGILL"),
        (Signal::TRAP, "SIGTRAP"),
        (Signal::ABORT, "SIGABRT"),
        (Signal::BUS, "SIGBUS"),
        (Signal::FPE, "SIGFPE"),
        (Signal::KILL, "SIGKILL"),
        (Signal::USR1, "SIGUSR1"),
        (Signal::SEGV, "SIGSEGV"),
        (Signal::USR2, "SIGUSR2"),
        (Signal::PIPE, "SIGPIPE"),
        (Signal::ALARM, "SIGALRM"),
        (Signal::TERM, "SIGTERM"),
        (Signal::XCPU, "SIGXCPU"),
        (Signal::XFSZ, "SIGXFSZ"),
        (Signal::SYS, "SIGSYS"),
    ];
    names
        .iter()
        .find(|(s, _)| *s == signal)
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
    fn signals_are_named() {
        let abort = ExitCause::Signal(rustix::process::Signal::ABORT.as_raw());
        assert_eq!(abort.signal_name(), Some("SIGABRT"));
        assert!(abort.to_string().contains("SIGABRT"), "{abort}");
        assert_eq!(ExitCause::Signal(250).signal_name(), None);
        assert_eq!(ExitCause::Signal(250).to_string(), "killed by signal 250");
        assert_eq!(ExitCause::Code(3).to_string(), "exited with code 3");
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
