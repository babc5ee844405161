//! `imap` is a lazy `map`: results arrive one by one, in input order, while the
//! workers keep going, and the input is read only as fast as results are used — so
//! it may even be endless. `imap_unordered` yields in completion order, and
//! `starmap` spreads each tuple over the function's arguments.
//!
//! Run it with `cargo run -p fondo --example imap_lazy`.

use fondo::Pool;

/// Steps of the Collatz sequence from `n` down to 1.
fn collatz(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

fn pow(b: u64, e: u32) -> u64 {
    b.pow(e)
}

fn main() -> fondo::Result<()> {
    let pool = Pool::processes(2)?;

    // The first ten numbers whose sequence takes over 150 steps, from 1, 2, 3, …
    // without end: imap pulls only a bounded window ahead of what is consumed.
    let mut largos = Vec::new();
    for (n, steps) in (1u64..).zip(pool.imap(collatz, 1u64..)) {
        if steps? > 150 {
            largos.push(n);
            if largos.len() == 10 {
                break;
            }
        }
    }
    println!("más de 150 pasos: {largos:?}");

    // Completion order: the same values, maybe shuffled.
    let mut pasos: Vec<u32> = pool
        .imap_unordered(collatz, 1..=10)
        .collect::<fondo::Result<_>>()?;
    println!("imap_unordered: {pasos:?}");
    pasos.sort_unstable();
    println!("ordenados:      {pasos:?}");

    // Python's starmap: pow(2, 10), pow(3, 4).
    println!("starmap: {:?}", pool.starmap(pow, [(2, 10), (3, 4)])?);
    Ok(())
}
