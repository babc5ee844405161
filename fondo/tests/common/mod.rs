//! Helpers shared by the integration tests.

use std::time::{Duration, Instant};

/// Polls `cond` until it holds or `guard` passes; true if it held.
pub fn eventually(guard: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + guard;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
