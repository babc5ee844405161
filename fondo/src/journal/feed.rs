//! One journaled map's run: a window of batches fed to the pool, each outcome
//! written down as it lands, chunks sized to a few milliseconds of work so that a
//! kill loses little.

use super::flusher::Flusher;
use super::format::push_result;
use super::sink::JournalSink;
use crate::backend::{Batch, Encoder, Runs};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::sink::Sink;
use crate::task::Task;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The work one chunk should hold when the pool sets no `chunksize`: long enough that a
/// chunk's round trip is a small part of it, short enough that a kill loses little.
/// (At 2 ms a journaled map of 10 µs tasks ran 1.09–1.19× a plain one on 2 cores —
/// its feeding thread, woken per half window, competes with the workers for the
/// cores; at 5 ms, 1.06–1.13×, medians 1.08–1.09.)
pub(super) const TARGET_CHUNK_NS: u64 = 5_000_000;
/// The largest automatic chunk.
const MAX_CHUNK: usize = 4096;

/// The state of one map's run.
pub(super) struct Run<'a, R> {
    pub(super) map: u32,
    pub(super) hashes: &'a [u64],
    pub(super) results: &'a mut Vec<Option<R>>,
    /// By position: has an outcome (on record, or arrived in this run).
    pub(super) settled: Vec<bool>,
    pub(super) errors: Vec<(usize, Error)>,
}

impl<R> Run<'_, R> {
    pub(super) fn settle(&mut self, position: usize, outcome: Result<R>) {
        self.settled[position] = true;
        match outcome {
            Ok(value) => self.results[position] = Some(value),
            Err(e) => self.errors.push((position, e)),
        }
    }
}

/// Feeds the pool a window of tasks at a time and writes each result as it arrives.
#[allow(clippy::too_many_arguments)]
pub(super) fn feed<B, F, Args, R>(
    pool: &Pool<B>,
    f: F,
    todo: Vec<(usize, Args)>,
    run: &mut Run<'_, R>,
    mut file: &File,
    flusher: &Flusher,
    flush_here: bool,
    every: Duration,
) -> std::result::Result<(), String>
where
    F: Task<Args, Output = R>,
    B: Runs<F, Args>,
    R: Serialize + Send + 'static,
{
    let shape = pool.backend().shape();
    let helper = pool.backend().helper();
    let sink = Arc::new(JournalSink::<R>::new());
    pool.track(sink.clone());
    let f = Arc::new(f);
    let mut chunks = Chunks::new(shape.workers, shape.prefetch, shape.chunksize);
    let mut pending = todo.into_iter().peekable();
    let mut in_flight = 0usize;
    // A `Closed` or `Terminated` outcome: the pool takes no more work.
    let mut refused: Option<Error> = None;
    let mut buf = Vec::new();
    let mut last_flush = Instant::now();
    while in_flight > 0 || pending.peek().is_some() {
        if let Some(e) = refused.clone().filter(|_| in_flight == 0) {
            for (position, _) in pending.by_ref() {
                run.settle(position, Err(e.clone()));
            }
            break;
        }
        // Top up the window once half of it has come back.
        if refused.is_none() && pending.peek().is_some() && in_flight <= chunks.window() / 2 {
            chunks.adapt(pending.len());
            let mut batches = Vec::new();
            let window = chunks.window();
            while in_flight < window {
                let Some((start, first)) = pending.next() else {
                    break;
                };
                // Never past the window: it bounds what a kill can cost.
                let size = chunks.size.min(window - in_flight);
                let mut items = vec![first];
                while items.len() < size
                    && let Some((p, _)) = pending.peek()
                    && *p == start + items.len()
                {
                    if let Some((_, item)) = pending.next() {
                        items.push(item);
                    }
                }
                in_flight += items.len();
                let sink: Arc<dyn Sink<R>> = sink.clone();
                batches.push(Batch { items, start, sink });
            }
            if !batches.is_empty() {
                pool.submit(&f, batches, Encoder::Caller);
            }
        }
        let (arrived, aborted) = sink.wait(helper.as_ref());
        for (start, outcomes) in arrived {
            for (position, outcome) in (start..).zip(outcomes) {
                if run.settled.get(position) != Some(&false) {
                    continue; // a late duplicate: the first outcome won
                }
                in_flight = in_flight.saturating_sub(1);
                chunks.delivered();
                let outcome = match outcome {
                    Ok(value) => {
                        push_result(&mut buf, run.map, position, run.hashes[position], &value)
                            .map(|()| value)
                    }
                    Err(e) => {
                        if matches!(e, Error::Terminated | Error::Closed) {
                            refused.get_or_insert_with(|| e.clone());
                        }
                        Err(e)
                    }
                };
                run.settle(position, outcome);
            }
        }
        if !buf.is_empty() {
            file.write_all(&buf)
                .map_err(|e| format!("cannot write results: {e}"))?;
            buf.clear();
            flusher.dirty.store(true, Ordering::Release);
            if flush_here && last_flush.elapsed() >= every {
                flusher.dirty.store(false, Ordering::Release);
                file.sync_data()
                    .map_err(|e| format!("cannot flush it to disk: {e}"))?;
                last_flush = Instant::now();
            }
        }
        if let Some(e) = flusher.state.lock().error.take() {
            return Err(format!("cannot flush it to disk: {e}"));
        }
        if let Some(e) = aborted {
            // Terminated: nothing more arrives, and nothing more is handed out.
            for (position, _) in pending.by_ref() {
                run.settle(position, Err(e.clone()));
            }
            for position in 0..run.settled.len() {
                if !run.settled[position] {
                    run.settle(position, Err(e.clone()));
                }
            }
            break;
        }
    }
    sink.finish();
    Ok(())
}

/// How many tasks go in one batch, and how many may be out at once.
pub(super) struct Chunks {
    pub(super) workers: usize,
    pub(super) prefetch: usize,
    /// The pool's `chunksize`, which the journal keeps to.
    pub(super) fixed: bool,
    pub(super) size: usize,
    /// Since when, and after how many results, the rate is measured.
    pub(super) mark: Option<(Instant, usize)>,
    pub(super) delivered: usize,
}

impl Chunks {
    pub(super) fn new(workers: usize, prefetch: usize, chunksize: Option<usize>) -> Chunks {
        Chunks {
            workers: workers.max(1),
            prefetch,
            fixed: chunksize.is_some(),
            size: chunksize.unwrap_or(1).max(1),
            mark: None,
            delivered: 0,
        }
    }

    /// Tasks submitted and not yet written down, at most: every worker's pipeline full,
    /// and one chunk more each waiting.
    pub(super) fn window(&self) -> usize {
        self.workers * (self.prefetch + 2) * self.size
    }

    pub(super) fn delivered(&mut self) {
        if self.mark.is_none() {
            self.mark = Some((Instant::now(), 0));
        }
        self.delivered += 1;
    }

    /// Resizes automatic chunks to about `TARGET_CHUNK_NS` of work each, by the rate
    /// results arrive at (since the first, so start-up does not count): at most
    /// doubling each time, at most `MAX_CHUNK`, and no more than a worker's share of
    /// what is left.
    pub(super) fn adapt(&mut self, left: usize) {
        if self.fixed {
            return;
        }
        if let Some((since, at)) = self.mark {
            let elapsed = since.elapsed();
            let done = self.delivered - at;
            if done > 0 && elapsed >= Duration::from_millis(1) {
                let per_task = (elapsed.as_nanos() * self.workers as u128 / done as u128).max(1);
                let want =
                    (u128::from(TARGET_CHUNK_NS) / per_task).clamp(1, MAX_CHUNK as u128) as usize;
                self.size = want.min(self.size * 2);
                if elapsed >= Duration::from_millis(200) {
                    // Measure over the recent past from here on.
                    self.mark = Some((Instant::now(), self.delivered));
                }
            }
        }
        self.size = self.size.min(left.div_ceil(self.workers)).max(1);
    }
}

/// The results in order, or the first error by position (with that position, as
/// `Pool::map` says it).
pub(super) fn collect<R>(
    results: Vec<Option<R>>,
    mut errors: Vec<(usize, Error)>,
) -> Result<Vec<R>> {
    if let Some((position, e)) = errors.iter().min_by_key(|(p, _)| *p) {
        return Err(e.clone().at(*position));
    }
    errors.clear();
    results
        .into_iter()
        .collect::<Option<Vec<R>>>()
        .ok_or_else(|| {
            Error::Journal("internal error: a journaled map ended with a position missing".into())
        })
}
