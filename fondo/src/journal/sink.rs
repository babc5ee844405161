//! Where a journaled map's outcomes land from the pool, in whatever order they
//! come, until the feeding loop takes them.

use crate::error::{Error, Result};
use crate::help::{Help, Helping};
use crate::monitor::Monitor;
use crate::sink::{Abortable, Sink};
use std::sync::Weak;

/// Where a journaled map's outcomes land, in whatever order they come.
pub(super) struct JournalSink<R> {
    pub(super) state: Monitor<Arrivals<R>>,
}

pub(super) struct Arrivals<R> {
    pub(super) batches: Vec<(usize, Vec<Result<R>>)>,
    pub(super) aborted: Option<Error>,
    pub(super) finished: bool,
}

impl<R> JournalSink<R> {
    pub(super) fn new() -> Self {
        JournalSink {
            state: Monitor::new(Arrivals {
                batches: Vec::new(),
                aborted: None,
                finished: false,
            }),
        }
    }

    /// Waits for outcomes (or an abort) and takes them. While spinning, reads the
    /// pool's answers itself through `helper`, as `imap` does.
    #[allow(clippy::type_complexity)]
    pub(super) fn wait(
        &self,
        helper: Option<&Weak<dyn Help>>,
    ) -> (Vec<(usize, Vec<Result<R>>)>, Option<Error>) {
        let ready = |s: &Arrivals<R>| !s.batches.is_empty() || s.aborted.is_some();
        let mut spin = crate::spin::Spin::new();
        let mut helping: Option<Helping> = None;
        let mut st = self.state.lock();
        loop {
            if ready(&st) {
                return (std::mem::take(&mut st.batches), st.aborted.clone());
            }
            if spin.again() {
                drop(st);
                if helping.is_none() {
                    helping = helper.and_then(Helping::start);
                }
                if helping.as_ref().is_some_and(Helping::help) {
                    spin.reset();
                }
                st = self.state.lock();
                continue;
            }
            if let Some(h) = helping.take() {
                h.stop_to_block();
            }
            st = self.state.park_until(st, None, ready).0;
        }
    }

    /// The map is over: outcomes still to come are dropped.
    pub(super) fn finish(&self) {
        let mut st = self.state.lock();
        st.finished = true;
        st.batches.clear();
    }
}

impl<R: Send> Abortable for JournalSink<R> {
    fn abort(&self, error: Error) {
        let mut st = self.state.lock();
        st.aborted.get_or_insert(error);
        self.state.publish(st);
    }
    fn is_complete(&self) -> bool {
        let st = self.state.lock();
        st.finished || st.aborted.is_some()
    }
}

impl<R: Send> Sink<R> for JournalSink<R> {
    fn put(&self, start: usize, results: Vec<Result<R>>) {
        let mut st = self.state.lock();
        if st.finished {
            return;
        }
        st.batches.push((start, results));
        self.state.publish(st);
    }
}
