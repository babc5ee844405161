//! What a panicking task prints: nothing, on threads as on processes (and in a
//! `fondo::spawn` child) — its error carries the message and the location — unless
//! `FONDO_PRINT_PANICS` asks for it. Panics fondo does not catch are printed as
//! ever. Checked on the stderr of this test binary run again as a helper program.

use std::time::Duration;

use fondo::{Error, Pool};

mod common;
use common::{Deadline, helper_command, is_helper, output_within};

const HELPER_ENV: &str = "FONDO_TEST_TASK_PANICS_HELPER";
const HELPER: &str = "helper_panicking_tasks";
const LIMIT: Duration = Duration::from_secs(60);

fn boom_on_threads() -> u32 {
    panic!("boom on threads")
}

fn boom_on_processes() -> u32 {
    panic!("boom on processes")
}

fn boom_in_a_child() -> u32 {
    panic!("boom in a child")
}

fn init_boom_on_threads() {
    panic!("init boom on threads")
}

fn init_boom_on_processes() {
    panic!("init boom on processes")
}

fn one() -> u32 {
    1
}

/// One line on stdout per backend: the error's `Display`, which must say where.
fn report(backend: &str, outcome: fondo::Result<u32>) {
    match outcome {
        Err(e @ (Error::Panicked { .. } | Error::InitializerFailed { .. })) => {
            println!("{backend}: {e}")
        }
        other => println!("{backend}: unexpected {other:?}"),
    }
}

/// The helper: a panicking task on each backend, then a panic fondo does not catch
/// (a thread of the program's own), whose message must be printed whatever the
/// setting.
#[test]
fn helper_panicking_tasks() {
    if !is_helper(HELPER_ENV, HELPER) {
        return;
    }
    let _wd = Deadline::arm(HELPER, LIMIT);
    let threads = Pool::threads(1).expect("thread pool");
    report("threads", threads.apply(boom_on_threads, ()));
    let processes = Pool::processes(1).expect("process pool");
    report("processes", processes.apply(boom_on_processes, ()));
    let child = fondo::spawn(boom_in_a_child, ()).expect("spawn");
    report("spawn", child.join());
    let broken = Pool::builder()
        .workers(1)
        .initializer(init_boom_on_threads)
        .threads();
    report("init threads", broken.and_then(|p| p.apply(one, ())));
    let broken = Pool::builder()
        .workers(1)
        .initializer(init_boom_on_processes)
        .processes();
    report("init processes", broken.and_then(|p| p.apply(one, ())));
    let own = std::thread::spawn(|| panic!("boom on the program's own thread"));
    assert!(own.join().is_err());
    println!("END");
}

/// Runs the helper with `FONDO_PRINT_PANICS` as given (`None`: unset); its stdout
/// and stderr.
fn run_helper(print_panics: Option<&str>) -> (String, String) {
    let mut cmd = helper_command(HELPER_ENV, HELPER);
    cmd.env_remove("FONDO_PRINT_PANICS")
        .env_remove("RUST_BACKTRACE");
    if let Some(value) = print_panics {
        cmd.env("FONDO_PRINT_PANICS", value);
    }
    let out = output_within(cmd, LIMIT);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l == "END"), "{stdout}\n{stderr}");
    // Whatever is printed, each error says what and where.
    let line = |backend: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{backend}: ")))
            .unwrap_or_else(|| panic!("no {backend} line in {stdout}"))
            .to_owned()
    };
    for (backend, message) in [
        ("threads", "boom on threads"),
        ("processes", "boom on processes"),
        ("spawn", "boom in a child"),
    ] {
        let line = line(backend);
        assert!(
            line.contains(&format!("task panicked: {message} (at "))
                && line.contains("task_panics.rs:"),
            "{line}"
        );
    }
    for (backend, message) in [
        ("init threads", "init boom on threads"),
        ("init processes", "init boom on processes"),
    ] {
        let line = line(backend);
        assert!(
            line.contains("initializer failed: panicked at ")
                && line.contains("task_panics.rs:")
                && line.contains(message),
            "{line}"
        );
    }
    (stdout, stderr)
}

const TASK_MESSAGES: [&str; 5] = [
    "boom on threads",
    "boom on processes",
    "boom in a child",
    "init boom on threads",
    "init boom on processes",
];

#[test]
fn by_default_a_panicking_task_prints_nothing_on_any_backend() {
    for setting in [None, Some("0"), Some("")] {
        let (_, stderr) = run_helper(setting);
        for message in TASK_MESSAGES {
            assert!(
                !stderr.contains(message),
                "FONDO_PRINT_PANICS={setting:?}: {message:?} printed:\n{stderr}"
            );
        }
        // A panic fondo does not catch is the program's to print, as ever; it is
        // all the helper prints.
        assert!(
            stderr.contains("panicked at") && stderr.contains("boom on the program's own thread"),
            "FONDO_PRINT_PANICS={setting:?}:\n{stderr}"
        );
        assert_eq!(
            stderr.matches("panicked at").count(),
            1,
            "FONDO_PRINT_PANICS={setting:?}:\n{stderr}"
        );
        assert!(
            !stderr.contains("fondo worker"),
            "FONDO_PRINT_PANICS={setting:?}:\n{stderr}"
        );
    }
}

#[test]
fn fondo_print_panics_prints_them_where_they_happen_on_every_backend() {
    let (_, stderr) = run_helper(Some("1"));
    for message in TASK_MESSAGES
        .into_iter()
        .chain(["boom on the program's own thread"])
    {
        assert!(
            stderr.contains(message),
            "{message:?} not printed:\n{stderr}"
        );
    }
    // Rust's own report, from each place: a pool thread, a worker process, the
    // child, the initializers (a broken process pool may have tried a second
    // worker), the program's thread.
    assert!(stderr.matches("panicked at").count() >= 6, "{stderr}");
}
