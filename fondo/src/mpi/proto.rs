//! What rank 0 and the worker ranks say to each other: one MPI message per frame,
//! its kind in the MPI tag, its body plain bytes.
//!
//! ```text
//! worker → 0   HELLO  postcard(Hello)                      once, after MPI_Init
//! 0 → worker   SETUP  postcard(Setup)                      once: accepted or rejected
//! 0 → worker   RUN    job u64 | entry i64 | count u32 | encoded argument tuples
//! worker → 0   DONE   job u64 | count u32 | encoded WireResults
//! 0 → worker   STOP   (empty)                             last message rank 0 sends it
//! worker → 0   BYE    (empty)                             last message it sends
//! ```
//!
//! Messages between two ranks arrive in the order they were sent (MPI's
//! non-overtaking rule on one communicator), so a rank's DONEs come back in the
//! order of its RUNs, and STOP is seen after every RUN sent before it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

pub(crate) use crate::boundary::digest::ExeDigest;

/// Bumped whenever a message changes shape.
pub(crate) const PROTOCOL: u32 = 1;

pub(crate) const TAG_HELLO: i32 = 0x0f01;
pub(crate) const TAG_SETUP: i32 = 0x0f02;
pub(crate) const TAG_RUN: i32 = 0x0f03;
pub(crate) const TAG_DONE: i32 = 0x0f04;
pub(crate) const TAG_STOP: i32 = 0x0f05;
pub(crate) const TAG_BYE: i32 = 0x0f06;
/// A shared value (`fondo::Shared`): its id (u64 LE), then its bytes. Sent to a
/// rank once, before the first RUN that names it (same source and any-tag probes:
/// MPI keeps their order).
pub(crate) const TAG_SHARE: i32 = 0x0f07;
/// The last handle to a shared value was dropped: its id (u64 LE).
pub(crate) const TAG_FORGET: i32 = 0x0f08;

/// Bytes before the arguments in a RUN message.
pub(crate) const RUN_HEADER: usize = 8 + 8 + 4;
/// Bytes before the outcomes in a DONE message.
pub(crate) const DONE_HEADER: usize = 8 + 4;

/// A worker rank introduces itself.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// Must equal [`PROTOCOL`].
    pub(crate) protocol: u32,
    /// The worker's host name, for error messages.
    pub(crate) host: String,
    /// The worker's PID, for error messages.
    pub(crate) pid: u32,
    /// The executable the worker runs, or why it could not be read.
    pub(crate) exe: std::result::Result<ExeDigest, String>,
}

/// Rank 0's answer to a HELLO.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Setup {
    /// `Err(reason)`: the worker must not serve (another executable, another protocol…).
    pub(crate) verdict: std::result::Result<(), String>,
    /// Offset of the `fn()` initializer from the entry anchor, if any.
    pub(crate) initializer: Option<i64>,
    /// The pool's per-task time limit in nanoseconds, enforced by the worker rank.
    pub(crate) task_timeout_ns: Option<u64>,
}

/// Encodes a RUN message: header, then the already-encoded arguments.
pub(crate) fn run_message(job: u64, entry: i64, count: u32, args: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(RUN_HEADER + args.len());
    m.extend_from_slice(&job.to_le_bytes());
    m.extend_from_slice(&entry.to_le_bytes());
    m.extend_from_slice(&count.to_le_bytes());
    m.extend_from_slice(args);
    m
}

/// A SHARE message: the value's id, then its bytes.
pub(crate) fn share_message(id: u64, bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + bytes.len());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(bytes);
    m
}

/// The id at the head of a SHARE or FORGET message, and what follows it.
pub(crate) fn parse_share(m: &[u8]) -> Result<(u64, &[u8])> {
    let (id, bytes) = m
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::Protocol("SHARE/FORGET message without an id".into()))?;
    Ok((u64::from_le_bytes(*id), bytes))
}

/// Splits a RUN message into `(job, entry, count, arguments)`.
pub(crate) fn parse_run(m: &[u8]) -> Result<(u64, i64, u32, &[u8])> {
    if m.len() < RUN_HEADER {
        return Err(Error::Protocol(format!(
            "RUN message of {} bytes is shorter than its header",
            m.len()
        )));
    }
    let job = u64::from_le_bytes(m[0..8].try_into().unwrap_or_default());
    let entry = i64::from_le_bytes(m[8..16].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(m[16..20].try_into().unwrap_or_default());
    Ok((job, entry, count, &m[RUN_HEADER..]))
}

/// Starts a DONE message in `out` (cleared first); the outcomes are appended after.
pub(crate) fn start_done(out: &mut Vec<u8>, job: u64, count: u32) {
    out.clear();
    out.extend_from_slice(&job.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
}

/// Splits a DONE message into `(job, count, outcomes)`.
pub(crate) fn parse_done(m: &[u8]) -> Result<(u64, u32, &[u8])> {
    if m.len() < DONE_HEADER {
        return Err(Error::Protocol(format!(
            "DONE message of {} bytes is shorter than its header",
            m.len()
        )));
    }
    let job = u64::from_le_bytes(m[0..8].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(m[8..12].try_into().unwrap_or_default());
    Ok((job, count, &m[DONE_HEADER..]))
}

/// This machine's host name (for messages only).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_and_done_round_trip() {
        let m = run_message(7, -42, 3, b"abc");
        assert_eq!(parse_run(&m).ok(), Some((7, -42, 3, &b"abc"[..])));
        let mut d = Vec::new();
        start_done(&mut d, 9, 2);
        d.extend_from_slice(b"xy");
        assert_eq!(parse_done(&d).ok(), Some((9, 2, &b"xy"[..])));
        assert!(parse_run(&m[..5]).is_err());
        assert!(parse_done(&d[..5]).is_err());
    }
}
