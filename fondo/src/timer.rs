//! `Timer`, the notebook's `Temporizador`: a stopwatch, and a guard that reports on scope exit.

use std::fmt;
use std::time::{Duration, Instant};

/// A stopwatch on the monotonic clock, the notebook's `Temporizador`.
///
/// Python's `with Temporizador() as temp: …` becomes either an explicit timer:
///
/// ```
/// use fondo::Timer;
///
/// let t = Timer::start();
/// std::thread::sleep(std::time::Duration::from_millis(5));
/// assert!(t.elapsed_secs() >= 0.005);
/// println!("Tiempo total: {:.4} s", t.elapsed_secs());
/// ```
///
/// or a scope guard, [`Timer::scope`] / [`Timer::scope_with`], that reports when the scope ends.
///
/// The clock is [`Instant`], which never goes backwards, so `elapsed` never decreases; it is
/// not wall-clock time and is unaffected by changes to the system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timer {
    started: Instant,
}

impl Timer {
    /// Starts a timer now.
    ///
    /// ```
    /// let t = fondo::Timer::start();
    /// println!("{:.4} s", t.elapsed_secs());
    /// ```
    pub fn start() -> Timer {
        Timer {
            started: Instant::now(),
        }
    }

    /// Time since the timer was started or last restarted.
    ///
    /// ```
    /// let t = fondo::Timer::start();
    /// let (a, b) = (t.elapsed(), t.elapsed());
    /// assert!(b >= a);
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// [`elapsed`](Timer::elapsed) in seconds, for printing as `{:.4} s` like the notebook.
    ///
    /// ```
    /// let t = fondo::Timer::start();
    /// assert!(t.elapsed_secs() >= 0.0);
    /// ```
    pub fn elapsed_secs(&self) -> f64 {
        self.elapsed().as_secs_f64()
    }

    /// Starts counting again from zero.
    ///
    /// ```
    /// let mut t = fondo::Timer::start();
    /// for step in ["load", "compute"] {
    ///     // … work …
    ///     println!("{step}: {:.4} s", t.elapsed_secs());
    ///     t.restart(); // time each step on its own
    /// }
    /// ```
    pub fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// A guard that prints `"{label}: {secs:.4} s"` to stderr when dropped.
    ///
    /// Bind it to a named variable such as `_t`: `let _ = Timer::scope(…)` drops it, and so
    /// reports, at once.
    ///
    /// ```
    /// use fondo::Timer;
    ///
    /// {
    ///     let _t = Timer::scope("factorial 1000..2000");
    ///     let _x: u64 = (1..=20).product();
    /// } // prints "factorial 1000..2000: 0.0000 s" here
    /// ```
    pub fn scope(label: impl Into<String>) -> TimerGuard<'static> {
        let label = label.into();
        Timer::scope_with(move |d| crate::diag::diag!("{label}: {:.4} s", d.as_secs_f64()))
    }

    /// A guard that calls `f` with the elapsed time when dropped, exactly once.
    ///
    /// `f` may borrow from the enclosing scope, so the time can be kept:
    ///
    /// ```
    /// use std::time::Duration;
    /// use fondo::Timer;
    ///
    /// let mut took = Duration::ZERO;
    /// {
    ///     let _t = Timer::scope_with(|d| took = d);
    ///     std::thread::sleep(Duration::from_millis(5));
    /// }
    /// assert!(took >= Duration::from_millis(5));
    /// ```
    ///
    /// The guard also runs `f` when its scope is left by a panic; a panic inside `f` then
    /// aborts the process, as any panic in a destructor during unwinding does.
    pub fn scope_with<'a>(f: impl FnOnce(Duration) + 'a) -> TimerGuard<'a> {
        TimerGuard {
            timer: Timer::start(),
            report: Some(Box::new(f)),
        }
    }
}

impl Default for Timer {
    /// Same as [`Timer::start`].
    fn default() -> Timer {
        Timer::start()
    }
}

/// Reports the time from its creation to its drop; made by [`Timer::scope`] and
/// [`Timer::scope_with`].
///
/// The lifetime `'a` is that of what the report closure borrows (`'static` for
/// [`Timer::scope`]).
#[must_use = "the guard measures until it is dropped; dropped here, it measures nothing"]
pub struct TimerGuard<'a> {
    timer: Timer,
    // An Option so that `drop` can move the FnOnce out; boxed so the guard has one nameable
    // type whatever the closure (one allocation, negligible next to anything worth timing).
    report: Option<Box<dyn FnOnce(Duration) + 'a>>,
}

impl TimerGuard<'_> {
    /// Time since the guard was created, without ending it.
    ///
    /// ```
    /// let g = fondo::Timer::scope_with(|_| {});
    /// assert!(g.elapsed() <= g.elapsed());
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.timer.elapsed()
    }
}

impl Drop for TimerGuard<'_> {
    fn drop(&mut self) {
        let elapsed = self.timer.elapsed();
        if let Some(report) = self.report.take() {
            report(elapsed);
        }
    }
}

impl fmt::Debug for TimerGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerGuard")
            .field("timer", &self.timer)
            .finish_non_exhaustive()
    }
}
