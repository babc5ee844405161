//! `cpu_count`/`cpu_info` against the real machine, and `Timer`'s guarantees.

use std::cell::Cell;
use std::time::Duration;

use fondo::{Timer, cpu_count, cpu_info};

#[test]
fn cpu_count_is_between_one_and_online() {
    let n = cpu_count();
    let info = cpu_info();
    assert!(n >= 1);
    assert!(n <= info.online, "{n} usable > {} online", info.online);
    assert!(info.affinity <= info.online, "{info:?}");
}

#[test]
fn cpu_info_parts_make_cpu_count() {
    let info = cpu_info();
    let cap = info.cgroup_quota.map_or(usize::MAX, |q| q.ceil() as usize);
    assert_eq!(info.usable, info.affinity.min(cap).max(1), "{info:?}");
    assert_eq!(cpu_count(), info.usable);
    if let Some(q) = info.cgroup_quota {
        assert!(q > 0.0 && q.is_finite(), "{info:?}");
        assert!(
            info.cgroup_version.is_some(),
            "a quota without a cgroup: {info:?}"
        );
    }
    let text = info.to_string();
    assert!(text.contains(&info.usable.to_string()), "{text}");
}

/// Affinity is per thread and `cpu_count` reads the calling thread's mask, so pinning this test's
/// own thread affects nothing else in the test binary.
#[cfg(target_os = "linux")]
#[test]
fn cpu_count_honours_a_forced_affinity_mask() {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

    let original = sched_getaffinity(None).expect("read this thread's affinity");
    // The first CPU we are allowed on: CPU 0 itself may be outside the mask (taskset -c 1).
    let first = (0..CpuSet::MAX_CPU)
        .find(|&cpu| original.is_set(cpu))
        .expect("an affinity mask is never empty");
    let mut one = CpuSet::new();
    one.set(first);
    sched_setaffinity(None, &one).expect("pin this thread to one CPU");

    let (count, info) = (cpu_count(), cpu_info());

    sched_setaffinity(None, &original).expect("restore the affinity mask");
    assert_eq!(count, 1);
    assert_eq!(info.affinity, 1, "{info:?}");
    assert_eq!(info.usable, 1, "{info:?}");
    assert_eq!(cpu_count(), cpu_info().usable, "restored");
}

#[test]
fn timer_is_monotonic_and_covers_a_sleep() {
    let t = Timer::start();
    let before = t.elapsed();
    std::thread::sleep(Duration::from_millis(20));
    let after = t.elapsed();
    assert!(after >= before);
    // Lower bounds only: a loaded machine may sleep far longer, never shorter.
    assert!(after >= Duration::from_millis(20), "{after:?}");
    assert!(t.elapsed_secs() >= 0.020);
}

#[test]
fn restart_counts_from_the_restart() {
    let mut t = Timer::start();
    std::thread::sleep(Duration::from_millis(20));
    let copy = t; // Timer is Copy: the copy keeps the original start
    t.restart();
    assert!(copy.elapsed() >= Duration::from_millis(20));
    // Both read now; the restarted one started later, so it can only be shorter.
    let (restarted, original) = (t.elapsed(), copy.elapsed());
    assert!(restarted <= original, "{restarted:?} > {original:?}");
}

#[test]
fn scope_with_calls_its_closure_once_on_drop() {
    let calls = Cell::new(0);
    let took = Cell::new(Duration::ZERO);
    {
        let guard = Timer::scope_with(|d| {
            calls.set(calls.get() + 1);
            took.set(d);
        });
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(calls.get(), 0, "not before the drop");
        assert!(guard.elapsed() >= Duration::from_millis(20));
    }
    assert_eq!(calls.get(), 1);
    assert!(took.get() >= Duration::from_millis(20), "{:?}", took.get());
}

#[test]
fn scope_with_reports_when_unwinding() {
    let calls = Cell::new(0);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _t = Timer::scope_with(|_| calls.set(calls.get() + 1));
        panic!("task failed");
    }));
    assert!(result.is_err());
    assert_eq!(calls.get(), 1);
}

#[test]
fn scope_prints_and_does_not_panic() {
    let label = String::from("scope test");
    let _t = Timer::scope(label);
    let _u = Timer::scope("static str label");
}
