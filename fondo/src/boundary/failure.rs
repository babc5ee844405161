//! `TaskFailure`: why a task failed on the far side of a process boundary, in a
//! form that crosses it; `WireResult` is one task's outcome on the way back.

use super::item::SerdeFailure;
use crate::error::Error;
use serde::{Deserialize, Serialize};

/// Why a task failed inside a worker, in a form that crosses the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum TaskFailure {
    /// The task (or the `Drop` of its result) panicked.
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// Its arguments could not be decoded or its result encoded.
    Serialization(SerdeFailure),
    /// The worker's initializer failed, so it runs no task.
    InitializerFailed { message: String },
    /// The job broke a limit of the protocol (outcomes over the frame cap) or the
    /// worker would not run it (a function it refused).
    Protocol { message: String },
}

impl From<crate::panic::Caught> for TaskFailure {
    fn from(caught: crate::panic::Caught) -> Self {
        TaskFailure::Panicked {
            message: caught.message,
            location: caught.location,
        }
    }
}

impl From<SerdeFailure> for TaskFailure {
    fn from(f: SerdeFailure) -> Self {
        TaskFailure::Serialization(f)
    }
}

impl From<TaskFailure> for Error {
    fn from(f: TaskFailure) -> Self {
        match f {
            TaskFailure::Panicked { message, location } => Error::Panicked { message, location },
            TaskFailure::Serialization(f) => f.into(),
            TaskFailure::Protocol { message } => Error::Protocol(message),
            TaskFailure::InitializerFailed { message } => Error::InitializerFailed { message },
        }
    }
}

/// One task's outcome on the wire.
pub(crate) type WireResult<R> = std::result::Result<R, TaskFailure>;
