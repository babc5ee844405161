//! Whole-program behaviour, driven from outside through the helper programs
//! `examples/fault_*.rs`: Ctrl-C, SIGKILL to the parent, tasks that flood stdout, and
//! SIGPIPE on both sides (a parent with SIGPIPE at its default, a closed stdout).
//!
//! The examples are built with the same cargo and profile as this test. This test
//! process makes itself a child subreaper, so workers orphaned by the death of an
//! example are re-parented here and can be reaped and inspected (their exit is then
//! proved by `waitpid`, not only by their absence from /proc).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

mod common;
use common::{alive, become_subreaper, example, processes};

/// Starts `bin args` as the leader of a new process group, stdout piped.
fn start(bin: &PathBuf, args: &[&str]) -> Child {
    become_subreaper();
    let mut cmd = Command::new(bin);
    // SAFETY: runs in the forked child before exec and only calls `signal`, which is
    // async-signal-safe. A launcher that ignores SIGINT (as a non-interactive shell
    // does for a job it puts in the background) passes that on through exec; these
    // programs are to meet Ctrl-C as a terminal's foreground program does.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start example")
}

/// Reads the `PIDS <parent> <worker>…` line; returns the worker PIDs.
fn read_pids(child: &mut Child) -> (Vec<u32>, BufReader<std::process::ChildStdout>) {
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read PIDS line");
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("PIDS"), "unexpected first line {line:?}");
    let parent: u32 = words
        .next()
        .and_then(|w| w.parse().ok())
        .expect("parent pid");
    assert_eq!(parent, child.id());
    let workers: Vec<u32> = words.map(|w| w.parse().expect("worker pid")).collect();
    assert_eq!(workers.len(), 2, "{line:?}");
    assert!(workers.iter().all(|&w| w != 0 && w != parent));
    (workers, out)
}

/// State letter of a process, `None` if it does not exist.
/// Live (non-zombie) processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.pgrp == pgid && p.is_live())
        .map(|p| p.pid)
        .collect()
}

/// Reaps a worker re-parented to us (we are its subreaper) if it has exited.
fn reap(pid: u32) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::waitpid(Some(p), WaitOptions::NOHANG);
    }
}

/// Waits until `cond` holds, up to `limit`; returns how long it took, or `None`.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if cond() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Kills whatever is left of an example's group, so a failing test leaves nothing behind.
struct Cleanup(u32);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process_group(p, Signal::KILL);
        }
    }
}

/// Lets the workers pick up their tasks before the blow lands.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn ctrl_c(mode: &str) {
    let bin = example("fault_ctrl_c");
    let mut child = start(&bin, &[mode]);
    let pgid = child.id();
    let _cleanup = Cleanup(pgid);
    let (workers, _out) = read_pids(&mut child);
    settle();
    assert!(
        workers.iter().all(|&w| alive(w)),
        "workers should be running"
    );
    let t0 = Instant::now();
    rustix::process::kill_process_group(Pid::from_raw(pgid as i32).unwrap(), Signal::INT)
        .expect("SIGINT to the group");
    let exited = within(Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let parent_took = exited.expect("the program did not stop within 5 s of Ctrl-C");
    let all_gone = within(Duration::from_secs(5), || {
        workers.iter().for_each(|&w| reap(w));
        group_members(pgid).is_empty()
    });
    let took = t0.elapsed();
    eprintln!(
        "ctrl-c ({mode}): parent gone after {parent_took:?}, whole group after {took:?}, left: {:?}",
        group_members(pgid)
    );
    assert!(
        all_gone.is_some(),
        "processes left in the group: {:?}",
        group_members(pgid)
    );
    assert!(
        took < Duration::from_secs(2),
        "Ctrl-C took {took:?} to end the program"
    );
    let status = child.wait().expect("wait");
    assert!(
        !status.success(),
        "the program should have been interrupted: {status}"
    );
}

#[test]
fn ctrl_c_stops_the_program_and_its_workers() {
    ctrl_c("plain");
}

#[test]
fn ctrl_c_stops_workers_that_ignore_sigint() {
    // Only the parent dies of the SIGINT; the workers must follow it (PDEATHSIG / EOF).
    ctrl_c("workers-ignore-sigint");
}

fn parent_killed(mode: &str) {
    let bin = example("fault_parent_killed");
    let mut child = start(&bin, &[mode]);
    let pgid = child.id();
    let _cleanup = Cleanup(pgid);
    let (workers, _out) = read_pids(&mut child);
    settle();
    assert!(
        workers.iter().all(|&w| alive(w)),
        "workers should be running"
    );
    child.kill().expect("SIGKILL the parent");
    let t0 = Instant::now();
    child.wait().expect("reap the parent");
    let gone = within(Duration::from_secs(1), || {
        workers.iter().for_each(|&w| reap(w));
        workers.iter().all(|&w| !alive(w))
    });
    let took = t0.elapsed();
    let left: Vec<u32> = workers.iter().copied().filter(|&w| alive(w)).collect();
    eprintln!("parent SIGKILL ({mode}): workers gone after {took:?}, left: {left:?}");
    assert!(
        gone.is_some(),
        "workers {left:?} still alive 1 s after the parent died"
    );
    assert!(
        group_members(pgid).is_empty(),
        "left in the group: {:?}",
        group_members(pgid)
    );
}

#[test]
fn parent_sigkill_leaves_no_busy_worker() {
    parent_killed("busy");
}

#[test]
fn parent_sigkill_leaves_no_idle_worker() {
    parent_killed("idle");
}

#[test]
fn stdout_flood_neither_blocks_nor_corrupts() {
    let bin = example("fault_stdout_flood");
    become_subreaper();
    let mut child = Command::new(&bin)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fault_stdout_flood");
    let _cleanup = Cleanup(child.id());
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut lines_per_task = std::collections::BTreeMap::<u64, u64>::new();
        let mut results = Vec::new();
        let mut bytes = 0usize;
        let mut bad = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("stdout is text");
            bytes += line.len() + 1;
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["task", i, "line", _, filler]
                    if line.len() == 127 && filler.bytes().all(|b| b == b'x') =>
                {
                    *lines_per_task
                        .entry(i.parse().expect("task index"))
                        .or_default() += 1;
                }
                ["RESULT", i, v] => results.push((i.to_string(), v.to_string())),
                _ if bad.len() < 5 => bad.push(line.chars().take(200).collect::<String>()),
                _ => {}
            }
        }
        (lines_per_task, results, bytes, bad)
    });
    let mut err = String::new();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "fault_stdout_flood did not finish in 120 s: blocked"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    stderr.read_to_string(&mut err).expect("stderr");
    let (lines_per_task, results, bytes, bad) = reader.join().expect("reader");
    eprintln!(
        "stdout flood: {bytes} bytes, {} tasks printed, in {:?}; {}",
        lines_per_task.len(),
        t0.elapsed(),
        err.trim()
    );
    assert!(bad.is_empty(), "corrupted stdout lines: {bad:?}");
    assert!(
        status.success(),
        "results were wrong or the program failed: {status}\n{err}"
    );
    // Tasks 0..16 ran twice (map and imap), task 16 once (apply_async).
    assert_eq!(lines_per_task.len(), 17, "{lines_per_task:?}");
    for (i, n) in &lines_per_task {
        let runs = if *i == 16 { 1 } else { 2 };
        assert_eq!(*n, runs * 8192, "task {i} printed {n} lines");
    }
    assert_eq!(results.len(), 16);
    assert!(bytes > 33 * 1024 * 1024, "only {bytes} bytes of output");
}

#[test]
fn a_pool_under_an_address_space_limit_still_moves_big_values() {
    let bin = example("fault_small_address_space");
    // 2 GiB: no shared memory fits (a worker's lanes alone reserve 4 GiB). 6 GiB: the
    // lanes of one worker fit in the parent, not those of the second, nor the arena.
    for limit_mib in ["2048", "6144"] {
        let out = Command::new(&bin)
            .arg(limit_mib)
            .stdin(Stdio::null())
            .output()
            .expect("run fault_small_address_space");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == "OK 6",
            "limit {limit_mib} MiB: {:?}, stdout {stdout:?}, stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_worker_dying_mid_transfer_spares_a_parent_with_default_sigpipe() {
    let bin = example("fault_sigpipe");
    let out = Command::new(&bin)
        .args(["parent-default", "5"])
        .stdin(Stdio::null())
        .output()
        .expect("run fault_sigpipe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "OK 5",
        "{:?} (signal 13 is SIGPIPE), stdout {stdout:?}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_task_printing_to_a_closed_stdout_fails_alike_on_processes_and_threads() {
    let bin = example("fault_sigpipe");
    let mut child = Command::new(&bin)
        .arg("closed-stdout")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fault_sigpipe");
    drop(child.stdout.take()); // nobody reads: writes there fail with EPIPE
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let outcome = |backend: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(backend))
            .map(str::to_owned)
    };
    assert_eq!(
        outcome("threads: ").as_deref(),
        Some("Panicked"),
        "{stderr}"
    );
    assert_eq!(
        outcome("processes: ").as_deref(),
        Some("Panicked"),
        "{stderr}"
    );
    assert!(out.status.success(), "{:?}", out.status);
}
