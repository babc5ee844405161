//! The notebook's experiment: `factorial(x)` for x in 1000..2000 with num-bigint,
//! on one thread, on `std::thread`s, on fondo's threads and processes, and on rayon.

use super::Runner;
use super::stats::{BoxError, Unit, sample, timed};
/// The notebook's loop, the same function `fondo demo` runs.
pub use crate::demo::tasks::factorial;
use crate::demo::tasks::{END, FIRST};
use fondo::Pool;
use num_bigint::BigUint;
use rayon::prelude::*;
use std::ops::Range;

/// The notebook's range.
pub const NOTEBOOK_RANGE: Range<u32> = FIRST..END;

/// One thread, in input order: the reference every result is checked against.
pub fn single(xs: Range<u32>) -> Vec<BigUint> {
    xs.map(factorial).collect()
}

/// The notebook's thread split: `n` contiguous, equally long slices of the range,
/// one `std::thread` each (unbalanced: later numbers cost more).
pub fn std_thread_split(xs: Range<u32>, n: usize) -> Vec<BigUint> {
    let len = (xs.end - xs.start) as usize;
    let n = n.clamp(1, len.max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|k| {
                let lo = xs.start + (len * k / n) as u32;
                let hi = xs.start + (len * (k + 1) / n) as u32;
                s.spawn(move || single(lo..hi))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a factorial thread panicked"))
            .collect()
    })
}

/// The systems measured, in table order: (system id, label).
pub const SYSTEMS: [(&str, &str); 5] = [
    ("rust_single", "Rust, one thread"),
    ("std_thread_split", "std::thread split"),
    ("fondo_threads", "fondo Pool::threads"),
    ("fondo_processes", "fondo Pool::processes"),
    ("rayon", "rayon ThreadPool"),
];

/// Steps this module adds to the progress bar.
pub fn steps(workers: &[usize]) -> u64 {
    1 + 4 * workers.len() as u64
}

fn check(got: &[BigUint], want: &[BigUint], who: &str) -> Result<(), BoxError> {
    if got != want {
        return Err(format!("{who}: factorials differ from the single-thread answer").into());
    }
    Ok(())
}

/// Measures every system at every worker count.
pub fn run(r: &mut Runner, workers: &[usize], xs: Range<u32>) {
    let reference = single(xs.clone());
    let repeat = r.repeat;
    let want = &reference;
    r.step("factorial", "rust_single", Some(1), Unit::Seconds, || {
        sample(repeat, || {
            let (t, v) = timed(|| single(xs.clone()));
            check(&v, want, "single thread")?;
            Ok(t)
        })
    });
    for &w in workers {
        r.step(
            "factorial",
            "std_thread_split",
            Some(w),
            Unit::Seconds,
            || {
                sample(repeat, || {
                    let (t, v) = timed(|| std_thread_split(xs.clone(), w));
                    check(&v, want, "std::thread")?;
                    Ok(t)
                })
            },
        );
        r.step("factorial", "fondo_threads", Some(w), Unit::Seconds, || {
            let pool = Pool::threads(w)?;
            sample(repeat, || {
                let (t, v) = timed(|| pool.map(factorial, xs.clone()));
                check(&v?, want, "fondo threads")?;
                Ok(t)
            })
        });
        r.step(
            "factorial",
            "fondo_processes",
            Some(w),
            Unit::Seconds,
            || {
                let pool = Pool::processes(w)?;
                sample(repeat, || {
                    let (t, v) = timed(|| pool.map(factorial, xs.clone()));
                    check(&v?, want, "fondo processes")?;
                    Ok(t)
                })
            },
        );
        r.step("factorial", "rayon", Some(w), Unit::Seconds, || {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(w).build()?;
            sample(repeat, || {
                let (t, v) = timed(|| {
                    pool.install(|| {
                        xs.clone()
                            .into_par_iter()
                            .map(factorial)
                            .collect::<Vec<_>>()
                    })
                });
                check(&v, want, "rayon")?;
                Ok(t)
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factorial_is_right() {
        assert_eq!(factorial(0), BigUint::from(1u32));
        assert_eq!(factorial(10), BigUint::from(3_628_800u32));
    }

    #[test]
    fn split_keeps_order_for_any_count() {
        let want = single(1000..1013);
        for n in 1..=5 {
            assert_eq!(std_thread_split(1000..1013, n), want);
        }
    }
}
