//! A slot's supervisor thread: starts the slot's worker, watches it (answers,
//! deaths — by pidfd as well as EOF —, timeouts at every stage), and when its life
//! ends has `recovery` rule on every task it held, carries the rulings out, and
//! starts a replacement.

use super::reader::{Heard, Reading};
use super::recovery::{Blame, Ending, Flight, Overdue, Ruling, Sent, Verdict, overdue, recover};
use super::slot::{Caller, Flush, LANE_IDLE, Slot, SlotState};
use super::spawn::{WorkerOptions, WorkerProcess, poll_timeout, start_worker, write_all_blocking};
use super::{ProcJob, Shared};
use crate::error::{Error, ExitCause, Result};
use crate::process::ipc::frames::{FrameReader, FrameWriter};
use crate::process::ipc::messages::ToWorker;
use crate::queue::Phase;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Why a worker's life ended.
enum End {
    /// The pool is done with the slot.
    Stop,
    /// Start another worker in this slot.
    Replace,
    /// It died before it was set up: start another, as after a failed start.
    Unready,
}

/// While threads are helping, the supervisor sleeps without watching the socket and
/// looks again this often (a helper that stops with work in flight wakes it at once).
const HELPED_RECHECK: Duration = Duration::from_micros(500);

impl Slot {
    /// The supervisor thread's body: runs workers in this slot until the pool stops.
    pub(crate) fn supervise(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        ready: std::sync::mpsc::Sender<Result<()>>,
    ) {
        let mut ready = Some(ready);
        // Workers in a row that failed to start or died before they were set up.
        let mut failures = 0u32;
        loop {
            let started = start_worker(
                &WorkerOptions::for_pool(&shared.config),
                shared.buffers.arena().map(|a| &**a),
            )
            .and_then(
                |mut w| match self.install(&mut w, shared.config.max_frame) {
                    Ok(()) => Ok(w),
                    Err(e) => {
                        let _ = w.child.kill();
                        reap(&mut w);
                        Err(e)
                    }
                },
            );
            let worker = match started {
                Ok(w) => w,
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e));
                        return;
                    }
                    failures += 1;
                    if failures >= MAX_START_FAILURES || shared.queue.phase().is_stopped() {
                        shared.slot_lost(&e);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50 << failures));
                    continue;
                }
            };
            if let Some(r) = ready.take() {
                let _ = r.send(Ok(()));
            }
            match self.run_worker(shared, worker) {
                End::Stop => return,
                End::Replace => failures = 0,
                End::Unready => {
                    // Dead before it was set up: as good as a failed start.
                    failures += 1;
                    if failures >= MAX_START_FAILURES {
                        shared.slot_lost(&Error::Spawn(format!(
                            "{failures} workers in a row died before they were set up"
                        )));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50 << failures));
                }
            }
            let phase = shared.queue.phase();
            if phase.is_stopped() || (phase == Phase::Closed && shared.queue.is_empty()) {
                return;
            }
        }
    }

    /// Makes `w` the slot's worker, reachable by submitters and helpers.
    fn install(&self, w: &mut WorkerProcess, max_frame: usize) -> Result<()> {
        let sock = w.sock.clone();
        *self.lock_reading() = Some(Reading {
            sock: sock.clone(),
            // Bytes the handshake read past `Hello` stay with the reader.
            reader: std::mem::replace(&mut w.reader, FrameReader::new(max_frame)),
            lanes: w.lanes.clone(),
            progress: w.progress.clone(),
            eof: false,
        });
        *self.lock() = SlotState {
            sock: Some(sock),
            lanes: w.lanes.clone(),
            progress: Some(w.progress.clone()),
            arena: w.arena,
            pid: w.pid,
            ..SlotState::default()
        };
        Ok(())
    }

    /// One worker's life under supervision.
    fn run_worker(&self, shared: &Shared, mut w: WorkerProcess) -> End {
        self.pump(shared, Caller::Supervisor, usize::MAX, Flush::Now);
        let mut spin = crate::spin::Spin::new();
        loop {
            match shared.queue.phase() {
                phase if phase.is_stopped() => return self.bury(shared, &mut w, Why::Stopped),
                Phase::Closed if shared.queue.is_empty() && self.lock().inflight.is_empty() => {
                    return self.shut_down(&mut w);
                }
                _ => {}
            }
            {
                let st = self.lock();
                if st.retiring && st.inflight.is_empty() {
                    drop(st);
                    let _ = self.shut_down(&mut w);
                    return End::Replace;
                }
            }
            if let Some(late) = self.check_timeout(shared, &w) {
                let _ = w.child.kill();
                return self.bury(shared, &mut w, Why::Overdue(late));
            }
            let broken = self.lock().broken.take();
            if let Some(e) = broken {
                // A helper found the worker broken and killed it.
                return self.bury(shared, &mut w, Why::Broke(e));
            }
            match self.read(shared) {
                Heard::Eof => return self.bury(shared, &mut w, Why::Died),
                Heard::Broken(e) => {
                    if !matches!(e, Error::InitializerFailed { .. }) {
                        crate::diag::diag!("fondo: worker {}: {e}; killing it", w.pid);
                    }
                    let _ = w.child.kill();
                    return self.bury(shared, &mut w, Why::Broke(e));
                }
                Heard::Bytes(n) if n > 0 => {
                    spin.reset();
                    continue;
                }
                Heard::Bytes(_) => {}
            }
            let helped = shared.helpers.load(Ordering::Relaxed) > 0;
            if !helped && !self.lock().inflight.is_empty() {
                // A result is probably microseconds away: spin rather than pay a
                // wake-up — on the progress page, not on `read`, so the spin costs no
                // syscalls; the worker counts a task finished just before it answers.
                let (_, seen) = w.progress.counts();
                let mut answered = false;
                while spin.again() {
                    if w.progress.counts().1 != seen {
                        answered = true;
                        break;
                    }
                }
                if answered {
                    continue;
                }
            }
            // Helped, a waiting thread reads the answers: stay out of its way.
            spin.reset();
            if self.wait_for_events(shared, &mut w, helped) == Woke::Exited {
                return self.bury_exited(shared, &mut w);
            }
        }
    }

    /// The worker has exited, though its socket may live on in a process its task
    /// started: takes the answers it sent before it died, then buries it.
    fn bury_exited(&self, shared: &Shared, w: &mut WorkerProcess) -> End {
        loop {
            match self.read(shared) {
                Heard::Bytes(n) if n > 0 => {}
                Heard::Broken(e) => return self.bury(shared, w, Why::Broke(e)),
                Heard::Bytes(_) | Heard::Eof => return self.bury(shared, w, Why::Died),
            }
        }
    }

    /// Blocks in poll on the socket (unless threads are helping), the wake fd and
    /// the worker's pidfd, flushing pending output.
    fn wait_for_events(&self, shared: &Shared, w: &mut WorkerProcess, helped: bool) -> Woke {
        use rustix::event::{PollFd, PollFlags, poll};
        let (want_write, lanes_used) = {
            let mut st = self.lock();
            st.release_idle_lanes();
            let want_write = match st.sock.clone() {
                Some(sock) => !st.writer.flush(&*sock).unwrap_or(true),
                None => false,
            };
            (want_write, st.lanes_used)
        };
        // Re-check a timed worker often: its stages change without telling us.
        let task_check = shared
            .config
            .task_timeout
            .map(|limit| (limit / 4).clamp(Duration::from_millis(1), Duration::from_millis(50)));
        let lanes_due = lanes_used.map(|at| LANE_IDLE.saturating_sub(at.elapsed()));
        // Free arena slots give their memory back the same way.
        let arena_due = shared
            .buffers
            .arena()
            .and_then(|a| a.release_idle(LANE_IDLE));
        let recheck = helped.then_some(HELPED_RECHECK);
        // Without a pidfd, a death shows only as EOF; look for one now and then in
        // case the worker's socket outlives it (a process its task started).
        let exit_check = w.pidfd.is_none().then_some(EXIT_RECHECK);
        let timeout = [task_check, lanes_due, arena_due, recheck, exit_check]
            .into_iter()
            .flatten()
            .min()
            .map(poll_timeout);
        // Helped, the answers are the helpers' to read (a hang-up still wakes us).
        let mut flags = if helped {
            PollFlags::empty()
        } else {
            PollFlags::IN
        };
        if want_write {
            flags |= PollFlags::OUT;
        }
        let mut fds = vec![
            PollFd::new(&*w.sock, flags),
            PollFd::new(&self.wake, PollFlags::IN),
        ];
        if let Some(pidfd) = &w.pidfd {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        let _ = poll(&mut fds, timeout.as_ref());
        let woken = fds[1].revents().contains(PollFlags::IN);
        let pidfd_ready = fds.get(2).map(|pidfd| !pidfd.revents().is_empty());
        drop(fds);
        if woken {
            self.drain_wake();
        }
        let exited = pidfd_ready.unwrap_or_else(|| has_exited(w));
        if exited {
            return Woke::Exited;
        }
        self.pump(shared, Caller::Supervisor, usize::MAX, Flush::Now);
        Woke::Events
    }

    /// The stage of this worker that is over the task timeout, if any.
    fn check_timeout(&self, shared: &Shared, w: &WorkerProcess) -> Option<Overdue> {
        let limit = shared.config.task_timeout?;
        let sent: Vec<Sent> = self
            .lock()
            .inflight
            .iter()
            .map(|f| Sent {
                first_task: f.first_task,
                count: f.job.count,
                at_ns: f.sent_ns,
            })
            .collect();
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        overdue(limit_ns, w.progress.stamps(), &sent)
    }

    /// Asks the worker to exit after its queue and reaps it.
    fn shut_down(&self, w: &mut WorkerProcess) -> End {
        let mut out = FrameWriter::default();
        if out.push(&ToWorker::Shutdown, 64, |_| {}).is_ok() {
            let _ = write_all_blocking(&mut out, &w.sock);
        }
        self.lock().sock = None;
        reap(w);
        End::Stop
    }

    /// After a worker's life ended (`why`): rules on every task it held
    /// (`recovery`), carries the rulings out, and reaps it.
    fn bury(&self, shared: &Shared, w: &mut WorkerProcess, why: Why) -> End {
        // Helpers stop reading this worker (waiting out one that is delivering now).
        *self.lock_reading() = None;
        let (inflight, blame_head) = {
            let mut st = self.lock();
            st.sock = None;
            st.pid = 0;
            (
                std::mem::take(&mut st.inflight),
                std::mem::take(&mut st.blame_head),
            )
        };
        let cause = reap(w);
        let ready = w.progress.is_ready();
        let ending = match &why {
            _ if shared.queue.phase().is_stopped() => Ending::Stopped,
            Why::Stopped => Ending::Stopped,
            Why::Overdue(late) => Ending::Overdue(*late),
            Why::Broke(Error::InitializerFailed { .. }) => Ending::Stopped,
            Why::Broke(_) if blame_head => Ending::BadAnswer,
            Why::Broke(_) | Why::Died => Ending::Died,
        };
        if let Some(broken) = broken_by(shared, &why, ready, cause) {
            shared.break_pool(broken);
        }
        let flights: Vec<Flight> = inflight
            .iter()
            .map(|f| Flight {
                first_task: f.first_task,
                count: f.job.count,
                attempts: f.job.attempts,
                free_reruns: f.job.free_reruns,
            })
            .collect();
        let rulings = recover(ending, w.progress.counts(), &flights, shared.config.retries);
        let error_for = |blame: Blame| match (blame, &why) {
            (Blame::Died, _) => Error::WorkerDied { pid: w.pid, cause },
            (Blame::Timeout, _) => Error::Timeout {
                limit: shared.config.task_timeout.unwrap_or_default(),
            },
            (Blame::BadAnswer, Why::Broke(e)) => e.clone(),
            (Blame::BadAnswer, _) => Error::Protocol("the worker broke the protocol".into()),
            (Blame::Stopped, _) => shared.queue.stop_error(),
        };
        let mut requeue = Vec::new();
        for (index, flight) in inflight.into_iter().enumerate() {
            let mine: Vec<&Ruling> = rulings.iter().filter(|r| r.job == index).collect();
            let base = flight.job.start;
            let cuts: Vec<u32> = mine.iter().skip(1).map(|r| r.tasks.start).collect();
            for piece in flight.job.cut(&cuts) {
                let offset = (piece.start - base) as u32;
                let verdict = mine
                    .iter()
                    .find(|r| r.tasks.contains(&offset))
                    .map_or(Verdict::Requeue, |r| r.verdict);
                carry_out(verdict, piece, &mut requeue, &error_for);
            }
        }
        shared.requeue(requeue);
        if shared.queue.phase().is_stopped() {
            End::Stop
        } else if ready {
            End::Replace
        } else {
            End::Unready
        }
    }
}

/// Why a worker's life is being ended.
#[derive(Debug)]
enum Why {
    /// It exited, or closed its socket, on its own.
    Died,
    /// It overran the task timeout at this stage; the parent killed it.
    Overdue(Overdue),
    /// It broke the protocol (or said its initializer failed); it was killed.
    Broke(Error),
    /// The pool was terminated or broke.
    Stopped,
}

/// How a `wait_for_events` ended.
#[derive(Debug, PartialEq, Eq)]
enum Woke {
    /// Something may have changed: look again.
    Events,
    /// The worker process has exited.
    Exited,
}

/// Workers in a row that may fail to start (or die before they are set up)
/// before the slot gives up: a worker that cannot start must not respawn forever.
const MAX_START_FAILURES: u32 = 5;

/// Without a pidfd, how often the supervisor checks whether the worker exited.
const EXIT_RECHECK: Duration = Duration::from_millis(100);

/// Carries out one verdict on one piece of a job.
fn carry_out(
    verdict: Verdict,
    mut piece: ProcJob,
    requeue: &mut Vec<ProcJob>,
    error_for: &impl Fn(Blame) -> Error,
) {
    match verdict {
        Verdict::Requeue => requeue.push(piece),
        Verdict::RequeueNoted => {
            piece.free_reruns += 1;
            requeue.push(piece);
        }
        Verdict::RequeueAlone => {
            let cuts: Vec<u32> = (1..piece.count).collect();
            for mut alone in piece.cut(&cuts) {
                alone.free_reruns += 1;
                requeue.push(alone);
            }
        }
        Verdict::Retry => {
            piece.attempts += 1;
            requeue.push(piece);
        }
        Verdict::Fail(blame) => piece.fail(&error_for(blame)),
    }
}

/// The error that breaks the pool after this worker's end, if it does: its
/// initializer failed (it said so, died in it, or outran the task timeout in it).
fn broken_by(shared: &Shared, why: &Why, ready: bool, cause: ExitCause) -> Option<Error> {
    if let Why::Broke(e @ Error::InitializerFailed { .. }) = why {
        return Some(e.clone());
    }
    if ready || shared.config.initializer.is_none() || shared.queue.phase().is_stopped() {
        return None;
    }
    let message = match why {
        Why::Overdue(_) => format!(
            "it did not return within the task timeout of {:?}",
            shared.config.task_timeout.unwrap_or_default()
        ),
        _ => format!("its worker {cause} while running it"),
    };
    Some(Error::InitializerFailed { message })
}

/// True if the worker has exited (its status is kept for `reap`).
fn has_exited(w: &mut WorkerProcess) -> bool {
    matches!(w.child.try_wait(), Ok(Some(_)))
}

/// Waits for a worker that is exiting; kills it if it lingers.
fn reap(w: &mut WorkerProcess) -> ExitCause {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match w.child.try_wait() {
            Ok(Some(status)) => return super::spawn::exit_cause(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = w.child.kill();
            }
            Err(_) => return ExitCause::Unknown,
        }
    }
}
