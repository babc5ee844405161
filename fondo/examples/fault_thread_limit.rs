//! Helper program for `tests/stages.rs`: `Pool::threads(n)` when thread creation
//! fails part-way (an address-space limit leaves room for a few hundred stacks,
//! not 10,000). Not a usage example.
//!
//! Prints `OK <error>` and exits 0 when the pool is refused with an error and the
//! process's thread count is back to what it was before within 5 s; else says what
//! it saw and exits 1.

use std::time::{Duration, Instant};

use fondo::Pool;
use rustix::process::{Resource, Rlimit, setrlimit};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let before = threads();
    let limit = Some(512 << 20);
    setrlimit(
        Resource::As,
        Rlimit {
            current: limit,
            maximum: limit,
        },
    )?;
    let error = match Pool::threads(10_000) {
        Ok(pool) => {
            eprintln!("10,000 threads started under a 512 MiB address space?");
            drop(pool);
            std::process::exit(1);
        }
        Err(e) => e,
    };
    let t0 = Instant::now();
    while threads() != before && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = threads();
    if after != before {
        eprintln!("refused ({error}), but {after} threads remain (were {before})");
        std::process::exit(1);
    }
    println!("OK {error}");
    Ok(())
}
