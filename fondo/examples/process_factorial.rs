//! Notebook cells In[22]–In[24] (and the check of In[34]): the factorials of
//! 1000..2000 in one process, then split in two halves over two processes.
//!
//! In Python the two processes cannot hand their lists back ("no podemos pasarles
//! una lista"). A fondo process returns a value, like a function call, so here the
//! two halves come back and are checked against the single-process result.
//!
//! Run it with `cargo run --release -p fondo --example process_factorial` (debug builds of
//! big-number code are many times slower). The halves are unbalanced — the second
//! holds the bigger numbers — so two processes give less than twice the speed;
//! `Pool::map` (example `pool_map`) balances the work in small chunks.

use fondo::Timer;
use num_bigint::BigUint;

/// The notebook's factorial, with arbitrary-precision integers as in Python.
fn factorial(x: u32) -> BigUint {
    let mut f = BigUint::from(1u32);
    for i in (1..=x).rev() {
        f *= i;
    }
    f
}

/// The notebook's `tarea`, returning its list. `BigUint` has no serde support
/// unless num-bigint's "serde" feature is on, so each number travels as its
/// base-2³² digits (`BigUint::new` rebuilds it).
fn tarea(inicio: u32, fin: u32) -> Vec<Vec<u32>> {
    (inicio..fin)
        .map(|x| factorial(x).to_u32_digits())
        .collect()
}

fn main() -> fondo::Result<()> {
    let temp = Timer::start();
    let resultado1 = tarea(1000, 2000);
    println!("Tiempo en un único proceso: {:.4} s", temp.elapsed_secs());

    let temp = Timer::start();
    let t1 = fondo::spawn(tarea, (1000, 1500))?;
    let t2 = fondo::spawn(tarea, (1500, 2000))?;
    let mut resultado2 = t1.join()?;
    resultado2.extend(t2.join()?);
    println!("Tiempo en dos procesos: {:.4} s", temp.elapsed_secs());

    // In[34]: both ways give the same 1000 numbers.
    match resultado1.iter().zip(&resultado2).position(|(a, b)| a != b) {
        Some(i) => println!("Error en el elemento {i}"),
        None => println!("Los {} factoriales coinciden", resultado2.len()),
    }
    let ultimo = BigUint::new(resultado2[999].clone());
    println!("1999! tiene {} cifras", ultimo.to_string().len());
    Ok(())
}
