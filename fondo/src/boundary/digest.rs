//! Digests that name bytes alike in every build, every run and on every machine:
//! the running executable's (MPI ranks check that they all run the same program, a
//! journal that it is read by the program that wrote it) and a value's (a
//! journal's inputs). xxHash3 (`xxhash-rust`): a published algorithm any reader
//! can recompute, unlike `std`'s `DefaultHasher`. They guard against accidents —
//! another build, other inputs — not against an adversary.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::{Arc, OnceLock};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// An executable's contents: its size and the 128-bit xxHash3 of its bytes.
///
/// Not device + inode + mtime (`code_range`'s check): on another node the same
/// program has another device and inode, and a copy made with `cp` or `scp` another
/// mtime. Nor the ELF build-id: whether there is one depends on the linker and its
/// flags, and a missing one would turn the check off. Hashing the file is always
/// possible and exact — function offsets are valid exactly when the bytes are the
/// same — and costs a few milliseconds, once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExeDigest {
    /// The executable's size in bytes.
    pub(crate) size: u64,
    /// xxHash3-128 of its bytes.
    pub(crate) hash: u128,
}

impl std::fmt::Display for ExeDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes, hash {:032x}", self.size, self.hash)
    }
}

impl ExeDigest {
    /// The running executable's (`/proc/self/exe`), read once per process.
    pub(crate) fn current() -> Result<ExeDigest> {
        static CURRENT: OnceLock<Result<ExeDigest>> = OnceLock::new();
        CURRENT
            .get_or_init(|| {
                std::fs::File::open("/proc/self/exe")
                    .and_then(ExeDigest::of)
                    .map_err(|e| Error::Io(Arc::new(e)))
            })
            .clone()
    }

    /// The digest of everything `reader` yields.
    fn of(mut reader: impl Read) -> std::io::Result<ExeDigest> {
        let mut hasher = Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok(ExeDigest {
            size,
            hash: hasher.digest128(),
        })
    }
}

/// The 64-bit digest of `bytes`: xxHash3-64 (`XXH3_64bits`, seed 0).
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// The 64-bit digest of `words` taken as little-endian bytes, the count first.
pub(crate) fn hash64_of_words(words: &[u64]) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&(words.len() as u64).to_le_bytes());
    for w in words {
        hasher.update(&w.to_le_bytes());
    }
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed values: xxHash3's published ones, so a journal written by one build is
    /// read by the next, and another library can recompute them.
    #[test]
    fn hash64_is_xxh3_64() {
        assert_eq!(hash64(b""), 0x2d06_8005_38d3_94c2);
        assert_ne!(hash64(b"a"), hash64(b"b"));
        assert_ne!(hash64(&[0]), hash64(&[0, 0]), "the length counts");
    }

    #[test]
    fn an_executable_digest_does_not_depend_on_how_it_is_read() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = ExeDigest::of(&data[..]).unwrap();
        // A reader that yields 7 bytes at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(7).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        assert_eq!(ExeDigest::of(Trickle(&data)).unwrap(), whole);
        assert_eq!(whole.size, data.len() as u64);
        let mut changed = data.clone();
        changed[1_500_000] ^= 1;
        assert_ne!(ExeDigest::of(&changed[..]).unwrap(), whole);
        assert_ne!(ExeDigest::of(&data[..data.len() - 1]).unwrap(), whole);
    }

    #[test]
    fn words_count_and_order() {
        assert_ne!(hash64_of_words(&[1, 2]), hash64_of_words(&[2, 1]));
        assert_ne!(hash64_of_words(&[]), hash64_of_words(&[0]));
        assert_eq!(hash64_of_words(&[5, 6]), hash64_of_words(&[5, 6]));
    }

    #[test]
    fn the_current_executable_is_read_once() {
        let first = ExeDigest::current().unwrap();
        assert_eq!(ExeDigest::current().unwrap(), first);
        assert!(first.size > 0);
    }
}
