//! Helper program for `tests/whole_program.rs`: a pool under an address-space limit
//! (`ulimit -v`) too small for the shared memory it would map. Not a usage example.
//!
//! The limit (first argument, in MiB) is set before the pool exists, so the workers
//! inherit it. Big values must still make the round trip — through the socket where
//! shared memory could not be mapped — and the program prints `OK <n>` and exits 0.

use fondo::Pool;
use rustix::process::{Resource, Rlimit, setrlimit};

fn reversed(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .ok_or("usage: fault_small_address_space <limit in MiB>")?;
    let limit = Some(mib << 20);
    setrlimit(
        Resource::As,
        Rlimit {
            current: limit,
            maximum: limit,
        },
    )?;
    let pool = Pool::processes(2)?;
    let inputs: Vec<Vec<u8>> = (0..6usize)
        .map(|i| (0..(2 << 20) + i).map(|j| (j * 7 + i) as u8).collect())
        .collect();
    let out = pool.map(reversed, inputs.clone())?;
    for (i, (input, output)) in inputs.iter().zip(&out).enumerate() {
        let mut want = input.clone();
        want.reverse();
        if *output != want {
            return Err(format!("value {i} came back wrong").into());
        }
    }
    println!("OK {}", out.len());
    Ok(())
}
