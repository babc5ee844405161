//! `ProcJob`: a batch with its arguments already encoded, its function named by
//! offset, and a type-erased sink that decodes the worker's answer.

use super::arena::{Arena, ArgBuf, ArgBytes};
use super::item::{decode_outcome, encode_item};
use super::wire::{Out, next_item};
use crate::backend::Batch;
use crate::error::{Error, Payload, Result};
use crate::sink::Sink;
use crate::task::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Decodes a worker's encoded outcomes into a typed sink.
pub(crate) trait Outcomes: Send + Sync {
    /// Decodes `count` outcomes from `body` and delivers them from index `start`.
    fn deliver(&self, start: usize, count: usize, body: &[u8]);
    /// Fails tasks `start .. start + count`.
    fn fail(&self, start: usize, count: usize, error: &Error);
}

struct Typed<R> {
    sink: Arc<dyn Sink<R>>,
}

impl<R: DeserializeOwned + Send + 'static> Outcomes for Typed<R> {
    fn deliver(&self, start: usize, count: usize, mut body: &[u8]) {
        let results = (0..count)
            .map(|_| decode_outcome(next_item(&mut body)))
            .collect();
        self.sink.put(start, results);
    }

    fn fail(&self, start: usize, count: usize, error: &Error) {
        self.sink.fail(start, count, error);
    }
}

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

    /// An empty buffer, with capacity left from an earlier job when there is one.
    pub(crate) fn take(&self) -> ArgBuf {
        let mut spare = self
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        spare.clear();
        ArgBuf::new(spare, self.arena.clone())
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

/// A batch ready for the wire.
pub(crate) struct ProcJob {
    /// Offset of the entry point that runs this batch.
    pub(crate) entry: i64,
    /// The encoded argument tuples, shared so a resend after a worker death is free.
    pub(crate) args: Arc<ArgBytes>,
    pub(crate) count: u32,
    /// Index of the first task in its submission.
    pub(crate) start: usize,
    pub(crate) outcomes: Arc<dyn Outcomes>,
    /// Deaths charged to this job's tasks (see `recovery`).
    pub(crate) attempts: u32,
    /// Deaths this job's tasks sat through uncharged (see `recovery`).
    pub(crate) free_reruns: u32,
}

impl ProcJob {
    /// Encodes a batch. An argument that fails to encode fails its own task; the
    /// tasks around it still run (as separate jobs, to keep indices contiguous).
    /// Arguments are written into buffers recycled from earlier jobs.
    pub(crate) fn encode<F, Args>(
        batch: Batch<Args, F::Output>,
        max_frame: usize,
        buffers: &Buffers,
    ) -> Vec<ProcJob>
    where
        F: Task<Args> + Copy,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let entry = super::entry::offset_of_entry::<F, Args>();
        let outcomes: Arc<dyn Outcomes> = Arc::new(Typed {
            sink: batch.sink.clone(),
        });
        let mut jobs = Vec::new();
        let mut args = buffers.take();
        let mut first = batch.start;
        let mut count = 0u32;
        let flush = |args: &mut ArgBuf, first: usize, count: &mut u32, jobs: &mut Vec<ProcJob>| {
            if *count > 0 {
                jobs.push(ProcJob {
                    entry,
                    args: Arc::new(ArgBytes::from(std::mem::replace(args, buffers.take()))),
                    count: *count,
                    start: first,
                    outcomes: outcomes.clone(),
                    attempts: 0,
                    free_reruns: 0,
                });
            }
            *count = 0;
        };
        for (i, item) in batch.items.iter().enumerate() {
            let index = batch.start + i;
            let mark = args.len();
            let failure = match encode_item(&mut args, item, Payload::Arguments) {
                Ok(()) if args.len() <= max_frame => None,
                Ok(()) => Some(Error::Protocol(format!(
                    "arguments of {} bytes exceed the {max_frame}-byte frame limit",
                    args.len()
                ))),
                Err(failure) => Some(failure.into()),
            };
            match failure {
                None => count += 1,
                Some(err) => {
                    // What encoded before this item runs as its own job.
                    args.truncate(mark);
                    flush(&mut args, first, &mut count, &mut jobs);
                    outcomes.fail(index, 1, &err);
                    first = index + 1;
                }
            }
            if count > 0 && args.len() >= max_frame / 2 {
                flush(&mut args, first, &mut count, &mut jobs);
                first = index + 1;
            }
        }
        flush(&mut args, first, &mut count, &mut jobs);
        jobs
    }

    /// Splits off tasks `at..` into a second job; `None` if the arguments are unreadable.
    pub(crate) fn split_off(&mut self, at: u32) -> Option<ProcJob> {
        if at >= self.count {
            return None;
        }
        let cut = byte_offset(&self.args, at)?;
        let tail = ProcJob {
            entry: self.entry,
            args: Arc::new(ArgBytes::Heap(self.args[cut..].to_vec())),
            count: self.count - at,
            start: self.start + at as usize,
            outcomes: self.outcomes.clone(),
            attempts: self.attempts,
            free_reruns: self.free_reruns,
        };
        self.args = Arc::new(ArgBytes::Heap(self.args[..cut].to_vec()));
        self.count = at;
        Some(tail)
    }

    /// Cuts the job at each of `cuts` (task offsets, ascending, inside the job):
    /// the pieces in order. Where the arguments cannot be cut (unreadable), the
    /// piece before the cut keeps the rest.
    pub(crate) fn cut(mut self, cuts: &[u32]) -> Vec<ProcJob> {
        let mut pieces = Vec::with_capacity(cuts.len() + 1);
        for &at in cuts.iter().rev() {
            if let Some(tail) = self.split_off(at) {
                pieces.push(tail);
            }
        }
        pieces.push(self);
        pieces.reverse();
        pieces
    }

    /// Fails every task of the job.
    pub(crate) fn fail(&self, error: &Error) {
        self.outcomes.fail(self.start, self.count as usize, error);
    }

    /// Delivers the worker's encoded outcomes.
    pub(crate) fn deliver(&self, count: u32, body: &[u8]) -> Result<()> {
        if count != self.count {
            return Err(Error::Protocol(format!(
                "worker returned {count} outcomes for a job of {}",
                self.count
            )));
        }
        self.outcomes.deliver(self.start, count as usize, body);
        Ok(())
    }
}

impl crate::queue::Refusable for ProcJob {
    fn refuse(self, error: &Error) {
        self.fail(error);
    }
}

/// Byte offset of item `n` in a run of length-prefixed items.
fn byte_offset(bytes: &[u8], n: u32) -> Option<usize> {
    let mut rest = bytes;
    for _ in 0..n {
        next_item(&mut rest)?;
    }
    Some(bytes.len() - rest.len())
}
