//! Values that misbehave on purpose, for the crash matrices ported from loky and
//! CPython (`tests/ported_loky.rs`, `tests/ported_cpython.rs`): a [`Bomb`] fails,
//! panics or kills its process when it is serialised, deserialised or dropped —
//! Rust's counterparts of Python objects whose `__reduce__` or `__del__` raises,
//! calls `sys.exit`, `os._exit` or segfaults.

use fondo::ExitCause;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a value (or a task) misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Returns a serde error (Python: `raise PicklingError`): only where serde can
    /// return one; in a task or a `Drop` it is a panic instead.
    Error,
    /// `panic!` (Python: an exception, `sys.exit` included: it raises `SystemExit`).
    Panic,
    /// `std::process::exit(code)` (Python: `os._exit`, loky's `c_exit`).
    Exit(i32),
    /// `std::process::abort()`.
    Abort,
    /// A write to an unmapped address (Python: `faulthandler._sigsegv()`).
    Segfault,
    /// SIGKILL to its own process.
    SigKill,
}

impl Kind {
    /// How a worker process that misbehaved this way ends, if it ends.
    pub fn death(self) -> Option<ExitCause> {
        match self {
            Kind::Error | Kind::Panic => None,
            Kind::Exit(code) => Some(ExitCause::Code(code)),
            Kind::Abort => Some(ExitCause::Signal(6)),
            Kind::Segfault => Some(ExitCause::Signal(11)),
            Kind::SigKill => Some(ExitCause::Signal(9)),
        }
    }
}

/// The text every misbehaving value's error or panic carries.
pub const MESSAGE: &str = "bomb went off: message raised in child";

/// Misbehaves as `kind` says; returns only for [`Kind::Error`], with the error.
pub fn misbehave(kind: Kind) -> String {
    match kind {
        Kind::Error => MESSAGE.to_owned(),
        Kind::Panic => panic!("{MESSAGE}"),
        Kind::Exit(code) => std::process::exit(code),
        Kind::Abort => std::process::abort(),
        Kind::Segfault => {
            // SAFETY: deliberately invalid: the process dies of SIGSEGV, the point.
            unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u64>(16), 1) };
            unreachable!("survived a segfault")
        }
        Kind::SigKill => {
            if let Some(me) = rustix::process::Pid::from_raw(std::process::id() as i32) {
                let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
            }
            std::thread::sleep(std::time::Duration::from_secs(60));
            unreachable!("survived SIGKILL")
        }
    }
}

/// When a [`Bomb`] goes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// In its `Serialize`.
    Serialize,
    /// In its `Deserialize`.
    Deserialize,
    /// In its `Drop`, in a worker process only (loky's `CrashAtGCInWorker`).
    Drop,
}

/// A value that carries a number and, maybe, a trap: at `trap.0` it misbehaves as
/// `trap.1`. The trap travels with the value, so a bomb made in the parent goes off
/// in a worker's `Deserialize` or `Drop`, and one a task returns goes off in the
/// worker's `Serialize` or the parent's `Deserialize`.
#[derive(Debug, PartialEq, Eq)]
pub struct Bomb {
    pub value: u64,
    pub trap: Option<(Stage, Kind)>,
    /// The PID of the test process: `Drop` goes off only in other processes.
    pub parent: u32,
}

impl Bomb {
    /// A harmless value.
    pub fn dud(value: u64) -> Bomb {
        Bomb {
            value,
            trap: None,
            parent: std::process::id(),
        }
    }

    /// A value that goes off at `stage` as `kind`.
    pub fn armed(value: u64, stage: Stage, kind: Kind) -> Bomb {
        Bomb {
            value,
            trap: Some((stage, kind)),
            parent: std::process::id(),
        }
    }

    fn goes_off_at(&self, stage: Stage) -> Option<Kind> {
        self.trap.filter(|t| t.0 == stage).map(|t| t.1)
    }
}

impl Serialize for Bomb {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(kind) = self.goes_off_at(Stage::Serialize) {
            return Err(serde::ser::Error::custom(misbehave(kind)));
        }
        (self.value, self.trap, self.parent).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bomb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (value, trap, parent) = <(u64, Option<(Stage, Kind)>, u32)>::deserialize(d)?;
        let bomb = Bomb {
            value,
            trap,
            parent,
        };
        if let Some(kind) = bomb.goes_off_at(Stage::Deserialize) {
            return Err(serde::de::Error::custom(misbehave(kind)));
        }
        Ok(bomb)
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if std::process::id() == self.parent {
            return;
        }
        if let Some(kind) = self.goes_off_at(Stage::Drop) {
            // An error cannot be returned from `drop`: it panics instead.
            let kind = if kind == Kind::Error {
                Kind::Panic
            } else {
                kind
            };
            misbehave(kind);
        }
    }
}

/// The task of the matrices: misbehaves as `run` says, else returns a bomb with the
/// argument's value and the trap `out` (made here, in the worker). The argument is
/// dropped when the task returns, in the worker: its `Drop` trap goes off then.
pub fn relay(arg: Bomb, run: Option<Kind>, out: Option<(Stage, Kind)>) -> Bomb {
    if let Some(kind) = run {
        misbehave(if kind == Kind::Error {
            Kind::Panic
        } else {
            kind
        });
    }
    Bomb {
        value: arg.value,
        trap: out,
        parent: arg.parent,
    }
}

/// Misbehaves as `kind` says (a task with nothing to return).
pub fn detonate(kind: Kind) -> u64 {
    misbehave(if kind == Kind::Error {
        Kind::Panic
    } else {
        kind
    });
    0
}
