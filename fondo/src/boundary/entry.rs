//! How a function crosses into a worker process: as the offset of a monomorphised
//! entry point from a fixed anchor in the same executable, valid in every process
//! running that executable whatever ASLR did.

use super::clock::TaskClock;
use super::code_range::CodeRange;
use super::failure::{TaskFailure, WireResult};
use super::item::{Out, decode_next, encode_item, push_item};
use super::spill::AnswerBuf;
use crate::error::Payload;
use crate::task::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A batch entry point: decodes `count` argument tuples from `args`, runs the task
/// on each and appends `count` encoded outcomes to `out`.
pub(crate) type EntryFn = fn(args: &[u8], count: u32, out: &mut AnswerBuf<'_>, clock: &TaskClock);

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
    F: Task<Args> + Copy,
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

/// Resolves offsets received from the parent, refusing any outside the executable's code.
pub(crate) struct Resolver {
    code: CodeRange,
}

impl Resolver {
    pub(crate) fn new() -> Resolver {
        Resolver {
            code: CodeRange::current(anchor_addr() as usize),
        }
    }

    fn address(&self, offset: i64) -> Option<usize> {
        let addr = usize::try_from(anchor_addr().checked_add(offset)?).ok()?;
        // An empty range (maps unreadable or not understood) contains nothing.
        self.code.contains(addr).then_some(addr)
    }

    /// The entry point an offset names.
    pub(crate) fn entry(&self, offset: i64) -> Option<EntryFn> {
        let addr = self.address(offset)?;
        // SAFETY: the parent — the same executable, checked in the handshake — computed
        // this offset with `offset_of_entry` from an `EntryFn`; the only peer on the
        // socket is that parent (`trust::admit` checked who made it before we served);
        // the address is inside our code.
        Some(unsafe { std::mem::transmute::<usize, EntryFn>(addr) })
    }

    /// The initializer an offset names.
    pub(crate) fn init_fn(&self, offset: i64) -> Option<fn()> {
        let addr = self.address(offset)?;
        // SAFETY: as for `entry`: the parent computed it with `offset_of_fn` from a `fn()`.
        Some(unsafe { std::mem::transmute::<usize, fn()>(addr) })
    }
}

/// Runs the pool's initializer, if it has one; the panic's message (or why it could
/// not be run) if it failed.
pub(crate) fn initialize(
    resolver: &Resolver,
    initializer: Option<i64>,
) -> std::result::Result<(), String> {
    let Some(offset) = initializer else {
        return Ok(());
    };
    let init = resolver
        .init_fn(offset)
        .ok_or_else(|| "its offset is outside this executable's code".to_owned())?;
    crate::panic::catch(init).map_err(|caught| match caught.location {
        Some(at) => format!("panicked at {at}: {}", caught.message),
        None => format!("panicked: {}", caught.message),
    })
}

/// Conjures the zero-sized callable `F` in a process that never saw the value.
///
/// What may be conjured (see `Processes`): zero-sized, checked here at compile
/// time, and `Copy`, checked by the bound. Generic code cannot tell a capture-free
/// closure from one capturing zero-sized values; `Copy` admits of the latter only
/// those capturing `Copy` values, which their own crate lets anyone holding one
/// duplicate at will: no uniqueness (a singleton, a brand, a guard) is broken by
/// one more. A zero-sized `Copy` value whose mere existence vouches for something
/// done in the process that made it is the one case left to the user, documented.
fn conjure<F: Copy>() -> F {
    const { crate::task::assert_zero_sized::<F>() };
    // SAFETY: `F` is zero-sized (checked above at compile time), so no bytes are
    // read and none need be valid; it is inhabited, since the parent held a value
    // of it; it is `Copy` (no destructor runs for the conjured value, and any
    // holder may duplicate it), and a fn item or a closure (the only `Fn` types of
    // stable Rust, and only they reach here), whose only possible fields are the
    // zero-sized `Copy` captures discussed above.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// The monomorphised batch entry point for `F` on `Args`. Each argument tuple and
/// each outcome is its own length-prefixed item, so one bad item fails one task.
///
/// A task counts as started before its arguments are decoded and as finished only
/// once its outcome is encoded and dropped: a worker that dies anywhere in between
/// (a `Deserialize`, the task, a `Serialize` or a `Drop` that aborts or exits) is
/// blamed on this task, never on a neighbour and never on nobody.
fn entry_point<F, Args>(mut args: &[u8], count: u32, out: &mut AnswerBuf<'_>, clock: &TaskClock)
where
    F: Task<Args> + Copy,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let f = conjure::<F>();
    for _ in 0..count {
        clock.start_task();
        let outcome = decode_next::<Args>(&mut args, Payload::Arguments)
            .map_err(TaskFailure::from)
            .and_then(|a| crate::panic::catch(|| f.call(a)).map_err(TaskFailure::from));
        push_outcome(out, outcome);
        clock.finish_task();
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
