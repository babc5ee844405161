//! How a function crosses into a worker process: as the offset of a monomorphised
//! entry point from a fixed anchor in the same executable, valid in every process
//! running that executable whatever ASLR did.

use super::item::{decode_next, encode_item};
use super::lanes::AnswerBuf;
use super::progress::Progress;
use super::wire::{Out, TaskFailure, WireResult, push_item};
use crate::error::Payload;
use crate::task::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A batch entry point: decodes `count` argument tuples from `args`, runs the task
/// on each and appends `count` encoded outcomes to `out`.
pub(crate) type EntryFn = fn(args: &[u8], count: u32, out: &mut AnswerBuf<'_>, progress: &Progress);

/// The fixed point offsets are measured from. Never inlined or merged: it must have
/// an address of its own.
#[inline(never)]
fn anchor() -> &'static str {
    "fondo::process::entry::anchor"
}

fn anchor_addr() -> i64 {
    anchor as fn() -> &'static str as usize as i64
}

/// The offset that names `entry_point::<F, Args>` in any process of this executable.
pub(crate) fn offset_of_entry<F, Args>() -> i64
where
    F: Task<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let entry: EntryFn = entry_point::<F, Args>;
    entry as usize as i64 - anchor_addr()
}

/// The offset that names an initializer `fn()`.
pub(crate) fn offset_of_fn(f: fn()) -> i64 {
    f as usize as i64 - anchor_addr()
}

/// The executable's code, as mapped in this process: offsets must land inside it.
struct CodeRange {
    ranges: Vec<(usize, usize)>,
}

impl CodeRange {
    /// Reads the executable's code mappings from /proc/self/maps.
    fn current() -> CodeRange {
        let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let ranges = maps
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let range = parts.next()?;
                let perms = parts.next()?;
                let path = parts.nth(3)?;
                if !perms.contains('x') || std::path::Path::new(path) != exe {
                    return None;
                }
                let (lo, hi) = range.split_once('-')?;
                Some((
                    usize::from_str_radix(lo, 16).ok()?,
                    usize::from_str_radix(hi, 16).ok()?,
                ))
            })
            .collect();
        CodeRange { ranges }
    }

    fn contains(&self, addr: usize) -> bool {
        self.ranges.iter().any(|&(lo, hi)| (lo..hi).contains(&addr))
    }
}

/// Resolves offsets received from the parent, refusing any outside the executable's code.
pub(crate) struct Resolver {
    code: CodeRange,
}

impl Resolver {
    pub(crate) fn new() -> Resolver {
        Resolver {
            code: CodeRange::current(),
        }
    }

    fn address(&self, offset: i64) -> Option<usize> {
        let addr = usize::try_from(anchor_addr().checked_add(offset)?).ok()?;
        // An empty range list means /proc was unreadable: trust the private socket then.
        (self.code.ranges.is_empty() || self.code.contains(addr)).then_some(addr)
    }

    /// The entry point an offset names.
    pub(crate) fn entry(&self, offset: i64) -> Option<EntryFn> {
        let addr = self.address(offset)?;
        // SAFETY: the parent — the same executable, checked in the handshake — computed
        // this offset with `offset_of_entry` from an `EntryFn`, and the only peer on
        // the private socketpair is that parent; the address is inside our code.
        Some(unsafe { std::mem::transmute::<usize, EntryFn>(addr) })
    }

    /// The initializer an offset names.
    pub(crate) fn init_fn(&self, offset: i64) -> Option<fn()> {
        let addr = self.address(offset)?;
        // SAFETY: as for `entry`: the parent computed it with `offset_of_fn` from a `fn()`.
        Some(unsafe { std::mem::transmute::<usize, fn()>(addr) })
    }
}

/// Conjures the zero-sized callable `F` in a process that never saw the value.
fn conjure<F>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "fondo: only zero-sized callables (fn items and closures that capture nothing) can run in another process"
        )
    };
    // SAFETY: `F` is zero-sized (checked above at compile time), so no bytes are
    // read; it is a fn item or capture-free closure type (the only zero-sized `Fn`
    // types stable Rust has, and only `Fn` types reach here), which have no validity
    // invariant; and it is inhabited, since the parent held a value of it.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// The monomorphised batch entry point for `F` on `Args`. Each argument tuple and
/// each outcome is its own length-prefixed item, so one bad item fails one task.
///
/// A task counts as started before its arguments are decoded and as finished only
/// once its outcome is encoded and dropped: a worker that dies anywhere in between
/// (a `Deserialize`, the task, a `Serialize` or a `Drop` that aborts or exits) is
/// blamed on this task, never on a neighbour and never on nobody.
fn entry_point<F, Args>(mut args: &[u8], count: u32, out: &mut AnswerBuf<'_>, progress: &Progress)
where
    F: Task<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let f = conjure::<F>();
    for _ in 0..count {
        progress.start_task();
        let outcome = decode_next::<Args>(&mut args, Payload::Arguments)
            .map_err(TaskFailure::from)
            .and_then(|a| crate::panic::catch(|| f.call(a)).map_err(TaskFailure::from));
        push_outcome(out, outcome);
        progress.finish_task();
    }
}

/// Appends one outcome and drops it. A result that fails to encode becomes a
/// `Serialization` failure; one whose `Drop` panics, a `Panicked` one.
fn push_outcome<R: Serialize>(out: &mut impl Out, outcome: WireResult<R>) {
    let mark = out.len();
    let failure = match encode_item(out, &outcome, Payload::Result) {
        Ok(()) => crate::panic::catch(|| drop(outcome))
            .err()
            .map(|caught| TaskFailure::Panicked {
                message: format!("dropping the result: {}", caught.message),
                location: caught.location,
            }),
        Err(failure) => {
            // The outcome is dropped here too; a panic in its `Drop` is moot now.
            let _ = crate::panic::catch(|| drop(outcome));
            Some(failure.into())
        }
    };
    if let Some(failure) = failure {
        out.truncate(mark);
        let failure: WireResult<()> = Err(failure);
        // A String-only enum into a growable buffer: cannot fail.
        let _ = push_item(out, &failure);
    }
}
