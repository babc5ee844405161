//! Notebook cell In[9]: each process has its own PID, different from the main one.
//!
//! ```python
//! def pid(x):
//!     sleep(3)
//!     print(f"Proceso {x}, PID: {os.getpid()}\n")
//! t1 = multiprocessing.Process(target=pid, args=(1,))
//! ...
//! print(f"Proceso general, PID: {os.getpid()}")
//! ```
//!
//! Compare with threads (notebook In[11]): every thread prints the same PID.
//! Run it with `cargo run -p fondo --example process_pids` (or `-- 0.1` for a shorter
//! sleep).

use std::time::Duration;

/// Sleeps, then prints which process it runs in.
fn pid(x: u32, secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
    println!("Proceso {x}, PID: {}\n", std::process::id());
}

fn main() -> fondo::Result<()> {
    let secs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(3.0);

    let t1 = fondo::spawn(pid, (1, secs))?;
    let t2 = fondo::spawn(pid, (2, secs))?;
    // Unlike Python's Process, the PID is known as soon as the process starts.
    let (p1, p2) = (t1.pid(), t2.pid());
    t1.join()?;
    t2.join()?;

    let main_pid = std::process::id();
    println!("Proceso general, PID: {main_pid}");
    assert!(p1 != p2 && p1 != main_pid && p2 != main_pid);
    Ok(())
}
