//! Numeric vectors between processes as raw bytes: `fondo::Array<T>` and
//! `#[serde(with = "fondo::array")]`.
//!
//! serde moves a `Vec<f64>` one element at a time (a call per number, on both
//! sides). `fondo::Array<T>` (a `Vec<T>` that derefs to it) and a struct field
//! marked `#[serde(with = "fondo::array")]` move as one block of bytes instead: one
//! copy, and values of 1 MiB and more go through shared memory untouched — what
//! `serde_bytes` does for `Vec<u8>`. `T` is any `bytemuck::Pod` type: `f32`, `f64`,
//! integers, arrays of them, `#[repr(C)]` structs of them.
//!
//! This example runs a task on a struct with an array field, then sends 4 × 64 MiB
//! of `f64`s to two workers and back as `Array<f64>` and as `Vec<f64>`, and prints
//! the speed of each. Run it with `cargo run --release -p fondo --example
//! numeric_arrays`.

use fondo::{Array, Pool, Timer};
use serde::{Deserialize, Serialize};

/// A struct with a numeric vector: mark the field, keep the type.
#[derive(Serialize, Deserialize)]
struct Signal {
    rate: u32,
    #[serde(with = "fondo::array")]
    samples: Vec<f32>,
}

/// Energy per second of a signal.
fn power(s: Signal) -> f64 {
    let energy: f64 = s.samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    energy * f64::from(s.rate) / s.samples.len() as f64
}

/// Doubles every number: reads the whole array and sends a whole one back.
fn doubled(mut a: Array<f64>) -> Array<f64> {
    a.iter_mut().for_each(|x| *x *= 2.0);
    a
}

/// The same on a plain vector, to compare.
fn doubled_vec(mut v: Vec<f64>) -> Vec<f64> {
    v.iter_mut().for_each(|x| *x *= 2.0);
    v
}

const MIB: usize = 1 << 20;

fn main() -> fondo::Result<()> {
    let pool = Pool::processes(2)?;

    let signal = Signal {
        rate: 8000,
        samples: vec![0.5; 8000],
    };
    let p = pool.apply(power, (signal,))?;
    assert_eq!(p, 2000.0);
    println!(
        "a Signal {{ rate, #[serde(with = \"fondo::array\")] samples }} in a worker: power {p}"
    );

    let n = 64 * MIB / 8;
    let gb = (2 * 4 * 64 * MIB) as f64 / 1e9; // 4 values there and back
    // Taking turns, so that neither finds the pool warmer than the other.
    for round in 1..=3 {
        let values: Vec<Array<f64>> = (0..4).map(|_| Array(vec![1.5; n])).collect();
        let t = Timer::start();
        let out = pool.map(doubled, values)?;
        let array = t.elapsed_secs();
        assert!(out.iter().all(|a| a.len() == n && a[0] == 3.0));
        drop(out);
        let values: Vec<Vec<f64>> = (0..4).map(|_| vec![1.5; n]).collect();
        let t = Timer::start();
        let out = pool.map(doubled_vec, values)?;
        let vec = t.elapsed_secs();
        assert!(out.iter().all(|v| v.len() == n && v[0] == 3.0));
        println!(
            "round {round}: 4 × 64 MiB there and back as Array<f64> {array:.3} s, {:.2} GB/s; \
             as Vec<f64> {vec:.3} s, {:.2} GB/s",
            gb / array,
            gb / vec
        );
    }
    Ok(())
}
