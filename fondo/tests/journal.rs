//! The journal under `kill -9`: the helper program `examples/fault_journal.rs` runs a
//! journaled map of 20,000 tasks of ~100 µs on two worker processes; this test kills its
//! whole process group with SIGKILL at random moments (seeded: the seed is printed, and
//! `FONDO_SEED=<seed>` repeats it) and runs it again, until a run completes. Each task
//! appends its position to a side log per run, so every execution is counted.
//!
//! After each cycle (a fresh journal, killed and rerun until done):
//! - the results equal an uninterrupted run's (`fault_journal --plain`), and the
//!   journal holds exactly one result record per position (read here with a reader of
//!   the documented format, independent of fondo's);
//! - every position ran at least once;
//! - **no position journaled before a run started ran again in that run** (exact);
//! - the positions a killed run executed but had not journaled — the only ones that
//!   can run twice — are at most the journal's window,
//!   `workers × (prefetch + 2) × chunk` = 2 × 4 × 4 = 32 per kill for the cycles with
//!   `chunksize(4)`; the cycles with automatic chunks are held to the exact rule above
//!   and their counts printed;
//! - a final run finds everything on record and runs no task.
//!
//! `FONDO_FULL=1` runs 25 cycles instead of 4.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

mod common;
use common::{become_subreaper, example, processes};

const N: usize = 20_000;
const WORKERS: usize = 2;
const PREFETCH: usize = 2;
const FIXED_CHUNK: usize = 4;
/// Killed runs in a cycle at most; the run after them is left to finish.
const MAX_KILLS: usize = 10;

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fondo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// splitmix64: the test's random numbers, from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Kills what is left of a helper's process group, so a failing test leaves nothing behind.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(p) = Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process_group(p, Signal::KILL);
        }
    }
}

/// How a run of the helper ended.
struct Ended {
    killed: bool,
    stdout: String,
    stderr: String,
    success: bool,
}

/// Starts the helper as the leader of a new process group; kills the group after
/// `kill_after` unless it ended first; waits for every process of the group to be gone.
fn run_helper(
    bin: &Path,
    args: &[&str],
    side_log: Option<&Path>,
    kill_after: Option<Duration>,
    err: &Path,
) -> Ended {
    become_subreaper();
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(err).expect("stderr file"));
    match side_log {
        Some(log) => cmd.env("FONDO_SIDE_LOG", log),
        None => cmd.env_remove("FONDO_SIDE_LOG"),
    };
    let mut child: Child = cmd.spawn().expect("start fault_journal");
    let pgid = child.id();
    let _group = Group(pgid);
    let started = Instant::now();
    // A run that never ends fails the test instead of hanging it.
    let limit = Duration::from_secs(120);
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        let elapsed = started.elapsed();
        if !killed && kill_after.is_some_and(|k| elapsed >= k) {
            rustix::process::kill_process_group(
                Pid::from_raw(pgid as i32).expect("pgid"),
                Signal::KILL,
            )
            .expect("SIGKILL to the group");
            killed = true;
        }
        assert!(
            elapsed < limit,
            "fault_journal {args:?} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_micros(500));
    };
    // Every process of the group gone (workers re-parented to us are reaped here).
    let gone_by = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = processes().into_iter().filter(|p| p.pgrp == pgid).collect();
        if left.is_empty() {
            break;
        }
        for p in &left {
            if let Some(pid) = Pid::from_raw(p.pid as i32) {
                let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
            }
        }
        assert!(
            Instant::now() < gone_by,
            "processes of the helper's group left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    Ended {
        // A kill that came after the run had finished is no kill.
        killed: killed && !status.success(),
        stdout,
        stderr: std::fs::read_to_string(err).unwrap_or_default(),
        success: status.success(),
    }
}

/// The positions a run's tasks wrote to its side log, in order (whole lines only).
fn executions(log: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("side log line {l:?}")))
        .collect()
}

/// CRC-32 (IEEE), bit by bit: the checksum the format documents.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn leb128(bytes: &mut &[u8]) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().expect("varint");
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// Reads a journal as its documentation describes it, independently of fondo: every
/// result record's (map, position) up to the first frame that is torn or fails its CRC.
fn result_records(path: &Path) -> Vec<(u64, u64)> {
    let Ok(data) = std::fs::read(path) else {
        return Vec::new();
    };
    if data.len() < 12 {
        return Vec::new();
    }
    assert_eq!(&data[..8], b"FONDOJNL");
    assert_eq!(u32::from_le_bytes(data[8..12].try_into().unwrap()), 1);
    let mut at = 12;
    let mut records = Vec::new();
    let mut first = true;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap());
        let Some(body) = data.get(at + 8..at + 8 + len) else {
            break;
        };
        if len == 0 || crc32(&[&data[at..at + 4], body]) != crc {
            break;
        }
        if first {
            assert_eq!(body[0], 1, "the first frame is the file header");
            first = false;
        } else if body[0] == 3 {
            let mut rest = &body[1..];
            let map = leb128(&mut rest);
            let position = leb128(&mut rest);
            assert!(rest.len() >= 8, "an input hash follows");
            records.push((map, position));
        } else {
            assert_eq!(body[0], 2, "frames are file, map or result");
        }
        at += 8 + len;
    }
    records
}

/// Positions of map 0 with a result on record, as fondo reads them on a rerun.
fn journaled(path: &Path) -> HashSet<usize> {
    if !path.exists() {
        return HashSet::new();
    }
    match fondo::Journal::inspect(path) {
        Ok(s) => s
            .maps
            .first()
            .map(|m| m.done.iter().copied().collect())
            .unwrap_or_default(),
        Err(e) => panic!("inspect {}: {e}", path.display()),
    }
}

#[derive(Default)]
struct Tally {
    cycles: usize,
    kills: usize,
    runs: usize,
    executions: usize,
    rerun: usize,
    worst_per_kill: usize,
}

#[test]
fn a_journaled_map_killed_at_random_and_rerun_gives_every_result_once() {
    let full = std::env::var_os("FONDO_FULL").is_some_and(|v| v == "1");
    let cycles = if full { 25 } else { 4 };
    let seed = common::seed();
    eprintln!(
        "journal kill test: seed {seed} (FONDO_SEED={seed} repeats it), {cycles} cycles of {N} tasks"
    );
    let mut rng = Rng(seed);
    let bin = example("fault_journal");
    let dir = TempDir::new("journal-kill");
    let n = N.to_string();

    // The uninterrupted run every journaled one must equal.
    let t0 = Instant::now();
    let plain = run_helper(&bin, &["--plain", &n], None, None, &dir.0.join("plain.err"));
    let plain_time = t0.elapsed();
    assert!(plain.success, "plain run failed: {}", plain.stderr);
    let done_line = plain
        .stdout
        .lines()
        .find(|l| l.starts_with("DONE "))
        .expect("DONE line")
        .to_owned();
    eprintln!("uninterrupted: {done_line} in {plain_time:?}");

    let mut fixed = Tally::default();
    let mut auto = Tally::default();
    for cycle in 0..cycles {
        let chunk = (cycle % 2 == 0).then_some(FIXED_CHUNK);
        let tally = if chunk.is_some() {
            &mut fixed
        } else {
            &mut auto
        };
        tally.cycles += 1;
        let journal = dir.0.join(format!("cycle-{cycle}.journal"));
        let journal_arg = journal.to_str().expect("utf-8 path").to_owned();
        let chunk_arg = chunk.map(|c| c.to_string());
        let mut args = vec![journal_arg.as_str(), n.as_str()];
        args.extend(chunk_arg.as_deref());
        let mut on_record = HashSet::new();
        let mut ran = vec![0u32; N];
        for run in 0.. {
            let kill_after = (run < MAX_KILLS)
                .then(|| Duration::from_micros(rng.below(plain_time.as_micros() as u64 * 13 / 10)));
            let log = dir.0.join(format!("cycle-{cycle}-run-{run}.log"));
            let ended = run_helper(&bin, &args, Some(&log), kill_after, &dir.0.join("run.err"));
            tally.runs += 1;
            let executed = executions(&log);
            for &p in &executed {
                assert!(p < N, "position {p}");
                assert!(
                    !on_record.contains(&p),
                    "cycle {cycle} run {run}: position {p} ran although it was journaled (seed {seed})"
                );
                ran[p] += 1;
            }
            tally.executions += executed.len();
            let now_on_record = journaled(&journal);
            assert!(
                now_on_record.is_superset(&on_record),
                "cycle {cycle} run {run}: results were lost"
            );
            if ended.killed {
                tally.kills += 1;
                // Ran in this run but not on record: the tasks that may run again.
                let lost = executed
                    .iter()
                    .filter(|p| !now_on_record.contains(p))
                    .count();
                tally.worst_per_kill = tally.worst_per_kill.max(lost);
                if let Some(c) = chunk {
                    let window = WORKERS * (PREFETCH + 2) * c;
                    assert!(
                        lost <= window,
                        "cycle {cycle} run {run}: {lost} tasks ran and were not journaled, over the window of {window} (seed {seed})"
                    );
                }
                on_record = now_on_record;
                continue;
            }
            assert!(
                ended.success,
                "cycle {cycle} run {run} failed: {}{}",
                ended.stdout, ended.stderr
            );
            assert!(
                ended.stdout.lines().any(|l| l == done_line),
                "{}",
                ended.stdout
            );
            assert_eq!(now_on_record.len(), N);
            break;
        }
        assert!(
            ran.iter().all(|&r| r >= 1),
            "cycle {cycle}: a position never ran"
        );
        tally.rerun += ran.iter().map(|&r| r as usize - 1).sum::<usize>();
        // Exactly one result record per position, read as the format documents it.
        let records = result_records(&journal);
        assert_eq!(records.len(), N, "cycle {cycle}: result records");
        let distinct: HashSet<_> = records.iter().collect();
        assert_eq!(
            distinct.len(),
            N,
            "cycle {cycle}: a position recorded twice"
        );
        assert!(records.iter().all(|&(m, p)| m == 0 && (p as usize) < N));
        // Everything on record: a further run runs nothing and gives the same results.
        let log = dir.0.join(format!("cycle-{cycle}-final.log"));
        let again = run_helper(&bin, &args, Some(&log), None, &dir.0.join("run.err"));
        assert!(again.success, "{}", again.stderr);
        assert!(
            again.stdout.contains(&format!("READY {N}\n")),
            "{}",
            again.stdout
        );
        assert!(again.stdout.lines().any(|l| l == done_line));
        assert!(
            executions(&log).is_empty(),
            "a task ran although all were journaled"
        );
        assert_eq!(result_records(&journal).len(), N);
    }
    for (name, t) in [("chunksize(4)", &fixed), ("automatic chunks", &auto)] {
        eprintln!(
            "{name}: {} cycles, {} runs, {} kills, {} executions for {} tasks: {} ran twice or more \
             (at most {} in one kill{})",
            t.cycles,
            t.runs,
            t.kills,
            t.executions,
            t.cycles * N,
            t.rerun,
            t.worst_per_kill,
            if name.starts_with("chunksize") {
                format!(
                    "; bound {} per kill, {} in all",
                    WORKERS * (PREFETCH + 2) * FIXED_CHUNK,
                    t.kills * WORKERS * (PREFETCH + 2) * FIXED_CHUNK
                )
            } else {
                String::new()
            }
        );
    }
    if fixed.cycles > 0 {
        assert!(fixed.rerun <= fixed.kills * WORKERS * (PREFETCH + 2) * FIXED_CHUNK);
    }
}

#[test]
fn a_journal_is_refused_by_another_executable() {
    let bin = example("fault_journal");
    let dir = TempDir::new("journal-exe");
    let journal = dir.0.join("run.journal");
    let journal_arg = journal.to_str().expect("utf-8 path");
    let err = dir.0.join("err");
    let first = run_helper(&bin, &[journal_arg, "200"], None, None, &err);
    assert!(first.success, "{}", first.stderr);
    let size = std::fs::metadata(&journal).expect("journal").len();
    // The same program, one byte longer: another executable.
    let changed = dir.0.join("changed");
    // Written here, then copied by `cp` (see `copy_executable`).
    let draft = dir.0.join("changed.draft");
    let mut bytes = std::fs::read(&bin).expect("read helper");
    bytes.push(b'x');
    std::fs::write(&draft, &bytes).expect("write the changed program");
    common::copy_executable(&draft, &changed);
    std::fs::set_permissions(
        &changed,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let refused = run_helper(&changed, &[journal_arg, "200"], None, None, &err);
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("was written by another executable"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("READY"), "{}", refused.stdout);
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        size,
        "left as it was"
    );
    // An exact copy elsewhere is the same executable.
    let copy = dir.0.join("copy");
    common::copy_executable(&bin, &copy);
    let accepted = run_helper(&copy, &[journal_arg, "200"], None, None, &err);
    assert!(accepted.success, "{}", accepted.stderr);
    assert!(
        accepted.stdout.contains("READY 200\n"),
        "{}",
        accepted.stdout
    );
}
