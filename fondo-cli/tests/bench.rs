//! `fondo bench --quick --no-python --json FILE` runs to the end and writes every
//! figure in the documented shape, and nothing about CPython but the line saying it
//! was skipped. No timing is asserted: benchmarks measure, tests check behaviour.

use serde_json::Value;
use std::process::Command;

/// (name, system, workers) of every figure a run without CPython must contain;
/// `None` workers means "one entry per worker count of the run".
const EXPECTED: &[(&str, &str, Option<u64>)] = &[
    ("factorial", "rust_single", Some(1)),
    ("factorial", "std_thread_split", None),
    ("factorial", "fondo_threads", None),
    ("factorial", "fondo_processes", None),
    ("factorial", "rayon", None),
    ("apply_async_roundtrip", "fondo_processes", Some(2)),
    ("apply_async_roundtrip", "fondo_threads", Some(2)),
    ("socketpair_pingpong_blocking", "std_unixstream", Some(2)),
    ("socketpair_pingpong_spinning", "std_unixstream", Some(2)),
    ("map_noop", "fondo_processes", Some(2)),
    ("map_noop", "fondo_threads", Some(2)),
    ("imap_noop_chunk1", "fondo_processes", Some(2)),
    ("imap_noop_chunk1", "fondo_threads", Some(2)),
    ("payload_roundtrip", "fondo_processes", Some(2)),
    ("payload_roundtrip_bytes", "fondo_processes", Some(2)),
    ("memcpy", "rust", Some(1)),
    ("alloc_copy", "rust", Some(1)),
    ("pool_create_first_close", "fondo_processes", Some(2)),
    ("pool_create_first_close", "fondo_threads", Some(2)),
    ("map_with_small_context", "fondo_processes", Some(2)),
    ("map_with_big_context", "fondo_processes", Some(2)),
    ("map_with_first_small_context", "fondo_processes", Some(2)),
    ("map_with_first_big_context", "fondo_processes", Some(2)),
    ("shared_first_apply_none", "fondo_processes", Some(2)),
    ("shared_first_apply_small", "fondo_processes", Some(2)),
    ("shared_first_apply_big", "fondo_processes", Some(2)),
    ("shared_scan", "fondo_processes", Some(2)),
    ("shared_memcpy", "rust", Some(1)),
    ("shared_rss_growth", "fondo_processes", Some(2)),
    ("shared_rss_shmem_growth", "fondo_processes", Some(2)),
    ("array_roundtrip", "fondo_processes", Some(2)),
    ("payload_roundtrip_vec_f64", "fondo_processes", Some(2)),
    ("hol_fast_latency_median", "fondo_processes", Some(2)),
    ("hol_fast_latency_max", "fondo_processes", Some(2)),
    ("hol_idle_latency_median", "fondo_processes", Some(2)),
    ("hol_idle_latency_max", "fondo_processes", Some(2)),
    ("hol_fast_latency_median", "fondo_threads", Some(2)),
    ("hol_fast_latency_max", "fondo_threads", Some(2)),
    ("hol_idle_latency_median", "fondo_threads", Some(2)),
    ("hol_idle_latency_max", "fondo_threads", Some(2)),
    ("journal_off_10us", "fondo_processes", Some(2)),
    ("journal_on_10us", "fondo_processes", Some(2)),
    ("journal_rerun_10us", "fondo_processes", Some(2)),
    ("journal_bytes_per_result_10us", "fondo_processes", Some(2)),
    ("journal_off_noop", "fondo_processes", Some(2)),
    ("journal_on_noop", "fondo_processes", Some(2)),
    ("journal_rerun_noop", "fondo_processes", Some(2)),
    ("journal_bytes_per_result_noop", "fondo_processes", Some(2)),
    ("journal_off_10us_chunk200", "fondo_processes", Some(2)),
    ("journal_on_10us_chunk200", "fondo_processes", Some(2)),
];

/// (name, system) of the figures that have no worker count.
const WITHOUT_WORKERS: &[(&str, &str)] = &[
    ("context_bytes_per_task_small", "fondo"),
    ("context_bytes_per_task_big", "fondo"),
];

/// The goals of a run without CPython (`factorial_processes_vs_cpython` needs it).
const GOALS: &[&str] = &[
    "factorial_threads_speedup",
    "factorial_threads_vs_rayon",
    "factorial_processes_speedup",
    "apply_async_roundtrip",
    "apply_async_vs_pingpong",
    "map_noop",
    "imap_noop_chunk1",
    "payload_roundtrip",
    "pool_create_first_close",
    "map_with_context_size",
    "context_bytes_per_task",
    "shared_attach",
    "shared_attach_size",
    "shared_scan_vs_memcpy",
    "shared_rss_growth",
    "array_vs_bytes",
    "array_vs_vec_f64",
    "hol_fast_latency",
    "journal_overhead_10us",
    "journal_bytes_per_result",
];

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(
        x.is_finite() && x > 0.0,
        "{what} is not finite and positive: {x}"
    );
    x
}

#[test]
fn quick_bench_writes_every_figure() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let json_path = dir.join(format!("bench-{}.json", std::process::id()));
    let svg_path = dir.join(format!("bench-{}.svg", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_fondo"))
        .args(["bench", "--quick", "--no-python", "--json"])
        .arg(&json_path)
        .arg("--plot")
        .arg(&svg_path)
        .output()
        .expect("run fondo bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fondo bench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for heading in [
        "factorial 1000..",
        "process pool overheads",
        "goals, on this run's medians",
    ] {
        assert!(stdout.contains(heading), "no {heading:?} in:\n{stdout}");
    }
    assert!(stdout.contains("CPython reference skipped"), "{stdout}");
    // --no-python: no CPython column, figure or goal; only the header and the last
    // lines say it was skipped.
    let cpython_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("CPython"))
        .filter(|l| !l.starts_with("fondo bench — ") && !l.starts_with("CPython reference skipped"))
        .collect();
    assert!(
        cpython_lines.is_empty(),
        "--no-python still prints CPython:\n{}",
        cpython_lines.join("\n")
    );

    let text = std::fs::read_to_string(&json_path).expect("read the JSON");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    let _ = std::fs::remove_file(&json_path);
    assert_eq!(json["schema"], "fondo-bench/1");
    assert_eq!(json["quick"], true);
    assert_eq!(json["python"]["status"], "skipped");
    assert!(json.get("errors").is_none(), "errors: {}", json["errors"]);
    let repeat = json["repeat"].as_u64().expect("repeat");
    assert_eq!(repeat, 2);
    positive(&json["machine"]["cpu_count"], "cpu_count");
    positive(&json["elapsed_s"], "elapsed_s");
    for key in [
        "roundtrip_batch",
        "noop_tasks",
        "imap_tasks",
        "payload_bytes",
        "payload_tasks",
        "context_small_bytes",
        "context_big_bytes",
        "shared_small_bytes",
        "shared_big_bytes",
        "shared_touch_bytes",
        "hol_long_ms",
        "hol_fast_tasks",
        "journal_tasks",
    ] {
        positive(&json["sizes"][key], key);
    }
    let workers: Vec<u64> = json["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w.as_u64().expect("worker count"))
        .collect();
    assert!(workers.contains(&1) && workers.contains(&2), "{workers:?}");

    let results = json["results"].as_array().expect("results");
    for r in results {
        let name = r["name"].as_str().expect("name");
        assert!(r["system"].is_string(), "{r}");
        let unit = r["unit"].as_str().expect("unit");
        assert!(
            ["s", "ms", "us", "tasks_per_s", "GB_per_s", "bytes", "MiB"].contains(&unit),
            "{name}: unit {unit}"
        );
        let higher = r["higher_is_better"].as_bool().expect("higher_is_better");
        assert_eq!(higher, unit.ends_with("per_s"), "{name}");
        let samples = r["samples"].as_array().expect("samples");
        assert_eq!(samples.len() as u64, repeat, "{name}");
        let samples: Vec<f64> = samples.iter().map(|s| positive(s, name)).collect();
        let (min, median, max, best) = (
            positive(&r["min"], name),
            positive(&r["median"], name),
            positive(&r["max"], name),
            positive(&r["best"], name),
        );
        assert!(min <= median && median <= max, "{r}");
        assert_eq!(best, if higher { max } else { min }, "{name}");
        assert!(samples.iter().all(|&s| min <= s && s <= max), "{r}");
    }
    let has = |name: &str, system: &str, w: u64| {
        results
            .iter()
            .any(|r| r["name"] == name && r["system"] == system && r["workers"].as_u64() == Some(w))
    };
    for &(name, system, w) in EXPECTED {
        let ws = w.map_or_else(|| workers.clone(), |w| vec![w]);
        for w in ws {
            assert!(
                has(name, system, w),
                "missing {name} / {system} / {w} workers"
            );
        }
    }
    for &(name, system) in WITHOUT_WORKERS {
        assert!(
            results
                .iter()
                .any(|r| r["name"] == name && r["system"] == system && r["workers"].is_null()),
            "missing {name} / {system}"
        );
    }
    // A task with a context carries the context's id, whatever the context's size.
    let median = |name: &str| {
        results
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["median"].as_f64())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(
        median("context_bytes_per_task_small"),
        median("context_bytes_per_task_big")
    );
    for heading in [
        "shared contexts and arrays",
        "Array ÷ Vec<f64>",
        "short tasks behind a long one",
        "largest ÷ the",
        "the journal's cost",
        "journal ÷ none",
        "bytes per result on disk",
    ] {
        assert!(stdout.contains(heading), "no {heading:?} in:\n{stdout}");
    }
    // Each run's largest fast latency is at least its median; a journal's results
    // take more than their 8-byte input hash each, and the same count in every run.
    let samples = |name: &str, system: &str| -> Vec<f64> {
        results
            .iter()
            .find(|r| r["name"] == name && r["system"] == system)
            .and_then(|r| r["samples"].as_array())
            .unwrap_or_else(|| panic!("no {name} / {system}"))
            .iter()
            .map(|s| s.as_f64().expect("a number"))
            .collect()
    };
    for system in ["fondo_processes", "fondo_threads"] {
        for scenario in ["hol_fast_latency", "hol_idle_latency"] {
            let medians = samples(&format!("{scenario}_median"), system);
            let maxima = samples(&format!("{scenario}_max"), system);
            assert!(
                medians.iter().zip(&maxima).all(|(m, x)| m <= x),
                "{scenario} / {system}: a run's median above its max: {medians:?} {maxima:?}"
            );
        }
    }
    for which in ["10us", "noop"] {
        let bytes = samples(
            &format!("journal_bytes_per_result_{which}"),
            "fondo_processes",
        );
        assert!(
            bytes.iter().all(|&b| b > 8.0 && b == bytes[0]),
            "{which}: {bytes:?}"
        );
    }

    let goals = json["goals"].as_array().expect("goals");
    for id in GOALS {
        let g = goals
            .iter()
            .find(|g| g["id"] == *id)
            .unwrap_or_else(|| panic!("goal {id} missing"));
        positive(&g["target"], id);
        assert!(g["at_least"].is_boolean() && g["goal"].is_string(), "{g}");
        positive(&g["value"], id);
        assert!(g["met"].is_boolean(), "{g}");
    }
    assert_eq!(goals.len(), GOALS.len(), "unexpected goals: {goals:?}");
    // Nothing about CPython in the figures or goals: only `python` says it was skipped.
    let mut figures_and_goals = json.clone();
    figures_and_goals["python"] = Value::Null;
    let text = figures_and_goals.to_string().to_lowercase();
    assert!(
        !text.contains("cpython"),
        "--no-python JSON mentions CPython: {text}"
    );

    let svg = std::fs::read_to_string(&svg_path).expect("read the SVG");
    let _ = std::fs::remove_file(&svg_path);
    assert!(svg.starts_with("<svg") && svg.contains("fondo Pool::processes"));
    assert!(!svg.contains("CPython"), "--no-python plot shows CPython");
}

/// `--mpi` outside `mpirun` (or in a build without the `mpi` feature) fails at once
/// with a message saying why, instead of measuring anything or hanging.
#[test]
fn mpi_without_launcher_or_feature_fails_clearly() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fondo"));
    cmd.args(["bench", "--mpi", "--quick", "--no-python"]);
    for var in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run fondo bench --mpi");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let why = if cfg!(feature = "mpi") {
        "MPI launcher"
    } else {
        "built without the mpi feature"
    };
    assert!(stderr.contains(why), "no {why:?} in:\n{stderr}");
    assert!(!stdout.contains("factorial"), "measured anyway:\n{stdout}");
}
