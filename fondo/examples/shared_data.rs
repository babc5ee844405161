//! A big read-only dataset that every worker process reads in place:
//! `fondo::Shared::<[T]>::from_slice`.
//!
//! The notebook says processes cannot share memory ("no es posible que compartan
//! memoria"). They can share what nobody writes: `Shared::from_slice(&values)`
//! copies plain numbers (any `bytemuck::Pod` type) once into sealed shared memory;
//! a task receives the `Shared` like any argument, but only its id travels. Each
//! worker maps the memory the first time a task of its needs it and reads it where
//! it lies: no copy, and its memory grows only by the pages it reads (`RssShmem`
//! in `/proc/PID/status`).
//!
//! This example fills 256 MiB of `f64`s, has both workers sum it in parts (twice:
//! the first time they map it), and prints the timings next to one thread's sum,
//! with what each worker's shared memory grew by.
//! Run it with `cargo run --release -p fondo --example shared_data`.

use fondo::{Pool, Shared, Timer};

/// What a worker reports: its PID, the sum of its part, and its `RssShmem` (KiB).
fn sum_part(data: Shared<[f64]>, lo: usize, hi: usize) -> (u32, f64, u64) {
    let sum = data[lo..hi].iter().sum();
    (std::process::id(), sum, rss_shmem_kib().unwrap_or(0))
}

/// `RssShmem` of this process, in KiB: the shared pages it has mapped and touched.
fn rss_shmem_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("RssShmem:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

const MIB: usize = 1 << 20;
const PARTS: usize = 8;

fn main() -> fondo::Result<()> {
    let n = 256 * MIB / 8;
    let t = Timer::start();
    let values: Vec<f64> = (0..n).map(|i| (i % 1000) as f64).collect();
    println!("filled 256 MiB of f64 in {:.3} s", t.elapsed_secs());

    let t = Timer::start();
    let data = Shared::from_slice(&values)?;
    println!(
        "Shared::from_slice: copied into shared memory once, in {:.3} s",
        t.elapsed_secs()
    );

    let t = Timer::start();
    let want: f64 = values.iter().sum();
    let single = t.elapsed_secs();
    println!("one thread sums it in {single:.3} s: {want}");
    drop(values); // the workers read the shared copy; this one is no longer needed

    let pool = Pool::processes(2)?;
    let parts: Vec<(Shared<[f64]>, usize, usize)> = (0..PARTS)
        .map(|k| (data.clone(), n * k / PARTS, n * (k + 1) / PARTS))
        .collect();
    for round in ["first", "second"] {
        let t = Timer::start();
        let out = pool.starmap(sum_part, parts.clone())?;
        let secs = t.elapsed_secs();
        let total: f64 = out.iter().map(|o| o.1).sum();
        assert_eq!(total, want);
        println!(
            "{round} time, 2 workers, {PARTS} parts: {secs:.3} s ({:.2} GB/s read, {:.2}× one thread){}",
            (n * 8) as f64 / secs / 1e9,
            single / secs,
            if round == "first" {
                " — includes mapping the pages"
            } else {
                ""
            }
        );
    }
    let out = pool.starmap(sum_part, parts)?;
    let mut seen = std::collections::BTreeMap::new();
    for (pid, _, shmem) in out {
        seen.insert(pid, shmem);
    }
    for (pid, shmem) in seen {
        println!(
            "worker {pid}: RssShmem {} MiB — the pages of the share it read, not a copy",
            shmem / 1024
        );
    }
    Ok(())
}
