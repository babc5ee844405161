//! Nested parallelism: rayon (or OpenMP, or a BLAS) inside a process task starts
//! as many threads as `threads_per_worker` says — by default the CPUs shared among
//! the workers — not one per CPU in every worker; a variable the program's
//! environment already sets is left as it is, unless the option is given.

use std::time::Duration;

use fondo::{Pool, cpu_count};

mod common;
use common::{Deadline, helper_command, is_helper, output_within};

const HELPER_ENV: &str = "FONDO_TEST_THREADS_PER_WORKER_HELPER";
const LIMIT: Duration = Duration::from_secs(60);

/// What a task sees: the size of rayon's global pool, which it starts here, and
/// the OpenMP variable.
fn nested() -> (usize, String) {
    (
        rayon::current_num_threads(),
        std::env::var("OMP_NUM_THREADS").unwrap_or_default(),
    )
}

/// `name`'s value in this process, if set to something.
fn set_here(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[test]
fn an_explicit_count_reaches_rayon_and_openmp_in_every_worker() {
    let _wd = Deadline::arm("explicit threads_per_worker", LIMIT);
    let pool = Pool::builder()
        .workers(2)
        .threads_per_worker(3)
        .processes()
        .expect("pool");
    let seen = pool.map(|_: u32| nested(), 0..8).expect("map");
    assert!(seen.iter().all(|s| *s == (3, "3".to_string())), "{seen:?}");
}

#[test]
fn by_default_the_workers_share_the_cpus() {
    let _wd = Deadline::arm("default threads_per_worker", LIMIT);
    let share = (cpu_count() / 2).max(1);
    let pool = Pool::builder().workers(2).processes().expect("pool");
    let seen = pool.map(|_: u32| nested(), 0..8).expect("map");
    // What the environment running this test sets, workers inherit.
    let rayon = set_here("RAYON_NUM_THREADS")
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(share);
    let omp = set_here("OMP_NUM_THREADS").unwrap_or_else(|| share.to_string());
    assert!(seen.iter().all(|s| *s == (rayon, omp.clone())), "{seen:?}");
}

#[test]
fn helper_explicit_environment() {
    if !is_helper(HELPER_ENV, "helper_explicit_environment") {
        return;
    }
    let _wd = Deadline::arm("helper_explicit_environment", LIMIT);
    let pool = Pool::builder().workers(2).processes().expect("pool");
    let (rayon, omp) = pool.apply(nested, ()).expect("apply");
    let explicit = Pool::builder()
        .workers(2)
        .threads_per_worker(2)
        .processes()
        .expect("pool");
    let (_, omp_explicit) = explicit.apply(nested, ()).expect("apply");
    println!("default rayon {rayon} omp {omp} explicit omp {omp_explicit}");
}

/// A program run with `OMP_NUM_THREADS=5` keeps it in its workers by default; the
/// variables it leaves unset get the default; `threads_per_worker` wins over both.
#[test]
fn a_variable_the_environment_sets_is_respected() {
    let mut cmd = helper_command(HELPER_ENV, "helper_explicit_environment");
    cmd.env("OMP_NUM_THREADS", "5")
        .env_remove("RAYON_NUM_THREADS");
    let out = output_within(cmd, LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let share = (cpu_count() / 2).max(1);
    let expected = format!("default rayon {share} omp 5 explicit omp 2");
    assert!(stdout.lines().any(|l| l == expected), "{stdout}");
}
