//! Notebook cell In[3]: two processes that sleep at the same time.
//!
//! ```python
//! p1 = multiprocessing.Process(target=f, args=("Process 1",))
//! p2 = multiprocessing.Process(target=f, args=("Process 2",))
//! with Temporizador() as temp:
//!     p1.start(); p2.start()
//!     p1.join(); p2.join()
//! ```
//!
//! `fondo::spawn` is `Process(...).start()`: it runs a function in a new process —
//! this same program started again, with its own PID — and `join` waits for it.
//! Both processes sleep in parallel, so the total is one sleep, not two.
//!
//! Run it with `cargo run -p fondo --example process_sleep` (5 s, as in the notebook) or
//! `cargo run -p fondo --example process_sleep -- 0.1` for a shorter sleep.

use fondo::Timer;
use std::time::Duration;

/// The notebook's `f`: sleep, then print. A plain `fn`, so another process can run
/// it; its arguments travel there with serde.
fn f(x: String, secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
    println!("{x}");
}

fn main() -> fondo::Result<()> {
    let secs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(5.0);

    let temp = Timer::start();
    let p1 = fondo::spawn(f, ("Process 1".to_string(), secs))?; // p1.start()
    let p2 = fondo::spawn(f, ("Process 2".to_string(), secs))?; // p2.start()
    p1.join()?; // p1.join()
    p2.join()?; // p2.join()
    println!("Tiempo total: {:.4} s", temp.elapsed_secs());
    Ok(())
}
