//! Failures stay with their task. In Python's multiprocessing a worker that crashes
//! can hang the pool and a task that hangs blocks `map` forever; here a task that
//! panics, one that crashes its process and one that hangs each get their own
//! error, every other task completes, and the pool carries on with fresh workers.
//!
//! Run it with `cargo run -p fondo --example failures`. (The panic is reported by its
//! error alone; with `FONDO_PRINT_PANICS=1` the worker prints it on stderr too.)

use fondo::{Error, Pool};
use std::time::Duration;

fn tarea(x: u32) -> u32 {
    match x {
        3 => panic!("la tarea 3 falla"),
        5 => std::process::abort(), // a crash, as a segfault in C code would be
        7 => {
            std::thread::sleep(Duration::from_secs(3600)); // hangs
            x
        }
        _ => x * 10,
    }
}

fn main() -> fondo::Result<()> {
    let pool = Pool::builder()
        .workers(2)
        .task_timeout(Duration::from_secs(1)) // a task may run for 1 s at most
        .processes()?;
    println!("procesos: {:?}", pool.pids());

    // imap yields every task's own outcome, in order.
    for (i, r) in pool.imap(tarea, 0..10).enumerate() {
        match r {
            Ok(v) => println!("tarea {i}: {v}"),
            Err(Error::Panicked { message, .. }) => println!("tarea {i}: panic: {message}"),
            Err(Error::WorkerDied { pid, cause }) => {
                println!("tarea {i}: el proceso {pid} murió ({cause})")
            }
            Err(Error::Timeout { limit }) => {
                println!("tarea {i}: más de {limit:?}; su proceso fue reemplazado")
            }
            Err(e) => println!("tarea {i}: {e}"),
        }
    }
    println!("procesos ahora: {:?}", pool.pids());

    // map returns the first failure by position, like Python's map raises it.
    match pool.map(tarea, 0..5) {
        Ok(v) => println!("map: {v:?}"),
        Err(e) => println!("map: {e}"),
    }
    Ok(())
}
