//! `fondo info`: cores, cgroup limits, backends compiled in.

use crate::CliResult;

/// Prints what this machine offers fondo.
pub fn run() -> CliResult {
    println!("{}", fondo::cpu_info());
    let mut backends = vec!["threads", "processes"];
    if cfg!(feature = "mpi") {
        backends.push("mpi");
    }
    println!("backends: {}", backends.join(", "));
    println!("fondo {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
