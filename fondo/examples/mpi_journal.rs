//! A journaled map on MPI ranks, for `scripts/test-mpi.sh`: killed mid-way (`kill -9` of a
//! worker rank, which ends the MPI job), then the same command run again resumes.
//!
//! ```text
//! mpirun -np 3 target/release/examples/mpi_journal JOURNAL N [PIDDIR]
//! ```
//!
//! Every rank writes its PID to `PIDDIR/rank-<rank>` before `Pool::mpi()` (code before
//! it runs on every rank), so the script knows whom to kill. Rank 0 opens the journal —
//! after `Pool::mpi()`, where only it runs — and writes it; it prints
//! `mpi_journal: READY <results on record>`, then
//! `mpi: ok journal: ...` once all N results are in and equal to the expected ones.

use std::io::Write;
use std::time::{Duration, Instant};

use fondo::{Journal, Pool};

fn expected(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// About 500 µs of work.
fn work(x: u64) -> u64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(500) {
        std::hint::spin_loop();
    }
    expected(x)
}

/// One write per line: other ranks' output must not land inside it.
fn say(line: String) {
    let _ = std::io::stdout().write_all(format!("{line}\n").as_bytes());
    let _ = std::io::stdout().flush();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(dir) = args.get(2)
        && let Ok(rank) = std::env::var("OMPI_COMM_WORLD_RANK")
    {
        let _ = std::fs::write(
            std::path::Path::new(dir).join(format!("rank-{rank}")),
            std::process::id().to_string(),
        );
    }
    let pool = match Pool::mpi() {
        Ok(pool) => pool,
        Err(e) => {
            let _ = std::io::stderr().write_all(format!("mpi_journal: {e}\n").as_bytes());
            std::process::exit(2);
        }
    };
    let (Some(path), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        say("mpi_journal: usage: mpi_journal JOURNAL N [PIDDIR]".into());
        std::process::exit(2);
    };
    let mut journal = match Journal::open(path) {
        Ok(j) => j,
        Err(e) => {
            say(format!("mpi: FAIL journal: {e}"));
            std::process::exit(1);
        }
    };
    let on_record = journal.len();
    say(format!("mpi_journal: READY {on_record}"));
    match journal.map(&pool, work, 0..n) {
        Ok(v) if (0..n).all(|i| v[i as usize] == expected(i)) => say(format!(
            "mpi: ok journal: {n} results equal the expected ones; {} ran in this run, \
             {on_record} came from the journal",
            n as usize - on_record
        )),
        Ok(_) => say("mpi: FAIL journal: a result differs from the expected one".into()),
        Err(e) => say(format!("mpi: FAIL journal: {e}")),
    }
}
