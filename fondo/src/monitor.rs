//! `Monitor`: the one way a fondo thread waits for another — state under a mutex,
//! a condition variable, and a count of who sleeps on it.
//!
//! # The wake-up protocol
//!
//! Waking a thread on the other CPU costs ~20 µs on the machines fondo targets,
//! more than most answers take to arrive, and a futex wake is a system call even
//! when nobody sleeps. So every wait in fondo — a worker thread for a job
//! (`queue.rs`), a caller for a result (`result.rs`) or the next `imap` outcome
//! (`imap.rs`) — goes the same way:
//!
//! 1. **Spin** ([`spin_until`]) for up to [`SPIN_BUDGET`](crate::spin::SPIN_BUDGET):
//!    check without the lock (an atomic mirror of the state) or move the work along
//!    meanwhile (a waiting thread reads workers' answers itself: `help.rs`).
//! 2. **Park** ([`Monitor::park_until`]): under the lock, re-check the condition;
//!    if it does not hold, count yourself a sleeper and wait on the condvar; on
//!    waking, uncount yourself and check again.
//! 3. **Notify** ([`Monitor::publish`]): whoever changes the state does so under
//!    the lock, reads the sleeper count while still holding it, unlocks, and
//!    notifies only if someone sleeps.
//!
//! Why no wake-up is lost: a sleeper counts itself under the lock *before* the
//! condvar releases it, and a notifier changes the state and reads the count
//! under the same lock. Either the notifier's change came first — then the
//! sleeper's re-check under the lock sees it and never sleeps — or the sleeper
//! counted itself first — then the notifier sees the count and wakes it.

use crate::spin::Spin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// State shared between threads, with waiting for a condition on it.
#[derive(Debug, Default)]
pub(crate) struct Monitor<T> {
    state: Mutex<T>,
    changed: Condvar,
    /// Threads waiting on `changed`; changed only under `state`'s lock.
    sleepers: AtomicUsize,
}

/// How a [`Monitor::park_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// The condition holds.
    Ready,
    /// The deadline passed first.
    TimedOut,
}

impl<T> Monitor<T> {
    pub(crate) fn new(state: T) -> Self {
        Monitor {
            state: Mutex::new(state),
            changed: Condvar::new(),
            sleepers: AtomicUsize::new(0),
        }
    }

    /// The state, locked. A panic elsewhere never leaves it half-written (user
    /// code runs outside every monitor's lock), so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps until `ready` holds of the state or `deadline` passes (step 2 of the
    /// protocol). Returns the state still locked.
    pub(crate) fn park_until<'a>(
        &'a self,
        mut state: MutexGuard<'a, T>,
        deadline: Option<Instant>,
        ready: impl Fn(&T) -> bool,
    ) -> (MutexGuard<'a, T>, Parked) {
        while !ready(&state) {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return (state, Parked::TimedOut);
            }
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            state = match left {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    self.changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
        (state, Parked::Ready)
    }

    /// Unlocks a state just changed and wakes the sleepers, if any (step 3).
    pub(crate) fn publish(&self, state: MutexGuard<'_, T>) {
        // Read under the lock: a sleeper counts itself under it (see the module docs).
        let anyone = self.sleepers.load(Ordering::Relaxed) > 0;
        drop(state);
        if anyone {
            self.changed.notify_all();
        }
    }
}

/// Spins (step 1 of the protocol) until `done` returns true or the spin budget is
/// spent; true if it did. `done` may also move work along meanwhile.
pub(crate) fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    let mut spin = Spin::new();
    loop {
        if done() {
            return true;
        }
        if !spin.again() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_parked_thread_is_woken_by_a_publish() {
        let monitor = Arc::new(Monitor::new(0u32));
        let waiter = {
            let monitor = monitor.clone();
            std::thread::spawn(move || {
                let (state, parked) = monitor.park_until(monitor.lock(), None, |n| *n == 3);
                (*state, parked)
            })
        };
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(5));
            let mut state = monitor.lock();
            *state += 1;
            monitor.publish(state);
        }
        assert_eq!(waiter.join().expect("waiter"), (3, Parked::Ready));
        assert_eq!(monitor.sleepers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_deadline_ends_the_wait_with_the_state_locked() {
        let monitor = Monitor::new(false);
        let soon = Instant::now() + Duration::from_millis(20);
        let (state, parked) = monitor.park_until(monitor.lock(), Some(soon), |done| *done);
        assert_eq!((*state, parked), (false, Parked::TimedOut));
        assert!(Instant::now() >= soon);
        drop(state);
        let past = Instant::now() - Duration::from_millis(1);
        let mut state = monitor.lock();
        *state = true;
        let (state, parked) = monitor.park_until(state, Some(past), |done| *done);
        assert_eq!(
            (*state, parked),
            (true, Parked::Ready),
            "ready wins over late"
        );
    }

    #[test]
    fn no_wake_up_is_lost_between_check_and_sleep() {
        // Many rounds of a ping-pong through one monitor: a lost wake-up hangs.
        let monitor = Arc::new(Monitor::new(0u64));
        let rounds = 2_000;
        let other = {
            let monitor = monitor.clone();
            std::thread::spawn(move || {
                for i in 0..rounds {
                    let (mut state, _) =
                        monitor.park_until(monitor.lock(), None, |n| *n == 2 * i + 1);
                    *state += 1;
                    monitor.publish(state);
                }
            })
        };
        for i in 0..rounds {
            let (mut state, _) = monitor.park_until(monitor.lock(), None, |n| *n == 2 * i);
            *state += 1;
            monitor.publish(state);
        }
        other.join().expect("other");
        assert_eq!(*monitor.lock(), 2 * rounds);
    }

    #[test]
    fn spin_until_stops_at_success_or_budget() {
        let mut calls = 0;
        assert!(spin_until(|| {
            calls += 1;
            calls == 5
        }));
        assert_eq!(calls, 5);
        assert!(!spin_until(|| false));
    }
}
