//! Where do tasks run? Every worker rank reports its node (host name, network
//! namespace), the executable it runs (path and device:inode of `/proc/self/exe`)
//! and two environment variables; rank 0 checks the job spans several nodes, each
//! running its own copy of the program, and that `mpirun -x` reached them all.
//!
//! ```text
//! mpirun -x FONDO_PROBE=hello --hostfile hosts -np 4 ./mpi_two_nodes hello
//! ```
//!
//! scripts/test-mpi.sh runs it over two simulated nodes (network namespaces joined by
//! a veth pair, a per-node copy of the executable mounted at the same path). The
//! argument is the value `FONDO_PROBE` must have on every worker rank. A variable set
//! in mpirun's own environment but not forwarded with `-x` (`FONDO_NOT_FORWARDED`)
//! must stay off the nodes mpirun reaches through its remote shell: that shows the
//! remote ranks see `-x`, not an inherited environment.
//!
//! Prints one "mpi: ok NAME" or "mpi: FAIL NAME: …" line per check, exits 1 if any
//! failed. When the handshake refuses the pool (a node runs another build), prints
//! "mpi_two_nodes: refused: Err(ExecutableMismatch): …" and exits 3; any other
//! `Pool::mpi()` error exits 2.

use fondo::{Error, Pool};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// What a rank reports about itself.
type Report = (
    u32,            // MPI rank (OMPI_COMM_WORLD_RANK)
    String,         // host name (of its UTS namespace)
    String,         // network namespace, e.g. "net:[4026532283]"
    String,         // path of /proc/self/exe
    String,         // "dev:inode" of /proc/self/exe
    Option<String>, // FONDO_PROBE
    Option<String>, // FONDO_NOT_FORWARDED
);

fn report() -> Report {
    let rank = std::env::var("OMPI_COMM_WORLD_RANK")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(u32::MAX);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|e| format!("? ({e})"));
    let netns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("? ({e})"));
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("? ({e})"));
    let exe_id = std::fs::metadata("/proc/self/exe")
        .map(|m| format!("{}:{}", m.dev(), m.ino()))
        .unwrap_or_else(|e| format!("? ({e})"));
    (
        rank,
        host,
        netns,
        exe,
        exe_id,
        std::env::var("FONDO_PROBE").ok(),
        std::env::var("FONDO_NOT_FORWARDED").ok(),
    )
}

/// The task: a short sleep so every rank gets some, then where it ran.
fn where_am_i(_: u32) -> Report {
    std::thread::sleep(Duration::from_millis(10));
    report()
}

struct Checks {
    failed: usize,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("mpi: ok {name}: {detail}");
        } else {
            self.failed += 1;
            println!("mpi: FAIL {name}: {detail}");
        }
    }
}

fn main() {
    let pool = match Pool::builder().chunksize(1).mpi() {
        Ok(pool) => pool,
        Err(e @ Error::ExecutableMismatch(_)) => {
            println!("mpi_two_nodes: refused: Err(ExecutableMismatch): {e}");
            std::process::exit(3);
        }
        Err(e) => {
            eprintln!("mpi_two_nodes: {e}");
            std::process::exit(2);
        }
    };
    let want_probe = std::env::args().nth(1);
    let workers = pool.workers();
    let me = report();
    println!(
        "mpi_two_nodes: rank 0 on {} ({}), exe {} ({}), {workers} worker ranks",
        me.1, me.2, me.3, me.4
    );

    // Map until every worker rank has answered (a few rounds at most).
    let mut by_rank: BTreeMap<u32, Report> = BTreeMap::new();
    for _ in 0..10 {
        match pool.map(where_am_i, 0..(8 * workers as u32)) {
            Ok(reports) => by_rank.extend(reports.into_iter().map(|r| (r.0, r))),
            Err(e) => {
                println!("mpi: FAIL map: {e}");
                std::process::exit(1);
            }
        }
        if by_rank.len() >= workers {
            break;
        }
    }
    for r in by_rank.values() {
        println!(
            "mpi_two_nodes: rank {} on {} ({}), exe {} ({}), FONDO_PROBE={:?}, FONDO_NOT_FORWARDED={:?}",
            r.0, r.1, r.2, r.3, r.4, r.5, r.6
        );
    }
    let mut c = Checks { failed: 0 };

    let ranks: BTreeSet<u32> = by_rank.keys().copied().collect();
    c.check(
        "tasks ran on every worker rank",
        ranks == (1..=workers as u32).collect(),
        format_args!("ranks {ranks:?} of {workers}"),
    );

    // Nodes: host name -> (network namespaces, executables, ranks), rank 0 included.
    let mut nodes: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>, Vec<u32>)> = BTreeMap::new();
    for r in std::iter::once(&me).chain(by_rank.values()) {
        let node = nodes.entry(&r.1).or_default();
        node.0.insert(&r.2);
        node.1.insert(&r.4);
        node.2.push(r.0);
    }
    let summary = nodes
        .iter()
        .map(|(host, (_, exes, ranks))| {
            format!(
                "{host}: ranks {ranks:?}, exe {}",
                exes.iter().copied().collect::<Vec<_>>().join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let netns: BTreeSet<&str> = nodes.values().flat_map(|n| n.0.iter().copied()).collect();
    c.check(
        "tasks ran on several nodes",
        nodes.len() >= 2
            && netns.len() == nodes.len()
            && nodes.values().all(|n| n.0.len() == 1)
            && nodes.iter().any(|(h, n)| **h != me.1 && !n.2.is_empty()),
        format_args!(
            "{} hosts, {} network namespaces ({summary})",
            nodes.len(),
            netns.len()
        ),
    );

    // One copy per node: the same path everywhere, one file per node, no file shared.
    let paths: BTreeSet<&str> = std::iter::once(&me)
        .chain(by_rank.values())
        .map(|r| r.3.as_str())
        .collect();
    let exes: BTreeSet<&str> = nodes.values().flat_map(|n| n.1.iter().copied()).collect();
    c.check(
        "each node runs its own copy of the executable",
        paths.len() == 1
            && nodes.values().all(|n| n.1.len() == 1)
            && exes.len() == nodes.len()
            && nodes[me.1.as_str()].1.contains(me.4.as_str()),
        format_args!(
            "path {paths:?}, {} distinct files on {} nodes",
            exes.len(),
            nodes.len()
        ),
    );

    if let Some(want) = &want_probe {
        let wrong: Vec<u32> = by_rank
            .values()
            .filter(|r| r.5.as_ref() != Some(want))
            .map(|r| r.0)
            .collect();
        c.check(
            "mpirun -x FONDO_PROBE reaches every worker rank on every node",
            wrong.is_empty(),
            format_args!("want {want:?}; ranks without it: {wrong:?}"),
        );
        // The control: what mpirun did not forward stays off the other nodes.
        let leaked: Vec<u32> = by_rank
            .values()
            .filter(|r| r.1 != me.1 && r.6.is_some())
            .map(|r| r.0)
            .collect();
        c.check(
            "an unforwarded variable stays off the other nodes",
            me.6.is_some() && leaked.is_empty(),
            format_args!(
                "rank 0 sees FONDO_NOT_FORWARDED={:?}; ranks off its node that see it: {leaked:?}",
                me.6
            ),
        );
    }

    drop(pool);
    println!("mpi_two_nodes: {} failed", c.failed);
    if c.failed > 0 {
        std::process::exit(1);
    }
}
