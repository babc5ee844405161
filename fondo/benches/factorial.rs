//! The notebook's factorial experiment: `factorial(x)` for x in 1000..2000 with
//! num-bigint, on one thread, through `Pool::threads(2).map`, through rayon's
//! `par_iter` on a 2-thread pool, and as two `std::thread` halves.
//!
//! A second group sweeps fixed chunk sizes: factorial's cost grows with `x`, so
//! Python's fixed chunksize (`ceil(1000 / (4 × 2))` = 125) leaves the last chunks
//! much heavier than the first and the tail of the run keeps only one core busy.
//! fondo's automatic chunking (guided: Python's size first, shrinking to one) is
//! what `fondo_threads_2_map` measures.
//!
//! Run: `cargo bench -p fondo --bench factorial`.

use std::hint::black_box;
use std::ops::Range;
use std::thread;

use criterion::{BenchmarkId, Criterion, criterion_main};
use fondo::Pool;
use num_bigint::BigUint;
use rayon::prelude::*;

const XS: Range<u32> = 1000..2000;

/// The notebook's factorial: a plain product loop.
fn factorial(x: u32) -> BigUint {
    let mut product = BigUint::from(1u32);
    for i in 2..=x {
        product *= i;
    }
    product
}

fn single(xs: Range<u32>) -> Vec<BigUint> {
    xs.map(factorial).collect()
}

fn std_thread_halves(xs: Range<u32>) -> Vec<BigUint> {
    let mid = xs.start + (xs.end - xs.start) / 2;
    thread::scope(|s| {
        let low = s.spawn(move || single(xs.start..mid));
        let high = s.spawn(move || single(mid..xs.end));
        let mut out = low.join().expect("low half");
        out.extend(high.join().expect("high half"));
        out
    })
}

fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon pool")
}

fn factorial_1000_2000(c: &mut Criterion) {
    let reference = single(XS);
    let pool = Pool::threads(2).expect("fondo pool");
    let rayon = rayon_pool();
    let xs: Vec<u32> = XS.collect();
    assert_eq!(pool.map(factorial, XS).expect("map"), reference);
    assert_eq!(
        rayon.install(|| xs.par_iter().map(|&x| factorial(x)).collect::<Vec<_>>()),
        reference
    );
    assert_eq!(std_thread_halves(XS), reference);

    let mut g = c.benchmark_group("factorial_1000_2000");
    g.sample_size(20);
    g.bench_function("single_thread", |b| b.iter(|| single(black_box(XS))));
    g.bench_function("fondo_threads_2_map", |b| {
        b.iter(|| pool.map(factorial, black_box(XS)).expect("map"))
    });
    g.bench_function("rayon_2_par_iter", |b| {
        b.iter(|| {
            rayon.install(|| {
                black_box(&xs)
                    .par_iter()
                    .map(|&x| factorial(x))
                    .collect::<Vec<_>>()
            })
        })
    });
    g.bench_function("std_thread_halves", |b| {
        b.iter(|| std_thread_halves(black_box(XS)))
    });
    g.finish();
}

/// The same map with fixed chunk sizes; 125 is Python's rule for 1000 tasks on 2 workers.
fn fondo_chunksize(c: &mut Criterion) {
    let mut g = c.benchmark_group("fondo_threads_2_chunksize");
    g.sample_size(20);
    for k in [1usize, 2, 5, 10, 25, 50, 125, 250] {
        let pool = Pool::builder()
            .workers(2)
            .chunksize(k)
            .threads()
            .expect("fondo pool");
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, _| {
            b.iter(|| pool.map(factorial, black_box(XS)).expect("map"))
        });
    }
    g.finish();
}

/// Every group, with criterion's default configuration and the command line's
/// options (what `criterion_group!` would write, but private and documented).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    factorial_1000_2000(&mut c);
    fondo_chunksize(&mut c);
}
criterion_main!(benches);
