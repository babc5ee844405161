//! What a [`fondo::Journal`] costs: `map` of a 10 µs task and of a no-op on
//! `Pool::processes(2)`, with and without a journal, in one run (best of several
//! rounds, alternating, so both see the same machine), and the bytes each result takes
//! on disk. Also what a rerun costs when every result is on record already, and the
//! 10 µs figure again with the same `chunksize` on both sides.
//!
//! ```text
//! cargo run --release -p fondo --example journal_cost [-- ROUNDS [DIR]]
//! ```
//!
//! DIR (default: the system's temporary directory) holds the journals: the figures
//! depend on its file system, since results are written as they arrive and flushed to
//! disk every 200 ms. On a shared machine the ratios move from run to run.

use std::time::{Duration, Instant};

use fondo::{Journal, Pool};

fn ten_micros(x: u64) -> u64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(10) {
        std::hint::spin_loop();
    }
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn noop(x: u64) -> u64 {
    x
}

struct Figures {
    plain: Duration,
    journaled: Duration,
    resumed: Duration,
    bytes_per_result: f64,
}

fn measure<F>(
    pool: &Pool<fondo::Processes>,
    dir: &std::path::Path,
    rounds: usize,
    n: u64,
    f: F,
) -> fondo::Result<Figures>
where
    F: Fn(u64) -> u64 + fondo::Task<(u64,), Output = u64> + Copy,
    fondo::Processes: fondo::Runs<F, (u64,)>,
{
    let path = dir.join(format!("journal-cost-{}.journal", std::process::id()));
    let mut best = Figures {
        plain: Duration::MAX,
        journaled: Duration::MAX,
        resumed: Duration::MAX,
        bytes_per_result: 0.0,
    };
    // Warm up: workers started, pages touched.
    pool.map(f, 0..n)?;
    for _ in 0..rounds {
        let t = Instant::now();
        let plain = pool.map(f, 0..n)?;
        best.plain = best.plain.min(t.elapsed());

        let _ = std::fs::remove_file(&path);
        let t = Instant::now();
        let journaled = Journal::open(&path)?.map(pool, f, 0..n)?;
        best.journaled = best.journaled.min(t.elapsed());
        assert_eq!(plain, journaled);

        let t = Instant::now();
        let resumed = Journal::open(&path)?.map(pool, f, 0..n)?;
        best.resumed = best.resumed.min(t.elapsed());
        assert_eq!(plain, resumed);

        let size = std::fs::metadata(&path)?.len();
        best.bytes_per_result = size as f64 / n as f64;
    }
    let _ = std::fs::remove_file(&path);
    Ok(best)
}

fn report(name: &str, n: u64, m: Figures) {
    println!(
        "journal_cost: map({name}) x {n}: plain {:.4} s, journaled {:.4} s: ratio {:.3}; \
         rerun with all {n} on record {:.4} s; {:.1} bytes per result on disk",
        m.plain.as_secs_f64(),
        m.journaled.as_secs_f64(),
        m.journaled.as_secs_f64() / m.plain.as_secs_f64(),
        m.resumed.as_secs_f64(),
        m.bytes_per_result,
    );
}

fn main() -> fondo::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    let pool = Pool::processes(2)?;
    println!(
        "journal_cost: Pool::processes(2), journals in {}, best of {rounds} rounds",
        dir.display()
    );
    report(
        "10 µs task",
        40_000,
        measure(&pool, &dir, rounds, 40_000, ten_micros)?,
    );
    report(
        "no-op",
        1_000_000,
        measure(&pool, &dir, rounds, 1_000_000, noop)?,
    );
    // Like for like: the journal keeps to a pool's chunksize, so both sides cut the work
    // the same way and the difference is the journal's own work. (Without it, `map`'s
    // guided chunks start at an eighth of the work each, the journal's at ~2 ms: on a
    // busy machine the journal's balance better, and the ratio can drop below 1.)
    drop(pool);
    let same_chunks = Pool::builder().workers(2).chunksize(200).processes()?;
    println!("journal_cost: with chunksize(200) on both sides:");
    report(
        "10 µs task",
        40_000,
        measure(&same_chunks, &dir, rounds, 40_000, ten_micros)?,
    );
    Ok(())
}
