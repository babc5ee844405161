//! The CPython reference: `fondo-cli/bench/cpython_reference.py`, embedded in the
//! binary, run with `python3` in the same session so its figures come from the same
//! machine and the same minute as fondo's.

use super::stats::{Figure, Unit};
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The script, as built into this binary.
const SCRIPT: &str = include_str!("../../bench/cpython_reference.py");

/// Figures the script reports besides the factorial pool maps.
const FIXED_STEPS: u64 = 15;

/// Steps the script adds to the progress bar.
pub fn steps(workers: &[usize]) -> u64 {
    FIXED_STEPS + workers.len() as u64
}

/// How the CPython part of the run went, as recorded in the JSON.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PythonRun {
    /// `ran`, `skipped` or `failed`.
    pub status: &'static str,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `platform.python_version()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `multiprocessing.get_start_method()`: fork, forkserver or spawn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_method: Option<String>,
    /// Figures the script could not measure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl PythonRun {
    pub fn skipped(reason: impl Into<String>) -> PythonRun {
        PythonRun {
            status: "skipped",
            reason: Some(reason.into()),
            ..PythonRun::default()
        }
    }

    fn failed(reason: impl Into<String>) -> PythonRun {
        PythonRun {
            status: "failed",
            reason: Some(reason.into()),
            ..PythonRun::default()
        }
    }
}

/// True when `python3` can be started.
pub fn available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the script and converts its results into figures (system `cpython…`).
pub fn run(
    quick: bool,
    repeat: usize,
    workers: &[usize],
    pb: &ProgressBar,
) -> (PythonRun, Vec<Figure>) {
    let dir = std::env::temp_dir().join(format!("fondo-bench-{}", std::process::id()));
    let outcome = run_in(&dir, quick, repeat, workers, pb);
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Ok(done) => done,
        Err(e) => (PythonRun::failed(e), Vec::new()),
    }
}

fn run_in(
    dir: &Path,
    quick: bool,
    repeat: usize,
    workers: &[usize],
    pb: &ProgressBar,
) -> Result<(PythonRun, Vec<Figure>), String> {
    // A real file, not `python3 -`: the spawn and forkserver start methods re-import
    // the main module from its path.
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = dir.join("cpython_reference.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    let list: Vec<String> = workers.iter().map(usize::to_string).collect();
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args([
            "--repeat",
            &repeat.to_string(),
            "--workers",
            &list.join(","),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if quick {
        cmd.arg("--quick");
    }
    let mut child = cmd.spawn().map_err(|e| format!("python3: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let child = Arc::new(Mutex::new(child));

    // Stdout is one JSON object at the very end; read it aside so neither pipe fills.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    // A watchdog, so a wedged interpreter cannot hang the benchmark.
    let limit = Duration::from_secs(if quick { 180 } else { 1800 });
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let watched = child.clone();
    let watchdog = std::thread::spawn(move || {
        if stop_rx.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
            if let Ok(mut c) = watched.lock() {
                let _ = c.kill();
            }
            return true;
        }
        false
    });

    // Progress: the script logs one line per figure on stderr.
    let mut tail: Vec<String> = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let text = line.trim_start_matches("[cpython_reference] ").to_string();
        if text.contains(" workers=") && text.contains(" median=") {
            pb.inc(1);
        }
        pb.set_message(format!(
            "CPython: {}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
        tail.push(text);
        if tail.len() > 30 {
            tail.remove(0);
        }
    }
    let status = child
        .lock()
        .map_err(|_| "lock poisoned".to_string())?
        .wait()
        .map_err(|e| format!("python3: {e}"))?;
    let _ = stop_tx.send(());
    let killed = watchdog.join().unwrap_or(false);
    let out = reader
        .join()
        .map_err(|_| "stdout reader panicked".to_string())?
        .map_err(|e| format!("reading python3's output: {e}"))?;
    if killed {
        return Err(format!("python3 took longer than {limit:?} and was killed"));
    }
    // Exit 1 still prints the JSON, with the failed figures under "errors".
    let json: Value = serde_json::from_str(out.trim()).map_err(|e| {
        format!(
            "python3 exited with {status} without a JSON report ({e}); its last lines:\n{}",
            tail.join("\n")
        )
    })?;
    Ok(parse(&json))
}

/// Converts the script's report into our figures. Names follow fondo's JSON:
/// the factorial figures become `factorial` with systems `cpython_single`,
/// `cpython_threads` and `cpython_pool`; the rest keep their name, system `cpython`;
/// pool start-up is converted to milliseconds.
pub fn parse(json: &Value) -> (PythonRun, Vec<Figure>) {
    let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
    let mut run = PythonRun {
        status: "ran",
        reason: None,
        version: text("python"),
        start_method: text("start_method"),
        errors: Vec::new(),
    };
    let mut figures = Vec::new();
    for r in json
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("?");
        let workers = r.get("workers").and_then(Value::as_u64).map(|w| w as usize);
        let Some(mut unit) = r.get("unit").and_then(Value::as_str).and_then(Unit::parse) else {
            run.errors.push(format!("{name}: unknown unit"));
            continue;
        };
        let mut samples: Vec<f64> = r
            .get("samples")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            run.errors.push(format!("{name}: no usable samples"));
            continue;
        }
        let (name, system, workers) = match name {
            "factorial_single" => ("factorial", "cpython_single", Some(1)),
            "factorial_threads" => ("factorial", "cpython_threads", workers),
            "factorial_pool_map" => ("factorial", "cpython_pool", workers),
            other => (other, "cpython", workers),
        };
        if name == "pool_create_first_close" && unit == Unit::Seconds {
            samples.iter_mut().for_each(|s| *s *= 1e3);
            unit = Unit::Millis;
        }
        figures.push(Figure::new(name, system, workers, unit, samples));
    }
    for e in json
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        run.errors.push(e.to_string());
    }
    (run, figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scripts_report() {
        let json: Value = serde_json::from_str(
            r#"{"python": "3.11.7", "start_method": "fork", "results": [
                {"name": "factorial_single", "workers": null, "unit": "s", "samples": [0.5, 0.4]},
                {"name": "factorial_pool_map", "workers": 2, "unit": "s", "samples": [0.3]},
                {"name": "pool_create_first_close", "workers": 2, "unit": "s", "samples": [0.01]},
                {"name": "map_noop", "workers": 2, "unit": "tasks_per_s", "samples": [4e6]}
            ], "errors": [{"name": "imap_noop_chunk1", "error": "boom"}]}"#,
        )
        .expect("json");
        let (run, figs) = parse(&json);
        assert_eq!(run.version.as_deref(), Some("3.11.7"));
        assert_eq!(run.errors.len(), 1);
        assert_eq!(figs.len(), 4);
        assert_eq!(
            (
                figs[0].name.as_str(),
                figs[0].system.as_str(),
                figs[0].workers
            ),
            ("factorial", "cpython_single", Some(1))
        );
        assert_eq!(figs[1].system, "cpython_pool");
        assert_eq!(figs[2].unit, Unit::Millis);
        assert!((figs[2].median - 10.0).abs() < 1e-9);
        assert_eq!(figs[3].unit, Unit::TasksPerSec);
    }
}
