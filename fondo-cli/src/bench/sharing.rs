//! Issue 16's figures: read-only data shared with the workers (`fondo::Shared`,
//! `Pool::map_with`) and numeric vectors crossing as raw bytes (`fondo::Array`),
//! each beside what it replaces, measured in the same run. All on a process pool of
//! 2 workers.
//!
//! - **Context** (`map_with`). A context is a struct whose `Vec<f64>` crosses as raw
//!   bytes (`#[serde(with = "fondo::array")]`), of `context_small_bytes` (1 KiB) or
//!   `context_big_bytes` (64 MiB). `map_with(&ctx, noop, 0..noop_tasks)` is timed
//!   once the context is in the workers (the warm-up map delivered it): a task
//!   carries the context's id, never the context, so both rates should match. The
//!   one-time cost is its own figure: the first `map_with` with a new context on a
//!   warm pool, which delivers it to each worker and decodes it there. And the
//!   bytes a task's arguments take, `postcard` of `(context, 0u64)`, for both.
//! - **Shared array**. `Shared::<[f64]>::from_slice` of `shared_big_bytes` (1 GiB;
//!   and `shared_small_bytes`, 64 MiB, to show attaching does not depend on size):
//!   - *first apply*: on a fresh pool of 2 whose workers have both run tasks with
//!     a share of one number (so that the code receiving a share has run once in
//!     each), one `apply` of a task that reads only `data.len()`, against the same
//!     with a `u64` argument instead of the share; the difference is what attaching
//!     a share costs (the memfd over the socket, an `mmap`). Each sample is the
//!     median of 5 fresh pools.
//!   - *scan*: both workers sum the big share, half each, reading it in place; GB/s
//!     of bytes read, once each worker has read it whole (its pages mapped). Beside
//!     it one thread copies the same share into a vector it has already written
//!     (memcpy: each byte read once and written once; GB/s of bytes copied).
//!   - *RSS*: each worker's `VmRSS` and `RssShmem` (`/proc/PID/status`) before and
//!     after a task that reads the first `shared_touch_bytes` (1 MiB) of the big
//!     share, on a fresh pool (the task attaches it); the larger growth of the two
//!     workers, in MiB.
//! - **Numeric arrays**. `payload_tasks` × `payload_bytes` of `f64`s round trip
//!   through an identity on `fondo::Array<f64>` and on a plain `Vec<f64>` (serde
//!   sends that one element by element), measured as the payload figures are (2 s
//!   of warm-up, then the samples), beside the byte-string payload.

use super::overhead::{noop1, payload, warm_up};
use super::stats::{BoxError, Unit, sample, timed};
use super::{Runner, Sizes};
// The demo's numbers, `i % 1000`, whose sum is known exactly in any order.
use crate::demo::shared::{numbers, numbers_sum};
use fondo::{Array, Pool, Processes, Shared};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::hint::black_box;
use std::time::Duration;

/// Steps this module adds to the progress bar.
pub const STEPS: u64 = 15;

const PROC: &str = "fondo_processes";

/// The context of the `map_with` figures: a model's weights, as raw bytes.
#[derive(Serialize, Deserialize)]
pub struct Weights {
    /// `bytes / 8` weights.
    #[serde(with = "fondo::array")]
    pub w: Vec<f64>,
}

impl Weights {
    fn of(bytes: usize) -> Weights {
        Weights {
            w: vec![0.5; bytes / 8],
        }
    }
}

/// The `map_with` task: a no-op that looks at its context.
fn with_context(ctx: &Weights, _x: u32) {
    black_box(ctx.w.len());
}

/// Tasks per second of `map_with(ctx, noop, 0..n)`.
fn map_with_rate(pool: &Pool<Processes>, ctx: &Shared<Weights>, n: usize) -> Result<f64, BoxError> {
    let (t, out) = timed(|| pool.map_with(ctx, with_context, 0..n as u32));
    if out?.len() != n {
        return Err("map_with returned the wrong number of results".into());
    }
    Ok(n as f64 / t)
}

/// A sum the compiler vectorises (eight independent accumulators), so that reading
/// memory, not the latency of one chain of additions, bounds it.
pub fn sum(xs: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// The scan task: sums `data[lo..hi]` in place; returns who did it.
fn scan(data: Shared<[f64]>, lo: usize, hi: usize) -> (u32, f64) {
    (std::process::id(), sum(&data[lo..hi]))
}

/// The first-apply task: reads nothing of the share but its length.
fn share_len(data: Shared<[f64]>) -> u64 {
    data.len() as u64
}

/// Its baseline: the same round trip with a `u64` where the share's id would be.
fn echo(x: u64) -> u64 {
    x
}

/// The RSS task: reads the first `elems` numbers, then lingers so that the other
/// worker takes the other task.
fn touch(data: Shared<[f64]>, elems: usize) -> (u32, f64) {
    let s = sum(&data[..elems.min(data.len())]);
    std::thread::sleep(Duration::from_millis(10));
    (std::process::id(), s)
}

/// The numeric payloads: the same `f64`s as raw bytes, and as a serde sequence.
fn identity_array(a: Array<f64>) -> Array<f64> {
    a
}

fn identity_vec_f64(v: Vec<f64>) -> Vec<f64> {
    v
}

/// The warm-up task: takes a share, reads nothing of it.
fn with_share(_data: Shared<[f64]>, _x: u32) {}

/// A fresh pool of 2 whose workers have both run tasks, with a share of one number:
/// the code that receives a share has run in each worker before the share measured
/// arrives (a process's first share also pays for its first run of that code). The
/// warm-up share is returned, to be kept while the pool is measured.
fn warm_pool() -> Result<(Pool<Processes>, Shared<[f64]>), BoxError> {
    let pool = Pool::processes(2)?;
    let tiny = Shared::from_slice(&[0.0f64])?;
    pool.starmap(with_share, (0..1000).map(|x| (tiny.clone(), x)))?;
    Ok((pool, tiny))
}

/// Microseconds of the first `apply` on a fresh warm pool: the median of 5
/// pools, for each of no share (a `u64` where the share's id would be) and
/// `shares`. The cases take turns pool by pool, so their ratios compare the same
/// moments of a noisy machine (one after the other, a busy spell during one case
/// made 1 GiB ÷ 64 MiB read 1.9× in one run and 0.65× in the next).
fn first_applies<const N: usize>(shares: [&Shared<[f64]>; N]) -> Result<Vec<f64>, BoxError> {
    const POOLS: usize = 5;
    let mut times = vec![Vec::with_capacity(POOLS); N + 1];
    for _ in 0..POOLS {
        for (case, times) in times.iter_mut().enumerate() {
            let (pool, _warm) = warm_pool()?;
            let (t, got, want) = match case.checked_sub(1).map(|i| shares[i]) {
                Some(s) => {
                    let (t, got) = timed(|| pool.apply(share_len, (s.clone(),)));
                    (t, got?, s.len() as u64)
                }
                None => {
                    let (t, got) = timed(|| pool.apply(echo, (7,)));
                    (t, got?, 7)
                }
            };
            if got != want {
                return Err("the first apply returned a wrong value".into());
            }
            times.push(t * 1e6);
        }
    }
    Ok(times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// GB/s of both workers summing `data`, half each.
fn scan_rate(pool: &Pool<Processes>, data: &Shared<[f64]>) -> Result<f64, BoxError> {
    let n = data.len();
    let mid = n / 2;
    let halves = [(data.clone(), 0, mid), (data.clone(), mid, n)];
    let (t, out) = timed(|| pool.starmap(scan, halves));
    let total: f64 = out?.iter().map(|o| o.1).sum();
    if total != numbers_sum(n) {
        return Err(format!("the scan summed {total}, not {}", numbers_sum(n)).into());
    }
    Ok(data.byte_len() as f64 / t / 1e9)
}

/// Has each worker read all of `data` once (at most 10 tries), so that the samples
/// see its pages mapped in both, whichever half each worker gets.
fn read_whole_in_each_worker(pool: &Pool<Processes>, data: &Shared<[f64]>) -> Result<(), BoxError> {
    let n = data.len();
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let out = pool.starmap(scan, [(data.clone(), 0, n), (data.clone(), 0, n)])?;
        seen.extend(out.iter().map(|o| o.0));
        if seen.len() >= pool.workers() {
            break;
        }
    }
    Ok(())
}

/// `VmRSS` and `RssShmem` of process `pid`, in KiB.
pub fn memory_kib(pid: u32) -> Result<(f64, f64), BoxError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let field = |key: &str| -> Result<f64, BoxError> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{path}: no {key} line in kB").into())
    };
    Ok((field("VmRSS:")?, field("RssShmem:")?))
}

/// The largest growth of a worker's `VmRSS` and of its `RssShmem`, in MiB, over a
/// task that reads the first `bytes` of `data`, on a fresh warm pool.
fn rss_growth(data: &Shared<[f64]>, bytes: usize) -> Result<(f64, f64), BoxError> {
    let (pool, _warm) = warm_pool()?;
    let pids = pool.pids();
    let before = pids
        .iter()
        .map(|&p| memory_kib(p))
        .collect::<Result<Vec<_>, _>>()?;
    let elems = bytes / 8;
    let out = pool.starmap(touch, [(data.clone(), elems), (data.clone(), elems)])?;
    if out
        .iter()
        .any(|o| o.1 != numbers_sum(elems.min(data.len())))
    {
        return Err("the RSS task summed wrongly".into());
    }
    let ran: HashSet<u32> = out.iter().map(|o| o.0).collect();
    let (mut rss, mut shmem) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (pid, (rss0, shmem0)) in pids.iter().zip(before) {
        if ran.contains(pid) {
            let (rss1, shmem1) = memory_kib(*pid)?;
            rss = rss.max((rss1 - rss0) / 1024.0);
            shmem = shmem.max((shmem1 - shmem0) / 1024.0);
        }
    }
    if ran.iter().any(|p| !pids.contains(p)) || rss == f64::NEG_INFINITY {
        return Err("the RSS tasks ran on workers that are no longer there".into());
    }
    Ok((rss, shmem))
}

/// A `Shared<[f64]>` of `bytes` of the demo's numbers, or why not.
fn share(bytes: usize) -> Result<Shared<[f64]>, String> {
    let values = numbers(bytes / 8);
    Shared::from_slice(&values).map_err(|e| format!("a {} MiB share: {e}", bytes >> 20))
}

/// Measures every figure of this module.
pub fn run(r: &mut Runner, sizes: &Sizes) {
    context(r, sizes);
    shared_array(r, sizes);
    arrays(r, sizes);
}

fn context(r: &mut Runner, sizes: &Sizes) {
    let (repeat, n) = (r.repeat, sizes.noop_tasks);
    let both = [
        ("small", sizes.context_small_bytes),
        ("big", sizes.context_big_bytes),
    ];
    for (which, bytes) in both {
        r.step(
            &format!("map_with_{which}_context"),
            PROC,
            Some(2),
            Unit::TasksPerSec,
            || {
                let pool = Pool::processes(2)?;
                let ctx = Shared::new(Weights::of(bytes))?;
                sample(repeat, || map_with_rate(&pool, &ctx, n))
            },
        );
    }
    for (which, bytes) in both {
        r.step(
            &format!("map_with_first_{which}_context"),
            PROC,
            Some(2),
            Unit::Millis,
            || {
                let pool = Pool::processes(2)?;
                pool.map(noop1, 0..n as u32)?;
                sample(repeat, || {
                    // A new context each time, made before the clock starts.
                    let ctx = Shared::new(Weights::of(bytes))?;
                    Ok(n as f64 / map_with_rate(&pool, &ctx, n)? * 1e3)
                })
            },
        );
    }
    for (which, bytes) in both {
        r.step(
            &format!("context_bytes_per_task_{which}"),
            "fondo",
            None,
            Unit::Bytes,
            || {
                let ctx = Shared::new(Weights::of(bytes))?;
                sample(repeat, || {
                    Ok(postcard::to_allocvec(&(ctx.clone(), 0u64))?.len() as f64)
                })
            },
        );
    }
}

fn shared_array(r: &mut Runner, sizes: &Sizes) {
    let repeat = r.repeat;
    let (small_mib, big_mib) = (sizes.shared_small_bytes >> 20, sizes.shared_big_bytes >> 20);
    r.pb.set_message(format!(
        "shared arrays: filling {small_mib} and {big_mib} MiB"
    ));
    let small = share(sizes.shared_small_bytes);
    let big = share(sizes.shared_big_bytes);
    r.steps_together(
        [
            ("shared_first_apply_none", Unit::Micros),
            ("shared_first_apply_small", Unit::Micros),
            ("shared_first_apply_big", Unit::Micros),
        ],
        PROC,
        Some(2),
        || {
            let small = small.as_ref().map_err(Clone::clone)?;
            let big = big.as_ref().map_err(Clone::clone)?;
            first_applies([small, big])?; // untimed, as `sample`'s first run
            let mut cases: [Vec<f64>; 3] = Default::default();
            for _ in 0..repeat {
                for (case, t) in cases.iter_mut().zip(first_applies([small, big])?) {
                    case.push(t);
                }
            }
            Ok(cases)
        },
    );
    drop(small);
    r.step("shared_scan", PROC, Some(2), Unit::GbPerSec, || {
        let data = big.as_ref().map_err(Clone::clone)?;
        let pool = Pool::processes(2)?;
        read_whole_in_each_worker(&pool, data)?;
        sample(repeat, || scan_rate(&pool, data))
    });
    r.step("shared_memcpy", "rust", Some(1), Unit::GbPerSec, || {
        let data = big.as_ref().map_err(Clone::clone)?;
        let mut dst = vec![0.0f64; data.len()];
        sample(repeat, || {
            let (t, ()) = timed(|| {
                dst.copy_from_slice(black_box(&data[..]));
                black_box(&mut dst);
            });
            Ok(data.byte_len() as f64 / t / 1e9)
        })
    });
    // One measurement gives both figures: VmRSS here, RssShmem kept for the next step.
    let mut shmem = Vec::new();
    r.step("shared_rss_growth", PROC, Some(2), Unit::MiB, || {
        let data = big.as_ref().map_err(Clone::clone)?;
        rss_growth(data, sizes.shared_touch_bytes)?; // warm-up, as `sample` does
        let mut rss = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let (total, shared) = rss_growth(data, sizes.shared_touch_bytes)?;
            rss.push(total);
            shmem.push(shared);
        }
        Ok(rss)
    });
    r.step("shared_rss_shmem_growth", PROC, Some(2), Unit::MiB, || {
        if shmem.len() == repeat {
            Ok(shmem)
        } else {
            Err("not measured: see shared_rss_growth".into())
        }
    });
}

fn arrays(r: &mut Runner, sizes: &Sizes) {
    let (repeat, size, tasks) = (r.repeat, sizes.payload_bytes, sizes.payload_tasks);
    r.step("array_roundtrip", PROC, Some(2), Unit::GbPerSec, || {
        let pool = Pool::processes(2)?;
        let make = |n: usize| Array(vec![0.5f64; n / 8]);
        let len = |a: &Array<f64>| a.len() * 8;
        warm_up(|| payload(&pool, identity_array, make, len, size, tasks))?;
        (0..repeat)
            .map(|_| payload(&pool, identity_array, make, len, size, tasks))
            .collect()
    });
    r.step(
        "payload_roundtrip_vec_f64",
        PROC,
        Some(2),
        Unit::GbPerSec,
        || {
            let pool = Pool::processes(2)?;
            let make = |n: usize| vec![0.5f64; n / 8];
            let len = |v: &Vec<f64>| v.len() * 8;
            warm_up(|| payload(&pool, identity_vec_f64, make, len, size, tasks))?;
            (0..repeat)
                .map(|_| payload(&pool, identity_vec_f64, make, len, size, tasks))
                .collect()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_numbers_sum_is_exact() {
        for n in [0, 1, 7, 999, 1000, 1001, 123_457] {
            let xs = numbers(n);
            assert_eq!(sum(&xs), numbers_sum(n), "{n}");
            assert_eq!(xs.iter().sum::<f64>(), numbers_sum(n), "{n}");
        }
    }

    #[test]
    fn this_process_memory_reads() {
        let (rss, shmem) = memory_kib(std::process::id()).expect("status");
        assert!(rss > 0.0 && shmem >= 0.0 && shmem <= rss);
    }

    #[test]
    fn a_context_costs_a_task_the_same_whatever_its_size() {
        let small = Shared::new(Weights::of(1 << 10)).expect("share");
        let big = Shared::new(Weights::of(4 << 20)).expect("share");
        let bytes = |c: &Shared<Weights>| postcard::to_allocvec(&(c.clone(), 0u64)).expect("e");
        assert_eq!(bytes(&small).len(), bytes(&big).len());
        assert!(bytes(&big).len() <= 16);
    }
}
