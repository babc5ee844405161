//! Per-task overhead of the MPI backend, with no-op tasks:
//!
//! - `apply_async(noop).get()` one at a time: a full round trip through the
//!   dispatcher and a worker rank per task (latency);
//! - `map(noop, 0..100_000)` with the automatic chunksize (throughput);
//! - `imap(noop, 0..20_000)`, chunksize 1: one message each way per task, pipelined.
//!
//! ```text
//! mpirun -np 2 target/release/examples/mpi_bench    # 1 worker rank
//! mpirun -np 3 target/release/examples/mpi_bench    # 2 worker ranks
//! ```
//!
//! Optional argument: the number of map tasks (default 100000).

use fondo::{Pool, Timer};

fn noop(x: u32) -> u32 {
    x
}

fn main() {
    let pool = match Pool::mpi() {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("mpi_bench: {e}");
            std::process::exit(2);
        }
    };
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let ranks = pool.workers() + 1;
    let fail = |what: &str, e: fondo::Error| -> ! {
        eprintln!("mpi_bench: {what} failed: {e}");
        std::process::exit(1)
    };

    // Warm up: page in code, grow buffers, settle the pollers.
    if let Err(e) = pool.map(noop, 0..20_000) {
        fail("warm-up map", e);
    }

    let trips = 3_000u32;
    let mut best_trip = f64::INFINITY;
    for _ in 0..3 {
        let t = Timer::start();
        for i in 0..trips {
            match pool.apply_async(noop, (i,)).get() {
                Ok(v) if v == i => {}
                Ok(v) => fail(
                    "apply_async",
                    fondo::Error::Protocol(format!("got {v} for {i}")),
                ),
                Err(e) => fail("apply_async", e),
            }
        }
        best_trip = best_trip.min(t.elapsed_secs() / f64::from(trips));
    }

    let mut best_map = f64::INFINITY;
    for _ in 0..5 {
        let t = Timer::start();
        match pool.map(noop, 0..n) {
            Ok(v) if v.len() == n as usize && v.last() == n.checked_sub(1).as_ref() => {}
            Ok(v) => fail(
                "map",
                fondo::Error::Protocol(format!("{} results", v.len())),
            ),
            Err(e) => fail("map", e),
        }
        best_map = best_map.min(t.elapsed_secs());
    }
    let per_task_us = best_map * 1e6 / f64::from(n);

    // imap keeps chunksize 1: one message each way per task, pipelined.
    let m = 20_000u32;
    let t = Timer::start();
    let got = pool.imap(noop, 0..m).filter(|r| r.is_ok()).count();
    let imap_us = t.elapsed_secs() * 1e6 / f64::from(m);
    if got != m as usize {
        fail(
            "imap",
            fondo::Error::Protocol(format!("{got} results of {m}")),
        );
    }

    println!(
        "mpi_bench: np={ranks} apply_async(noop).get() round trip: {:.1} us (best of 3 x {trips})",
        best_trip * 1e6
    );
    let goal = if ranks == 2 {
        if per_task_us <= 5.0 {
            " (goal <= 5 us at 2 ranks: met)"
        } else {
            " (goal <= 5 us at 2 ranks: MISSED)"
        }
    } else {
        ""
    };
    println!(
        "mpi_bench: np={ranks} map(noop, {n}): {:.0} tasks/s, {per_task_us:.3} us per task (best of 5){goal}",
        f64::from(n) / best_map
    );
    println!("mpi_bench: np={ranks} imap(noop, {m}), chunksize 1: {imap_us:.2} us per task");
}
