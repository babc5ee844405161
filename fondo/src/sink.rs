//! Where results land: the `Sink` every backend writes into, and the registry that
//! lets `terminate()` fail every pending result at once.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The part of a sink that does not depend on the result type: what `terminate()` needs.
#[doc(hidden)]
pub trait Abortable: Send + Sync {
    /// Fails every task of the submission that has no outcome yet.
    fn abort(&self, error: Error);
    /// True once every task of the submission has an outcome.
    fn is_complete(&self) -> bool;
    /// The submission's cancel ticket, if it can be cancelled (an `AsyncResult`'s):
    /// where a task starts, the backend claims it there first (`cancel.rs`).
    fn ticket(&self) -> Option<&crate::cancel::Ticket> {
        None
    }
}

/// Receives the results of a submission, indexed by each task's position in it.
///
/// Backends call `put` once per index; the first outcome for an index wins and later
/// ones are ignored, so a late result after `terminate()` cannot overwrite `Terminated`.
#[doc(hidden)]
pub trait Sink<R>: Abortable {
    /// Delivers the outcomes of tasks `start`, `start + 1`, … .
    fn put(&self, start: usize, results: Vec<Result<R>>);

    /// Fails tasks `start .. start + count` with clones of `error`.
    fn fail(&self, start: usize, count: usize, error: &Error) {
        self.put(start, (0..count).map(|_| Err(error.clone())).collect());
    }
}

/// Every submission not yet complete, held weakly, so `terminate()` can reach them all.
#[derive(Default)]
pub(crate) struct Registry {
    live: Mutex<RegistryState>,
}

#[derive(Default)]
struct RegistryState {
    sinks: Vec<Weak<dyn Abortable>>,
    /// Length after the last prune: pruning only when it doubles keeps `track` O(1) amortised.
    pruned_len: usize,
}

impl Registry {
    /// Remembers a submission until it completes.
    pub(crate) fn track(&self, sink: Arc<dyn Abortable>) {
        let mut st = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        st.sinks.push(Arc::downgrade(&sink));
        if st.sinks.len() > 64 && st.sinks.len() > 2 * st.pruned_len {
            st.sinks
                .retain(|w| w.upgrade().is_some_and(|s| !s.is_complete()));
            st.pruned_len = st.sinks.len();
        }
    }

    /// Fails every pending submission with `error`.
    pub(crate) fn abort_all(&self, error: &Error) {
        let sinks = std::mem::take(
            &mut self
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sinks,
        );
        for sink in sinks.iter().filter_map(Weak::upgrade) {
            sink.abort(error.clone());
        }
    }
}
