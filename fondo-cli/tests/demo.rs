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
    (
        "shared",
        "Processes that share memory: one read-only array (fondo::Shared)",
        "Procesos que comparten memoria",
    ),
];

/// Words of the English run's sentences, headers and labels: none may appear in the
/// Spanish run, and each must appear in the English one (so the list stays true to
/// what the demo prints). Not "thread": the notebook's Spanish uses it too.
const ENGLISH: &[&str] = &[
    "two",
    "sleeping",
    "returned",
    "finished",
    "sleep",
    "sleeps",
    "each",
    "every",
    "both",
    "the",
    "and",
    "with",
    "run",
    "time",
    "speed-up",
    "check",
    "checks",
    "reference",
    "halves",
    "who",
    "parent",
    "main",
    "process",
    "processes",
    "workers",
    "start-up",
    "cell",
    "what",
    "notebook",
    "pitfall",
    "results",
    "lost",
    "hangs",
    "forever",
    "after",
    "joined",
    "section",
    "summary",
    "task",
    "share",
    "memory",
    "worker",
    "copy",
    "way",
    "again",
];

/// The same the other way: words of the Spanish run that the English run must not print.
const SPANISH: &[&str] = &[
    "dos",
    "hilos",
    "duerme",
    "devolvió",
    "esperas",
    "tiempo",
    "ejecución",
    "aceleración",
    "comprobación",
    "comprobaciones",
    "referencia",
    "mitades",
    "quién",
    "padre",
    "proceso",
    "procesos",
    "arranque",
    "cada",
    "ambos",
    "celda",
    "cuaderno",
    "qué",
    "inconveniente",
    "resultados",
    "perdidos",
    "siempre",
    "después",
    "bloque",
    "sección",
    "resumen",
    "tarea",
    "compartida",
    "trabajador",
    "copia",
    "forma",
    "otra",
    "vez",
];

/// The prose words of the demo's output, lower-cased: whitespace-separated words
/// with surrounding punctuation trimmed, split at apostrophes (`map's`). Code is
/// left out — spans in backticks (Python's `with Pool(n) as pool`), and words with
/// `::`, brackets, `_`, `=`, a dot or a digit inside, such as
/// `Pool::processes(2).map(factorial)` or `02d-paralelismo` — and so are the
/// section names where they stand as names (`━━ … processes · In [3]`, `4. processes`
/// in the summary): they are `--section` arguments, the same in every language.
fn prose_words(stdout: &str) -> Vec<String> {
    let mut text = stdout.to_string();
    for (i, (name, _, _)) in SECTIONS.iter().enumerate() {
        text = text
            .replace(&format!(" {name} · "), " · ")
            .replace(&format!("{}. {name} ", i + 1), " ");
    }
    let code = |w: &str| {
        w.contains("::")
            || w.chars()
                .any(|c| c.is_ascii_digit() || "()[]{}<>_=./|&".contains(c))
    };
    // Outside backticks: the even pieces of each line split at '`'.
    let prose: Vec<&str> = text.lines().flat_map(|l| l.split('`').step_by(2)).collect();
    prose
        .iter()
        .flat_map(|p| p.split_whitespace())
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty() && !code(w))
        .flat_map(|w| w.split('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Asserts every word of `own` is in `stdout` and none of `other`, naming the lines.
fn speaks_only(stdout: &str, own: &[&str], other: &[&str], language: &str) {
    let words = prose_words(stdout);
    for w in own {
        assert!(
            words.iter().any(|x| x == w),
            "{w:?} is no longer printed in {language}: drop it from the list\n{stdout}"
        );
    }
    let foreign: Vec<&str> = other
        .iter()
        .copied()
        .filter(|w| words.iter().any(|x| x == w))
        .collect();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            foreign
                .iter()
                .any(|w| prose_words(l).iter().any(|x| x == w))
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "the {language} demo prints {foreign:?}, in:\n{}",
        lines.join("\n")
    );
}

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
    assert!(
        !stdout.contains("FAILED") && !stdout.contains("FALLÓ"),
        "a check failed:\n{stdout}"
    );
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
        "no es posible que compartan memoria",
        "Shared::from_slice",
        "Summary",
        "all ok",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?}:\n{stdout}");
    }
    speaks_only(&stdout, ENGLISH, SPANISH, "English");
}

/// `--lang es` prints everything in Spanish, not just the headings: no word of the
/// English run's prose appears.
#[test]
fn spanish_throughout() {
    let (out, stdout, stderr) = fondo(&["demo", "--quick", "--lang", "es"]);
    assert_clean(&out, &stdout, &stderr);
    let heads = headings(&stdout);
    assert_eq!(heads.len(), SECTIONS.len(), "{stdout}");
    for ((name, english, spanish), line) in SECTIONS.iter().zip(&heads) {
        assert!(line.contains(spanish), "section {name}: heading {line:?}");
        assert!(!line.contains(english), "section {name} still in English");
    }
    let checks = stdout
        .lines()
        .filter(|l| l.contains("comprobación: ok"))
        .count();
    assert!(checks >= SECTIONS.len(), "too few checks:\n{stdout}");
    for needle in ["Resumen", "todo ok", "Proceso 2", "\"Tarea 1\""] {
        assert!(stdout.contains(needle), "missing {needle:?}:\n{stdout}");
    }
    speaks_only(&stdout, SPANISH, ENGLISH, "Spanish");
}

#[test]
fn prose_words_leave_code_and_section_names_out() {
    let line = "  two processes: spawn(tarea, halves) Pool::processes(2).map(f) map's 02d-x `with a`\n\
                ━━ 4. Paralelismo por procesos ━━━ processes · In [3]\n  4. processes  0.1 s";
    assert_eq!(
        prose_words(line),
        [
            "two",
            "processes",
            "halves",
            "map",
            "s",
            "paralelismo",
            "por",
            "procesos",
            "in",
            "s"
        ]
    );
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
