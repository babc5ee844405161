//! `Buffers`: where a process pool encodes arguments — big ones straight into the
//! pool's shared arena, the rest into heap buffers kept for reuse — and
//! [`ProcJob`], the encoded job of the process backend.

use crate::boundary::job::{ArgStore, EncodedJob};
use crate::process::ipc::arena::{Arena, ArgBuf, ArgBytes};
use std::sync::Arc;

/// A batch of a process pool, encoded.
pub(crate) type ProcJob = EncodedJob<Buffers>;

/// Where arguments are encoded: big ones into the pool's shared arena, the rest
/// into heap buffers, large ones kept for reuse (a fresh multi-megabyte buffer costs
/// a page fault per 4 KiB, more than encoding into it).
#[derive(Default)]
pub(crate) struct Buffers {
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
    arena: Option<Arc<Arena>>,
}

/// Buffers smaller than this are not worth keeping.
const KEEP_BUFFER: usize = 1 << 20;
/// At most this many are kept.
const KEEP_COUNT: usize = 4;

impl Buffers {
    /// Buffers that move big arguments into `arena`.
    pub(crate) fn new(arena: Option<Arc<Arena>>) -> Buffers {
        Buffers {
            spare: std::sync::Mutex::default(),
            arena,
        }
    }

    /// The arena big arguments go to, to hand to workers.
    pub(crate) fn arena(&self) -> Option<&Arc<Arena>> {
        self.arena.as_ref()
    }

    /// Keeps a finished job's heap buffer if it is large and nobody else holds it
    /// (an arena slot goes back to the arena by itself).
    pub(crate) fn give(&self, args: Arc<ArgBytes>) {
        let Some(buf) = Arc::try_unwrap(args).ok().and_then(ArgBytes::into_heap) else {
            return;
        };
        if buf.capacity() < KEEP_BUFFER {
            return;
        }
        let mut spare = self
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if spare.len() < KEEP_COUNT {
            spare.push(buf);
        }
    }
}

impl ArgStore for Buffers {
    type Buf = ArgBuf;
    type Bytes = ArgBytes;

    /// An empty buffer, with capacity left from an earlier job when there is one.
    fn take(&self) -> ArgBuf {
        let mut spare = self
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        spare.clear();
        ArgBuf::new(spare, self.arena.clone())
    }

    fn freeze(buf: ArgBuf) -> ArgBytes {
        ArgBytes::from(buf)
    }

    fn from_heap(bytes: Vec<u8>) -> ArgBytes {
        ArgBytes::Heap(bytes)
    }
}
