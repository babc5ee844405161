//! The notebook's functions, in Rust. Those run in worker processes are plain `fn`
//! items with `serde` arguments and results: a process receives the function by
//! name (an address in this same executable), never a closure's captured data.

use num_bigint::BigUint;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The notebook's range: factorials of `FIRST..END`, split at `MIDDLE`.
pub const FIRST: u32 = 1000;
/// One past the last number.
pub const END: u32 = 2000;
/// Where the two halves meet.
pub const MIDDLE: u32 = 1500;

/// The notebook's `factorial`, loop and all: `f *= i; i -= 1` until `i` is 0.
pub fn factorial(x: u32) -> BigUint {
    let mut f = BigUint::from(1u32);
    let mut i = x;
    while i > 0 {
        f *= i;
        i -= 1;
    }
    f
}

/// The threads version of the notebook's `tarea(inicio, fin, lista)`: writes
/// `factorial(x)` into the slice it was lent (`lista[x - inicio]`).
pub fn tarea(inicio: u32, fin: u32, lista: &mut [BigUint]) {
    for x in inicio..fin {
        lista[(x - inicio) as usize] = factorial(x);
    }
}

/// The processes version of `tarea(inicio, fin)`: the notebook's child builds the
/// list and loses it; here the list is the return value.
pub fn tarea_lista(inicio: u32, fin: u32) -> Vec<BigUint> {
    (inicio..fin).map(factorial).collect()
}

/// The single-thread answer: `tarea(1000, 2000, resultado1)`.
pub fn single_thread() -> Vec<BigUint> {
    let mut resultado1 = vec![BigUint::default(); (END - FIRST) as usize];
    tarea(FIRST, END, &mut resultado1);
    resultado1
}

/// What the notebook's `f(x)` printed, returned instead: the text and who ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Said {
    /// The argument, unchanged.
    pub text: String,
    /// The process that ran the function.
    pub pid: u32,
}

/// The notebook's `f(x)`: sleeps, then "prints" `x` (returns it, with its PID).
pub fn f(x: String, secs: f64) -> Said {
    std::thread::sleep(Duration::from_secs_f64(secs));
    Said {
        text: x,
        pid: std::process::id(),
    }
}

/// What the notebook's `pid(x)` printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pids {
    /// The argument.
    pub x: u32,
    /// `os.getpid()`.
    pub pid: u32,
    /// `os.getppid()`.
    pub ppid: u32,
}

/// The notebook's `pid(x)`: sleeps (so both run at once), then reports its PID.
pub fn pid(x: u32, secs: f64) -> Pids {
    std::thread::sleep(Duration::from_secs_f64(secs));
    Pids {
        x,
        pid: std::process::id(),
        ppid: std::os::unix::process::parent_id(),
    }
}

/// The notebook's last `f(x)`: sleeps, then returns `x**2`.
pub fn square(x: u64, secs: f64) -> u64 {
    std::thread::sleep(Duration::from_secs_f64(secs));
    x * x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factorial_small() {
        assert_eq!(factorial(0), BigUint::from(1u32));
        assert_eq!(factorial(5), BigUint::from(120u32));
        assert_eq!(factorial(20), BigUint::from(2_432_902_008_176_640_000u64));
    }

    #[test]
    fn halves_make_the_whole() {
        let mut two = tarea_lista(FIRST, FIRST + 3);
        two.extend(tarea_lista(FIRST + 3, FIRST + 5));
        let mut one = vec![BigUint::default(); 5];
        tarea(FIRST, FIRST + 5, &mut one);
        assert_eq!(one, two);
    }
}
