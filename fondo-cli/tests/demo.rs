//! End-to-end tests of `fondo demo`: the built binary, run as a user would.
//! Behaviour only: which sections ran, that every check passed, the exit code —
//! never how long anything took.

use std::process::{Command, Output};

/// Section names with their English and Spanish headings, in the notebook's order.
const SECTIONS: &[(&str, &str, &str)] = &[
    (
        "threads",
        "Two threads sleeping in parallel",
        "Paralelismo por hilos",
    ),
    (
        "factorial",
        "Factorial of 1000..2000: one thread vs two",
        "Factorial de 1000 a 2000",
    ),
    (
        "pids",
        "PIDs: threads share the process, processes have their own",
        "PID: los threads comparten el proceso",
    ),
    (
        "processes",
        "The same with processes (fondo::spawn)",
        "Paralelismo por procesos",
    ),
    (
        "pool",
        "Pool.map with 2, cpu_count() and 2×cpu_count() processes; starmap",
        "Pools: el «fondo común» de procesos",
    ),
    (
        "apply",
        "apply vs apply_async; wait and get",
        "apply frente a apply_async",
    ),
    (
        "pitfalls",
        "The notebook's two apply_async pitfalls, fixed",
        "Los dos inconvenientes de apply_async, resueltos",
    ),
];

fn fondo(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fondo"))
        .args(args)
        .output()
        .expect("run the fondo binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn assert_clean(out: &Output, stdout: &str, stderr: &str) {
    assert!(
        out.status.success(),
        "exit {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(!stdout.contains("FAILED"), "a check failed:\n{stdout}");
    assert!(!stdout.contains("error:"), "a section errored:\n{stdout}");
}

/// The lines of `stdout` that are section headings (`━━ n. … ━━`).
fn headings(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with("━━ ")).collect()
}

#[test]
fn quick_demo_runs_every_section_and_every_check_passes() {
    let (out, stdout, stderr) = fondo(&["demo", "--quick"]);
    assert_clean(&out, &stdout, &stderr);
    let heads = headings(&stdout);
    assert_eq!(heads.len(), SECTIONS.len(), "{stdout}");
    for (i, ((name, english, _), line)) in SECTIONS.iter().zip(&heads).enumerate() {
        assert!(
            line.starts_with(&format!("━━ {}. {english}", i + 1)),
            "section {name}: heading {line:?}"
        );
        assert!(line.contains(name), "{line:?} lacks the name {name}");
    }
    let checks = stdout.lines().filter(|l| l.contains("check: ok")).count();
    assert!(checks >= SECTIONS.len(), "too few checks:\n{stdout}");
    // Each section's own words, not just its heading.
    for needle in [
        "GIL",
        "Pool::threads(2).map(factorial)",
        "Pool::processes(2×cpu_count()).map(factorial)",
        "starmap",
        "Err(Terminated)",
        "Summary",
        "all ok",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?}:\n{stdout}");
    }
}

#[test]
fn spanish_headings() {
    let (out, stdout, stderr) = fondo(&["demo", "--quick", "--lang", "es"]);
    assert_clean(&out, &stdout, &stderr);
    let heads = headings(&stdout);
    assert_eq!(heads.len(), SECTIONS.len(), "{stdout}");
    for ((name, english, spanish), line) in SECTIONS.iter().zip(&heads) {
        assert!(line.contains(spanish), "section {name}: heading {line:?}");
        assert!(!line.contains(english), "section {name} still in English");
    }
    assert!(stdout.contains("Resumen"), "{stdout}");
}

#[test]
fn one_section_runs_alone() {
    let (out, stdout, stderr) = fondo(&["demo", "--quick", "--section", "pids"]);
    assert_clean(&out, &stdout, &stderr);
    let heads = headings(&stdout);
    assert_eq!(heads.len(), 1, "{stdout}");
    assert!(heads[0].contains("PIDs") && heads[0].contains("pids"));
    assert!(stdout.contains("Process 2"), "{stdout}");
    for (name, english, _) in SECTIONS.iter().filter(|s| s.0 != "pids") {
        assert!(
            !stdout.contains(english),
            "section {name} ran too:\n{stdout}"
        );
    }
}

#[test]
fn unknown_section_is_a_clear_error() {
    let (out, stdout, stderr) = fondo(&["demo", "--quick", "--section", "gil"]);
    assert!(
        !out.status.success(),
        "accepted an unknown section:\n{stdout}"
    );
    assert!(
        stderr.contains("unknown section 'gil'"),
        "unclear error: {stderr}"
    );
    for (name, _, _) in SECTIONS {
        assert!(
            stderr.contains(name),
            "the error should list {name}: {stderr}"
        );
    }
    assert!(headings(&stdout).is_empty(), "ran something:\n{stdout}");
}

#[test]
fn unknown_language_is_a_clear_error() {
    let (out, _, stderr) = fondo(&["demo", "--quick", "--lang", "fr"]);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown language 'fr'"), "{stderr}");
}

#[test]
fn list_names_every_section_without_running_any() {
    let (out, stdout, stderr) = fondo(&["demo", "--list"]);
    assert_clean(&out, &stdout, &stderr);
    assert!(headings(&stdout).is_empty(), "ran something:\n{stdout}");
    for (name, english, _) in SECTIONS {
        assert!(
            stdout.contains(name) && stdout.contains(english),
            "{stdout}"
        );
    }
    let (out, stdout, stderr) = fondo(&["demo", "--list", "--lang", "es"]);
    assert_clean(&out, &stdout, &stderr);
    for (_, _, spanish) in SECTIONS {
        assert!(stdout.contains(spanish), "{stdout}");
    }
}
