//! Helpers shared by the integration tests: polling, and processes as `/proc` shows
//! them. Each test binary uses its own part, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Polls `cond` until it holds or `guard` passes; true if it held.
pub fn eventually(guard: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + guard;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// `R`, `S`, `Z` (zombie), …
    pub state: char,
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
}

impl ProcStat {
    /// Running or sleeping, not a zombie or dead.
    pub fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// `pid`'s `/proc/<pid>/stat`, if the process exists.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp …": comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|p| p.is_live())
}

/// Every process `/proc` lists now.
pub fn processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(proc_stat)
        .collect()
}

/// A size line of `/proc/<pid>/status` in kB (`field` as `"RssShmem"`, `"RssAnon"`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
