//! A task that aborts its rank: shows what happens when an MPI rank dies.
//!
//! ```text
//! mpirun -np 3 target/release/examples/mpi_abort     # exits non-zero, quickly
//! ```
//!
//! MPI's default when a rank dies is to end the job: `mpirun` reports the dead
//! rank and kills the others, rank 0 included. Nothing hangs. scripts/test-mpi.sh
//! runs this and expects a non-zero exit within seconds, and no "UNEXPECTED" line.
//!
//! With the argument `timeout`, no task aborts; instead one runs far past the
//! pool's `task_timeout` of 300 ms. A rank cannot be killed and replaced, so the
//! worker rank aborts itself and the job ends the same way.

use fondo::Pool;
use std::time::Duration;

fn sleep_long(x: u32) -> u32 {
    if x == 3 {
        eprintln!("mpi_abort: task {x} sleeps past its timeout");
        std::thread::sleep(Duration::from_secs(600));
    }
    x
}

fn maybe_abort(x: u32) -> u32 {
    if x == 7 {
        eprintln!(
            "mpi_abort: task {x} aborts its rank (pid {})",
            std::process::id()
        );
        std::process::abort();
    }
    std::thread::sleep(Duration::from_millis(20));
    x
}

fn main() {
    let timeout = std::env::args().nth(1).as_deref() == Some("timeout");
    let builder = Pool::builder();
    let builder = if timeout {
        builder.task_timeout(Duration::from_millis(300))
    } else {
        builder
    };
    let pool = match builder.mpi() {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("mpi_abort: {e}");
            std::process::exit(2);
        }
    };
    let outcome = if timeout {
        println!(
            "mpi_abort: rank 0 maps over {} worker ranks; task 3 overruns its timeout",
            pool.workers()
        );
        pool.map(sleep_long, 0..40)
    } else {
        println!(
            "mpi_abort: rank 0 maps over {} worker ranks; task 7 aborts",
            pool.workers()
        );
        pool.map(maybe_abort, 0..40)
    };
    // Not reached: mpirun kills rank 0 when the aborting rank dies.
    println!("mpi_abort: UNEXPECTED: map returned {outcome:?}");
}
