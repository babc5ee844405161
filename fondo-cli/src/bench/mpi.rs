//! `fondo bench --mpi`: the per-task overheads of the MPI backend, measured on
//! `Pool::mpi()` (rank 0 runs the bench, the other ranks serve tasks) — the same
//! no-op figures as the process pool's: `apply_async(noop).get()` round trip,
//! `map(noop, n)` with automatic chunks, `imap(noop)` with chunksize 1. Only these
//! run in `--mpi` mode.

use crate::{BenchArgs, CliResult};

/// Without the `mpi` feature there is no MPI backend to measure.
#[cfg(not(feature = "mpi"))]
pub fn run(_args: &BenchArgs) -> CliResult {
    Err("--mpi: built without the mpi feature: cargo build --release --features mpi".into())
}

/// Starts the MPI pool — first of all: on ranks ≥ 1 `Pool::mpi()` serves tasks and
/// exits the process when rank 0 closes the pool — then measures on rank 0.
#[cfg(feature = "mpi")]
pub fn run(args: &BenchArgs) -> CliResult {
    let pool = fondo::Pool::mpi().map_err(|e| format!("--mpi: {e}"))?;
    on_rank0(args, &pool)
}

#[cfg(feature = "mpi")]
fn on_rank0(args: &BenchArgs, pool: &fondo::Pool<fondo::mpi::Mpi>) -> CliResult {
    use super::overhead::{apply_round_trips, noop, noop1};
    use super::report::{Figures, count};
    use super::stats::{BoxError, Unit, sample, timed};
    use super::{JsonReport, Machine, Runner, Sizes, python};
    use crate::table::Table;
    use std::time::Instant;

    const SYSTEM: &str = "fondo_mpi";
    let repeat = super::repeat(args)?;
    let workers = pool.workers();
    let sizes = Sizes::new(args.quick);
    let loadavg_at_start = super::loadavg();
    super::warn_if_debug();
    if args.plot.is_some() {
        eprintln!("fondo bench: --plot: nothing to plot in --mpi mode (no factorial figures)");
    }
    let pb = super::progress_bar(3)?;
    let started = Instant::now();
    let mut runner = Runner::new(pb.clone(), repeat);
    let w = Some(workers);

    let n = sizes.roundtrip_batch;
    runner.step("apply_async_roundtrip", SYSTEM, w, Unit::Micros, || {
        sample(repeat, || apply_round_trips(pool, noop, n))
    });
    let tasks = sizes.noop_tasks;
    runner.step("map_noop", SYSTEM, w, Unit::TasksPerSec, || {
        sample(repeat, || {
            let (t, v) = timed(|| pool.map(noop1, 0..tasks as u32));
            if v?.len() != tasks {
                return Err("map returned the wrong number of results".into());
            }
            Ok(tasks as f64 / t)
        })
    });
    let imap_tasks = sizes.imap_tasks;
    runner.step("imap_noop_chunk1", SYSTEM, w, Unit::TasksPerSec, || {
        sample(repeat, || {
            // fondo's imap chunksize is 1 by default, as Python's.
            let (t, k) = timed(|| -> Result<usize, BoxError> {
                let mut k = 0;
                for x in pool.imap(noop1, 0..imap_tasks as u32) {
                    x?;
                    k += 1;
                }
                Ok(k)
            });
            if k? != imap_tasks {
                return Err("imap yielded the wrong number of results".into());
            }
            Ok(imap_tasks as f64 / t)
        })
    });
    pb.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let Runner {
        figures, failures, ..
    } = runner;

    let ranks = if workers == 1 { "rank" } else { "ranks" };
    println!(
        "fondo bench --mpi — {} MPI ranks (rank 0 runs the bench, {workers} worker {ranks}), \
         {repeat} runs each after a warm-up{}; {elapsed:.0} s",
        workers + 1,
        if args.quick { ", quick" } else { "" },
    );
    println!();
    println!("MPI pool overheads, {workers} worker {ranks}");
    let f = Figures(&figures);
    let mut t = Table::new(["<figure", ">median", ">best"])
        .indent("")
        .solid_rule();
    for (label, name) in [
        (
            "apply_async(noop).get() round trip".to_string(),
            "apply_async_roundtrip",
        ),
        (
            format!("map(noop, {}), auto chunks", count(tasks)),
            "map_noop",
        ),
        ("imap(noop), chunksize 1".to_string(), "imap_noop_chunk1"),
    ] {
        if let Some(x) = f.get(name, SYSTEM, w) {
            t.row([label, x.unit.format(x.median), x.unit.format(x.best)]);
        }
    }
    print!("{t}");
    super::print_failures(&failures);

    if let Some(path) = &args.json {
        let report = JsonReport {
            schema: "fondo-bench/1",
            fondo_version: env!("CARGO_PKG_VERSION"),
            machine: Machine::now(fondo::cpu_count(), loadavg_at_start),
            quick: args.quick,
            repeat,
            workers: &[workers],
            sizes: &sizes,
            elapsed_s: elapsed,
            python: &python::PythonRun::skipped("--mpi: only the MPI figures"),
            results: &figures,
            goals: &[],
            errors: &failures,
        };
        super::write_json(path, &report)?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} figure(s) could not be measured", failures.len()).into())
    }
}
