//! Worker processes need no boilerplate: no `fondo::init()`, no check at the top of
//! `main`. A worker is the same executable started again and diverted before `main`
//! by a constructor inside fondo, so process pools work from every kind of Rust
//! executable that links fondo:
//!
//! - (a) integration tests: this test binary itself runs pools and `fondo::spawn`
//!   (and so does every test of `tests/process_pool.rs`);
//! - (b) example binaries: the examples are built with cargo and run, and their
//!   output checked — `print_from_task` line by line, the notebook ones for their
//!   key lines;
//! - (c) doctests: proven by the doctests of `Pool::processes` (src/process/mod.rs)
//!   and `fondo::spawn` (src/process/child.rs), which start worker processes from
//!   rustdoc's test executables;
//! - (d) release builds: an ignored (slow) test builds `print_from_task` with
//!   `--release` and checks it the same way
//!   (`cargo test -p fondo --test entry_points -- --ignored`).
//!
//! A binary's `main` is (b) too: an example is a binary with a `main`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use fondo::{Pool, Result};

// ---------------------------------------------------------------------------
// (a) integration tests
// ---------------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

/// Where the worker runs: its PID, its parent's PID and its executable.
fn whereabouts() -> (u32, u32, PathBuf) {
    (
        std::process::id(),
        std::os::unix::process::parent_id(),
        std::env::current_exe().unwrap_or_default(),
    )
}

#[test]
fn an_integration_test_binary_runs_worker_processes() -> Result<()> {
    let pool = Pool::processes(2)?;
    assert_eq!(
        pool.map(square, 0..100)?,
        (0..100).map(|x| x * x).collect::<Vec<_>>()
    );
    let (pid, parent, exe) = pool.apply(whereabouts, ())?;
    assert_ne!(pid, std::process::id(), "ran in another process");
    assert!(pool.pids().contains(&pid));
    assert_eq!(parent, std::process::id(), "a child of this test binary");
    assert_eq!(
        exe,
        std::env::current_exe()?,
        "this very test binary, started again"
    );

    let child = fondo::spawn(whereabouts, ())?;
    let child_pid = child.pid();
    let (pid, parent, exe) = child.join()?;
    assert_eq!((pid, parent), (child_pid, std::process::id()));
    assert_eq!(exe, std::env::current_exe()?);
    Ok(())
}

// ---------------------------------------------------------------------------
// (b) examples, (d) release builds
// ---------------------------------------------------------------------------

/// The examples run below.
const EXAMPLES: &[&str] = &[
    "print_from_task",
    "process_sleep",
    "process_pids",
    "apply_async",
    "failures",
    "imap_lazy",
];

/// Builds `examples` with cargo in the given profile (`None`: this test binary's
/// own) and returns the directory holding them.
fn build_examples(examples: &[&str], release: bool) -> PathBuf {
    // This binary is <target>/<profile>/deps/entry_points-<hash>.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
    let target = profile_dir.parent().expect("target dir");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "fondo"])
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    let out_profile = match (release, profile) {
        (true, _) => {
            cmd.arg("--release");
            "release"
        }
        (false, "debug") => "debug",
        (false, "release") => {
            cmd.arg("--release");
            "release"
        }
        (false, other) => {
            cmd.args(["--profile", other]);
            other
        }
    };
    for e in examples {
        cmd.args(["--example", e]);
    }
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of the examples failed: {status}"
    );
    target.join(out_profile).join("examples")
}

/// The examples, built once for all the tests of this file.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_examples(EXAMPLES, false))
}

/// Runs an example binary from `dir` and returns its output, failing on a non-zero exit.
fn run_example(dir: &Path, name: &str, args: &[&str]) -> (String, Output) {
    let out = Command::new(dir.join(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let stdout = String::from_utf8(out.stdout.clone()).expect("stdout is clean UTF-8");
    assert!(
        out.status.success(),
        "{name} exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, out)
}

/// The number after `prefix` on the one line that starts with it.
fn number_after(stdout: &str, prefix: &str) -> u32 {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(lines.len(), 1, "one {prefix:?} line in:\n{stdout}");
    lines[0][prefix.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{:?}: {e}", lines[0]))
}

/// Checks `print_from_task`'s output: every line each task printed, whole and once,
/// from worker processes other than the main one, and the results.
fn check_print_from_task(stdout: &str) {
    let main_pid = number_after(stdout, "principal: proceso ");
    let mut workers = HashSet::new();
    for i in (0..10).chain([100]) {
        let pid = number_after(stdout, &format!("tarea {i}: hola desde el proceso "));
        assert_ne!(pid, main_pid, "task {i} ran in a worker process");
        if i < 10 {
            workers.insert(pid);
        } else {
            assert!(
                !workers.contains(&pid),
                "the spawned child is a process of its own"
            );
        }
    }
    assert!((1..=2).contains(&workers.len()), "pool of 2: {workers:?}");
    let expected: Vec<u32> = (0..10).map(|i| i * i).collect();
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("resultados: {expected:?}")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "hijo: 10000"), "{stdout}");
    // Nothing else reached stdout: no wire bytes, no stray lines.
    assert_eq!(stdout.lines().count(), 1 + 10 + 1 + 1 + 1, "{stdout}");
}

#[test]
fn an_example_binary_runs_worker_processes_and_their_println_reaches_stdout() {
    let (stdout, _) = run_example(examples_dir(), "print_from_task", &[]);
    check_print_from_task(&stdout);
}

#[test]
fn notebook_process_examples_run() {
    let dir = examples_dir();

    // In[3]: two processes sleeping in parallel.
    let (stdout, _) = run_example(dir, "process_sleep", &["0.1"]);
    for line in ["Process 1", "Process 2"] {
        assert!(stdout.lines().any(|l| l == line), "{stdout}");
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("Tiempo total: ")),
        "{stdout}"
    );

    // In[9]: three different PIDs.
    let (stdout, _) = run_example(dir, "process_pids", &["0.1"]);
    let pids: BTreeSet<u32> = [
        number_after(&stdout, "Proceso 1, PID: "),
        number_after(&stdout, "Proceso 2, PID: "),
        number_after(&stdout, "Proceso general, PID: "),
    ]
    .into();
    assert_eq!(pids.len(), 3, "{stdout}");

    // In[38]–In[10]: every task printed (none lost when the pool closed), both
    // values read, and get() after terminate() did not hang.
    let (stdout, _) = run_example(dir, "apply_async", &["0.01"]);
    let count = |text: &str| stdout.lines().filter(|l| *l == text).count();
    assert_eq!((count("Tarea 1"), count("Tarea 2")), (2, 2), "{stdout}");
    let by_pid = |x: u32| {
        stdout
            .lines()
            .filter(|l| l.starts_with(&format!("{x}, ")))
            .count()
    };
    assert_eq!(
        (by_pid(1), by_pid(2)),
        (2, 2),
        "In[9] and In[10] each print both: {stdout}"
    );
    assert_eq!(count("25"), 2, "{stdout}");
    assert_eq!(count("tras terminate(): Err(Terminated)"), 1, "{stdout}");
}

#[test]
fn failure_and_imap_examples_run() {
    let dir = examples_dir();
    let (stdout, _) = run_example(dir, "failures", &[]);
    for (i, want) in [(0, "0"), (3, "panic: la tarea 3 falla"), (8, "80")] {
        assert!(
            stdout.lines().any(|l| l == format!("tarea {i}: {want}")),
            "{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("tarea 7: más de 1s")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("tarea 5: ")),
        "{stdout}"
    );

    let (stdout, _) = run_example(dir, "imap_lazy", &[]);
    assert!(
        stdout.lines().any(|l| l == "starmap: [1024, 81]"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == "ordenados:      [0, 1, 2, 3, 5, 6, 7, 8, 16, 19]"),
        "{stdout}"
    );
}

#[test]
#[ignore = "slow: builds the example in release mode"]
fn a_release_build_runs_worker_processes() {
    let dir = build_examples(&["print_from_task"], true);
    let (stdout, _) = run_example(&dir, "print_from_task", &[]);
    check_print_from_task(&stdout);
}
