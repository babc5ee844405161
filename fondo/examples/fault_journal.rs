//! Helper program for `tests/journal.rs`: a journaled map that the test kills with
//! SIGKILL at random moments and runs again. Not a usage example.
//!
//! ```text
//! fault_journal JOURNAL N [CHUNK]   a journaled map of N tasks of ~100 µs on
//!                                   Pool::processes(2) (chunksize CHUNK if given)
//! fault_journal --plain N           the same map without a journal
//! ```
//!
//! Prints `READY <results on record>` once the journal is open, then
//! `DONE <N> <digest>` when every result is in and equal to the expected one (the
//! digest is fondo's hash64 of all results). With `FONDO_SIDE_LOG=path` in the
//! environment, each task appends its position to that file, one line, when it is
//! done: the test counts executions there.

use std::fs::File;
use std::io::Write;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fondo::{Journal, Pool};

/// What task `x` returns: a fixed, well-mixed function of `x`.
fn expected(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The side log, opened once per worker process.
fn side_log() -> Option<&'static File> {
    static LOG: OnceLock<Option<File>> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::var_os("FONDO_SIDE_LOG")?;
        File::options().create(true).append(true).open(path).ok()
    })
    .as_ref()
}

fn work(x: u64) -> u64 {
    let t = Instant::now();
    let mut spin = x;
    while t.elapsed() < Duration::from_micros(100) {
        spin = std::hint::black_box(expected(spin));
    }
    if let Some(mut log) = side_log() {
        // One write of one line: O_APPEND keeps lines from both workers whole.
        let _ = log.write_all(format!("{x}\n").as_bytes());
    }
    expected(x)
}

fn digest(results: &[u64]) -> u64 {
    let bytes: Vec<u8> = results.iter().flat_map(|r| r.to_le_bytes()).collect();
    fondo::journal::hash64(&bytes)
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: fault_journal JOURNAL N [CHUNK] | fault_journal --plain N";
    let (journal, n, chunk) = match args {
        [flag, n] if flag == "--plain" => (None, n.parse::<u64>()?, None),
        [path, n] => (Some(path), n.parse::<u64>()?, None),
        [path, n, chunk] => (Some(path), n.parse::<u64>()?, Some(chunk.parse::<usize>()?)),
        _ => return Err(usage.into()),
    };
    let pool = match chunk {
        Some(c) => Pool::builder().workers(2).chunksize(c).processes()?,
        None => Pool::processes(2)?,
    };
    let results = match journal {
        Some(path) => {
            let mut journal = Journal::open(path)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "READY {}", journal.len())?;
            out.flush()?;
            drop(out);
            journal.map(&pool, work, 0..n)?
        }
        None => pool.map(work, 0..n)?,
    };
    if let Some(i) = (0..n).find(|&i| results[i as usize] != expected(i)) {
        return Err(format!(
            "result {i} is {}, expected {}",
            results[i as usize],
            expected(i)
        )
        .into());
    }
    println!("DONE {n} {:016x}", digest(&results));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fault_journal: {e}");
            ExitCode::from(1)
        }
    }
}
