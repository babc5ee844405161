//! How a function crosses into a worker process: as the offset of a monomorphised
//! entry point from a fixed anchor in the same executable, valid in every process
//! running that executable whatever ASLR did.

use super::clock::TaskClock;
use super::code_range::CodeRange;
use super::failure::{TaskFailure, WireResult};
use super::item::{Out, SerdeFailure, decode_next_unguarded, push_item};
use super::spill::AnswerBuf;
use crate::error::Payload;
use crate::error::SerdeStep;
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
///
/// A panic anywhere in a task's stages fails that task alone; the batch runs under
/// one `catch` ([`crate::panic::catch_each`]), and [`Tasks`] remembers the stage a
/// panic came from and what it must undo.
fn entry_point<F, Args>(args: &[u8], count: u32, out: &mut AnswerBuf<'_>, clock: &TaskClock)
where
    F: Task<Args> + Copy,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let f = conjure::<F>();
    let mut tasks = Tasks::<'_, '_, '_, F::Output> {
        args,
        out,
        clock,
        args_type: std::any::type_name::<Args>(),
        stage: Stage::Arguments,
        mark: 0,
        held: None,
        unencodable: None,
    };
    crate::panic::catch_each(
        count as usize,
        &mut tasks,
        |tasks, _| tasks.run(f),
        |tasks, _, caught| tasks.panicked(caught),
    );
}

/// Where a task of a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Its arguments' `Deserialize` runs.
    Arguments,
    /// The task runs.
    Task,
    /// Its outcome's `Serialize` runs.
    Encoding,
    /// Its outcome's `Drop` runs.
    Dropping,
}

/// A batch's tasks as they run in a worker: what a panic's handler needs to know.
struct Tasks<'a, 'o, 'b, R> {
    /// The arguments not yet decoded.
    args: &'a [u8],
    out: &'o mut AnswerBuf<'b>,
    clock: &'a TaskClock,
    /// The arguments' type, for the failure of a `Deserialize` that panics.
    args_type: &'static str,
    stage: Stage,
    /// `out`'s length before this task's outcome.
    mark: usize,
    /// The outcome being encoded, kept here so that a panic in its `Serialize` does
    /// not drop it while unwinding (its `Drop` could panic too, and abort).
    held: Option<WireResult<R>>,
    /// The outcome could not be encoded: the failure to report once it is dropped.
    unencodable: Option<TaskFailure>,
}

impl<R: Serialize> Tasks<'_, '_, '_, R> {
    /// Runs the next task through every stage.
    fn run<F: Task<Args, Output = R>, Args: DeserializeOwned>(&mut self, f: F) {
        self.clock.start_task();
        self.mark = self.out.len();
        self.stage = Stage::Arguments;
        let outcome = match decode_next_unguarded::<Args>(&mut self.args, Payload::Arguments) {
            Ok(args) => {
                self.stage = Stage::Task;
                Ok(f.call(args))
            }
            Err(failure) => Err(TaskFailure::from(failure)),
        };
        self.stage = Stage::Encoding;
        let held = self.held.insert(outcome);
        if let Err(e) = push_item(&mut *self.out, &*held) {
            self.unencodable = Some(unencodable::<WireResult<R>>(e.to_string()));
        }
        self.stage = Stage::Dropping;
        drop(self.held.take());
        if let Some(failure) = self.unencodable.take() {
            self.replace_outcome(failure);
        }
        self.clock.finish_task();
    }

    /// The current task panicked at its stage: its outcome is that failure.
    fn panicked(&mut self, caught: crate::panic::Caught) {
        let failure = match self.stage {
            Stage::Arguments => TaskFailure::from(SerdeFailure {
                what: Payload::Arguments,
                step: SerdeStep::Deserialize,
                type_name: self.args_type.to_owned(),
                message: format!("panicked: {}", caught.message),
            }),
            Stage::Task => TaskFailure::from(caught),
            Stage::Encoding => {
                // Dropped here, its own panic moot: the encoding's is reported.
                if let Some(outcome) = self.held.take() {
                    let _ = crate::panic::catch(|| drop(outcome));
                }
                unencodable::<WireResult<R>>(format!("panicked: {}", caught.message))
            }
            Stage::Dropping => self.unencodable.take().unwrap_or(TaskFailure::Panicked {
                message: format!("dropping the result: {}", caught.message),
                location: caught.location,
            }),
        };
        self.replace_outcome(failure);
        self.clock.finish_task();
    }

    /// Writes `failure` as the current task's outcome, in place of whatever of it
    /// was written.
    fn replace_outcome(&mut self, failure: TaskFailure) {
        self.out.truncate(self.mark);
        let failure: WireResult<()> = Err(failure);
        // A String-only enum into a growable buffer: cannot fail.
        let _ = push_item(&mut *self.out, &failure);
    }
}

/// The failure of an outcome whose `Serialize` failed with `message`.
fn unencodable<T: ?Sized>(message: String) -> TaskFailure {
    TaskFailure::from(SerdeFailure {
        what: Payload::Result,
        step: SerdeStep::Serialize,
        type_name: std::any::type_name::<T>().to_owned(),
        message,
    })
}
