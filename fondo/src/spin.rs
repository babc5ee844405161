//! `Spin`: a bounded spin before blocking. Waking a thread on the other CPU costs
//! ~20 µs on the machines fondo targets, far more than most answers take to arrive,
//! so every waiter polls briefly first — as crossbeam and MPI progress engines do.

use std::time::{Duration, Instant};

/// How long a waiter spins before it blocks.
pub(crate) const SPIN_BUDGET: Duration = Duration::from_micros(60);

/// A spin budget: call [`Spin::again`] between checks until it says to block.
pub(crate) struct Spin {
    until: Option<Instant>,
    round: u32,
}

impl Spin {
    /// A fresh budget of [`SPIN_BUDGET`], started at the first `again`.
    pub(crate) fn new() -> Spin {
        Spin {
            until: None,
            round: 0,
        }
    }

    /// Pauses briefly and returns true while the budget lasts; false means block now.
    pub(crate) fn again(&mut self) -> bool {
        let until = *self
            .until
            .get_or_insert_with(|| Instant::now() + SPIN_BUDGET);
        self.round += 1;
        if self.round < 8 {
            for _ in 0..(1 << self.round) {
                std::hint::spin_loop();
            }
        } else {
            // Let a thread that shares this CPU run: on 2 cores the answer may need it.
            std::thread::yield_now();
        }
        Instant::now() < until
    }

    /// Starts the budget over (something arrived).
    pub(crate) fn reset(&mut self) {
        self.until = None;
        self.round = 0;
    }
}
