//! Catching a panic in user code — a task, a `Serialize` or `Deserialize` impl, a
//! `Drop`, an initializer — with its message and the `file:line` it came from.
//!
//! `catch_unwind` gives only the payload; the location is known only to the panic
//! hook. So fondo chains one hook, installed once, in front of whatever hook the
//! program has: while a thread runs user code under [`catch`], the hook notes the
//! location in a thread-local before handing the panic on to the previous hook
//! (which prints it, as Rust does for any thread).

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
}

/// Runs `f`, turning a panic into [`Caught`]. `f` is user code that fondo treats
/// as a black box: whatever state it leaves behind after a panic is not used again
/// (hence the `AssertUnwindSafe`).
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    install_hook();
    CATCHING.with(|c| c.set(c.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    outcome.map_err(|payload| Caught {
        message: message(&*payload),
        location: LOCATION.with(|l| l.borrow_mut().take()),
    })
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
            }
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
