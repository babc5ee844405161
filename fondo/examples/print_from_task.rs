//! Tasks print with `println!` from worker processes, and the lines reach this
//! program's stdout untouched: fondo talks to its workers over a private socket,
//! never over stdout or stderr. `tests/entry_points.rs` runs this example and checks
//! every line, which also proves worker processes start from an example binary with
//! no set-up code in `main`.
//!
//! Run it with `cargo run -p fondo --example print_from_task`.

use fondo::Pool;

/// Prints a line from whichever worker process runs it, and returns `i²`.
fn saluda(i: u32) -> u32 {
    println!("tarea {i}: hola desde el proceso {}", std::process::id());
    i * i
}

fn main() -> fondo::Result<()> {
    println!("principal: proceso {}", std::process::id());

    // chunksize 1: one task per message, so both workers take a share.
    let pool = Pool::builder().workers(2).chunksize(1).processes()?;
    let resultados = pool.map(saluda, 0..10)?;
    println!("resultados: {resultados:?}");

    // A process of its own, like multiprocessing.Process, prints the same way.
    let hijo = fondo::spawn(saluda, (100,))?;
    println!("hijo: {}", hijo.join()?);
    Ok(())
}
