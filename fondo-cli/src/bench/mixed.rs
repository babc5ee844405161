//! Short tasks behind a long one (head-of-line blocking), on a pool of 2: one
//! `apply_async` of a task that sleeps `hol_long_ms` (300 ms), then at once
//! `hol_fast_tasks` (8) `apply_async` of a no-op; each fast task's latency runs from
//! the moment it is submitted to the moment its `get()` returns (they are read in
//! submission order). One worker is busy with the long task, the other is idle: the
//! fast tasks should run there at once, not wait in the busy worker's pipeline. Each
//! run gives two samples, the median and the largest of the fast latencies; the run
//! ends when the long task has returned, so the next one starts on two idle workers.
//! Beside it, the same fast tasks with no long task (both workers idle): what 8
//! no-ops submitted together take anyway. On `Pool::processes(2)` and
//! `Pool::threads(2)`; CPython's `Pool(2)` runs the same scenarios
//! (`cpython_reference.py`).

use super::overhead::noop;
use super::stats::{BoxError, Unit, sample};
use super::{Runner, Sizes};
use fondo::Pool;
use std::time::{Duration, Instant};

/// Steps this module adds to the progress bar.
pub const STEPS: u64 = 8;

/// The long task: sleeps `ms` milliseconds.
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// One run on `pool`: `long(long_ms)` unless `long_ms` is `None`, then `tasks` ×
/// `fast()` at once; the median and the largest latency of the fast tasks, in µs.
/// Returns once the long task has returned too.
fn fast_behind<B, L, F>(
    pool: &Pool<B>,
    long: L,
    fast: F,
    long_ms: Option<u64>,
    tasks: usize,
) -> Result<(f64, f64), BoxError>
where
    B: fondo::Backend + fondo::Runs<L, (u64,)> + fondo::Runs<F, ()>,
    L: fondo::Task<(u64,), Output = ()>,
    F: fondo::Task<(), Output = ()> + Copy,
{
    let long = long_ms.map(|ms| pool.apply_async(long, (ms,)));
    let submitted: Vec<_> = (0..tasks.max(1))
        .map(|_| (Instant::now(), pool.apply_async(fast, ())))
        .collect();
    let mut micros = Vec::with_capacity(submitted.len());
    for (at, r) in submitted {
        r.get()?;
        micros.push(at.elapsed().as_secs_f64() * 1e6);
    }
    if let Some(long) = long {
        long.get()?;
    }
    micros.sort_by(f64::total_cmp);
    Ok((micros[micros.len() / 2], micros[micros.len() - 1]))
}

/// Runs `once` once untimed, then `repeat` times: the medians and the maxima of the
/// runs.
fn measure(
    repeat: usize,
    mut once: impl FnMut() -> Result<(f64, f64), BoxError>,
) -> Result<(Vec<f64>, Vec<f64>), BoxError> {
    let mut maxima = Vec::with_capacity(repeat + 1);
    let medians = sample(repeat, || {
        let (median, max) = once()?;
        maxima.push(max);
        Ok(median)
    })?;
    // The warm-up's max is the first: dropped, as `sample` drops its median.
    maxima.remove(0);
    Ok((medians, maxima))
}

/// Measures every figure of this module.
pub fn run(r: &mut Runner, sizes: &Sizes) {
    let repeat = r.repeat;
    let tasks = sizes.hol_fast_tasks;
    let scenarios = [
        ("hol_fast_latency", Some(sizes.hol_long_ms)),
        ("hol_idle_latency", None),
    ];
    for (name, long_ms) in scenarios {
        for system in ["fondo_processes", "fondo_threads"] {
            // One measurement gives both figures: the medians here, the maxima kept
            // for the next step.
            let mut maxima = Vec::new();
            r.step(
                &format!("{name}_median"),
                system,
                Some(2),
                Unit::Micros,
                || {
                    let (medians, max) = if system == "fondo_processes" {
                        let pool = Pool::processes(2)?;
                        measure(repeat, || {
                            fast_behind(&pool, sleep_ms, noop, long_ms, tasks)
                        })?
                    } else {
                        let pool = Pool::threads(2)?;
                        measure(repeat, || {
                            fast_behind(&pool, sleep_ms, noop, long_ms, tasks)
                        })?
                    };
                    maxima = max;
                    Ok(medians)
                },
            );
            r.step(
                &format!("{name}_max"),
                system,
                Some(2),
                Unit::Micros,
                || {
                    if maxima.len() == repeat {
                        Ok(maxima)
                    } else {
                        Err(format!("not measured: see {name}_median").into())
                    }
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tasks_are_timed_and_the_long_one_awaited() {
        let pool = Pool::threads(2).expect("pool");
        let t = Instant::now();
        let (median, max) = fast_behind(&pool, sleep_ms, noop, Some(50), 4).expect("run");
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "returned before the long task"
        );
        assert!(0.0 < median && median <= max, "{median} {max}");
        let (medians, maxima) =
            measure(3, || fast_behind(&pool, sleep_ms, noop, None, 4)).expect("runs");
        assert_eq!((medians.len(), maxima.len()), (3, 3));
    }
}
