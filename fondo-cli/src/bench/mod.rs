//! `fondo bench`: the notebook's factorial experiment, the process pool's overhead
//! figures (the README's performance table, docs/BENCHMARKS.md), sharing, short tasks
//! behind a long one and the journal's cost, measured side by side in one run.
//!
//! # What runs
//!
//! - **factorial 1000..2000** (num-bigint, the notebook's loop), checked against the
//!   single-thread answer on every run, on: one Rust thread; `std::thread`s each
//!   taking one contiguous slice (the notebook's halves split); `Pool::threads(w)`;
//!   `Pool::processes(w)`; a rayon `ThreadPool` of `w` threads; and CPython
//!   (`cpython_reference.py`: one thread, two `threading` threads, `Pool(w).map`) —
//!   for `w` in 1, 2, `cpu_count()` and 2×`cpu_count()`.
//! - **overheads** of a 2-worker process pool: `apply_async(noop).get()` round trip
//!   next to a raw socketpair ping-pong (blocking and spinning) measured in the same
//!   run; `map(noop, 1M)` with automatic chunks; `imap(noop)` with chunksize 1; a
//!   64 MiB × 8 payload round trip through an identity function on a byte string
//!   (the goal figure: CPython's payload is `bytes`) and on `Vec<u8>` (which serde
//!   sends element by element), next to memcpy bandwidth and the speed of filling a
//!   fresh allocation (`alloc_copy`), which bound it; pool(2) create + first task +
//!   close. The same on `Pool::threads(2)` where it applies, for contrast.
//! - **sharing** (issue 16; `sharing.rs` says how each is measured), on a process
//!   pool of 2: `map_with(noop)` with a 1 KiB and a 64 MiB context (steady rate, the
//!   first map with a new context, and the bytes a task's arguments take); a
//!   `Shared<[f64]>` of 64 MiB and of 1 GiB attached by a fresh pool's first
//!   `apply`, against the same without a share; the 1 GiB share summed in place by
//!   both workers, against one thread's memcpy of it; a worker's RSS growth after
//!   reading 1 MiB of it; 64 MiB × 8 `f64`s round trip as `fondo::Array<f64>` and
//!   as `Vec<f64>`. CPython's `functools.partial` context, a sum over a
//!   `multiprocessing.shared_memory` block (64 MiB: pure Python is slow) and
//!   `array('d')` round trip beside them.
//! - **short tasks behind a long one** (head-of-line blocking; `mixed.rs`), on
//!   `Pool::processes(2)` and `Pool::threads(2)`: one `apply_async` of a 300 ms
//!   sleep, then at once 8 of a no-op; each no-op's latency from its submission to
//!   its `get()` returning, the median and the largest of each run's 8; the same 8
//!   with both workers idle. CPython's `Pool(2)` runs both scenarios.
//! - **the journal's cost** (`fondo::Journal`; `journal.rs`), on `Pool::processes(2)`:
//!   `map` of a 10 µs task (busy loop) and of a no-op, without a journal, through a
//!   new journal and through the complete one (a rerun), alternating; the 10 µs map
//!   again with `chunksize(200)` on both sides; the bytes per `u64` result on disk.
//!   Journals live in a temporary directory, removed at the end.
//!
//! Each figure runs once untimed (warm-up; the payload figures, fondo's and
//! CPython's, for 2 s as criterion does), then `--repeat` times (default 5,
//! `--quick` 2); medians and minima are reported, and ratios use medians. Pools are
//! created outside the timed region except for the create-and-close figure.
//! `--quick` also shrinks the inputs (100k noop tasks, 5k imap tasks, 8 MiB payloads
//! and big context, shares of 8 and 64 MiB, 20k journaled 10 µs tasks; in a debug
//! build, all inputs including the factorial range; the head-of-line figures keep
//! their 300 ms task and 8 no-ops in every run).
//! CPython runs when `python3` is on the PATH unless `--no-python`; when it does not
//! run, nothing about CPython is printed or written — no column, no figure, no goal
//! against it, none of its figures in a goal's reference — beyond the line saying
//! why it was skipped.
//!
//! # JSON (`--json FILE`)
//!
//! ```text
//! {
//!   "schema": "fondo-bench/1",
//!   "fondo_version": "0.1.0",
//!   "machine": {"cpu_count": 2, "available_parallelism": 2, "os": "linux",
//!               "arch": "x86_64", "loadavg_at_start": "0.10 0.20 0.30",
//!               "loadavg_at_end": "…"},
//!   "quick": false, "repeat": 5, "workers": [1, 2, 4],
//!   "sizes": {"factorial_range": [1000, 2000], "roundtrip_batch": 2000,
//!             "noop_tasks": 1000000, "imap_tasks": 50000,
//!             "payload_bytes": 67108864, "payload_tasks": 8,
//!             "context_small_bytes": 1024, "context_big_bytes": 67108864,
//!             "shared_small_bytes": 67108864, "shared_big_bytes": 1073741824,
//!             "shared_touch_bytes": 1048576, "hol_long_ms": 300,
//!             "hol_fast_tasks": 8, "journal_tasks": 40000},
//!   "elapsed_s": 95.2,
//!   "python": {"status": "ran" | "skipped" | "failed", "reason": "…",
//!              "version": "3.11.7", "start_method": "fork", "errors": ["…"]},
//!   "results": [
//!     {"name": "factorial", "system": "fondo_processes", "workers": 2, "unit": "s",
//!      "min": 0.06, "median": 0.061, "max": 0.07, "best": 0.06,
//!      "higher_is_better": false, "samples": [0.06, …]},
//!     …
//!   ],
//!   "goals": [
//!     {"id": "apply_async_roundtrip", "figure": "…", "goal": "≤ 15 µs",
//!      "target": 15.0, "at_least": false, "value": 40.2, "unit": "us",
//!      "met": false, "design_reference": "CPython 226 µs; …"},
//!     {"id": "factorial_processes_vs_cpython", …, "limit_this_run": 3.4},
//!     …
//!   ],
//!   "errors": [{"name": "…", "system": "…", "workers": 2, "error": "…"}]
//! }
//! ```
//!
//! `unit` is one of `s`, `ms`, `us` (per operation; lower is better), `tasks_per_s`,
//! `GB_per_s` (decimal GB; payload figures count bytes sent plus bytes received;
//! higher is better), `bytes` and `MiB` (lower is better). `best` is `min` for times and `max` for rates. `workers` is
//! `null` only where a figure has no worker count. A goal's `unit` is `x` for a
//! ratio, `%` for a share of another duration (the head-of-line goal: of the long
//! task's), else its figure's unit. Optional keys are left out when empty; the load averages (1, 5, 15 min, from `/proc/loadavg`) tell whether
//! something else ran on the machine meanwhile. Goals are judged on medians; `value`
//! and `met` are `null` when a figure is missing (e.g. CPython failed), and
//! `limit_this_run` is the best value reachable in this run where one exists (for the
//! factorial against CPython: CPython's Pool(2) time ÷ half the one-thread Rust time).
//! Without a CPython run the `factorial_processes_vs_cpython` goal is left out and no
//! `design_reference` names a CPython figure.
//! The `results` entries, by `name` → `system` (workers):
//!
//! | name | systems |
//! |---|---|
//! | `factorial` | `rust_single` (1); `std_thread_split`, `fondo_threads`, `fondo_processes`, `rayon`, `cpython_pool` (each worker count); `cpython_single` (1); `cpython_threads` (2) |
//! | `apply_async_roundtrip` (us) | `fondo_processes`, `fondo_threads`, `cpython` (2) |
//! | `socketpair_pingpong_blocking`, `socketpair_pingpong_spinning` (us) | `std_unixstream` (2) |
//! | `map_noop`, `imap_noop_chunk1` (tasks_per_s) | `fondo_processes`, `fondo_threads`, `cpython` (2) |
//! | `payload_roundtrip` (GB_per_s) | `fondo_processes`, `cpython` (2) |
//! | `payload_roundtrip_bytes` (GB_per_s) | `fondo_processes` (2) |
//! | `memcpy`, `alloc_copy` (GB_per_s) | `rust` (1) |
//! | `pool_create_first_close` (ms) | `fondo_processes`, `fondo_threads`, `cpython` (2) |
//! | `map_with_small_context`, `map_with_big_context` (tasks_per_s) | `fondo_processes`, `cpython` (2) |
//! | `map_with_first_small_context`, `map_with_first_big_context` (ms) | `fondo_processes` (2) |
//! | `context_bytes_per_task_small`, `context_bytes_per_task_big` (bytes) | `fondo` (`null`) |
//! | `shared_first_apply_none`, `shared_first_apply_small`, `shared_first_apply_big` (us) | `fondo_processes` (2) |
//! | `shared_scan` (GB_per_s, bytes read) | `fondo_processes` (`shared_big_bytes`), `cpython` (`shared_small_bytes`) (2) |
//! | `shared_memcpy` (GB_per_s, bytes copied) | `rust` (1) |
//! | `shared_rss_growth`, `shared_rss_shmem_growth` (MiB) | `fondo_processes` (2) |
//! | `array_roundtrip` (GB_per_s) | `fondo_processes`, `cpython` (2) |
//! | `payload_roundtrip_vec_f64` (GB_per_s) | `fondo_processes` (2) |
//! | `hol_fast_latency_median`, `hol_fast_latency_max`, `hol_idle_latency_median`, `hol_idle_latency_max` (us) | `fondo_processes`, `fondo_threads`, `cpython` (2) |
//! | `journal_off_10us`, `journal_on_10us`, `journal_rerun_10us`, `journal_off_noop`, `journal_on_noop`, `journal_rerun_noop`, `journal_off_10us_chunk200`, `journal_on_10us_chunk200` (ms) | `fondo_processes` (2) |
//! | `journal_bytes_per_result_10us`, `journal_bytes_per_result_noop` (bytes) | `fondo_processes` (2) |
//!
//! The `cpython*` entries are present only when `python.status` is `ran`.
//!
//! # MPI (`--mpi`)
//!
//! `fondo bench --mpi`, built with the `mpi` feature and started by `mpirun -np N`
//! (N ≥ 2), measures only the MPI backend (`Pool::mpi()`: rank 0 runs the bench,
//! ranks 1..N serve tasks): `apply_async_roundtrip` (us), `map_noop` and
//! `imap_noop_chunk1` (tasks_per_s), system `fondo_mpi`, workers N − 1, with the
//! sizes above. Its JSON has the same shape, with only those results, `workers:
//! [N − 1]`, no goals and `python.status` `skipped`.

mod factorial;
mod journal;
mod mixed;
mod mpi;
mod overhead;
mod plot;
mod python;
mod report;
mod sharing;
mod stats;

use crate::{BenchArgs, CliResult};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use stats::{BoxError, Figure, Unit};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// The long task of the head-of-line figures, in ms, in every run (CPython's too):
/// long enough that a fast task stuck behind it could not go unnoticed, short
/// enough to keep the bench short.
const HOL_LONG_MS: u64 = 300;
/// The no-op tasks submitted behind it.
const HOL_FAST_TASKS: usize = 8;

/// Input sizes.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// `[first, end)` of the factorial range: the notebook's 1000..2000, except in a
    /// quick run of a debug build (1000..1100), where num-bigint is ~20× slower.
    pub factorial_range: [u32; 2],
    /// `apply_async(noop).get()` calls per sample (ping-pong: 4× as many).
    pub roundtrip_batch: usize,
    /// Tasks of `map(noop, n)`.
    pub noop_tasks: usize,
    /// Tasks of `imap(noop, n)`.
    pub imap_tasks: usize,
    /// Bytes of one payload.
    pub payload_bytes: usize,
    /// Payloads per round trip (also of the numeric array figures, whose values
    /// are `payload_bytes` of `f64`s).
    pub payload_tasks: usize,
    /// The `map_with` figures' small context (its weights' bytes); they run
    /// `noop_tasks` tasks.
    pub context_small_bytes: usize,
    /// Their big context.
    pub context_big_bytes: usize,
    /// The smaller `Shared<[f64]>` (attached, for comparison with the big one; the
    /// size CPython scans).
    pub shared_small_bytes: usize,
    /// The big `Shared<[f64]>`: attached, scanned, copied.
    pub shared_big_bytes: usize,
    /// What the RSS figure's task reads of the big share (from its start).
    pub shared_touch_bytes: usize,
    /// How long the long task of the head-of-line figures sleeps, in ms.
    pub hol_long_ms: u64,
    /// The no-op tasks submitted right behind it.
    pub hol_fast_tasks: usize,
    /// Tasks of the journal's 10 µs `map` (its no-op `map` runs `noop_tasks`).
    pub journal_tasks: usize,
}

impl Sizes {
    /// The CPython script's sizes, so both sides do the same work. A quick run of
    /// an unoptimised build (the end-to-end test) shrinks everything: its figures
    /// mean nothing anyway.
    fn new(quick: bool) -> Sizes {
        if quick && cfg!(debug_assertions) {
            return Sizes {
                factorial_range: [1000, 1100],
                roundtrip_batch: 100,
                noop_tasks: 20_000,
                imap_tasks: 1_000,
                payload_bytes: 1 << 20,
                payload_tasks: 8,
                context_small_bytes: 1 << 10,
                context_big_bytes: 1 << 20,
                shared_small_bytes: 1 << 20,
                shared_big_bytes: 8 << 20,
                shared_touch_bytes: 1 << 20,
                hol_long_ms: HOL_LONG_MS,
                hol_fast_tasks: HOL_FAST_TASKS,
                journal_tasks: 2_000,
            };
        }
        let r = factorial::NOTEBOOK_RANGE;
        Sizes {
            factorial_range: [r.start, r.end],
            roundtrip_batch: if quick { 500 } else { 2_000 },
            noop_tasks: if quick { 100_000 } else { 1_000_000 },
            imap_tasks: if quick { 5_000 } else { 50_000 },
            payload_bytes: if quick { 8 << 20 } else { 64 << 20 },
            payload_tasks: 8,
            context_small_bytes: 1 << 10,
            context_big_bytes: if quick { 8 << 20 } else { 64 << 20 },
            shared_small_bytes: if quick { 8 << 20 } else { 64 << 20 },
            shared_big_bytes: if quick { 64 << 20 } else { 1 << 30 },
            shared_touch_bytes: 1 << 20,
            hol_long_ms: HOL_LONG_MS,
            hol_fast_tasks: HOL_FAST_TASKS,
            journal_tasks: if quick { 20_000 } else { 40_000 },
        }
    }
}

/// A figure that could not be measured.
#[derive(Debug, Clone, Serialize)]
struct Failure {
    name: String,
    system: String,
    workers: Option<usize>,
    error: String,
}

/// Runs measurements, ticking the progress bar and collecting figures and failures.
pub struct Runner {
    pb: ProgressBar,
    /// Timed samples per figure.
    pub repeat: usize,
    figures: Vec<Figure>,
    failures: Vec<Failure>,
}

impl Runner {
    /// A runner with nothing measured yet, reporting progress on `pb`.
    pub fn new(pb: ProgressBar, repeat: usize) -> Runner {
        Runner {
            pb,
            repeat,
            figures: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Measures one figure: `body` sets up, warms up and returns the samples.
    pub fn step(
        &mut self,
        name: &str,
        system: &str,
        workers: Option<usize>,
        unit: Unit,
        body: impl FnOnce() -> Result<Vec<f64>, BoxError>,
    ) {
        let w = workers.map_or_else(String::new, |w| format!(" ×{w}"));
        self.pb.set_message(format!("{name}: {system}{w}"));
        let outcome = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(samples)) if samples.is_empty() => Err("no samples".to_string()),
            Ok(Ok(samples)) if samples.iter().any(|s| !s.is_finite() || *s <= 0.0) => {
                Err(format!("a sample is not a positive number: {samples:?}"))
            }
            Ok(Ok(samples)) => Ok(samples),
            Ok(Err(e)) => Err(e.to_string()),
            Err(p) => Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())),
        };
        match outcome {
            Ok(samples) => {
                self.figures
                    .push(Figure::new(name, system, workers, unit, samples));
            }
            Err(error) => {
                self.pb.suspend(|| {
                    eprintln!("fondo bench: {name} on {system}{w} failed: {error}");
                });
                self.failures.push(Failure {
                    name: name.into(),
                    system: system.into(),
                    workers,
                    error,
                });
            }
        }
        self.pb.inc(1);
    }

    /// Records `N` figures of one measurement (`measured`, run in the first step,
    /// gives each figure's samples), so figures compared with each other are
    /// sampled in turns and see the same machine. A figure with an empty name is
    /// left out.
    pub fn steps_together<const N: usize>(
        &mut self,
        figures: [(&str, Unit); N],
        system: &str,
        workers: Option<usize>,
        measured: impl FnOnce() -> Result<[Vec<f64>; N], BoxError>,
    ) {
        let first = figures[0].0;
        let mut samples: Option<[Vec<f64>; N]> = None;
        let mut measured = Some(measured);
        for (k, (name, unit)) in figures.into_iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            self.step(name, system, workers, unit, || {
                if let Some(m) = measured.take() {
                    samples = Some(m()?);
                }
                samples
                    .as_mut()
                    .map(|f| std::mem::take(&mut f[k]))
                    .ok_or_else(|| format!("not measured: see {first}").into())
            });
        }
    }
}

#[derive(Serialize)]
struct Machine {
    cpu_count: usize,
    available_parallelism: usize,
    os: &'static str,
    arch: &'static str,
    loadavg_at_start: Option<String>,
    loadavg_at_end: Option<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    fondo_version: &'static str,
    machine: Machine,
    quick: bool,
    repeat: usize,
    workers: &'a [usize],
    sizes: &'a Sizes,
    elapsed_s: f64,
    python: &'a python::PythonRun,
    results: &'a [Figure],
    goals: &'a [report::Goal],
    #[serde(skip_serializing_if = "<[Failure]>::is_empty")]
    errors: &'a [Failure],
}

/// 1, 2, cpu_count and 2×cpu_count, sorted, without repeats.
fn worker_counts(cpus: usize) -> Vec<usize> {
    let mut w = vec![1, 2, cpus.max(1), 2 * cpus.max(1)];
    w.sort_unstable();
    w.dedup();
    w
}

fn loadavg() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// `--repeat`, or its default: 5, 2 with `--quick`.
fn repeat(args: &BenchArgs) -> Result<usize, Box<dyn std::error::Error>> {
    let repeat = args.repeat.unwrap_or(if args.quick { 2 } else { 5 });
    if repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    Ok(repeat)
}

fn warn_if_debug() {
    if cfg!(debug_assertions) {
        eprintln!(
            "fondo bench: this is an unoptimised build: its figures say nothing about fondo; \
             use `cargo run --release -- bench`"
        );
    }
}

/// The progress bar, `total` steps long, ticking.
fn progress_bar(total: u64) -> Result<ProgressBar, Box<dyn std::error::Error>> {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner:.green} {elapsed:>4} [{bar:30.cyan/blue}] {pos:>2}/{len} {wide_msg}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(250));
    Ok(pb)
}

impl Machine {
    fn now(cpus: usize, loadavg_at_start: Option<String>) -> Machine {
        Machine {
            cpu_count: cpus,
            available_parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            loadavg_at_start,
            loadavg_at_end: loadavg(),
        }
    }
}

/// Writes `report` as pretty JSON to `path`.
fn write_json(path: &std::path::Path, report: &JsonReport) -> CliResult {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!("figures written to {}", path.display());
    Ok(())
}

/// Prints the figures that could not be measured.
fn print_failures(failures: &[Failure]) {
    for e in failures {
        println!(
            "failed: {} on {} ({:?} workers): {}",
            e.name, e.system, e.workers, e.error
        );
    }
}

/// Runs the benchmarks.
pub fn run(args: &BenchArgs) -> CliResult {
    if args.mpi {
        // Pool::mpi() comes before any other work: on ranks ≥ 1 it serves tasks
        // and never returns.
        return mpi::run(args);
    }
    let repeat = repeat(args)?;
    let cpus = fondo::cpu_count();
    let workers = worker_counts(cpus);
    let sizes = Sizes::new(args.quick);
    let loadavg_at_start = loadavg();
    warn_if_debug();
    let skip_python = if args.no_python {
        Some("--no-python given")
    } else if !python::available() {
        Some("python3 not found on the PATH")
    } else {
        None
    };
    let mut total = factorial::steps(&workers)
        + overhead::STEPS
        + sharing::STEPS
        + mixed::STEPS
        + journal::STEPS;
    if skip_python.is_none() {
        total += python::steps(&workers);
    }
    let pb = progress_bar(total)?;

    let started = Instant::now();
    let mut runner = Runner::new(pb.clone(), repeat);
    let [lo, hi] = sizes.factorial_range;
    factorial::run(&mut runner, &workers, lo..hi);
    overhead::run(&mut runner, &sizes);
    sharing::run(&mut runner, &sizes);
    mixed::run(&mut runner, &sizes);
    journal::run(&mut runner, &sizes);
    let python_run = match skip_python {
        Some(reason) => python::PythonRun::skipped(reason),
        None => {
            pb.set_message("CPython reference: starting python3");
            let (run, figures) = python::run(args.quick, repeat, &workers, &pb);
            runner.figures.extend(figures);
            run
        }
    };
    pb.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let Runner {
        figures, failures, ..
    } = runner;

    let f = report::Figures(&figures);
    let cpython = python_run.status == "ran";
    let goals = report::goals(&f, &sizes, cpython);
    let py = match (python_run.status, &python_run.version) {
        ("ran", Some(v)) => format!(
            "CPython {v} ({} start)",
            python_run.start_method.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "CPython {}: {}",
            python_run.status,
            python_run.reason.as_deref().unwrap_or("")
        ),
    };
    println!(
        "fondo bench — {cpus} CPUs, workers {}, {} runs each after a warm-up{}; {py}; {elapsed:.0} s",
        workers
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("/"),
        repeat,
        if args.quick { ", quick" } else { "" },
    );
    println!();
    println!("factorial {lo}..{hi} (num-bigint, the notebook's loop), seconds per run");
    print!("{}", report::factorial_table(&f, &workers, cpython));
    if cpython {
        println!(
            "speed-up: Rust one-thread median ÷ this median. vs CPython: CPython Pool(same workers).map \
             median ÷ this (for one thread: CPython's one thread) — how many times faster."
        );
    } else {
        println!("speed-up: Rust one-thread median ÷ this median.");
    }
    println!();
    println!("process pool overheads, 2 workers");
    print!("{}", report::overhead_table(&f, &sizes, &goals, cpython));
    if cpython {
        println!(
            "vs CPython: how many times better than CPython multiprocessing in this run. \
             GB/s count bytes sent plus received."
        );
    } else {
        println!("GB/s count bytes sent plus received.");
    }
    println!();
    println!("shared contexts and arrays, numeric arrays (issue 16), 2 workers");
    print!("{}", report::sharing_table(&f, &sizes, &goals, cpython));
    println!(
        "scan: each worker sums half the share where it lies (reads only); memcpy reads \
         each byte and writes it once; both count each byte once."
    );
    if cpython {
        println!(
            "CPython: map_with is Pool.map(functools.partial(f, context)); the scan sums \
             {} of multiprocessing.shared_memory, the smaller share (sum over a memoryview, \
             one Python float at a time: ~0.2 GB/s a core); Array is array('d').",
            report::size(sizes.shared_small_bytes)
        );
    }
    println!();
    println!("short tasks behind a long one (head-of-line blocking), 2 workers");
    print!("{}", report::mixed_table(&f, &sizes, &goals, cpython));
    println!(
        "one apply_async of a {} ms sleep, then {} of a no-op at once; a fast task's \
         latency runs from its submission to its get() returning. Median and largest \
         of each run's {1}; medians over runs.",
        sizes.hol_long_ms, sizes.hol_fast_tasks
    );
    if cpython {
        println!("CPython: the same with Pool(2).apply_async.");
    }
    println!();
    println!("the journal's cost (fondo::Journal), processes(2)");
    print!("{}", report::journal_table(&f, &sizes, &goals));
    println!(
        "milliseconds per map; without, with and rerun alternate in each sample. The journal \
         is opened, written as results arrive and flushed to disk within the time."
    );
    println!();
    println!("goals, on this run's medians");
    print!("{}", report::goals_table(&goals));
    let met = goals.iter().filter(|g| g.met == Some(true)).count();
    let judged = goals.iter().filter(|g| g.met.is_some()).count();
    println!("{met} of {judged} goals met");
    if python_run.status != "ran" {
        println!(
            "CPython reference {}: {}",
            python_run.status,
            python_run.reason.as_deref().unwrap_or("")
        );
    }
    for e in &python_run.errors {
        println!("CPython figure failed: {e}");
    }
    print_failures(&failures);

    if let Some(path) = &args.json {
        let report = JsonReport {
            schema: "fondo-bench/1",
            fondo_version: env!("CARGO_PKG_VERSION"),
            machine: Machine::now(cpus, loadavg_at_start),
            quick: args.quick,
            repeat,
            workers: &workers,
            sizes: &sizes,
            elapsed_s: elapsed,
            python: &python_run,
            results: &figures,
            goals: &goals,
            errors: &failures,
        };
        write_json(path, &report)?;
    }
    if let Some(path) = &args.plot {
        let note = format!(
            "median of {repeat}{}",
            match &python_run.version {
                Some(v) => format!(", CPython {v}"),
                None => String::new(),
            }
        );
        plot::draw(path, &f, &workers, cpus, &format!("{lo}..{hi}"), &note)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("plot written to {}", path.display());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} figure(s) could not be measured", failures.len()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts_are_the_notebooks() {
        assert_eq!(worker_counts(2), [1, 2, 4]);
        assert_eq!(worker_counts(1), [1, 2]);
        assert_eq!(worker_counts(8), [1, 2, 8, 16]);
    }
}
