//! One measured figure: its samples, their summary, and how to print its unit.

use serde::Serialize;
use std::time::Instant;

/// What a figure's numbers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Seconds per run (lower is better).
    #[serde(rename = "s")]
    Seconds,
    /// Milliseconds per run (lower is better).
    #[serde(rename = "ms")]
    Millis,
    /// Microseconds per operation (lower is better).
    #[serde(rename = "us")]
    Micros,
    /// Tasks per second (higher is better).
    #[serde(rename = "tasks_per_s")]
    TasksPerSec,
    /// Decimal gigabytes per second (higher is better).
    #[serde(rename = "GB_per_s")]
    GbPerSec,
    /// Bytes (lower is better): what a task's arguments take encoded.
    #[serde(rename = "bytes")]
    Bytes,
    /// Mebibytes (lower is better): memory a process gained.
    #[serde(rename = "MiB")]
    MiB,
}

impl Unit {
    /// The spelling used in the JSON (and by the CPython script).
    pub fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "s" => Unit::Seconds,
            "ms" => Unit::Millis,
            "us" => Unit::Micros,
            "tasks_per_s" => Unit::TasksPerSec,
            "GB_per_s" => Unit::GbPerSec,
            "bytes" => Unit::Bytes,
            "MiB" => Unit::MiB,
            _ => return None,
        })
    }

    /// Rates are better high, times low.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::TasksPerSec | Unit::GbPerSec)
    }

    /// A value in this unit, for people.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Seconds => format!("{v:.4} s"),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Micros if v < 10.0 => format!("{v:.2} µs"),
            Unit::Micros => format!("{v:.1} µs"),
            Unit::TasksPerSec if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
            Unit::TasksPerSec => format!("{:.1} k/s", v / 1e3),
            Unit::GbPerSec => format!("{v:.2} GB/s"),
            Unit::Bytes => format!("{v:.0} B"),
            Unit::MiB => format!("{v:.2} MiB"),
        }
    }
}

/// The samples of one (name, system, workers) measurement and their summary.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured: `factorial`, `apply_async_roundtrip`, …
    pub name: String,
    /// Who ran it: `rust_single`, `fondo_processes`, `cpython_pool`, …
    pub system: String,
    /// Worker count, when the figure has one.
    pub workers: Option<usize>,
    pub unit: Unit,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// `min` for times, `max` for rates.
    pub best: f64,
    pub higher_is_better: bool,
    pub samples: Vec<f64>,
}

impl Figure {
    /// Summarises `samples` (at least one).
    pub fn new(
        name: &str,
        system: &str,
        workers: Option<usize>,
        unit: Unit,
        samples: Vec<f64>,
    ) -> Figure {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let (min, max) = (sorted[0], sorted[n - 1]);
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let higher_is_better = unit.higher_is_better();
        Figure {
            name: name.into(),
            system: system.into(),
            workers,
            unit,
            min,
            median,
            max,
            best: if higher_is_better { max } else { min },
            higher_is_better,
            samples,
        }
    }
}

/// What the measuring closures return on failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `run` once untimed (warm-up), then `repeat` times, collecting its samples.
pub fn sample(
    repeat: usize,
    mut run: impl FnMut() -> Result<f64, BoxError>,
) -> Result<Vec<f64>, BoxError> {
    run()?;
    (0..repeat).map(|_| run()).collect()
}

/// Seconds taken by `f`, with its output.
pub fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        let f = Figure::new("x", "y", None, Unit::Seconds, vec![3.0, 1.0, 2.0]);
        assert_eq!((f.min, f.median, f.max, f.best), (1.0, 2.0, 3.0, 1.0));
        let f = Figure::new("x", "y", None, Unit::GbPerSec, vec![4.0, 1.0, 2.0, 3.0]);
        assert_eq!((f.median, f.best), (2.5, 4.0));
    }

    #[test]
    fn units_print_readably() {
        assert_eq!(Unit::TasksPerSec.format(2.5e7), "25.00 M/s");
        assert_eq!(Unit::TasksPerSec.format(47_000.0), "47.0 k/s");
        assert_eq!(Unit::Micros.format(4.25), "4.25 µs");
        assert_eq!(Unit::parse("GB_per_s"), Some(Unit::GbPerSec));
        assert_eq!(Unit::Bytes.format(9.0), "9 B");
        assert_eq!(Unit::MiB.format(1.0625), "1.06 MiB");
        assert_eq!(Unit::parse("MiB"), Some(Unit::MiB));
    }
}
