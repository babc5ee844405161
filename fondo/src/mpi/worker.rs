//! Ranks 1..N-1: introduce themselves to rank 0, then run batches through the same
//! entry trampoline as worker processes until rank 0 says STOP.

use super::comm::Backoff;
use super::proto::{
    ExeDigest, Hello, PROTOCOL, Setup, TAG_BYE, TAG_DONE, TAG_FORGET, TAG_RUN, TAG_SETUP,
    TAG_SHARE, TAG_STOP, host_name, parse_run, parse_share, start_done,
};
use crate::boundary::clock::TaskClock;
use crate::boundary::entry::{Resolver, initialize};
use crate::boundary::failure::{TaskFailure, WireResult};
use crate::boundary::item::push_item;
use crate::boundary::shares::{self, FrozenBytes, Share};
use crate::boundary::spill::{AnswerBuf, Place};
use crate::error::{Error, Result};
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, Destination, Source};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// An idle worker rank sleeps at most this long between polls: the latency of the
/// first task after a pause, traded against the CPU a waiting rank burns.
const MAX_SLEEP: Duration = Duration::from_micros(500);

/// A batch that ran longer than this is followed by a thorough look for messages.
const LONG_BATCH: Duration = Duration::from_micros(200);

/// Serves rank 0 until STOP; returns the exit code for this process.
pub(crate) fn serve(world: &SimpleCommunicator, exe: Result<ExeDigest>) -> i32 {
    let rank = world.rank();
    let root = world.process_at_rank(0);
    let hello = Hello {
        protocol: PROTOCOL,
        host: host_name(),
        pid: std::process::id(),
        exe: exe.map_err(|e| e.to_string()),
    };
    let hello = match postcard::to_stdvec(&hello) {
        Ok(h) => h,
        Err(e) => fatal(world, &format!("could not encode HELLO: {e}")),
    };
    root.send_with_tag(&hello[..], super::proto::TAG_HELLO);

    let mut backoff = Backoff::new(MAX_SLEEP);
    let setup = loop {
        if let Some(m) = root.immediate_matched_probe_with_tag(TAG_SETUP) {
            let (bytes, _) = m.matched_receive_vec::<u8>();
            match postcard::from_bytes::<Setup>(&bytes) {
                Ok(s) => break s,
                Err(e) => fatal(world, &format!("bad SETUP from rank 0: {e}")),
            }
        }
        backoff.pause(std::thread::sleep);
    };
    if let Err(why) = setup.verdict {
        crate::diag::diag!("fondo: MPI rank {rank}: rank 0 refused this rank: {why}");
        // Exit cleanly: rank 0 reports the refusal as `Err(ExecutableMismatch)`, and a
        // non-zero exit here would make mpirun kill rank 0 before it can.
        return 0;
    }

    let resolver = Resolver::new();
    // A rank cannot be replaced: one whose initializer failed answers every task
    // with that failure instead of running it uninitialised.
    let init_failed = initialize(&resolver, setup.initializer).err();
    if let Some(why) = &init_failed {
        crate::diag::diag!("fondo: MPI rank {rank}: the initializer failed: {why}");
    }
    let clock = Arc::new(TaskClock::default());
    // Tasks are timestamped only when someone enforces a limit (it costs a clock read).
    clock.set_timed(setup.task_timeout_ns.is_some());
    let watchdog = setup
        .task_timeout_ns
        .map(|ns| Watchdog::start(rank, Duration::from_nanos(ns), clock.clone()));

    let mut out = Vec::new();
    // Messages received and not yet handled: RUNs rank 0 has queued ahead.
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut stop = false;
    // After a long batch, look harder: Open MPI may need several progress calls
    // to surface a message that arrived meanwhile (measured: up to ~10 probes).
    let mut thorough = false;
    backoff.reset();
    loop {
        // Take in everything that has arrived, so a STOP behind queued RUNs is
        // seen before they run: after terminate() this rank skips what it holds.
        let mut misses = 0;
        let patience = if thorough { 16 } else { 1 };
        thorough = false;
        while misses < patience {
            let Some(m) = root.immediate_matched_probe() else {
                misses += 1;
                continue;
            };
            let tag = m.1.tag();
            let (msg, _) = m.matched_receive_vec::<u8>();
            match tag {
                TAG_RUN => pending.push_back(msg),
                TAG_STOP => stop = true,
                // Before the RUN that names it: MPI keeps the order of one sender's
                // messages that the same (any-tag) probe matches.
                TAG_SHARE => match parse_share(&msg) {
                    Ok((id, bytes)) => {
                        Share::receive(id, FrozenBytes::from_heap(bytes), None);
                    }
                    Err(e) => fatal(world, &e.to_string()),
                },
                TAG_FORGET => match parse_share(&msg) {
                    Ok((id, _)) => shares::registry().forget(id),
                    Err(e) => fatal(world, &e.to_string()),
                },
                other => fatal(world, &format!("unexpected message with tag {other:#x}")),
            }
        }
        if stop {
            break;
        }
        let Some(msg) = pending.pop_front() else {
            backoff.pause(std::thread::sleep);
            continue;
        };
        backoff.reset();
        let (job, entry, count, args) = match parse_run(&msg) {
            Ok(r) => r,
            Err(e) => fatal(world, &e.to_string()),
        };
        start_done(&mut out, job, count);
        if let Some(message) = &init_failed {
            let failure: WireResult<()> = Err(TaskFailure::InitializerFailed {
                message: message.clone(),
            });
            for _ in 0..count {
                let _ = push_item(&mut out, &failure);
            }
            root.send_with_tag(&out[..], TAG_DONE);
            continue;
        }
        let Some(run) = resolver.entry(entry) else {
            fatal(world, "entry offset outside the executable");
        };
        let started = Instant::now();
        // No shared memory between ranks: the answer stays on the heap.
        let mut answer = AnswerBuf::new(std::mem::take(&mut out), None);
        run(args, count, &mut answer, &clock);
        let (Place::Heap(bytes), _) = answer.finish() else {
            fatal(
                world,
                "an answer left the heap with no shared memory to go to",
            );
        };
        out = bytes;
        thorough = started.elapsed() > LONG_BATCH;
        root.send_with_tag(&out[..], TAG_DONE);
        if out.capacity() > 1 << 20 {
            out = Vec::new();
        }
    }
    if let Some(w) = watchdog {
        w.stop();
    }
    root.send_with_tag(&[0u8; 0][..], TAG_BYE);
    0
}

/// Ends the whole MPI job after a fondo bug or a protocol break: the other ranks
/// cannot go on without this one.
fn fatal(world: &SimpleCommunicator, why: &str) -> ! {
    crate::diag::diag!(
        "fondo: MPI rank {}: {why}; aborting the MPI job",
        world.rank()
    );
    world.abort(70)
}

/// Enforces `task_timeout` on a worker rank. A rank cannot be killed and replaced
/// the way a worker process is, so a task over its limit aborts the job: the run
/// ends with a message instead of hanging forever.
struct Watchdog {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    fn start(rank: i32, limit: Duration, clock: Arc<TaskClock>) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let tick = (limit / 20).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let thread = std::thread::Builder::new()
            .name("fondo-mpi-watchdog".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(tick);
                    if clock.running_for().is_some_and(|t| t > limit) {
                        crate::diag::diag!(
                            "fondo: MPI rank {rank}: a task ran longer than its timeout of {limit:?}; \
                             an MPI rank cannot be replaced, so the job is aborted"
                        );
                        // No MPI call here (only the serving thread may make them):
                        // the launcher sees the rank die and ends the job.
                        std::process::abort();
                    }
                }
            });
        match thread {
            Ok(thread) => Watchdog { done, thread },
            Err(e) => {
                crate::diag::diag!(
                    "fondo: MPI rank {rank}: could not start the timeout watchdog: {e}"
                );
                std::process::abort();
            }
        }
    }

    fn stop(self) {
        self.done.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Why rank 0 refuses a worker rank, if it does.
pub(crate) fn refusal(rank: i32, hello: &Hello, own: &Result<ExeDigest>) -> Option<Error> {
    if hello.protocol != PROTOCOL {
        return Some(Error::Mpi(format!(
            "rank {rank} (pid {} on {}) speaks fondo MPI protocol {}, rank 0 speaks {PROTOCOL}",
            hello.pid, hello.host, hello.protocol
        )));
    }
    match (&hello.exe, own) {
        (Ok(theirs), Ok(ours)) if theirs == ours => None,
        (Ok(theirs), Ok(ours)) => Some(Error::ExecutableMismatch(format!(
            "rank {rank} (pid {} on {}) runs {theirs}, rank 0 runs {ours} on {}: \
             every node must run the same build of the program",
            hello.pid,
            hello.host,
            host_name()
        ))),
        (Err(e), _) => Some(Error::Mpi(format!(
            "rank {rank} (pid {} on {}) could not read its executable: {e}",
            hello.pid, hello.host
        ))),
        (_, Err(e)) => Some(Error::Mpi(format!(
            "rank 0 could not read its executable: {e}"
        ))),
    }
}
