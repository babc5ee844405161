//! Big values between processes: a 64 MiB byte buffer to each worker and back.
//!
//! Wrap byte buffers in `serde_bytes::ByteBuf` (or mark a field
//! `#[serde(with = "serde_bytes")]`): serde then moves them as one block, where a plain
//! `Vec<u8>` is a sequence it sends one `u8` at a time. Values of 1 MiB and more are
//! encoded straight into memory shared with the workers and decoded from there, so
//! nothing is copied between encoding and decoding.
//!
//! Run it with `cargo run --release -p fondo --example big_values`.

use fondo::{Pool, Timer};
use serde_bytes::ByteBuf;

/// Flips every bit: the worker reads the whole value and writes a whole new one.
fn invert(mut data: ByteBuf) -> ByteBuf {
    for b in data.iter_mut() {
        *b = !*b;
    }
    data
}

/// The same on a plain vector, to compare.
fn invert_vec(mut data: Vec<u8>) -> Vec<u8> {
    for b in data.iter_mut() {
        *b = !*b;
    }
    data
}

const MIB: usize = 1 << 20;

fn main() -> fondo::Result<()> {
    let pool = Pool::processes(2)?;
    let size = 64 * MIB;
    for round in 1..=3 {
        let values: Vec<ByteBuf> = (0..4u8).map(|i| ByteBuf::from(vec![i; size])).collect();
        let t = Timer::start();
        let out = pool.map(invert, values)?;
        let secs = t.elapsed_secs();
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, v)| v.len() == size && v[0] == !(i as u8))
        );
        let gb = (2 * size * out.len()) as f64 / 1e9;
        println!(
            "round {round}: 4 × 64 MiB as ByteBuf there and back in {secs:.3} s: {:.2} GB/s",
            gb / secs
        );
    }
    let values: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; size]).collect();
    let t = Timer::start();
    let out = pool.map(invert_vec, values)?;
    let secs = t.elapsed_secs();
    assert!(out.iter().all(|v| v.len() == size));
    let gb = (2 * size * out.len()) as f64 / 1e9;
    println!(
        "the same as Vec<u8>: {secs:.3} s: {:.2} GB/s (serde moves it byte by byte)",
        gb / secs
    );
    Ok(())
}
