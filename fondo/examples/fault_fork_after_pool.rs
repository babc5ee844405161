//! Helper program for `tests/stages.rs`: a program that used a process pool forks,
//! and the child makes a pool and a `fondo::spawn` of its own. Not a usage example.
//!
//! Argument `pool-dropped`: the parent's pool is dropped before the fork;
//! `pool-alive`: it is still alive (the child never touches it). The child prints
//! `CHILD OK` and exits 0 when its pool and its spawned process gave the right
//! values; the parent waits for it (8 s at most, then kills it) and exits with its
//! status.

use std::time::{Duration, Instant};

use fondo::Pool;

fn square(x: u64) -> u64 {
    x * x
}

/// The forked child's work: a new pool, a map, a spawn.
fn child() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::processes(1)?;
    let v = pool.map(square, 0..10u64)?;
    if v != (0..10).map(|x| x * x).collect::<Vec<_>>() {
        return Err(format!("map gave {v:?}").into());
    }
    drop(pool);
    let spawned = fondo::spawn(square, (7,))?.join()?;
    if spawned != 49 {
        return Err(format!("spawn gave {spawned}").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let pool = Pool::processes(1)?;
    if pool.map(square, 0..4u64)? != [0, 1, 4, 9] {
        return Err("the parent's map was wrong".into());
    }
    let kept = match mode.as_str() {
        "pool-dropped" => {
            drop(pool);
            None
        }
        "pool-alive" => Some(pool),
        _ => return Err("usage: fault_fork_after_pool pool-dropped|pool-alive".into()),
    };
    // SAFETY: the child goes on to use threads and the allocator, which glibc makes
    // work after a fork; that is exactly what this program checks fondo supports.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if pid == 0 {
        let code = match child() {
            Ok(()) => {
                println!("CHILD OK");
                0
            }
            Err(e) => {
                eprintln!("child: {e}");
                1
            }
        };
        // Never return into the parent's pool (its threads were not copied).
        std::process::exit(code);
    }
    let t0 = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if t0.elapsed() > Duration::from_secs(8) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err("the forked child hung for 8 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(kept);
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("the forked child failed (wait status {status:#x})").into())
    }
}
