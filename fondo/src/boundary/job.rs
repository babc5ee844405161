//! `EncodedJob`: a batch with its arguments already encoded, its function named by
//! offset, and a type-erased sink that decodes the worker's answer; cut apart when
//! a worker dies under it (`process::parent::recovery` says where).

use super::item::{Out, decode_outcomes, encode_item_unguarded, next_item, serialize_panicked};
use super::shares::{Collector, Share};
use crate::backend::Batch;
use crate::error::{Error, Payload, Result};
use crate::sink::Sink;
use crate::task::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Decodes a worker's encoded outcomes into a typed sink.
pub(crate) trait Outcomes: Send + Sync {
    /// Decodes `count` outcomes from `body` and delivers them from index `start`,
    /// calling `decoded` between the two (before anyone waiting can wake).
    fn deliver(&self, start: usize, count: usize, body: &[u8], decoded: &mut dyn FnMut());
    /// Fails tasks `start .. start + count`.
    fn fail(&self, start: usize, count: usize, error: &Error);
    /// The cancel ticket of the submission, if it has one (`cancel.rs`).
    fn ticket(&self) -> Option<&crate::cancel::Ticket>;
}

struct Typed<R> {
    sink: Arc<dyn Sink<R>>,
}

impl<R: DeserializeOwned + Send + 'static> Outcomes for Typed<R> {
    fn deliver(&self, start: usize, count: usize, body: &[u8], decoded: &mut dyn FnMut()) {
        let outcomes = decode_outcomes(count, body);
        decoded();
        self.sink.put(start, outcomes);
    }

    fn fail(&self, start: usize, count: usize, error: &Error) {
        self.sink.fail(start, count, error);
    }

    fn ticket(&self) -> Option<&crate::cancel::Ticket> {
        self.sink.ticket()
    }
}

/// Where a backend's encoded arguments live: a worker process's pool encodes big
/// ones straight into shared memory (`process::parent::buffers`), an MPI pool on
/// the heap ([`HeapArgs`]).
pub(crate) trait ArgStore: Send + Sync + 'static {
    /// A buffer arguments are being encoded into.
    type Buf: Out;
    /// Encoded arguments, read-only from now on.
    type Bytes: std::ops::Deref<Target = [u8]> + Send + Sync + 'static;
    /// An empty buffer to encode into.
    fn take(&self) -> Self::Buf;
    /// The buffer's bytes, frozen.
    fn freeze(buf: Self::Buf) -> Self::Bytes;
    /// Bytes cut from a job's arguments (after a worker died), as arguments.
    fn from_heap(bytes: Vec<u8>) -> Self::Bytes;
}

/// Arguments on the heap, nothing shared: for backends without shared memory.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) struct HeapArgs;

impl ArgStore for HeapArgs {
    type Buf = Vec<u8>;
    type Bytes = Vec<u8>;
    fn take(&self) -> Vec<u8> {
        Vec::new()
    }
    fn freeze(buf: Vec<u8>) -> Vec<u8> {
        buf
    }
    fn from_heap(bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }
}

/// A batch ready for the wire: its arguments encoded, its function named by
/// offset, and a type-erased sink that decodes the worker's answer.
pub(crate) struct EncodedJob<S: ArgStore> {
    /// Offset of the entry point that runs this batch.
    pub(crate) entry: i64,
    /// The encoded argument tuples, shared so a resend after a worker death is free.
    pub(crate) args: Arc<S::Bytes>,
    pub(crate) count: u32,
    /// Index of the first task in its submission.
    pub(crate) start: usize,
    pub(crate) outcomes: Arc<dyn Outcomes>,
    /// The shared values its arguments refer to (`boundary::shares`): each worker
    /// gets them before the job.
    pub(crate) shares: Vec<Arc<Share>>,
    /// Deaths charged to this job's tasks (see `recovery`).
    pub(crate) attempts: u32,
    /// Deaths this job's tasks sat through uncharged (see `recovery`).
    pub(crate) free_reruns: u32,
}

/// A batch being encoded into jobs: cut where an argument fails (what encoded
/// before it runs as its own job, keeping each job's indices contiguous) and where
/// a job's arguments reach half a frame.
struct Cutting<'s, S: ArgStore> {
    entry: i64,
    outcomes: Arc<dyn Outcomes>,
    store: &'s S,
    max_frame: usize,
    jobs: Vec<EncodedJob<S>>,
    /// The arguments of the job being filled.
    args: S::Buf,
    /// Index of its first task.
    first: usize,
    /// Its tasks so far.
    count: u32,
    /// `args`' length before the argument being encoded.
    mark: usize,
    shares: Collector,
}

impl<S: ArgStore> Cutting<'_, S> {
    /// Task `index`'s argument was encoded, or failed with `failure`.
    fn settle(&mut self, index: usize, failure: Option<Error>) {
        match failure {
            None => self.count += 1,
            Some(err) => {
                self.args.truncate(self.mark);
                self.flush();
                self.outcomes.fail(index, 1, &err);
                self.first = index + 1;
            }
        }
        if self.count > 0 && self.args.len() >= self.max_frame / 2 {
            self.flush();
            self.first = index + 1;
        }
    }

    /// Ends the job being filled, if it has a task.
    fn flush(&mut self) {
        if self.count > 0 {
            let args = std::mem::replace(&mut self.args, self.store.take());
            self.jobs.push(EncodedJob {
                entry: self.entry,
                args: Arc::new(S::freeze(args)),
                count: self.count,
                start: self.first,
                outcomes: self.outcomes.clone(),
                shares: self.shares.take(),
                attempts: 0,
                free_reruns: 0,
            });
        }
        self.count = 0;
    }
}

impl<S: ArgStore> EncodedJob<S> {
    /// Encodes a batch. An argument that fails to encode fails its own task; the
    /// tasks around it still run (as separate jobs, to keep indices contiguous).
    /// Arguments are written into buffers recycled from earlier jobs.
    pub(crate) fn encode<F, Args>(
        batch: Batch<Args, F::Output>,
        max_frame: usize,
        store: &S,
    ) -> Vec<EncodedJob<S>>
    where
        F: Task<Args> + Copy,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let mut cut = Cutting {
            entry: super::entry::offset_of_entry::<F, Args>(),
            outcomes: Arc::new(Typed {
                sink: batch.sink.clone(),
            }),
            store,
            max_frame,
            jobs: Vec::new(),
            args: store.take(),
            first: batch.start,
            count: 0,
            mark: 0,
            // `Shared` values the arguments refer to: delivered before the job runs.
            shares: Collector::start(),
        };
        let start = batch.start;
        // One panic guard for the batch: a `Serialize` that panics fails its task.
        crate::panic::catch_each(
            batch.items.len(),
            &mut cut,
            |cut, i| {
                cut.mark = cut.args.len();
                let failure =
                    match encode_item_unguarded(&mut cut.args, &batch.items[i], Payload::Arguments)
                    {
                        Ok(()) if cut.args.len() <= max_frame => None,
                        Ok(()) => Some(Error::Protocol(format!(
                            "arguments of {} bytes exceed the {max_frame}-byte frame limit",
                            cut.args.len()
                        ))),
                        Err(failure) => Some(failure.into()),
                    };
                cut.settle(start + i, failure);
            },
            |cut, i, caught| {
                let failure = serialize_panicked::<Args>(Payload::Arguments, &caught);
                cut.settle(start + i, Some(failure.into()));
            },
        );
        cut.flush();
        cut.jobs
    }

    /// Cuts the job at each of `cuts` (task offsets, ascending, inside the job):
    /// the pieces in order. Where the arguments cannot be cut (unreadable), the
    /// piece before the cut keeps the rest.
    ///
    /// One pass over the arguments, whatever the number of cuts: a worker that dies
    /// while reporting a job of 100k tasks has it cut into 100k pieces (see
    /// `recovery`), and a cut per pass was quadratic — minutes in the supervisor.
    pub(crate) fn cut(self, cuts: &[u32]) -> Vec<Self> {
        debug_assert!(cuts.windows(2).all(|w| w[0] < w[1]), "cuts not ascending");
        // Where each piece starts: (task offset, byte offset).
        let mut starts = vec![(0u32, 0usize)];
        let mut rest = &self.args[..];
        let mut task = 0u32;
        'cutting: for &at in cuts.iter().filter(|&&at| at > 0 && at < self.count) {
            while task < at {
                if next_item(&mut rest).is_none() {
                    break 'cutting;
                }
                task += 1;
            }
            starts.push((at, self.args.len() - rest.len()));
        }
        if starts.len() == 1 {
            return vec![self];
        }
        let ends = starts[1..]
            .iter()
            .copied()
            .chain([(self.count, self.args.len())]);
        starts
            .iter()
            .zip(ends)
            .map(|(&(first, from), (end, to))| EncodedJob {
                entry: self.entry,
                args: Arc::new(S::from_heap(self.args[from..to].to_vec())),
                count: end - first,
                start: self.start + first as usize,
                outcomes: self.outcomes.clone(),
                shares: self.shares.clone(),
                attempts: self.attempts,
                free_reruns: self.free_reruns,
            })
            .collect()
    }

    /// The cancel ticket of the job's submission, if it has one.
    pub(crate) fn ticket(&self) -> Option<&crate::cancel::Ticket> {
        self.outcomes.ticket()
    }

    /// Claims the job's tasks before they start (`cancel.rs`): false if they are
    /// cancelled, and the job is to be dropped unrun.
    pub(crate) fn claim(&self) -> bool {
        self.ticket().is_none_or(|t| t.claim(self.count as usize))
    }

    /// Fails every task of the job.
    pub(crate) fn fail(&self, error: &Error) {
        self.outcomes.fail(self.start, self.count as usize, error);
    }

    /// Delivers the worker's encoded outcomes. The job's hold on its shared values
    /// ends once the outcomes are decoded (a result may name one) and before the
    /// caller wakes: a caller that then drops its last handle makes the very next
    /// job tell the worker to forget the value.
    pub(crate) fn deliver(&mut self, count: u32, body: &[u8]) -> Result<()> {
        if count != self.count {
            return Err(Error::Protocol(format!(
                "worker returned {count} outcomes for a job of {}",
                self.count
            )));
        }
        let shares = &mut self.shares;
        self.outcomes
            .deliver(self.start, count as usize, body, &mut || shares.clear());
        Ok(())
    }
}

impl<S: ArgStore> crate::queue::Refusable for EncodedJob<S> {
    fn refuse(self, error: &Error) {
        self.fail(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::MapSink;

    /// A job of tasks `0..n` (arguments `10 + i`) feeding a `map`'s sink.
    fn job_of(n: usize) -> (crate::AsyncResult<Vec<u64>>, EncodedJob<HeapArgs>) {
        fn plus_one(x: u64) -> u64 {
            x + 1
        }
        fn encode<F: Task<(u64,), Output = u64> + Copy>(
            _: F,
            batch: Batch<(u64,), u64>,
        ) -> Vec<EncodedJob<HeapArgs>> {
            EncodedJob::encode::<F, (u64,)>(batch, 1 << 20, &HeapArgs)
        }
        let (result, sink) = MapSink::<u64>::new(n);
        let batch = Batch {
            items: (0..n as u64).map(|i| (10 + i,)).collect(),
            start: 0,
            sink,
        };
        let mut jobs = encode(plus_one, batch);
        assert_eq!(jobs.len(), 1);
        (result, jobs.remove(0))
    }

    #[test]
    fn a_job_cuts_into_pieces_that_keep_their_tasks_and_counters() {
        let (result, mut job) = job_of(6);
        job.attempts = 2;
        job.free_reruns = 1;
        let pieces = job.cut(&[1, 4, 5]);
        let shape: Vec<(usize, u32, u32, u32)> = pieces
            .iter()
            .map(|p| (p.start, p.count, p.attempts, p.free_reruns))
            .collect();
        assert_eq!(
            shape,
            [(0, 1, 2, 1), (1, 3, 2, 1), (4, 1, 2, 1), (5, 1, 2, 1)]
        );
        // Each piece's arguments are exactly its tasks' items.
        for piece in &pieces {
            let mut bytes = &piece.args[..];
            for i in 0..piece.count {
                let item = next_item(&mut bytes).expect("an item per task");
                let (x,): (u64,) = postcard::from_bytes(item).expect("decodes");
                assert_eq!(x, 10 + piece.start as u64 + u64::from(i));
            }
            assert!(bytes.is_empty());
        }
        for piece in pieces {
            piece.fail(&Error::Terminated);
        }
        assert!(matches!(result.get(), Err(Error::Terminated)));
    }

    #[test]
    fn a_big_job_cuts_into_one_piece_per_task() {
        // 50k pieces: a cut per pass over the arguments took minutes here.
        let n = 50_000;
        let (_result, job) = job_of(n);
        let cuts: Vec<u32> = (1..n as u32).collect();
        let pieces = job.cut(&cuts);
        assert_eq!(pieces.len(), n);
        for (i, piece) in pieces.iter().enumerate() {
            assert_eq!((piece.start, piece.count), (i, 1));
            let (x,): (u64,) = postcard::from_bytes(&piece.args[4..]).expect("decodes");
            assert_eq!(x, 10 + i as u64);
        }
    }

    #[test]
    fn unreadable_arguments_leave_the_rest_to_the_last_piece() {
        let (_result, mut job) = job_of(4);
        // Four items of 5 bytes (a 4-byte length, a 1-byte value): cut the third
        // short, leaving its length alone.
        let mut bytes = job.args.to_vec();
        assert_eq!(bytes.len(), 20);
        bytes.truncate(14);
        job.args = Arc::new(bytes);
        let pieces = job.cut(&[1, 2, 3]);
        let counts: Vec<u32> = pieces.iter().map(|p| p.count).collect();
        assert_eq!(counts, [1, 1, 2], "the third item is cut short");
    }

    #[test]
    fn cuts_outside_the_job_change_nothing() {
        let (_result, job) = job_of(3);
        let pieces = job.cut(&[3, 7]);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].count, 3);
    }
}
