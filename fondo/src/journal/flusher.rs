//! The journal's flushing thread: `fdatasync` every interval while results were
//! written since the last one, so a machine's crash loses at most that interval.

use crate::monitor::Monitor;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The flushing thread's state.
pub(super) struct FlushState {
    pub(super) stop: bool,
    pub(super) error: Option<std::io::Error>,
}

/// Flushes the file every interval while results were written since the last flush.
pub(super) struct Flusher {
    pub(super) state: Monitor<FlushState>,
    pub(super) dirty: AtomicBool,
}

impl Flusher {
    pub(super) fn run(&self, file: &File, every: Duration) {
        loop {
            let deadline = Instant::now().checked_add(every);
            let (state, _) = self
                .state
                .park_until(self.state.lock(), deadline, |s| s.stop);
            if state.stop {
                return;
            }
            drop(state);
            if self.dirty.swap(false, Ordering::AcqRel)
                && let Err(e) = file.sync_data()
            {
                self.state.lock().error = Some(e);
                return;
            }
        }
    }

    pub(super) fn stop(&self) {
        let mut state = self.state.lock();
        state.stop = true;
        self.state.publish(state);
    }
}

/// Tells the flusher to stop when dropped.
pub(super) struct StopOnDrop<'a>(pub(super) &'a Flusher);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}
