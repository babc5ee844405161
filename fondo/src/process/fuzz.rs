//! Entry points for fuzzing and property tests of the wire decoder (not public API).
//!
//! Each function feeds arbitrary bytes to the real decoders — `FrameReader`
//! through a real socketpair, the header decoders, the parent's result decoder
//! (`ProcJob::deliver`) and the worker's argument decoder (the monomorphised batch
//! entry point) — the way one end of the protocol meets them, and returns what it
//! decoded or the first error. Whatever the input, they must return: never panic,
//! never hang, and never allocate much beyond the frame cap.
//!
//! The harness never jumps to an address taken from the input: a `Run` frame's
//! entry offset is checked the way the worker checks it, then the harness's own
//! entry point decodes the arguments.

use super::ipc::frames::{Fill, FrameReader, decode_header};
use super::ipc::messages::{FromWorker, ToWorker};
use super::parent::{Buffers, ProcJob};
use crate::backend::Batch;
use crate::boundary::clock::TaskClock;
use crate::boundary::entry::{Resolver, offset_of_entry};
use crate::boundary::item::next_item;
use crate::boundary::spill::{AnswerBuf, Place};
use crate::error::{Error, Result};
use crate::sink::{Abortable, Sink};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// What the harness's task returns: an integer and a string, so result decoding
/// meets varints and UTF-8 checks.
pub type Output = (u64, String);

/// The task whose argument and result decoders the harness drives.
pub fn task(x: u64) -> Output {
    (x, x.to_string())
}

/// What a stream decoded to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Complete frames read.
    pub frames: usize,
    /// Task outcomes decoded (all of them `Ok`, or the call returns `Err`).
    pub results: Vec<Output>,
}

/// How many tasks the parent's job number `job` holds in [`parent_reads`]: the
/// worker's `Done { job, count }` must say exactly this many.
pub fn expected_count(job: u64) -> u32 {
    (job % 3) as u32 + 1
}

/// The whole stream as the parent reads a worker after the handshake: every frame
/// must be `Done` for the next job (0, 1, 2, …, each of [`expected_count`] tasks)
/// with one encoded `Result<Output, _>` per task, or a `Log` record between them.
pub fn parent_reads(bytes: &[u8], max_frame: usize, chunk: usize) -> Result<Decoded> {
    let mut decoded = Decoded::default();
    let mut next_job = 0u64;
    let frames = through_socket(bytes, max_frame, chunk, |payload| {
        let (header, body): (FromWorker, &[u8]) = decode_header(payload)?;
        if let FromWorker::Log(_) = header {
            return Ok(()); // the parent hands it to its logger and reads on
        }
        let FromWorker::Done { job, count } = header else {
            return Err(Error::Protocol("unexpected frame from worker".into()));
        };
        if job != next_job {
            return Err(Error::Protocol(format!("answer for unknown job {job}")));
        }
        next_job += 1;
        let results = deliver(expected_count(job), count, body)?;
        decoded.results.extend(results);
        Ok(())
    })?;
    decoded.frames = frames;
    Ok(decoded)
}

/// The whole stream as a worker reads its parent after sending `Hello`: `Setup`,
/// `Run` and `Shutdown` frames; each `Run`'s body is decoded by the real batch entry
/// point for [`task`], and the outcomes it encodes are decoded back.
pub fn worker_reads(bytes: &[u8], max_frame: usize, chunk: usize) -> Result<Decoded> {
    let mut decoded = Decoded::default();
    let mut stopped = false;
    let frames = through_socket(bytes, max_frame, chunk, |payload| {
        if stopped {
            return Err(Error::Protocol("frame after Shutdown".into()));
        }
        let (header, body): (ToWorker, &[u8]) = decode_header(payload)?;
        match header {
            ToWorker::Setup { initializer, .. } => {
                if let Some(offset) = initializer {
                    // Checked as the worker checks it; never called.
                    resolver().init_fn(offset).ok_or_else(|| {
                        Error::Protocol("initializer offset outside the executable".into())
                    })?;
                }
            }
            ToWorker::Run {
                job: _,
                entry,
                count,
            } => {
                resolver()
                    .entry(entry)
                    .ok_or_else(|| Error::Protocol("entry offset outside the executable".into()))?;
                decoded.results.extend(run_batch(body, count, max_frame)?);
            }
            // Fuzzed bytes come without shared memory (or descriptors): such a frame
            // has nothing to read here.
            ToWorker::RunInLane { .. } | ToWorker::RunInArena { .. } | ToWorker::Share { .. } => {
                return Err(Error::Protocol("a shared-memory frame without it".into()));
            }
            ToWorker::Forget { .. } => {}
            ToWorker::Shutdown => stopped = true,
        }
        Ok(())
    })?;
    decoded.frames = frames;
    Ok(decoded)
}

/// One frame payload's header, decoded as each end decodes the other's.
pub fn decode_headers(payload: &[u8]) -> (Result<()>, Result<()>) {
    (
        decode_header::<ToWorker>(payload).map(drop),
        decode_header::<FromWorker>(payload).map(drop),
    )
}

/// The cargo-fuzz entry: byte 0 picks the end (bit 0) and the write size (bits
/// 1–5: 1 to 65,536 bytes per write), bytes 1–2 the frame cap (64 B to 1 MiB), the
/// rest is the stream.
pub fn frame_decoder(data: &[u8]) -> Result<Decoded> {
    let [mode, cap_lo, cap_hi, stream @ ..] = data else {
        return Err(Error::Protocol(
            "fuzz input shorter than its 3-byte preamble".into(),
        ));
    };
    let chunk = 1usize << ((mode >> 1) % 17);
    let max_frame = 64 + usize::from(u16::from_le_bytes([*cap_lo, *cap_hi])) * 16;
    let _ = decode_headers(stream);
    if mode & 1 == 0 {
        parent_reads(stream, max_frame, chunk)
    } else {
        worker_reads(stream, max_frame, chunk)
    }
}

/// Writes `bytes` into one end of a socketpair, `chunk` bytes per write, while a
/// `FrameReader` reads the other end without blocking; each complete frame goes to
/// `on_frame`. A stream that ends inside a frame is an error.
fn through_socket(
    bytes: &[u8],
    max_frame: usize,
    chunk: usize,
    mut on_frame: impl FnMut(&[u8]) -> Result<()>,
) -> Result<usize> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    let mut tx = Some(tx);
    let mut reader = FrameReader::new(max_frame);
    let (mut sent, mut framed, mut frames) = (0usize, 0usize, 0usize);
    loop {
        if let Some(w) = tx.as_mut() {
            let end = bytes.len().min(sent + chunk.max(1));
            match w.write(&bytes[sent..end]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            if sent == bytes.len() {
                tx = None; // EOF for the reader
            }
        }
        let fill = reader.fill(&rx)?;
        while let Some(payload) = reader.next_frame()? {
            framed += 4 + payload.len();
            frames += 1;
            on_frame(payload)?;
        }
        if fill == Fill::Eof {
            if framed != bytes.len() {
                return Err(Error::Protocol(format!(
                    "stream ends inside a frame ({} of {} bytes framed)",
                    framed,
                    bytes.len()
                )));
            }
            return Ok(frames);
        }
    }
}

/// Collects what a job delivers, as `map`'s sink would.
struct Collect(Mutex<Vec<(usize, Result<Output>)>>);

impl Abortable for Collect {
    fn abort(&self, _: Error) {}
    fn is_complete(&self) -> bool {
        false
    }
}

impl Sink<Output> for Collect {
    fn put(&self, start: usize, results: Vec<Result<Output>>) {
        let mut got = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        got.extend((start..).zip(results));
    }
}

/// A job of `count` tasks of [`task`], encoded as the parent encodes one.
fn job(count: u32) -> Result<(ProcJob, Arc<Collect>)> {
    let sink = Arc::new(Collect(Mutex::new(Vec::new())));
    let batch = Batch {
        items: (0..u64::from(count)).map(|i| (i,)).collect(),
        start: 0,
        sink: sink.clone() as Arc<dyn Sink<Output>>,
    };
    let mut jobs = encode(task, batch).into_iter();
    match (jobs.next(), jobs.next()) {
        (Some(job), None) => Ok((job, sink)),
        _ => Err(Error::Protocol(
            "harness job did not encode as one job".into(),
        )),
    }
}

fn encode<F: crate::task::Task<(u64,), Output = Output> + Copy>(
    _: F,
    batch: Batch<(u64,), Output>,
) -> Vec<ProcJob> {
    ProcJob::encode::<F, (u64,)>(batch, crate::config::DEFAULT_MAX_FRAME, &Buffers::default())
}

/// The parent's side of a `Done`: the count check, then the typed result decoder.
fn deliver(expected: u32, count: u32, body: &[u8]) -> Result<Vec<Output>> {
    let (mut job, sink) = job(expected)?;
    job.deliver(count, body)?;
    let mut got = std::mem::take(&mut *sink.0.lock().unwrap_or_else(PoisonError::into_inner));
    got.sort_by_key(|(i, _)| *i);
    if got.len() != expected as usize {
        return Err(Error::Protocol(format!(
            "{} outcomes delivered for {expected} tasks",
            got.len()
        )));
    }
    got.into_iter().map(|(_, r)| r).collect()
}

/// The worker's side of a `Run`: the real entry point decodes `count` arguments from
/// `args` and runs [`task`] on each; its outcomes are then decoded as the parent would.
fn run_batch(args: &[u8], count: u32, max_frame: usize) -> Result<Vec<Output>> {
    // Each `(u64,)` takes at least one byte: more tasks than bytes cannot be a real
    // batch, and would only make the entry point encode `count` failures.
    if count as usize > args.len() {
        return Err(Error::Protocol(format!(
            "Run of {count} tasks with {} bytes of arguments",
            args.len()
        )));
    }
    let entry = resolver()
        .entry(entry_offset(task))
        .ok_or_else(|| Error::Protocol("harness entry point not found".into()))?;
    let mut out = AnswerBuf::new(Vec::new(), None);
    entry(args, count, &mut out, clock());
    let out = match out.finish().0 {
        Place::Heap(v) => v,
        Place::Window { .. } => {
            return Err(Error::Protocol(
                "outcomes moved to a lane that was never offered".into(),
            ));
        }
    };
    if out.len() > max_frame {
        return Err(Error::Protocol(format!(
            "outcomes of {} bytes exceed the {max_frame}-byte frame cap",
            out.len()
        )));
    }
    let mut body = out.as_slice();
    let mut results = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let item = next_item(&mut body)
            .ok_or_else(|| Error::Protocol("the entry point wrote too few outcomes".into()))?;
        results.push(crate::boundary::item::decode_outcome::<Output>(Some(item))?);
    }
    Ok(results)
}

/// The offset that names the batch entry point of `F` (a zero-sized fn item).
fn entry_offset<F: crate::task::Task<(u64,), Output = Output> + Copy>(_: F) -> i64 {
    offset_of_entry::<F, (u64,)>()
}

fn resolver() -> &'static Resolver {
    static R: OnceLock<Resolver> = OnceLock::new();
    R.get_or_init(Resolver::new)
}

fn clock() -> &'static TaskClock {
    static C: OnceLock<TaskClock> = OnceLock::new();
    C.get_or_init(TaskClock::default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::failure::TaskFailure;
    use crate::boundary::item::push_item;
    use crate::process::ipc::frames::encode_frame;
    use proptest::prelude::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    // --- Measuring memory: a counting allocator that only counts on threads that
    // asked it to, so the other unit tests running in parallel are not measured. ---

    struct Counting;

    thread_local! {
        /// (measuring, live bytes, peak live bytes) of this thread's allocations.
        static METER: Cell<(bool, isize, isize)> = const { Cell::new((false, 0, 0)) };
    }

    fn note(delta: isize) {
        let _ = METER.try_with(|m| {
            let (on, live, peak) = m.get();
            if on {
                let live = live + delta;
                m.set((on, live, peak.max(live)));
            }
        });
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; the
    // bookkeeping only touches a thread-local `Cell` and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            note(-(layout.size() as isize));
            // SAFETY: forwarded with the caller's pointer and layout.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // The old and new blocks may both be live for a moment.
            note(new_size as isize);
            note(-(layout.size() as isize));
            // SAFETY: forwarded with the caller's pointer, layout and size.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Runs `f` and returns its value with the peak bytes it had allocated at once.
    fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        METER.with(|m| m.set((true, 0, 0)));
        let out = f();
        let (_, _, peak) = METER.with(|m| m.replace((false, 0, 0)));
        (out, peak.max(0) as usize)
    }

    /// What reading `fed` bytes may cost at most with a frame cap of `max_frame`: the
    /// buffered frame (capped), the bytes actually received, a 64 KiB read-ahead,
    /// twice over for `Vec` doubling, plus the harness's small fixed costs.
    fn memory_bound(max_frame: usize, fed: usize) -> usize {
        3 * (max_frame + 4 + fed + (64 << 10)) + (256 << 10)
    }

    // --- Building valid streams ---

    fn frame(out: &mut Vec<u8>, header: &impl serde::Serialize, body: &[u8]) {
        encode_frame(out, header, usize::MAX, |b| b.extend_from_slice(body)).expect("frame");
    }

    type Answer = std::result::Result<Output, TaskFailure>;

    fn results_body(results: &[Answer]) -> Vec<u8> {
        let mut body = Vec::new();
        for r in results {
            push_item(&mut body, r).expect("encode");
        }
        body
    }

    /// A valid parent-bound stream: `Done` frames for jobs 0.. with the right counts.
    fn parent_stream(answers: &[Vec<Answer>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (job, results) in answers.iter().enumerate() {
            let count = results.len() as u32;
            frame(
                &mut out,
                &FromWorker::Done {
                    job: job as u64,
                    count,
                },
                &results_body(results),
            );
        }
        out
    }

    fn entry_offset() -> i64 {
        super::entry_offset(task)
    }

    /// A valid worker-bound stream: `Setup`, one `Run` per argument list, `Shutdown`.
    fn worker_stream(batches: &[Vec<u64>]) -> Vec<u8> {
        let mut out = Vec::new();
        frame(
            &mut out,
            &ToWorker::Setup {
                initializer: None,
                keep_freed_memory: true,
                max_log_level: 0,
            },
            &[],
        );
        for (job, args) in batches.iter().enumerate() {
            let mut body = Vec::new();
            for a in args {
                push_item(&mut body, &(*a,)).expect("encode");
            }
            let run = ToWorker::Run {
                job: job as u64,
                entry: entry_offset(),
                count: args.len() as u32,
            };
            frame(&mut out, &run, &body);
        }
        frame(&mut out, &ToWorker::Shutdown, &[]);
        out
    }

    fn answer() -> impl Strategy<Value = Answer> {
        prop_oneof![
            (any::<u64>(), ".{0,20}").prop_map(|(x, s)| Ok((x, s))),
            (".{0,10}", proptest::option::of(".{0,10}"))
                .prop_map(|(message, location)| Err(TaskFailure::Panicked { message, location })),
        ]
    }

    /// Answers for jobs 0.. with the counts `parent_reads` expects.
    fn answers() -> impl Strategy<Value = Vec<Vec<Answer>>> {
        (0usize..6).prop_flat_map(|jobs| {
            (0..jobs)
                .map(|j| proptest::collection::vec(answer(), expected_count(j as u64) as usize))
                .collect::<Vec<_>>()
        })
    }

    fn chunk() -> impl Strategy<Value = usize> {
        prop_oneof![Just(1usize), 1usize..64, Just(4096), Just(1 << 20)]
    }

    proptest! {
        // No regression files: they would land in the source tree; a failure prints
        // its minimal input instead.
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            .. ProptestConfig::default()
        })]

        #[test]
        fn valid_parent_streams_decode(answers in answers(), chunk in chunk()) {
            let stream = parent_stream(&answers);
            let got = parent_reads(&stream, 1 << 20, chunk);
            let all_ok = answers.iter().flatten().all(|a| a.is_ok());
            if all_ok {
                let want: Vec<Output> = answers.into_iter().flatten().map(|a| a.unwrap()).collect();
                let got = got.unwrap();
                prop_assert_eq!(got.results, want);
            } else {
                // A task that failed in the worker is that task's Err.
                prop_assert!(matches!(got, Err(Error::Panicked { .. })), "{got:?}");
            }
        }

        #[test]
        fn valid_worker_streams_decode(
            batches in proptest::collection::vec(proptest::collection::vec(any::<u64>(), 0..6), 0..5),
            chunk in chunk(),
        ) {
            let stream = worker_stream(&batches);
            let got = worker_reads(&stream, 1 << 20, chunk).unwrap();
            let want: Vec<Output> = batches.iter().flatten().map(|&x| task(x)).collect();
            prop_assert_eq!(got.frames, batches.len() + 2);
            prop_assert_eq!(got.results, want);
        }

        #[test]
        fn truncated_streams_are_errors(answers in answers(), cut in any::<prop::sample::Index>(), chunk in chunk()) {
            let stream = parent_stream(&answers);
            prop_assume!(!stream.is_empty());
            let at = cut.index(stream.len());
            let boundaries = frame_boundaries(&stream);
            prop_assume!(!boundaries.contains(&at));
            let got = parent_reads(&stream[..at], 1 << 20, chunk);
            if answers.iter().flatten().all(|a| a.is_ok()) {
                prop_assert!(matches!(got, Err(Error::Protocol(_))), "{got:?}");
            } else {
                // A failed task before the cut is reported first.
                prop_assert!(got.is_err(), "{got:?}");
            }
        }

        #[test]
        fn truncated_worker_streams_are_errors(
            batches in proptest::collection::vec(proptest::collection::vec(any::<u64>(), 0..6), 0..5),
            cut in any::<prop::sample::Index>(),
        ) {
            let stream = worker_stream(&batches);
            let at = cut.index(stream.len());
            prop_assume!(!frame_boundaries(&stream).contains(&at));
            prop_assert!(worker_reads(&stream[..at], 1 << 20, 7).is_err());
        }

        #[test]
        fn garbage_is_an_error_or_harmless_never_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            max_frame in 64usize..(1 << 16),
            chunk in chunk(),
        ) {
            let fed = bytes.len();
            let ((a, b), peak) = peak_of(|| {
                let _ = decode_headers(&bytes);
                (parent_reads(&bytes, max_frame, chunk), worker_reads(&bytes, max_frame, chunk))
            });
            prop_assert!(peak <= memory_bound(max_frame, fed), "peak {peak} for {fed} bytes, cap {max_frame}");
            // Whatever decoded, decoded consistently: no frame claims more bytes than came.
            if let Ok(d) = a { prop_assert!(d.frames * 4 <= fed); }
            if let Ok(d) = b { prop_assert!(d.frames * 4 <= fed); }
        }

        #[test]
        fn garbage_after_valid_frames_is_an_error(
            answers in answers(),
            garbage in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let mut stream = parent_stream(&answers);
            stream.extend_from_slice(&garbage);
            prop_assert!(parent_reads(&stream, 1 << 20, 13).is_err());
        }

        #[test]
        fn flipped_bytes_never_panic(
            answers in answers(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            chunk in chunk(),
        ) {
            let mut stream = parent_stream(&answers);
            prop_assume!(!stream.is_empty());
            for (at, x) in flips {
                let i = at.index(stream.len());
                stream[i] ^= x | 1;
            }
            let fed = stream.len();
            let (_, peak) = peak_of(|| parent_reads(&stream, 1 << 16, chunk));
            prop_assert!(peak <= memory_bound(1 << 16, fed));
        }

        #[test]
        fn oversized_frames_are_errors_before_allocation(
            max_frame in 64usize..(1 << 20),
            excess in 1u64..u64::from(u32::MAX),
            tail in proptest::collection::vec(any::<u8>(), 0..256),
            parent in any::<bool>(),
        ) {
            let len = (max_frame as u64 + excess).min(u64::from(u32::MAX)) as u32;
            prop_assume!(len as usize > max_frame);
            let mut stream = len.to_le_bytes().to_vec();
            stream.extend_from_slice(&tail);
            let (got, peak) = peak_of(|| if parent {
                parent_reads(&stream, max_frame, 1 << 16)
            } else {
                worker_reads(&stream, max_frame, 1 << 16)
            });
            prop_assert!(matches!(&got, Err(Error::Protocol(m)) if m.contains("exceeds")), "{got:?}");
            prop_assert!(peak <= memory_bound(max_frame, stream.len()), "peak {peak}");
        }

        #[test]
        fn a_lying_length_under_the_cap_costs_at_most_the_cap(
            max_frame in 64usize..(4 << 20),
            claim in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            // The length is within the cap but the bytes never come: truncated.
            let len = claim.index(max_frame + 1).max(tail.len() + 1) as u32;
            prop_assume!(len as usize <= max_frame);
            let mut stream = len.to_le_bytes().to_vec();
            stream.extend_from_slice(&tail);
            let (got, peak) = peak_of(|| parent_reads(&stream, max_frame, 1 << 16));
            prop_assert!(matches!(got, Err(Error::Protocol(_))), "{got:?}");
            prop_assert!(peak <= memory_bound(max_frame, stream.len()), "peak {peak} for a claim of {len}");
        }

        #[test]
        fn fuzz_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = frame_decoder(&data);
        }
    }

    /// Offsets at which a valid stream can be cut between two frames.
    fn frame_boundaries(stream: &[u8]) -> Vec<usize> {
        let mut at = 0;
        let mut cuts = vec![0];
        while at + 4 <= stream.len() {
            let len = u32::from_le_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
            at += 4 + len;
            cuts.push(at);
        }
        cuts
    }

    // --- Valid frames of the wrong type for where they arrive ---

    #[test]
    fn hello_after_the_handshake_is_an_error() {
        let mut s = Vec::new();
        let hello = FromWorker::Hello {
            protocol: crate::process::ipc::messages::PROTOCOL_VERSION,
            pid: 1,
            exe: crate::process::ipc::messages::ExeId::current().unwrap(),
            lanes: true,
            arena: true,
        };
        frame(&mut s, &hello, &[]);
        assert!(matches!(
            parent_reads(&s, 1 << 20, 4096),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn worker_bound_frames_sent_to_the_parent_are_errors() {
        for msg in [
            ToWorker::Setup {
                initializer: None,
                keep_freed_memory: false,
                max_log_level: 0,
            },
            ToWorker::Setup {
                initializer: Some(12),
                keep_freed_memory: true,
                max_log_level: 3,
            },
            ToWorker::Shutdown,
        ] {
            let mut s = Vec::new();
            frame(&mut s, &msg, &[]);
            let got = parent_reads(&s, 1 << 20, 4096);
            assert!(got.is_err(), "{msg:?} decoded as {got:?}");
        }
    }

    #[test]
    fn parent_bound_frames_sent_to_the_worker_are_errors() {
        let mut s = Vec::new();
        frame(&mut s, &FromWorker::Done { job: 0, count: 1 }, &[]);
        assert!(worker_reads(&s, 1 << 20, 4096).is_err());
    }

    #[test]
    fn done_for_the_wrong_job_or_count_is_an_error() {
        let body = results_body(&[Ok((1, "1".into())), Ok((2, "2".into()))]);
        let mut wrong_job = Vec::new();
        frame(
            &mut wrong_job,
            &FromWorker::Done { job: 5, count: 1 },
            &body,
        );
        assert!(matches!(
            parent_reads(&wrong_job, 1 << 20, 64),
            Err(Error::Protocol(_))
        ));
        let mut wrong_count = Vec::new();
        frame(
            &mut wrong_count,
            &FromWorker::Done { job: 0, count: 2 },
            &body,
        );
        assert!(matches!(
            parent_reads(&wrong_count, 1 << 20, 64),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn results_of_the_wrong_type_are_serialization_errors() {
        // A job of one task expecting (u64, String) gets other valid postcard values.
        // (postcard carries no types: a value of another type whose bytes happen to
        // be a valid (u64, String) decodes as one; these do not.)
        let cases: Vec<Vec<u8>> = vec![
            results_body_of(&Ok::<String, TaskFailure>("a string, not a pair".into())),
            results_body_of(&Ok::<bool, TaskFailure>(true)),
            results_body_of(&Ok::<(u64, Vec<u8>), TaskFailure>((
                1,
                vec![0xff, 0xfe, 0xfd],
            ))),
        ];
        for body in cases {
            let mut s = Vec::new();
            frame(&mut s, &FromWorker::Done { job: 0, count: 1 }, &body);
            let got = parent_reads(&s, 1 << 20, 64);
            assert!(
                matches!(
                    got,
                    Err(Error::Serialization {
                        what: crate::Payload::Result,
                        ..
                    })
                ),
                "{body:?}: {got:?}"
            );
        }
    }

    #[test]
    fn answers_missing_outcomes_are_errors() {
        // No item at all, a cut length prefix, an item longer than the body.
        for body in [vec![], vec![7], vec![200, 0, 0, 0, 1, 2]] {
            let mut s = Vec::new();
            frame(&mut s, &FromWorker::Done { job: 0, count: 1 }, &body);
            let got = parent_reads(&s, 1 << 20, 64);
            assert!(
                matches!(got, Err(Error::Protocol(_) | Error::Serialization { .. })),
                "{body:?}: {got:?}"
            );
        }
    }

    #[test]
    fn arguments_of_the_wrong_type_are_serialization_errors() {
        let mut body = Vec::new();
        // One well-framed item whose bytes are no `(u64,)`: a varint longer than any u64.
        push_item(&mut body, &[0xffu8; 11]).unwrap();
        // And one whose length prefix points past the end of the batch.
        body.extend_from_slice(&[100, 0, 0, 0, 1]);
        let mut s = Vec::new();
        let run = ToWorker::Run {
            job: 0,
            entry: entry_offset(),
            count: 2,
        };
        frame(&mut s, &run, &body);
        let got = worker_reads(&s, 1 << 20, 64);
        assert!(
            matches!(
                got,
                Err(Error::Serialization {
                    what: crate::Payload::Arguments,
                    ..
                })
            ),
            "{got:?}"
        );
    }

    #[test]
    fn run_with_an_entry_outside_the_executable_is_an_error() {
        let mut s = Vec::new();
        let run = ToWorker::Run {
            job: 0,
            entry: i64::MAX / 2,
            count: 0,
        };
        frame(&mut s, &run, &[]);
        assert!(matches!(
            worker_reads(&s, 1 << 20, 64),
            Err(Error::Protocol(_))
        ));
    }

    fn results_body_of<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut b = Vec::new();
        push_item(&mut b, v).unwrap();
        b
    }

    #[test]
    fn a_four_gib_claim_with_the_default_cap_is_refused() {
        // The default cap is 1 GiB: a u32::MAX length is over it. `fill` reserves its
        // 64 MiB read-ahead limit before `next_frame` refuses the length: bounded (and
        // never touched, so it costs address space, not memory), if not free.
        let stream = u32::MAX.to_le_bytes();
        let (got, peak) = peak_of(|| parent_reads(&stream, crate::config::DEFAULT_MAX_FRAME, 4));
        assert!(matches!(got, Err(Error::Protocol(_))));
        assert!(peak <= (64 << 20) + (1 << 20), "peak {peak}");
    }

    /// A peer streaming faster than we read: one `fill` call must stop once the
    /// buffered frame is known to be over the cap (or complete), not read on for as
    /// long as the peer keeps writing.
    #[test]
    fn one_fill_reads_no_further_than_the_cap_allows() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        let max_frame = 64 << 10;
        let writer = std::thread::spawn(move || {
            // An oversized frame, then 32 MiB of its "body", as fast as the socket takes it.
            let _ = tx.write_all(&u32::MAX.to_le_bytes());
            let chunk = vec![7u8; 1 << 16];
            for _ in 0..512 {
                if tx.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let mut reader = FrameReader::new(max_frame);
        let mut most = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        while std::time::Instant::now() < deadline {
            if let Ok(Fill::Read(n)) = reader.fill(&rx) {
                most = most.max(n);
            }
            if reader.next_frame().is_err() {
                break;
            }
        }
        drop(reader);
        drop(rx); // the writer gets EPIPE and stops
        let _ = writer.join();
        assert!(
            most <= max_frame + (256 << 10),
            "one fill call read {most} bytes with a {max_frame}-byte cap"
        );
    }
}
