//! `Help`: a thread waiting for a result moves the pool's work along itself
//! (reading the workers' answers) instead of waiting for a pool thread to do it and
//! wake it: one hand-off fewer, and one spinning thread fewer on a busy machine.

use std::sync::{Arc, Weak};

/// A backend whose pool threads a waiting thread can stand in for.
#[doc(hidden)]
pub trait Help: Send + Sync {
    /// A thread starts helping: pool threads may leave the work to it.
    fn enter(&self);
    /// A thread stops helping: pool threads take the work back.
    fn leave(&self);
    /// Moves the work along once, without blocking; true if anything arrived.
    fn help(&self) -> bool;
}

/// A thread helping a pool while it waits; stops helping when dropped.
pub(crate) struct Helping {
    helper: Arc<dyn Help>,
}

impl Helping {
    /// Starts helping the pool behind `helper`, if it is still there.
    pub(crate) fn start(helper: &Weak<dyn Help>) -> Option<Helping> {
        let helper = helper.upgrade()?;
        helper.enter();
        Some(Helping { helper })
    }

    /// Moves the pool's work along once; true if anything arrived.
    pub(crate) fn help(&self) -> bool {
        self.helper.help()
    }
}

impl Drop for Helping {
    fn drop(&mut self) {
        self.helper.leave();
    }
}
