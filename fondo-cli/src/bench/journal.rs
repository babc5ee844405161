//! What a [`fondo::Journal`] costs, on `Pool::processes(2)`: `map` of a 10 µs task
//! (a busy loop; `journal_tasks` of them, 40k) and of a no-op (`noop_tasks`, 1M),
//! each without a journal and through one (`Journal::open` of a new file in a
//! temporary directory, then `journal.map(&pool, f, items)`: opening, writing every
//! result as it arrives and the last flush to disk are all timed), and again through
//! the same journal once every result is on record (the rerun after a kill that came
//! too late: nothing runs). Without, with and rerun alternate in each sample, so all
//! three see the same machine; the ratio with ÷ without is judged on their medians.
//! Beside them, the bytes each result takes on disk (the file's size ÷ the results)
//! and the 10 µs figures again on a pool with `chunksize(200)`: the journal keeps to
//! a pool's chunksize, so with one set both sides cut the work alike and the
//! difference is the journal's own work (without, `map`'s guided chunks start at an
//! eighth of the work each, the journal's at ≈ 5 ms of it). Journals are removed
//! as soon as they are measured.

use super::stats::{BoxError, Unit, timed};
use super::{Runner, Sizes};
use fondo::{Journal, Pool, Processes};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Steps this module adds to the progress bar.
pub const STEPS: u64 = 10;

const PROC: &str = "fondo_processes";

/// The chunksize of the like-for-like figures.
pub const SAME_CHUNKS: usize = 200;

/// The 10 µs task: spins 10 µs, then returns a hash of its input (a `u64` that
/// takes all of its 10 bytes in postcard's varint).
fn ten_micros(x: u64) -> u64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(10) {
        std::hint::spin_loop();
    }
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The no-op: gives its input back.
fn noop(x: u64) -> u64 {
    x
}

/// A directory of its own under the system's temporary directory, removed with
/// everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, BoxError> {
        let path = std::env::temp_dir().join(format!("fondo-bench-journal-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One sample of each of a map's figures: milliseconds without a journal, through a
/// new one and through a complete one, and bytes per result on disk.
struct Sample {
    plain: f64,
    journaled: f64,
    rerun: f64,
    bytes_per_result: f64,
}

/// `pool.map(f, 0..n)` without a journal, through a new journal at `path` and
/// through the same journal complete; the journal is removed afterwards.
fn once<F>(pool: &Pool<Processes>, path: &Path, f: F, n: u64) -> Result<Sample, BoxError>
where
    F: Fn(u64) -> u64 + fondo::Task<(u64,), Output = u64> + Copy,
    Processes: fondo::Runs<F, (u64,)>,
{
    let (plain_s, plain) = timed(|| pool.map(f, 0..n));
    let plain = plain?;
    let _ = std::fs::remove_file(path);
    let (journaled_s, journaled) = timed(|| Journal::open(path)?.map(pool, f, 0..n));
    if journaled? != plain {
        return Err("the journaled map returned other results".into());
    }
    let (rerun_s, rerun) = timed(|| -> fondo::Result<(usize, Vec<u64>)> {
        let mut journal = Journal::open(path)?;
        let on_record = journal.len();
        Ok((on_record, journal.map(pool, f, 0..n)?))
    });
    let (on_record, rerun) = rerun?;
    if on_record as u64 != n || rerun != plain {
        return Err(format!("the rerun found {on_record} of {n} results on record").into());
    }
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Sample {
        plain: plain_s * 1e3,
        journaled: journaled_s * 1e3,
        rerun: rerun_s * 1e3,
        bytes_per_result: size as f64 / n as f64,
    })
}

/// Every sample of a map's figures: one run untimed, then `repeat`, by figure
/// (without, with, rerun, bytes per result).
fn measure<F>(
    pool: &Pool<Processes>,
    dir: &TempDir,
    name: &str,
    f: F,
    n: u64,
    repeat: usize,
) -> Result<[Vec<f64>; 4], BoxError>
where
    F: Fn(u64) -> u64 + fondo::Task<(u64,), Output = u64> + Copy,
    Processes: fondo::Runs<F, (u64,)>,
{
    let path = dir.0.join(format!("{name}.journal"));
    once(pool, &path, f, n)?; // warm-up: workers started, pages touched
    let mut out: [Vec<f64>; 4] = Default::default();
    for _ in 0..repeat {
        let s = once(pool, &path, f, n)?;
        for (v, x) in out
            .iter_mut()
            .zip([s.plain, s.journaled, s.rerun, s.bytes_per_result])
        {
            v.push(x);
        }
    }
    Ok(out)
}

/// Records the figures `names` (without, with, rerun, bytes per result; an empty
/// name is left out) of one measurement, `measured` run in the first step.
fn steps(
    r: &mut Runner,
    names: [&str; 4],
    measured: impl FnOnce() -> Result<[Vec<f64>; 4], BoxError>,
) {
    let units = [Unit::Millis, Unit::Millis, Unit::Millis, Unit::Bytes];
    let figures = std::array::from_fn(|k| (names[k], units[k]));
    r.steps_together(figures, PROC, Some(2), measured);
}

/// Measures every figure of this module.
pub fn run(r: &mut Runner, sizes: &Sizes) {
    let repeat = r.repeat;
    let dir = TempDir::new();
    let (ten, noops) = (sizes.journal_tasks as u64, sizes.noop_tasks as u64);
    steps(
        r,
        [
            "journal_off_10us",
            "journal_on_10us",
            "journal_rerun_10us",
            "journal_bytes_per_result_10us",
        ],
        || {
            let dir = dir.as_ref().map_err(|e| e.to_string())?;
            let pool = Pool::processes(2)?;
            measure(&pool, dir, "ten_micros", ten_micros, ten, repeat)
        },
    );
    steps(
        r,
        [
            "journal_off_noop",
            "journal_on_noop",
            "journal_rerun_noop",
            "journal_bytes_per_result_noop",
        ],
        || {
            let dir = dir.as_ref().map_err(|e| e.to_string())?;
            let pool = Pool::processes(2)?;
            measure(&pool, dir, "noop", noop, noops, repeat)
        },
    );
    steps(
        r,
        [
            "journal_off_10us_chunk200",
            "journal_on_10us_chunk200",
            "",
            "",
        ],
        || {
            let dir = dir.as_ref().map_err(|e| e.to_string())?;
            let pool = Pool::builder()
                .workers(2)
                .chunksize(SAME_CHUNKS)
                .processes()?;
            measure(&pool, dir, "ten_micros_chunks", ten_micros, ten, repeat)
        },
    );
}
