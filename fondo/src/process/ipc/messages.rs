//! The messages parent and worker exchange: the header of every frame, postcard
//! encoded (`frames.rs` carries them). Bump [`PROTOCOL_VERSION`] whenever one
//! changes shape.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Bumped whenever a header changes shape.
pub(crate) const PROTOCOL_VERSION: u32 = 5;

/// What the parent tells a worker.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum ToWorker {
    /// First message after `Hello`: how to set up.
    Setup {
        /// Offset of the `fn()` initializer from the anchor, if any.
        initializer: Option<i64>,
        /// Keep memory freed by tasks for the next ones while busy (`heap.rs`).
        keep_freed_memory: bool,
        /// The parent's `log::max_level()` (0: off, 1: error … 5: trace): the
        /// worker forwards records up to it (`worker/log.rs`), none when off.
        max_log_level: u8,
    },
    /// Run `count` tasks whose encoded arguments form the body.
    Run {
        /// Parent's id for the job; echoed in `Done`.
        job: u64,
        /// Offset of the batch entry point from the anchor.
        entry: i64,
        /// Number of tasks in the body.
        count: u32,
    },
    /// Finish and exit.
    Shutdown,
    /// As `Run`, with the body in the pool's arena, slot `slot`.
    RunInArena {
        /// Parent's id for the job; echoed in the answer.
        job: u64,
        /// Offset of the batch entry point from the anchor.
        entry: i64,
        /// Number of tasks in the body.
        count: u32,
        /// Which arena slot holds the body.
        slot: u32,
        /// Length of the body.
        len: u64,
    },
    /// As `Run`, with the body in down lane `lane` instead of the frame.
    RunInLane {
        /// Parent's id for the job; echoed in the answer.
        job: u64,
        /// Offset of the batch entry point from the anchor.
        entry: i64,
        /// Number of tasks in the body.
        count: u32,
        /// Which down lane holds the body.
        lane: u8,
        /// Length of the body.
        len: u64,
    },
    /// Shared value `id` (a `Shared`): `len` bytes in the sealed memfd that comes
    /// with this frame's first byte (`SCM_RIGHTS`). The worker maps it read-only.
    Share {
        /// The value's id, as tasks' arguments name it.
        id: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// The parent dropped its last handle to shared value `id`: forget it.
    Forget {
        /// The value's id.
        id: u64,
    },
}

/// What a worker tells the parent.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum FromWorker {
    /// First message: who the worker is.
    Hello {
        /// Must equal `PROTOCOL_VERSION`.
        protocol: u32,
        /// The worker's PID.
        pid: u32,
        /// The identity of the executable the worker runs.
        exe: ExeId,
        /// The worker mapped its lanes: big bodies may travel through them.
        lanes: bool,
        /// The worker mapped the pool's arena: big arguments may stay there.
        arena: bool,
    },
    /// A job finished: the body holds `count` encoded `WireResult`s.
    Done {
        /// The job's id.
        job: u64,
        /// Number of outcomes in the body.
        count: u32,
    },
    /// The initializer failed: the worker runs no task and exits.
    InitFailed {
        /// What happened (the panic's message and location).
        message: String,
    },
    /// As `Done`, with the body in up lane `lane` instead of the frame.
    DoneInLane {
        /// The job's id.
        job: u64,
        /// Number of outcomes in the body.
        count: u32,
        /// Which up lane holds the body.
        lane: u8,
        /// Length of the body.
        len: u64,
    },
    /// A `log` record from the worker, for the parent's logger (`worker/log.rs`,
    /// `parent/log.rs`); may come at any time after `Setup`.
    Log(LogRecord),
}

/// A `log` record as it crosses to the parent: the record's own parts, its
/// arguments already formatted.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LogRecord {
    /// `log::Level` as a number: 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub(crate) level: u8,
    pub(crate) target: String,
    pub(crate) message: String,
    pub(crate) module_path: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

/// Identifies an executable file: the same device, inode, size and mtime means the
/// same program, so function offsets are valid on both sides.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ExeId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl ExeId {
    /// The identity of the running executable.
    pub(crate) fn current() -> Result<ExeId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self/exe")?;
        Ok(ExeId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// A body length from a header, as this machine's size type.
pub(crate) fn body_len(len: u64) -> Result<usize> {
    usize::try_from(len).map_err(|_| Error::Protocol(format!("a body of {len} bytes")))
}
