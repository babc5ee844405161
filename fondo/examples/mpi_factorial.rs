//! The notebook's factorial map, spread over MPI ranks and checked against one thread.
//!
//! ```text
//! mpirun -np 3 target/release/examples/mpi_factorial
//! ```
//!
//! Rank 0 runs `main`; ranks 1..N-1 serve tasks inside `Pool::mpi()` and exit when
//! the pool is dropped. `BigUint` crosses the wire as its little-endian bytes.

use fondo::{Pool, Timer};
use num_bigint::BigUint;

/// The notebook's factorial: a plain product loop.
fn factorial(x: u32) -> BigUint {
    let mut product = BigUint::from(1u32);
    for i in 2..=x {
        product *= i;
    }
    product
}

/// What the ranks compute: the factorial as bytes (serde-friendly).
fn factorial_bytes(x: u32) -> Vec<u8> {
    factorial(x).to_bytes_le()
}

fn main() {
    // Every rank gets here; only rank 0 gets past it.
    let pool = match Pool::mpi() {
        Ok(pool) => pool,
        Err(e) => {
            // In one write: eprintln! writes piece by piece, and other ranks' output
            // could land inside the line (scripts/test-mpi.sh greps it).
            let line = format!("mpi_factorial: {e}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            std::process::exit(2);
        }
    };
    let xs = 1000..2000u32;

    // Best of 3 each way, after a warm-up: the figures are the steady state.
    let mut single = Vec::new();
    let mut single_secs = f64::INFINITY;
    for _ in 0..3 {
        let t = Timer::start();
        single = xs.clone().map(factorial).collect::<Vec<BigUint>>();
        single_secs = single_secs.min(t.elapsed_secs());
    }
    let mut on_ranks = Vec::new();
    let mut mpi_secs = f64::INFINITY;
    for _ in 0..4 {
        let t = Timer::start();
        on_ranks = match pool.map(factorial_bytes, xs.clone()) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("mpi_factorial: map failed: {e}");
                std::process::exit(1);
            }
        };
        mpi_secs = mpi_secs.min(t.elapsed_secs());
    }
    let on_ranks: Vec<BigUint> = on_ranks.iter().map(|b| BigUint::from_bytes_le(b)).collect();

    println!(
        "mpi_factorial: factorial(x) for x in {xs:?}: one thread {single_secs:.3} s, \
         {} MPI worker ranks {mpi_secs:.3} s (speed-up {:.2}x, best runs)",
        pool.workers(),
        single_secs / mpi_secs
    );
    if on_ranks == single {
        println!(
            "mpi: ok factorial: {} results match the single-thread run",
            single.len()
        );
    } else {
        let first = on_ranks.iter().zip(&single).position(|(a, b)| a != b);
        println!("mpi: FAIL factorial: results differ (first at index {first:?})");
        std::process::exit(1);
    }
}
