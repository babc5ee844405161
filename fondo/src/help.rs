//! `Help`: a thread waiting for a result moves the pool's work along itself
//! (reading the workers' answers) instead of waiting for a pool thread to do it and
//! wake it: one hand-off fewer, and one spinning thread fewer on a busy machine.

use std::sync::{Arc, Weak};

/// A backend whose pool threads a waiting thread can stand in for.
#[doc(hidden)]
pub trait Help: Send + Sync {
    /// A thread starts helping: pool threads may leave the work to it.
    fn enter(&self);
    /// A thread stops helping: pool threads take the work back, at once if
    /// `to_block` (the thread is about to sleep until its result comes), else at
    /// their next look.
    fn leave(&self, to_block: bool);
    /// Moves the work along once, without blocking; true if anything arrived.
    fn help(&self) -> bool;
}

/// A thread helping a pool while it waits; stops helping when dropped.
pub(crate) struct Helping {
    helper: Arc<dyn Help>,
    /// Leaving to sleep until the result comes (see [`Help::leave`]).
    to_block: bool,
}

impl Helping {
    /// Starts helping the pool behind `helper`, if it is still there.
    pub(crate) fn start(helper: &Weak<dyn Help>) -> Option<Helping> {
        let helper = helper.upgrade()?;
        helper.enter();
        Some(Helping {
            helper,
            to_block: false,
        })
    }

    /// Moves the pool's work along once; true if anything arrived.
    pub(crate) fn help(&self) -> bool {
        self.helper.help()
    }

    /// Stops helping to sleep until the result comes: pool threads must read it.
    pub(crate) fn stop_to_block(mut self) {
        self.to_block = true;
    }
}

/// Dropped, a helper leaves; unless it stops to block, it got what it waited for
/// and wakes nobody (waking pool threads at every result would cost more than the
/// help saves).
impl Drop for Helping {
    fn drop(&mut self) {
        self.helper.leave(self.to_block);
    }
}
