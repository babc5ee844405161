//! Notebook cells In[15]–In[18]: `Pool.map` over the factorials of 1000..2000 with
//! 2 processes, with `cpu_count()` processes, and with twice that.
//!
//! ```python
//! with multiprocessing.Pool(processes=2) as pool:
//!     resultado3 = pool.map(factorial, range(1000, 2000))
//! ```
//!
//! `Pool::processes(n)` is `multiprocessing.Pool(n)`; the end of the Rust block
//! drops the pool, which closes it and waits for its workers (the `with`). `map`
//! returns the results in input order. More processes than cores gain nothing:
//! they only take turns. Run it with `cargo run --release -p fondo --example pool_map`.

use fondo::{Pool, Timer, cpu_count};
use num_bigint::BigUint;

/// The factorial, sent back as base-2³² digits: `BigUint` has no serde support
/// unless num-bigint's "serde" feature is on (`BigUint::new` rebuilds it).
fn factorial(x: u32) -> Vec<u32> {
    let mut f = BigUint::from(1u32);
    for i in (1..=x).rev() {
        f *= i;
    }
    f.to_u32_digits()
}

/// One cell: a pool of `procesos` workers maps the factorial over 1000..2000.
fn celda(procesos: usize) -> fondo::Result<Vec<Vec<u32>>> {
    let temp = Timer::start();
    let resultado3 = {
        let pool = Pool::processes(procesos)?;
        pool.map(factorial, 1000..2000)?
    }; // the pool is closed and joined here
    println!(
        "Tiempo en {procesos} procesos: {:.4} s",
        temp.elapsed_secs()
    );
    Ok(resultado3)
}

fn main() -> fondo::Result<()> {
    let dos = celda(2)?; // In[15]
    // In[17]: cpu_count() honours CPU affinity and container (cgroup) limits.
    let procesos = cpu_count();
    let todos = celda(procesos)?;
    let doble = celda(2 * procesos)?; // In[18]
    assert!(
        dos == todos && todos == doble,
        "every pool computes the same list"
    );
    let ultimo = BigUint::new(dos[999].clone());
    println!(
        "{} factoriales; 1999! tiene {} cifras",
        dos.len(),
        ultimo.to_string().len()
    );
    Ok(())
}
