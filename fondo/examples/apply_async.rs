//! Notebook cells In[38]–In[39], In[9]–In[10] and In[6]–In[8]: `apply` blocks,
//! `apply_async` runs in the background — and Python's two `apply_async` pitfalls,
//! fixed: results lost when the pool closes, and a `.get()` that hangs forever.
//!
//! Run it with `cargo run -p fondo --example apply_async` (or `-- 0.1` to scale the
//! sleeps).

use fondo::{Pool, Timer};
use std::time::Duration;

fn f(x: String, secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
    println!("{x}");
}

fn f_pid(x: u32, secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
    println!("{x}, {}", std::process::id());
}

fn square(x: u64, secs: f64) -> u64 {
    std::thread::sleep(Duration::from_secs_f64(secs));
    x * x
}

fn main() -> fondo::Result<()> {
    let s = std::env::args().nth(1).and_then(|a| a.parse::<f64>().ok());
    let s = s.filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(1.0);
    let (long, short) = (1.5 * s, 0.2 * s);

    // In[38]: apply waits for each task: one after the other (2 × 1.5 s).
    let temp = Timer::start();
    {
        let pool = Pool::processes(2)?;
        pool.apply(f, ("Tarea 1".to_string(), long))?;
        pool.apply(f, ("Tarea 2".to_string(), long))?;
    }
    println!("Tiempo en dos procesos: {:.4} s", temp.elapsed_secs());

    // In[39]: apply_async returns at once, so both tasks run together (1.5 s).
    let temp = Timer::start();
    {
        let pool = Pool::processes(2)?;
        let _tarea1 = pool.apply_async(f, ("Tarea 1".to_string(), long));
        pool.apply(f, ("Tarea 2".to_string(), long))?;
    }
    println!("Tiempo en dos procesos: {:.4} s", temp.elapsed_secs());

    // In[9], pitfall 1: Python's `with` block kills the pool, so these never print.
    // Dropping a fondo pool closes it and waits: both lines appear.
    {
        let pool = Pool::processes(2)?;
        let _a1 = pool.apply_async(f_pid, (1, short));
        let _a2 = pool.apply_async(f_pid, (2, short));
    }

    // In[10]: wait() blocks until a task is done.
    let pool = Pool::processes(2)?;
    let a1 = pool.apply_async(f_pid, (1, short));
    let a2 = pool.apply_async(f_pid, (2, short));
    a1.wait();
    a2.wait();

    // In[8]: get() waits for the value.
    println!("{}", pool.apply_async(square, (5, short)).get()?);
    drop(pool);

    // In[6]/In[7], pitfall 2: after Python's `with`, v.get() hangs forever. Here the
    // drop finished the task, so the value is there; and after terminate(), get()
    // returns Err(Terminated) at once instead of hanging.
    let v = Pool::processes(2)?.apply_async(square, (5, short)); // the pool drops here
    println!("{v:?}"); // AsyncResult { ready: true }, like Python's <ApplyResult object>
    println!("{}", v.get()?);
    let pool = Pool::processes(2)?;
    let v = pool.apply_async(square, (5, 60.0));
    pool.terminate();
    println!("tras terminate(): {:?}", v.get());
    Ok(())
}
