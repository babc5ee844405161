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
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// What a rank reports about itself.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Report {
    /// MPI rank (`OMPI_COMM_WORLD_RANK`).
    rank: u32,
    /// Host name (of the rank's UTS namespace).
    host: String,
    /// Network namespace, e.g. "net:[4026532283]".
    netns: String,
    /// Path of `/proc/self/exe`.
    exe: String,
    /// "device:inode" of `/proc/self/exe`.
    exe_id: String,
    probe: Option<String>,
    not_forwarded: Option<String>,
}

fn report() -> Report {
    let or_why = |r: std::io::Result<String>| r.unwrap_or_else(|e| format!("? ({e})"));
    Report {
        rank: std::env::var("OMPI_COMM_WORLD_RANK")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(u32::MAX),
        host: or_why(
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()),
        ),
        netns: or_why(std::fs::read_link("/proc/self/ns/net").map(|p| p.display().to_string())),
        exe: or_why(std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string())),
        exe_id: or_why(
            std::fs::metadata("/proc/self/exe").map(|m| format!("{}:{}", m.dev(), m.ino())),
        ),
        probe: std::env::var("FONDO_PROBE").ok(),
        not_forwarded: std::env::var("FONDO_NOT_FORWARDED").ok(),
    }
}

/// One node as the reports show it.
#[derive(Default)]
struct Node<'a> {
    netns: BTreeSet<&'a str>,
    exes: BTreeSet<&'a str>,
    ranks: Vec<u32>,
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
        me.host, me.netns, me.exe, me.exe_id
    );

    // Map until every worker rank has answered (a few rounds at most).
    let mut by_rank: BTreeMap<u32, Report> = BTreeMap::new();
    for _ in 0..10 {
        match pool.map(where_am_i, 0..(8 * workers as u32)) {
            Ok(reports) => by_rank.extend(reports.into_iter().map(|r| (r.rank, r))),
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
            r.rank, r.host, r.netns, r.exe, r.exe_id, r.probe, r.not_forwarded
        );
    }
    let mut c = Checks { failed: 0 };

    let ranks: BTreeSet<u32> = by_rank.keys().copied().collect();
    c.check(
        "tasks ran on every worker rank",
        ranks == (1..=workers as u32).collect(),
        format_args!("ranks {ranks:?} of {workers}"),
    );

    // Nodes by host name, rank 0 included.
    let mut nodes: BTreeMap<&str, Node> = BTreeMap::new();
    for r in std::iter::once(&me).chain(by_rank.values()) {
        let node = nodes.entry(&r.host).or_default();
        node.netns.insert(&r.netns);
        node.exes.insert(&r.exe_id);
        node.ranks.push(r.rank);
    }
    let summary = nodes
        .iter()
        .map(|(host, n)| {
            let exes: Vec<&str> = n.exes.iter().copied().collect();
            format!("{host}: ranks {:?}, exe {}", n.ranks, exes.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ");
    let netns: BTreeSet<&str> = nodes
        .values()
        .flat_map(|n| n.netns.iter().copied())
        .collect();
    c.check(
        "tasks ran on several nodes",
        nodes.len() >= 2
            && netns.len() == nodes.len()
            && nodes.values().all(|n| n.netns.len() == 1)
            && nodes.keys().any(|h| *h != me.host),
        format_args!(
            "{} hosts, {} network namespaces ({summary})",
            nodes.len(),
            netns.len()
        ),
    );

    // One copy per node: the same path everywhere, one file per node, no file shared.
    let paths: BTreeSet<&str> = std::iter::once(&me)
        .chain(by_rank.values())
        .map(|r| r.exe.as_str())
        .collect();
    let exes: BTreeSet<&str> = nodes
        .values()
        .flat_map(|n| n.exes.iter().copied())
        .collect();
    c.check(
        "each node runs its own copy of the executable",
        paths.len() == 1 && nodes.values().all(|n| n.exes.len() == 1) && exes.len() == nodes.len(),
        format_args!(
            "path {paths:?}, {} distinct files on {} nodes",
            exes.len(),
            nodes.len()
        ),
    );

    if let Some(want) = &want_probe {
        let wrong: Vec<u32> = by_rank
            .values()
            .filter(|r| r.probe.as_ref() != Some(want))
            .map(|r| r.rank)
            .collect();
        c.check(
            "mpirun -x FONDO_PROBE reaches every worker rank on every node",
            wrong.is_empty(),
            format_args!("want {want:?}; ranks without it: {wrong:?}"),
        );
        // The control: what mpirun did not forward stays off the other nodes.
        let leaked: Vec<u32> = by_rank
            .values()
            .filter(|r| r.host != me.host && r.not_forwarded.is_some())
            .map(|r| r.rank)
            .collect();
        c.check(
            "an unforwarded variable stays off the other nodes",
            me.not_forwarded.is_some() && leaked.is_empty(),
            format_args!(
                "rank 0 sees FONDO_NOT_FORWARDED={:?}; ranks off its node that see it: {leaked:?}",
                me.not_forwarded
            ),
        );
    }

    drop(pool);
    println!("mpi_two_nodes: {} failed", c.failed);
    if c.failed > 0 {
        std::process::exit(1);
    }
}
