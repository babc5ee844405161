//! Helper program for `tests/whole_program.rs`: a parent that will be SIGKILLed
//! while its worker processes run tasks (`busy`, the default) or wait for work
//! (`idle`). Not a usage example.
//!
//! Prints `PIDS <parent> <worker>…` on stdout, then never finishes on its own.

use std::io::Write;
use std::time::Duration;

use fondo::Pool;

fn sleep_secs(s: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(s));
    s
}

fn main() -> fondo::Result<()> {
    let idle = std::env::args().nth(1).is_some_and(|m| m == "idle");
    let pool = Pool::processes(2)?;
    let pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "PIDS {} {}", std::process::id(), pids.join(" "));
    let _ = out.flush();
    drop(out);
    if idle {
        std::thread::sleep(Duration::from_secs(600));
    } else {
        let pending: Vec<_> = (0..4)
            .map(|_| pool.apply_async(sleep_secs, (600,)))
            .collect();
        for r in pending {
            let _ = r.get();
        }
    }
    println!("FINISHED (should have been killed)");
    Ok(())
}
