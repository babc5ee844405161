//! What `fondo bench` prints: the factorial table, the overhead table, and every
//! figure against the project's performance goals (the README's performance table,
//! docs/BENCHMARKS.md). Without a CPython run (`--no-python`, no python3) nothing
//! about CPython is printed: no column, no figure, no goal.

use super::Sizes;
use super::factorial::SYSTEMS;
use super::stats::{Figure, Unit};
use crate::table::Table;
use serde::Serialize;

/// Looks figures up by (name, system, workers).
pub struct Figures<'a>(pub &'a [Figure]);

impl<'a> Figures<'a> {
    pub fn get(&self, name: &str, system: &str, workers: Option<usize>) -> Option<&'a Figure> {
        self.0
            .iter()
            .find(|f| f.name == name && f.system == system && f.workers == workers)
    }

    fn median(&self, name: &str, system: &str, workers: Option<usize>) -> Option<f64> {
        self.get(name, system, workers).map(|f| f.median)
    }

    /// Median seconds of the factorial run on `system` with `w` workers.
    pub fn factorial(&self, system: &str, w: usize) -> Option<f64> {
        self.median("factorial", system, Some(w))
    }
}

/// One of the performance goals, judged on this run's medians.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// Stable identifier.
    pub id: &'static str,
    /// What is compared.
    pub figure: String,
    /// The goal as the project set it (issue 8 for the ping-pong ratio).
    pub goal: String,
    /// The threshold, in `unit`.
    pub target: f64,
    /// True when the value must be at least the target, false when at most.
    pub at_least: bool,
    /// This run's value (median-based); `null` when not measured.
    pub value: Option<f64>,
    /// `x` for ratios, else the figure's unit.
    pub unit: &'static str,
    /// Whether the goal is met; `null` when not measured.
    pub met: Option<bool>,
    /// The figures the goal was set against, for context: CPython's as first
    /// measured (only when CPython ran), a floor or rayon's. The JSON key keeps its
    /// `fondo-bench/1` name.
    pub design_reference: String,
    /// The best value reachable in this run, where the goal has one: for the
    /// factorial against CPython, CPython's Pool(2) time ÷ (one Rust thread ÷ 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_this_run: Option<f64>,
}

fn unit_id(u: Unit) -> &'static str {
    match u {
        Unit::Seconds => "s",
        Unit::Millis => "ms",
        Unit::Micros => "us",
        Unit::TasksPerSec => "tasks_per_s",
        Unit::GbPerSec => "GB_per_s",
        Unit::Bytes => "bytes",
        Unit::MiB => "MiB",
    }
}

/// Judges every goal on this run; with `cpython` false (CPython did not run), the
/// goal against CPython is left out, and so are CPython's figures in the references.
pub fn goals(f: &Figures, sizes: &Sizes, cpython: bool) -> Vec<Goal> {
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let single = f.factorial("rust_single", 1);
    // The reference: CPython's part (when it ran), then the rest.
    let reference = |(py, rest): (&str, &str)| {
        [if cpython { py } else { "" }, rest]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mk = |id,
              figure: &str,
              target: f64,
              at_least,
              value: Option<f64>,
              unit,
              goal: &str,
              r: (&str, &str)| Goal {
        id,
        figure: figure.into(),
        goal: goal.into(),
        target,
        at_least,
        value,
        unit,
        met: value.map(|v| if at_least { v >= target } else { v <= target }),
        design_reference: reference(r),
        limit_this_run: None,
    };
    let proc = |name| f.median(name, "fondo_processes", Some(2));
    let mut goals = vec![
        mk(
            "factorial_threads_speedup",
            "threads(2) factorial speed-up",
            1.9,
            true,
            ratio(single, f.factorial("fondo_threads", 2)),
            "x",
            "≥ 1.9×",
            ("", "rayon 1.97×; halves 1.47×"),
        ),
        mk(
            "factorial_threads_vs_rayon",
            "threads(2) ÷ rayon(2) time",
            1.03,
            false,
            ratio(f.factorial("fondo_threads", 2), f.factorial("rayon", 2)),
            "x",
            "≤ 1.03×",
            ("", "rayon 1.97×"),
        ),
        mk(
            "factorial_processes_speedup",
            "processes(2) factorial speed-up",
            1.85,
            true,
            ratio(single, f.factorial("fondo_processes", 2)),
            "x",
            "≥ 1.85×",
            ("", "floor: single ÷ 2"),
        ),
        mk(
            "factorial_processes_vs_cpython",
            "CPython Pool(2) ÷ processes(2) time",
            3.9,
            true,
            ratio(
                f.factorial("cpython_pool", 2),
                f.factorial("fondo_processes", 2),
            ),
            "x",
            "≥ 3.9×",
            ("limit ≈ 4.1×", ""),
        ),
        mk(
            "apply_async_roundtrip",
            "apply_async(noop).get() round trip",
            15.0,
            false,
            proc("apply_async_roundtrip"),
            "us",
            "≤ 15 µs",
            ("CPython 226 µs", "ping-pong 42/4 µs"),
        ),
        mk(
            "apply_async_vs_pingpong",
            "round trip ÷ spinning ping-pong",
            3.0,
            false,
            ratio(
                proc("apply_async_roundtrip"),
                f.median("socketpair_pingpong_spinning", "std_unixstream", Some(2)),
            ),
            "x",
            "≤ 3× (issue 8)",
            ("", ""),
        ),
        mk(
            "map_noop",
            "map(noop) auto chunks",
            20e6,
            true,
            proc("map_noop"),
            unit_id(Unit::TasksPerSec),
            "≥ 20 M/s",
            ("CPython 4.0 M/s", ""),
        ),
        mk(
            "imap_noop_chunk1",
            "imap(noop) chunksize 1",
            300e3,
            true,
            proc("imap_noop_chunk1"),
            unit_id(Unit::TasksPerSec),
            "≥ 300 k/s",
            ("CPython 47 k/s", ""),
        ),
        mk(
            "payload_roundtrip",
            "payload × 8 round trip, bytes",
            3.0,
            true,
            // CPython sends `bytes`; the Rust counterpart is a byte string
            // (serde_bytes), not a `Vec<u8>`, which serde treats as a sequence.
            proc("payload_roundtrip_bytes"),
            unit_id(Unit::GbPerSec),
            "≥ 3 GB/s",
            ("CPython 0.23 GB/s", "memcpy 11"),
        ),
        mk(
            "pool_create_first_close",
            "pool(2) create + first + close",
            10.0,
            false,
            proc("pool_create_first_close"),
            unit_id(Unit::Millis),
            "≤ 10 ms",
            ("CPython 44 ms", ""),
        ),
    ];
    goals.extend(sharing_goals(f, sizes, cpython));
    goals.extend(mixed_goals(f, sizes, cpython));
    goals.extend(journal_goals(f));
    if !cpython {
        goals.retain(|g| g.id != "factorial_processes_vs_cpython");
    }
    let limit = ratio(f.factorial("cpython_pool", 2), single.map(|s| s / 2.0));
    for g in &mut goals {
        match g.id {
            "factorial_processes_vs_cpython" => g.limit_this_run = limit,
            "payload_roundtrip" => g.limit_this_run = payload_limit(f),
            _ => {}
        }
    }
    goals
}

/// The fastest payload round trip this machine allows: each value is encoded twice
/// and decoded once into the worker's warm heap (at memcpy speed), and decoded once
/// into a fresh allocation the caller keeps (at `alloc_copy` speed), on two CPUs at
/// best; rate counts each value twice, so `4 / (3/memcpy + 1/alloc_copy)` GB/s.
fn payload_limit(f: &Figures) -> Option<f64> {
    let memcpy = f.median("memcpy", "rust", Some(1))?;
    let alloc = f.median("alloc_copy", "rust", Some(1))?;
    Some(4.0 / (3.0 / memcpy + 1.0 / alloc))
}

fn mark(met: Option<bool>) -> String {
    match met {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "–",
    }
    .into()
}

fn times(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.1}×")
    } else {
        format!("{x:.2}×")
    }
}

/// How many times better `ours` is than `theirs` (>1: ours is better).
fn better(ours: &Figure, theirs: Option<&Figure>) -> String {
    theirs.map_or_else(String::new, |t| {
        times(if ours.higher_is_better {
            ours.median / t.median
        } else {
            t.median / ours.median
        })
    })
}

/// The factorial experiment, every system at every worker count; the "vs CPython"
/// column only when `cpython` (CPython ran).
pub fn factorial_table(f: &Figures, workers: &[usize], cpython: bool) -> Table {
    let mut headers = vec!["<system", ">workers", ">median", ">best", ">speed-up"];
    if cpython {
        headers.push(">vs CPython");
    }
    let mut t = Table::new(headers).indent("").solid_rule();
    let single = f.get("factorial", "rust_single", Some(1));
    let cpython_single = f.get("factorial", "cpython_single", Some(1));
    let speedup = |x: &Figure| single.map_or_else(String::new, |s| times(s.median / x.median));
    let mut row = |label: &str, w: usize, x: &Figure, cpy: Option<&Figure>| {
        let mut cells = vec![
            label.into(),
            w.to_string(),
            x.unit.format(x.median),
            x.unit.format(x.best),
            speedup(x),
        ];
        if cpython {
            cells.push(better(x, cpy));
        }
        t.row(cells);
    };
    for (system, label) in SYSTEMS {
        let ws: &[usize] = if system == "rust_single" {
            &[1]
        } else {
            workers
        };
        for &w in ws {
            if let Some(x) = f.get("factorial", system, Some(w)) {
                let cpy = if system == "rust_single" {
                    cpython_single
                } else {
                    f.get("factorial", "cpython_pool", Some(w))
                };
                row(label, w, x, cpy);
            }
        }
    }
    for (system, label) in [
        ("cpython_single", "CPython, one thread"),
        ("cpython_threads", "CPython threading"),
        ("cpython_pool", "CPython Pool.map"),
    ] {
        let ws: Vec<usize> = match system {
            "cpython_pool" => workers.to_vec(),
            "cpython_threads" => vec![2],
            _ => vec![1],
        };
        for w in ws {
            if let Some(x) = f.get("factorial", system, Some(w)) {
                row(label, w, x, None);
            }
        }
    }
    t
}

pub fn count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The columns of a table of figures: CPython's beside fondo's when it ran.
fn figure_headers(with_cpython: bool) -> Vec<&'static str> {
    if with_cpython {
        vec![
            "<figure",
            ">median",
            ">best",
            ">CPython",
            ">vs CPython",
            ">goal",
            "<",
        ]
    } else {
        vec!["<figure", ">median", ">best", ">goal", "<"]
    }
}

/// The overhead figures of the process pool, with the floors beside them, and
/// CPython's when `with_cpython` (CPython ran).
pub fn overhead_table(f: &Figures, sizes: &Sizes, goals: &[Goal], with_cpython: bool) -> Table {
    let mut t = Table::new(figure_headers(with_cpython))
        .indent("")
        .solid_rule();
    let goal = |id: &str| goals.iter().find(|g| g.id == id);
    let mib = sizes.payload_bytes >> 20;
    let rows: [(&str, &str, &str, Option<&str>); 14] = [
        (
            "apply_async(noop).get() round trip",
            "apply_async_roundtrip",
            "fondo_processes",
            Some("apply_async_roundtrip"),
        ),
        (
            "  the same on fondo threads",
            "apply_async_roundtrip",
            "fondo_threads",
            None,
        ),
        (
            "  socketpair ping-pong, blocking",
            "socketpair_pingpong_blocking",
            "std_unixstream",
            None,
        ),
        (
            "  socketpair ping-pong, spinning",
            "socketpair_pingpong_spinning",
            "std_unixstream",
            None,
        ),
        ("MAP", "map_noop", "fondo_processes", Some("map_noop")),
        (
            "  the same on fondo threads",
            "map_noop",
            "fondo_threads",
            None,
        ),
        (
            "imap(noop), chunksize 1",
            "imap_noop_chunk1",
            "fondo_processes",
            Some("imap_noop_chunk1"),
        ),
        (
            "  the same on fondo threads",
            "imap_noop_chunk1",
            "fondo_threads",
            None,
        ),
        (
            "PAYLOAD",
            "payload_roundtrip_bytes",
            "fondo_processes",
            Some("payload_roundtrip"),
        ),
        (
            "  the same as Vec<u8> (a serde sequence)",
            "payload_roundtrip",
            "fondo_processes",
            None,
        ),
        ("  memcpy, one thread", "memcpy", "rust", None),
        (
            "  fresh allocation + copy, one thread",
            "alloc_copy",
            "rust",
            None,
        ),
        (
            "pool(2) create + first task + close",
            "pool_create_first_close",
            "fondo_processes",
            Some("pool_create_first_close"),
        ),
        (
            "  the same on fondo threads",
            "pool_create_first_close",
            "fondo_threads",
            None,
        ),
    ];
    let map_label = format!("map(noop, {}), auto chunks", count(sizes.noop_tasks));
    let payload_label = format!("{mib} MiB × {} payload round trip", sizes.payload_tasks);
    for (label, name, system, goal_id) in rows {
        let label = match label {
            "MAP" => map_label.as_str(),
            "PAYLOAD" => payload_label.as_str(),
            l => l,
        };
        let workers = if system == "rust" { Some(1) } else { Some(2) };
        let Some(x) = f.get(name, system, workers) else {
            continue;
        };
        if label.starts_with(|c: char| c != ' ') && !t.is_empty() {
            t.gap();
        }
        // The CPython figure of a goal row is the goal's own (its payload is `bytes`).
        let cpython = goal_id.and_then(|id| f.get(id, "cpython", Some(2)));
        let g = goal_id.and_then(goal);
        let mut cells = vec![label.into(), x.unit.format(x.median), x.unit.format(x.best)];
        if with_cpython {
            cells.push(cpython.map_or_else(String::new, |c| c.unit.format(c.median)));
            cells.push(better(x, cpython));
        }
        cells.push(g.map_or_else(String::new, |g| g.goal.clone()));
        cells.push(g.map_or_else(String::new, |g| mark(g.met)));
        t.row(cells);
    }
    t
}

/// Every goal with this run's value.
pub fn goals_table(goals: &[Goal]) -> Table {
    let mut t = Table::new([
        "<goal (fondo processes unless said)",
        ">measured",
        ">goal",
        "<",
        "<set against",
    ])
    .indent("")
    .solid_rule();
    for g in goals {
        let value = g
            .value
            .map_or_else(|| "not measured".to_string(), |v| goal_value(g.unit, v));
        let reference = match g.limit_this_run {
            Some(l) if g.unit == "GB_per_s" => {
                format!("{}; limit {}", g.design_reference, Unit::GbPerSec.format(l))
            }
            Some(l) => format!("{} (this run: {})", g.design_reference, times(l)),
            None => g.design_reference.clone(),
        };
        t.row(vec![
            g.figure.clone(),
            value,
            g.goal.clone(),
            mark(g.met),
            reference,
        ]);
    }
    t
}

/// `1 KiB`, `64 MiB`, `1 GiB`: a power-of-two size, for labels.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A goal judged on `value`.
#[allow(clippy::too_many_arguments)]
fn goal(
    id: &'static str,
    figure: String,
    target: f64,
    at_least: bool,
    value: Option<f64>,
    unit: &'static str,
    wording: &str,
    reference: String,
) -> Goal {
    Goal {
        id,
        figure,
        goal: wording.into(),
        target,
        at_least,
        value,
        unit,
        met: value.map(|v| if at_least { v >= target } else { v <= target }),
        design_reference: reference,
        limit_this_run: None,
    }
}

/// `v` in `unit`, or `?` when not measured.
fn fmt(v: Option<f64>, unit: Unit) -> String {
    v.map_or_else(|| "?".to_string(), |v| unit.format(v))
}

/// The non-empty `parts`, joined by `; `.
fn join(parts: Vec<String>) -> String {
    parts
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Issue 16's goals: a context costs a task the same whatever its size; a shared
/// array is attached in constant time, read at memory speed, and costs a worker only
/// the pages it reads; numeric arrays move as fast as byte strings. Their "set
/// against" is this run's own figures (CPython's only when `cpython`).
fn sharing_goals(f: &Figures, sizes: &Sizes, cpython: bool) -> Vec<Goal> {
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let proc = |name: &str| f.median(name, "fondo_processes", Some(2));
    let py = |name: &str| {
        if cpython {
            f.median(name, "cpython", Some(2))
        } else {
            None
        }
    };
    let (small_ctx, big_ctx) = (
        size(sizes.context_small_bytes),
        size(sizes.context_big_bytes),
    );
    let (small_sh, big_sh) = (size(sizes.shared_small_bytes), size(sizes.shared_big_bytes));
    let bytes = |which| f.median(&format!("context_bytes_per_task_{which}"), "fondo", None);
    let memcpy = f.median("shared_memcpy", "rust", Some(1));
    let first_none = proc("shared_first_apply_none");
    vec![
        goal(
            "map_with_context_size",
            format!("map_with: {big_ctx} ÷ {small_ctx} context rate"),
            0.9,
            true,
            ratio(proc("map_with_big_context"), proc("map_with_small_context")),
            "x",
            "≥ 0.9× (≈ 1)",
            join(vec![
                format!(
                    "a task carries the id alone ({} either way)",
                    fmt(bytes("small"), Unit::Bytes)
                ),
                ratio(py("map_with_big_context"), py("map_with_small_context"))
                    .map_or_else(String::new, |r| format!("CPython partial: {}", times(r))),
            ]),
        ),
        goal(
            "context_bytes_per_task",
            format!("bytes per map_with task, {big_ctx} context"),
            16.0,
            false,
            bytes("big"),
            "bytes",
            "≤ 16 B",
            format!("{small_ctx} context: {}", fmt(bytes("small"), Unit::Bytes)),
        ),
        goal(
            "shared_attach",
            format!("first apply: {big_sh} share ÷ none"),
            2.0,
            false,
            ratio(proc("shared_first_apply_big"), first_none),
            "x",
            "≤ 2×",
            // Attaching (the memfd over the socket, an mmap) must cost less than the
            // first round trip to a fresh worker itself.
            format!(
                "no share: {}; attach ≈ {} (the difference)",
                fmt(first_none, Unit::Micros),
                fmt(
                    proc("shared_first_apply_big")
                        .zip(first_none)
                        .map(|(a, b)| a - b),
                    Unit::Micros
                )
            ),
        ),
        goal(
            "shared_attach_size",
            format!("first apply: {big_sh} ÷ {small_sh} share"),
            1.5,
            false,
            ratio(
                proc("shared_first_apply_big"),
                proc("shared_first_apply_small"),
            ),
            "x",
            "≤ 1.5× (≈ 1)",
            format!(
                "{}× the bytes: mmap, no copy",
                sizes.shared_big_bytes / sizes.shared_small_bytes.max(1)
            ),
        ),
        goal(
            "shared_scan_vs_memcpy",
            format!("{big_sh} scan by 2 ÷ memcpy by 1"),
            0.8,
            true,
            ratio(proc("shared_scan"), memcpy),
            "x",
            "≥ 0.8×",
            join(vec![
                format!("memcpy {} (reads + writes)", fmt(memcpy, Unit::GbPerSec)),
                py("shared_scan").map_or_else(String::new, |v| {
                    format!("CPython {} ({small_sh})", Unit::GbPerSec.format(v))
                }),
            ]),
        ),
        goal(
            "shared_rss_growth",
            format!("worker RSS growth, {} read", size(sizes.shared_touch_bytes)),
            2.0 * sizes.shared_touch_bytes as f64 / f64::from(1 << 20),
            false,
            proc("shared_rss_growth"),
            "MiB",
            &format!("≤ {}", size(2 * sizes.shared_touch_bytes)),
            format!(
                "of a {big_sh} share; RssShmem {}",
                fmt(proc("shared_rss_shmem_growth"), Unit::MiB)
            ),
        ),
        goal(
            "array_vs_bytes",
            "Array<f64> ÷ byte-string payload".into(),
            0.8,
            true,
            ratio(proc("array_roundtrip"), proc("payload_roundtrip_bytes")),
            "x",
            "≥ 0.8×",
            join(vec![
                format!(
                    "byte string {}",
                    fmt(proc("payload_roundtrip_bytes"), Unit::GbPerSec)
                ),
                py("array_roundtrip").map_or_else(String::new, |v| {
                    format!("CPython array('d') {}", Unit::GbPerSec.format(v))
                }),
            ]),
        ),
        goal(
            "array_vs_vec_f64",
            "Array<f64> ÷ Vec<f64> payload".into(),
            1.0,
            true,
            ratio(proc("array_roundtrip"), proc("payload_roundtrip_vec_f64")),
            "x",
            "≥ 1×",
            format!(
                "Vec<f64> {} (a serde sequence)",
                fmt(proc("payload_roundtrip_vec_f64"), Unit::GbPerSec)
            ),
        ),
    ]
}

/// One line of the sharing table.
enum Line<'a> {
    /// A figure: label, name, system, workers, the goal it is judged by.
    Figure(String, &'a str, &'a str, Option<usize>, Option<&'a str>),
    /// A ratio (or other value) a goal judges: label, goal id.
    Goal(String, &'a str),
    /// A value worked out from the figures, judged by no goal.
    Derived(String, Option<f64>, Unit),
    /// A ratio worked out from the figures, judged by no goal.
    Ratio(String, Option<f64>),
}

/// Issue 16's figures (`sharing.rs`), with the ratios its goals judge, and
/// CPython's beside them when `with_cpython`.
pub fn sharing_table(f: &Figures, sizes: &Sizes, goals: &[Goal], with_cpython: bool) -> Table {
    let p = "fondo_processes";
    let (small_ctx, big_ctx) = (
        size(sizes.context_small_bytes),
        size(sizes.context_big_bytes),
    );
    let (small_sh, big_sh) = (size(sizes.shared_small_bytes), size(sizes.shared_big_bytes));
    let n = count(sizes.noop_tasks);
    let payload = format!("{} × {}", size(sizes.payload_bytes), sizes.payload_tasks);
    let two = Some(2);
    let groups: Vec<Vec<Line>> = vec![
        vec![
            Line::Figure(
                format!("map_with(noop, {n}), {small_ctx} context"),
                "map_with_small_context",
                p,
                two,
                None,
            ),
            Line::Figure(
                format!("map_with(noop, {n}), {big_ctx} context"),
                "map_with_big_context",
                p,
                two,
                None,
            ),
            Line::Goal(
                format!("  {big_ctx} ÷ {small_ctx} context"),
                "map_with_context_size",
            ),
            Line::Goal(
                format!("  bytes per task ({big_ctx} context)"),
                "context_bytes_per_task",
            ),
            Line::Figure(
                format!("  first map_with with a new {small_ctx} context"),
                "map_with_first_small_context",
                p,
                two,
                None,
            ),
            Line::Figure(
                format!("  first map_with with a new {big_ctx} context"),
                "map_with_first_big_context",
                p,
                two,
                None,
            ),
            Line::Figure(
                "  map(noop), no context (above)".into(),
                "map_noop",
                p,
                two,
                None,
            ),
        ],
        vec![
            Line::Figure(
                "first apply on a fresh pool, no share".into(),
                "shared_first_apply_none",
                p,
                two,
                None,
            ),
            Line::Figure(
                format!("  the same with a share of {small_sh}"),
                "shared_first_apply_small",
                p,
                two,
                None,
            ),
            Line::Figure(
                format!("  the same with a share of {big_sh}"),
                "shared_first_apply_big",
                p,
                two,
                None,
            ),
            Line::Derived(
                format!("  attaching: {big_sh} share − none"),
                f.median("shared_first_apply_big", p, two)
                    .zip(f.median("shared_first_apply_none", p, two))
                    .map(|(a, b)| a - b),
                Unit::Micros,
            ),
            Line::Goal(format!("  {big_sh} share ÷ none"), "shared_attach"),
            Line::Goal(
                format!("  {big_sh} ÷ {small_sh} share"),
                "shared_attach_size",
            ),
        ],
        vec![
            Line::Figure(
                format!("{big_sh} share summed in place by 2 workers"),
                "shared_scan",
                p,
                two,
                None,
            ),
            Line::Figure(
                format!("  memcpy of the same {big_sh}, one thread"),
                "shared_memcpy",
                "rust",
                Some(1),
                None,
            ),
            Line::Goal("  scan ÷ memcpy".into(), "shared_scan_vs_memcpy"),
            Line::Figure(
                format!(
                    "  worker RSS growth after reading {}",
                    size(sizes.shared_touch_bytes)
                ),
                "shared_rss_growth",
                p,
                two,
                Some("shared_rss_growth"),
            ),
            Line::Figure(
                "  of which shared memory (RssShmem)".into(),
                "shared_rss_shmem_growth",
                p,
                two,
                None,
            ),
        ],
        vec![
            Line::Figure(
                format!("{payload} f64 round trip as Array<f64>"),
                "array_roundtrip",
                p,
                two,
                None,
            ),
            Line::Figure(
                "  the same as Vec<f64> (a serde sequence)".into(),
                "payload_roundtrip_vec_f64",
                p,
                two,
                None,
            ),
            Line::Goal("  Array ÷ Vec<f64>".into(), "array_vs_vec_f64"),
            Line::Goal(
                "  Array ÷ byte-string payload (above)".into(),
                "array_vs_bytes",
            ),
        ],
    ];
    lines_table(f, goals, with_cpython, groups)
}

/// A table of groups of lines (a gap between groups), with CPython's figure of the
/// same name beside each `fondo_processes` figure when `with_cpython`.
fn lines_table(f: &Figures, goals: &[Goal], with_cpython: bool, groups: Vec<Vec<Line>>) -> Table {
    let mut t = Table::new(figure_headers(with_cpython))
        .indent("")
        .solid_rule();
    let goal = |id: &str| goals.iter().find(|g| g.id == id);
    for group in groups {
        let mut first = true;
        for line in group {
            let cells = match line {
                Line::Figure(label, name, system, workers, goal_id) => {
                    let Some(x) = f.get(name, system, workers) else {
                        continue;
                    };
                    let cpython = if system == "fondo_processes" {
                        f.get(name, "cpython", Some(2))
                    } else {
                        None
                    };
                    let g = goal_id.and_then(goal);
                    let mut cells = vec![label, x.unit.format(x.median), x.unit.format(x.best)];
                    if with_cpython {
                        cells.push(cpython.map_or_else(String::new, |c| c.unit.format(c.median)));
                        cells.push(better(x, cpython));
                    }
                    cells.push(g.map_or_else(String::new, |g| g.goal.clone()));
                    cells.push(g.map_or_else(String::new, |g| mark(g.met)));
                    cells
                }
                Line::Derived(label, value, unit) => {
                    let Some(v) = value else { continue };
                    vec![label, unit.format(v)]
                }
                Line::Ratio(label, value) => {
                    let Some(v) = value else { continue };
                    vec![label, goal_value("x", v)]
                }
                Line::Goal(label, id) => {
                    let Some(g) = goal(id) else { continue };
                    let Some(v) = g.value else { continue };
                    let mut cells = vec![label, goal_value(g.unit, v), String::new()];
                    if with_cpython {
                        cells.extend([String::new(), String::new()]);
                    }
                    cells.push(g.goal.clone());
                    cells.push(mark(g.met));
                    cells
                }
            };
            if first && !t.is_empty() {
                t.gap();
            }
            first = false;
            t.row(cells);
        }
    }
    t
}

/// The head-of-line goal: while one worker of 2 runs a long task, the no-ops
/// submitted behind it come back within 1% of the long task's duration (the largest
/// latency of a run's fast tasks, median over runs), as a share of it so that it
/// holds whatever the duration. Set against the thread pool and (when `cpython`)
/// CPython's `Pool(2)`, the same scenario in the same run.
fn mixed_goals(f: &Figures, sizes: &Sizes, cpython: bool) -> Vec<Goal> {
    let long_us = sizes.hol_long_ms as f64 * 1e3;
    let max = |system: &str| f.median("hol_fast_latency_max", system, Some(2));
    let share = |v: f64| v / long_us * 100.0;
    let with_share = |v: Option<f64>| {
        v.map_or_else(
            || "?".to_string(),
            |v| format!("{} ({:.3}%)", Unit::Micros.format(v), share(v)),
        )
    };
    vec![goal(
        "hol_fast_latency",
        format!(
            "fast task's max latency ÷ the {} ms task",
            sizes.hol_long_ms
        ),
        1.0,
        false,
        max("fondo_processes").map(share),
        "%",
        &format!("≤ 1% ({})", Unit::Millis.format(long_us / 1e3 / 100.0)),
        join(vec![
            format!(
                "both workers idle {}",
                fmt(
                    f.median("hol_idle_latency_max", "fondo_processes", Some(2)),
                    Unit::Micros
                )
            ),
            format!("threads {}", with_share(max("fondo_threads"))),
            if cpython {
                format!("CPython {}", with_share(max("cpython")))
            } else {
                String::new()
            },
        ]),
    )]
}

/// The journal's goals: through a journal, `map` of a 10 µs task takes at most 10%
/// longer than without, and a `u64` result takes at most 32 bytes on disk. Set
/// against the same map with the same chunksize on both sides and the no-op's
/// figures, in the same run.
fn journal_goals(f: &Figures) -> Vec<Goal> {
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let p = |name: &str| f.median(name, "fondo_processes", Some(2));
    let times_or = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |v| goal_value("x", v));
    vec![
        goal(
            "journal_overhead_10us",
            "map(10 µs task): journal ÷ none".into(),
            1.10,
            false,
            ratio(p("journal_on_10us"), p("journal_off_10us")),
            "x",
            "≤ 1.10×",
            join(vec![
                format!(
                    "same chunksize on both {}",
                    times_or(ratio(
                        p("journal_on_10us_chunk200"),
                        p("journal_off_10us_chunk200")
                    ))
                ),
                format!(
                    "no-op {}",
                    times_or(ratio(p("journal_on_noop"), p("journal_off_noop")))
                ),
            ]),
        ),
        goal(
            "journal_bytes_per_result",
            "journal bytes per u64 result on disk".into(),
            32.0,
            false,
            p("journal_bytes_per_result_10us"),
            "bytes",
            "≤ 32 B",
            format!(
                "a frame: 8 B head, kind, map, position, 8 B input hash, ≤ 10 B value; \
                 small values (no-op) {}",
                fmt(p("journal_bytes_per_result_noop"), Unit::Bytes)
            ),
        ),
    ]
}

/// The head-of-line figures (`mixed.rs`): fast tasks' latency behind a long one, on
/// processes (beside CPython's when `with_cpython`) and threads.
pub fn mixed_table(f: &Figures, sizes: &Sizes, goals: &[Goal], with_cpython: bool) -> Table {
    let (p, t, two) = ("fondo_processes", "fondo_threads", Some(2));
    let k = sizes.hol_fast_tasks;
    let lines = |system, first: String, judged: bool| {
        let mut v = vec![
            Line::Figure(first, "hol_fast_latency_median", system, two, None),
            Line::Figure(
                format!("  largest of {k}"),
                "hol_fast_latency_max",
                system,
                two,
                None,
            ),
        ];
        if judged {
            v.push(Line::Goal(
                format!("  largest ÷ the {} ms task", sizes.hol_long_ms),
                "hol_fast_latency",
            ));
        }
        v.push(Line::Figure(
            format!("  median of {k}, both workers idle"),
            "hol_idle_latency_median",
            system,
            two,
            None,
        ));
        v.push(Line::Figure(
            format!("  largest of {k}, both workers idle"),
            "hol_idle_latency_max",
            system,
            two,
            None,
        ));
        v
    };
    let groups = vec![
        lines(
            p,
            format!("fast task latency: median of {k}, behind the long task"),
            true,
        ),
        lines(
            t,
            format!("the same on fondo threads: median of {k}, behind"),
            false,
        ),
    ];
    lines_table(f, goals, with_cpython, groups)
}

/// The journal's figures (`journal.rs`), all on processes(2); CPython has none.
pub fn journal_table(f: &Figures, sizes: &Sizes, goals: &[Goal]) -> Table {
    let (p, two) = ("fondo_processes", Some(2));
    let ratio = |a: &str, b: &str| Some(f.median(a, p, two)? / f.median(b, p, two)?);
    let chunk = super::journal::SAME_CHUNKS;
    let groups = vec![
        vec![
            Line::Figure(
                format!(
                    "map(10 µs task, {}), no journal",
                    count(sizes.journal_tasks)
                ),
                "journal_off_10us",
                p,
                two,
                None,
            ),
            Line::Figure(
                "  through a new journal".into(),
                "journal_on_10us",
                p,
                two,
                None,
            ),
            Line::Goal("  journal ÷ none".into(), "journal_overhead_10us"),
            Line::Figure(
                "  rerun, every result on record".into(),
                "journal_rerun_10us",
                p,
                two,
                None,
            ),
            Line::Figure(
                format!("  chunksize({chunk}) on both: no journal"),
                "journal_off_10us_chunk200",
                p,
                two,
                None,
            ),
            Line::Figure(
                format!("  chunksize({chunk}) on both: a new journal"),
                "journal_on_10us_chunk200",
                p,
                two,
                None,
            ),
            Line::Ratio(
                format!("  chunksize({chunk}): journal ÷ none"),
                ratio("journal_on_10us_chunk200", "journal_off_10us_chunk200"),
            ),
        ],
        vec![
            Line::Figure(
                format!("map(noop, {}), no journal", count(sizes.noop_tasks)),
                "journal_off_noop",
                p,
                two,
                None,
            ),
            Line::Figure(
                "  through a new journal".into(),
                "journal_on_noop",
                p,
                two,
                None,
            ),
            Line::Ratio(
                "  journal ÷ none".into(),
                ratio("journal_on_noop", "journal_off_noop"),
            ),
            Line::Figure(
                "  rerun, every result on record".into(),
                "journal_rerun_noop",
                p,
                two,
                None,
            ),
        ],
        vec![
            Line::Figure(
                "bytes per result on disk, u64 (10 µs task)".into(),
                "journal_bytes_per_result_10us",
                p,
                two,
                Some("journal_bytes_per_result"),
            ),
            Line::Figure(
                "  small u64 values (no-op)".into(),
                "journal_bytes_per_result_noop",
                p,
                two,
                None,
            ),
        ],
    ];
    lines_table(f, goals, false, groups)
}

/// A goal's value in its unit, for people.
fn goal_value(unit: &str, v: f64) -> String {
    match unit {
        // Three decimals: 1.898× must not print as the goal's 1.90×.
        "x" => format!("{v:.3}×"),
        "%" => format!("{v:.3}%"),
        u => Unit::parse(u).map_or_else(|| format!("{v}"), |u| u.format(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_of_line_goal_is_a_share_of_the_long_task() {
        let sizes = Sizes::new(true);
        let fig = |name: &str, system: &str, v: f64| {
            Figure::new(name, system, Some(2), Unit::Micros, vec![v])
        };
        let figures = [
            fig("hol_fast_latency_max", "fondo_processes", 150.0),
            fig("hol_fast_latency_max", "fondo_threads", 60.0),
            fig("hol_idle_latency_max", "fondo_processes", 40.0),
        ];
        let goals = mixed_goals(&Figures(&figures), &sizes, false);
        let g = &goals[0];
        let want = 150.0 / (sizes.hol_long_ms as f64 * 1e3) * 100.0;
        assert_eq!((g.unit, g.met), ("%", Some(true)));
        assert!((g.value.expect("value") - want).abs() < 1e-12);
        assert_eq!(goal_value("%", 0.05), "0.050%");
        assert!(
            !g.design_reference.contains("CPython"),
            "{}",
            g.design_reference
        );
    }
}
