//! Reading one worker's answers: done by its supervisor, or by a thread waiting for
//! a result of the pool (`help.rs`), whichever gets there first — so a round trip
//! involves two parties, not three. Whoever reads delivers the outcomes and refills
//! the worker's pipeline; a death or a broken worker is left to the supervisor.

use super::Shared;
use super::slot::{Caller, Flush, Slot};
use crate::error::{Error, Result};
use crate::process::ipc::frames::{Fill, FrameReader, decode_header};
use crate::process::ipc::lanes::{Answer, Lanes};
use crate::process::ipc::messages::FromWorker;
use crate::process::ipc::progress::Progress;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

/// The incoming side of one worker.
pub(super) struct Reading {
    pub(super) sock: Arc<UnixStream>,
    pub(super) reader: FrameReader,
    pub(super) lanes: Option<Arc<Lanes>>,
    pub(super) progress: Arc<Progress>,
    /// The socket has reached its end: only the supervisor acts on that.
    pub(super) eof: bool,
}

/// What reading a worker's socket found.
pub(super) enum Heard {
    /// This many bytes (0: nothing yet); every whole answer among them is handled.
    Bytes(usize),
    /// The worker closed its end: it exited or died.
    Eof,
    /// The worker broke the protocol (or the socket failed); the job at the head of
    /// its pipeline has been failed with this.
    Broken(Error),
}

impl Slot {
    /// A helper's turn at the supervisor's job: if an answer is due and nobody else
    /// is reading, reads and delivers it. True if anything arrived.
    pub(crate) fn help(&self, shared: &Shared) -> bool {
        super::slot::lock_order::may_take_reading();
        let mut guard = match self.reading.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let Some(r) = guard.as_mut().filter(|r| !r.eof) else {
            return false;
        };
        // Due when the worker has finished every task of the oldest job in flight:
        // it counts each task finished just before it answers.
        let due = self
            .lock()
            .inflight
            .front()
            .map(|f| f.first_task + u64::from(f.job.count));
        if due.is_none_or(|due| r.progress.counts().1 < due) {
            return false;
        }
        match self.read_answers(shared, r, Caller::Other) {
            Heard::Bytes(n) => n > 0,
            // Deaths and broken workers are the supervisor's to handle.
            Heard::Eof => {
                drop(guard);
                self.wake();
                false
            }
            Heard::Broken(e) => {
                drop(guard);
                self.lock().broken = Some(e);
                self.kill();
                false
            }
        }
    }

    /// Reads what the worker has sent and handles every whole answer in it.
    fn read_answers(&self, shared: &Shared, r: &mut Reading, caller: Caller) -> Heard {
        let n = match r.reader.fill(&*r.sock) {
            Ok(Fill::Read(n)) => n,
            Ok(Fill::Eof) => {
                r.eof = true;
                return Heard::Eof;
            }
            Err(e) => {
                r.eof = true;
                return Heard::Broken(e.into());
            }
        };
        match self.handle_frames(shared, r, caller) {
            Ok(()) => Heard::Bytes(n),
            Err(e) => {
                r.eof = true;
                // The answer at the head of the pipeline is the bad one: its job fails
                // rather than run again on the next worker, forever — once the worker
                // is reaped, as it may still be reading the job's arguments.
                self.lock().blame_head = true;
                Heard::Broken(e)
            }
        }
    }

    /// Reads the current worker's socket, if it still has one.
    pub(super) fn read(&self, shared: &Shared) -> Heard {
        match self.lock_reading().as_mut() {
            Some(r) => self.read_answers(shared, r, Caller::Supervisor),
            None => Heard::Eof,
        }
    }

    /// Handles every complete frame buffered from the worker: answers, and log
    /// records for this process's logger.
    fn handle_frames(&self, shared: &Shared, r: &mut Reading, caller: Caller) -> Result<()> {
        let mut any = false;
        while let Some(payload) = r.reader.next_frame()? {
            let (header, inline): (FromWorker, &[u8]) = decode_header(payload)?;
            if let FromWorker::Log(record) = &header {
                super::logs::emit(self.pid(), record);
                continue;
            }
            // SAFETY: the header just came from this worker, whose lanes these are,
            // and the lane goes back to it only after `deliver`, below.
            let answer = unsafe { Answer::locate(header, inline, r.lanes.as_deref())? };
            let Answer {
                job, count, body, ..
            } = answer;
            let done = {
                let mut st = self.lock();
                match st.inflight.front() {
                    Some(f) if f.id == job => {
                        let (sent, count) = (f.sent, f.job.count);
                        st.observe(sent, count);
                        st.inflight.pop_front()
                    }
                    _ => None,
                }
            };
            let mut done =
                done.ok_or_else(|| Error::Protocol(format!("answer for unknown job {job}")))?;
            // Deliver without the state lock: sinks may run user callbacks.
            let delivered = done.job.deliver(count, body);
            if let Some(lane) = answer.lane {
                self.lock().lanes_used = Some(Instant::now());
                r.progress.release_up_lane(lane);
            }
            if let Err(e) = delivered {
                done.job.fail(&e);
                return Err(e);
            }
            shared.buffers.give(done.job.args);
            any = true;
        }
        if any {
            self.pump(shared, caller, usize::MAX, Flush::Now);
            if self.is_idle() {
                // Idle with nothing queued: take work waiting behind busy workers.
                shared.rebalance();
            }
        }
        Ok(())
    }
}
