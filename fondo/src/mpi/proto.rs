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
    pub(crate) exe: std::result::Result<ExeFingerprint, String>,
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

/// Identifies the executable's contents: its size and a 128-bit hash of its bytes.
///
/// Not `process::wire::ExeId` (device + inode + mtime): on another node the same
/// program has another device and inode, and a copy made with `cp` or `scp` has
/// another mtime. Nor the ELF build-id: whether there is one depends on the linker
/// and its flags (Debian's gcc adds one, a plain `ld`/`lld` link does not), and a
/// missing one would turn the check off. Hashing the file is always possible and
/// exact — the function offsets are valid exactly when the bytes are the same —
/// and costs a few milliseconds per rank, overlapped with `MPI_Init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExeFingerprint {
    pub(crate) size: u64,
    pub(crate) hash: [u64; 2],
}

impl std::fmt::Display for ExeFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes, hash {:016x}{:016x}",
            self.size, self.hash[0], self.hash[1]
        )
    }
}

impl ExeFingerprint {
    /// Fingerprints the running executable (`/proc/self/exe`).
    pub(crate) fn current() -> Result<ExeFingerprint> {
        use std::io::Read;
        let mut file = std::fs::File::open("/proc/self/exe")?;
        let mut hasher = Hasher128::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            hasher.write(&buf[..n]);
            size += n as u64;
        }
        Ok(ExeFingerprint {
            size,
            hash: hasher.finish(),
        })
    }
}

/// A fast non-cryptographic 128-bit hash over 32-byte blocks (four multiply-mix
/// lanes folded into two words). It guards against running a different build by
/// accident, not against an adversary.
struct Hasher128 {
    lanes: [u64; 4],
    /// Bytes of an incomplete block carried to the next `write`.
    tail: Vec<u8>,
    len: u64,
}

const K: [u64; 4] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0x27d4_eb2f_1656_67c5,
];

impl Hasher128 {
    fn new() -> Self {
        Hasher128 {
            lanes: K,
            tail: Vec::with_capacity(32),
            len: 0,
        }
    }

    fn block(&mut self, block: &[u8]) {
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&block[i * 8..i * 8 + 8]);
            let w = u64::from_le_bytes(w);
            *lane = (*lane ^ w).wrapping_mul(K[i]).rotate_left(29) ^ w;
        }
    }

    fn write(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.tail.is_empty() {
            let take = (32 - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < 32 {
                return;
            }
            let tail = std::mem::take(&mut self.tail);
            self.block(&tail);
            self.tail = tail;
            self.tail.clear();
        }
        let mut blocks = data.chunks_exact(32);
        for b in blocks.by_ref() {
            self.block(b);
        }
        self.tail.extend_from_slice(blocks.remainder());
    }

    fn finish(mut self) -> [u64; 2] {
        let mut last = [0u8; 32];
        last[..self.tail.len()].copy_from_slice(&self.tail);
        last[31] ^= 0x80;
        self.block(&last);
        let mix = |mut x: u64| {
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            x ^ (x >> 33)
        };
        let [a, b, c, d] = self.lanes;
        let a = mix(a ^ self.len ^ c.rotate_left(17));
        let b = mix(b ^ d.rotate_left(41) ^ a);
        [a, b]
    }
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
    fn hash_is_independent_of_how_bytes_are_fed() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut whole = Hasher128::new();
        whole.write(&data);
        let mut pieces = Hasher128::new();
        for chunk in data.chunks(33) {
            pieces.write(chunk);
        }
        assert_eq!(whole.finish(), pieces.finish());
    }

    #[test]
    fn hash_sees_one_changed_byte_and_length() {
        let data = vec![5u8; 4096];
        let h = |d: &[u8]| {
            let mut x = Hasher128::new();
            x.write(d);
            x.finish()
        };
        let mut other = data.clone();
        other[1234] ^= 1;
        assert_ne!(h(&data), h(&other));
        assert_ne!(h(&data), h(&data[..4095]));
        assert_ne!(h(&[]), h(&[0]));
    }

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
