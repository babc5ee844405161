//! Helper program for `tests/whole_program.rs`: busy on a process pool until it is
//! interrupted with Ctrl-C (SIGINT to its process group). Not a usage example.
//!
//! Prints `PIDS <parent> <worker>…` on stdout, then runs tasks that sleep for ten
//! minutes. `fault_ctrl_c workers-ignore-sigint` makes every worker ignore SIGINT (as
//! some C libraries do), so only the parent dies of it and the workers must follow.

use std::io::Write;
use std::time::Duration;

use fondo::Pool;

fn sleep_secs(s: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(s));
    s
}

/// Worker initializer: SIGINT is ignored from now on.
fn ignore_sigint() {
    unsafe extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGINT: i32 = 2;
    const SIG_IGN: usize = 1;
    // SAFETY: installs SIG_IGN, no handler code; called before any task runs.
    unsafe {
        signal(SIGINT, SIG_IGN);
    }
}

fn main() -> fondo::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut builder = Pool::builder().workers(2);
    if mode == "workers-ignore-sigint" {
        builder = builder.initializer(ignore_sigint);
    }
    let pool = builder.processes()?;
    let pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "PIDS {} {}", std::process::id(), pids.join(" "));
    let _ = out.flush();
    drop(out);
    let r = pool.map(sleep_secs, [600; 4]);
    println!("FINISHED {r:?} (should have been interrupted)");
    Ok(())
}
