//! Catching a panic in user code — a task, a `Serialize` or `Deserialize` impl, a
//! `Drop`, an initializer — with its message and the `file:line` it came from.
//!
//! `catch_unwind` gives only the payload; the location is known only to the panic
//! hook. So fondo chains one hook, installed once, in front of whatever hook the
//! program has: while a thread runs user code under [`catch`], the hook notes the
//! location in a thread-local.
//!
//! What is printed: a panic caught here becomes an error that carries its message
//! and location (`Error::Panicked`, `Serialization`, `InitializerFailed`), so the
//! hook does not hand it on to the previous hook, which would print it a second
//! time, from the worker — as Python's pools and `concurrent.futures` print
//! nothing for a task that raises. The same on every backend: worker threads,
//! worker processes, MPI ranks. With `FONDO_PRINT_PANICS` set (to anything but
//! `0` or nothing) in the environment, which worker processes inherit, every such
//! panic is handed on as well, so the program's hook prints it (with a backtrace
//! under `RUST_BACKTRACE=1`). Panics outside fondo's catch (the program's own
//! threads, `main`) and panics that cannot be caught (built with `panic = "abort"`,
//! a panic while one unwinds) are always handed on.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

/// A panic caught in user code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caught {
    /// The payload as text (`&str` or `String` payloads; a placeholder otherwise).
    pub(crate) message: String,
    /// `file:line:column` of the panic, when the hook saw it.
    pub(crate) location: Option<String>,
}

thread_local! {
    /// Depth of [`catch`] calls on this thread: the hook records only inside one.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// Where the last panic inside [`catch`] on this thread happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// A panic the hook kept quiet is unwinding towards its [`catch`]: another
    /// panic on this thread before it gets there (a `Drop` that panics) aborts the
    /// process, and is printed.
    static QUIET_UNWIND: Cell<bool> = const { Cell::new(false) };
}

/// The environment variable that has panics caught in tasks printed too.
pub(crate) const PRINT_PANICS_ENV: &str = "FONDO_PRINT_PANICS";

/// True when `FONDO_PRINT_PANICS` asks for caught panics to be printed.
fn print_caught_panics() -> bool {
    std::env::var_os(PRINT_PANICS_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Runs `f`, turning a panic into [`Caught`]. `f` is user code that fondo treats
/// as a black box: whatever state it leaves behind after a panic is not used again
/// (hence the `AssertUnwindSafe`).
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    install_hook();
    CATCHING.with(|c| c.set(c.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    QUIET_UNWIND.with(|q| q.set(false));
    outcome.map_err(|payload| Caught {
        message: message(&*payload),
        location: LOCATION.with(|l| l.borrow_mut().take()),
    })
}

/// Runs `step(state, i)` for every `i` in `0..n` under one [`catch`] instead of one
/// per step: when step `i` panics, `on_panic(state, i, caught)` runs (outside the
/// catch) and the loop goes on at `i + 1`. The outcomes are those of a `catch`
/// around each step; the cost, one `catch` per batch and one per panic. `state`
/// is what both sides see: a step leaves in it what its panic handler must know
/// (which stage it was in, what to undo).
pub(crate) fn catch_each<S>(
    n: usize,
    state: &mut S,
    mut step: impl FnMut(&mut S, usize),
    mut on_panic: impl FnMut(&mut S, usize, Caught),
) {
    let mut next = 0;
    while next < n {
        let mut at = next;
        let ran = catch(|| {
            while at < n {
                step(&mut *state, at);
                at += 1;
            }
        });
        match ran {
            Ok(()) => return,
            Err(caught) => {
                debug_assert!(at < n, "a step panicked past the end");
                on_panic(&mut *state, at, caught);
                next = at + 1;
            }
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// Chains the location-recording hook in front of the current one, once per process.
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) > 0 {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                // `try_borrow_mut`: a panic while this thread formats a location
                // (out of memory, say) must not turn into a double panic here.
                LOCATION.with(|l| {
                    if let Ok(mut slot) = l.try_borrow_mut() {
                        *slot = at;
                    }
                });
                // The error will carry this panic: print it only when asked, or
                // when it cannot reach the `catch` (the process is about to abort).
                let will_be_caught = cfg!(panic = "unwind") && !QUIET_UNWIND.with(Cell::get);
                if will_be_caught && !print_caught_panics() {
                    QUIET_UNWIND.with(|q| q.set(true));
                    return;
                }
            }
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_each_resumes_after_each_panic_and_says_where() {
        let mut seen: Vec<String> = Vec::new();
        catch_each(
            7,
            &mut seen,
            |seen, i| {
                assert!(i % 3 != 1, "step {i}");
                seen.push(format!("ok {i}"));
            },
            |seen, i, caught| seen.push(format!("panic {i}: {}", caught.message)),
        );
        assert_eq!(
            seen,
            [
                "ok 0",
                "panic 1: step 1",
                "ok 2",
                "ok 3",
                "panic 4: step 4",
                "ok 5",
                "ok 6"
            ]
        );
        let mut last: Vec<usize> = Vec::new();
        catch_each(
            2,
            &mut last,
            |_, i| panic!("{i}"),
            |last, i, _| last.push(i),
        );
        assert_eq!(last, [0, 1], "a panic in the last step ends the loop");
        catch_each(
            0,
            &mut last,
            |_, _| unreachable!(),
            |_, _, _| unreachable!(),
        );
    }

    #[test]
    fn a_caught_panic_has_its_message_and_location() {
        let line = line!() + 1;
        let caught = catch(|| panic!("boom {}", 7)).expect_err("it panics");
        assert_eq!(caught.message, "boom 7");
        let location = caught.location.expect("the hook saw it");
        assert!(
            location.starts_with(&format!("{}:{line}:", file!())),
            "{location}"
        );
    }

    #[test]
    fn no_panic_is_the_value_and_leaves_no_location_behind() {
        assert_eq!(catch(|| 5), Ok(5));
        let caught = catch(|| std::panic::panic_any(17u8)).expect_err("it panics");
        assert_eq!(caught.message, "<non-string panic payload>");
        assert!(caught.location.is_some());
        assert_eq!(catch(|| 6), Ok(6));
    }

    #[test]
    fn nested_catches_each_get_their_own_panic() {
        let outer = catch(|| {
            let inner = catch(|| panic!("inner"));
            assert_eq!(inner.as_ref().map_err(|c| c.message.as_str()), Err("inner"));
            panic!("outer")
        })
        .expect_err("outer panics");
        assert_eq!(outer.message, "outer");
        assert!(outer.location.is_some());
    }
}
