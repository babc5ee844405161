//! A worker's `log` records, forwarded to its parent's logger.
//!
//! When the parent has a logger (its `log::max_level()`, sent in `Setup`, is not
//! `Off`), the worker installs [`Forwarder`] as its own — after the initializer,
//! so an initializer that installs a logger keeps it — with the parent's level.
//! Each record the level lets through is formatted here and sent as a
//! `FromWorker::Log` frame; the parent hands it to its logger (`parent/logs.rs`).
//!
//! Who writes the socket: the worker's main thread, except while it runs a job
//! ([`lend`] … [`take_back`]), when it writes nothing and the forwarder writes
//! each record as it comes, from whichever thread the task logs on — so a long
//! task's records arrive while it runs, and all of a job's records before its
//! answer. Out of a job, records wait here for the main thread's next frame. Both
//! queue on one `FrameWriter` at a time, handed over under [`STATE`]'s lock, so
//! frames never interleave. A record never blocks its task: what the socket does
//! not take at once waits for the next record or the job's end; past
//! [`QUEUE_CAP`] bytes waiting, records are dropped and counted, and a warning
//! says how many once there is room again.

use crate::process::ipc::frames::FrameWriter;
use crate::process::ipc::messages::{FromWorker, LogRecord};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Bytes of records that may wait for the socket before new ones are dropped.
const QUEUE_CAP: usize = 8 << 20;

/// The forwarder is this process's logger (read by the main thread only).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Records on their way to the parent.
static STATE: Mutex<Option<Outbox>> = Mutex::new(None);

/// The logger a worker installs when its parent has one.
struct Forwarder;

static FORWARDER: Forwarder = Forwarder;

struct Outbox {
    /// Frames not yet on the socket, in order.
    out: FrameWriter,
    /// About how many bytes of records wait in `out` (since it was last empty).
    queued: usize,
    /// Records dropped since the last warning about it.
    dropped: u64,
    /// The main thread has lent the socket: write to it as records come.
    lent: bool,
    /// The socket to the parent (open for as long as `serve` runs).
    sock: RawFd,
    max_frame: usize,
    /// This process: a child a task forks without exec inherits the forwarder and
    /// the socket, and must not write to it.
    pid: u32,
}

/// Installs the forwarder with the parent's level (`ToWorker::Setup`'s
/// `max_log_level`), unless that is off or the initializer installed a logger.
/// `sock` must stay open for as long as `serve` runs.
pub(crate) fn install(max_log_level: u8, sock: RawFd, max_frame: usize) {
    let Some(level) = level_filter(max_log_level) else {
        return;
    };
    *lock() = Some(Outbox {
        out: FrameWriter::default(),
        queued: 0,
        dropped: 0,
        lent: false,
        sock,
        max_frame,
        pid: std::process::id(),
    });
    if log::set_logger(&FORWARDER).is_ok() {
        log::set_max_level(level);
        INSTALLED.store(true, Ordering::Relaxed);
    } else {
        // The initializer set a logger of its own: the program chose where
        // its workers' records go.
        *lock() = None;
    }
}

/// The main thread is about to run a job and write nothing until [`take_back`]:
/// what `writer` still holds, and every record from now on, is the forwarder's to
/// write.
pub(crate) fn lend(writer: &mut FrameWriter) {
    if !INSTALLED.load(Ordering::Relaxed) {
        return;
    }
    let mut state = lock();
    let Some(outbox) = state.as_mut() else {
        return;
    };
    // The main thread's frames first, then records that waited.
    writer.append(&mut outbox.out);
    outbox.out.append(writer);
    outbox.queued = 0;
    outbox.lent = true;
}

/// The main thread writes the socket again: whatever waits to be written (the
/// records of the job just run, those logged since the last frame) goes into
/// `writer`, ahead of what the main thread writes next.
pub(crate) fn take_back(writer: &mut FrameWriter) {
    if !INSTALLED.load(Ordering::Relaxed) {
        return;
    }
    let mut state = lock();
    let Some(outbox) = state.as_mut() else {
        return;
    };
    outbox.lent = false;
    writer.append(&mut outbox.out);
    outbox.queued = 0;
}

fn lock() -> MutexGuard<'static, Option<Outbox>> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl log::Log for Forwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Formatted before the lock: a `Display` that logs must not deadlock.
        let record = LogRecord {
            level: record.level() as u8,
            target: record.target().to_owned(),
            message: record.args().to_string(),
            module_path: record.module_path().map(str::to_owned),
            file: record.file().map(str::to_owned),
            line: record.line(),
        };
        let mut state = lock();
        if let Some(outbox) = state.as_mut()
            && outbox.pid == std::process::id()
        {
            outbox.send(record);
        }
    }

    fn flush(&self) {}
}

impl Outbox {
    /// Queues `record`, and writes what the socket takes now if it is lent.
    fn send(&mut self, record: LogRecord) {
        if self.out.is_empty() {
            self.queued = 0;
        }
        if self.queued >= QUEUE_CAP {
            self.dropped += 1;
            return;
        }
        if self.dropped > 0 {
            let warning = LogRecord {
                level: log::Level::Warn as u8,
                target: "fondo".into(),
                message: format!(
                    "{} log records dropped: the parent was not reading them",
                    self.dropped
                ),
                module_path: Some(module_path!().into()),
                file: None,
                line: None,
            };
            if self.queue(warning) {
                self.dropped = 0;
            }
        }
        if !self.queue(record) {
            self.dropped += 1;
        }
        if self.lent {
            // SAFETY: `lent` is true only between `lend` and `take_back`, which the
            // worker's main thread calls around running a job, inside `serve`,
            // which keeps the socket open throughout.
            let sock = unsafe { BorrowedFd::borrow_raw(self.sock) };
            // A failure (the parent gone) leaves the frames queued; the main
            // thread meets the same failure on its next write and deals with it.
            let _ = self.out.flush(sock);
        }
    }

    /// Queues one record's frame; false if it does not fit one.
    fn queue(&mut self, record: LogRecord) -> bool {
        let size = 32 + record.target.len() + record.message.len();
        let queued = self
            .out
            .push(&FromWorker::Log(record), self.max_frame, |_| {})
            .is_ok();
        if queued {
            self.queued += size;
        }
        queued
    }
}

/// `log::LevelFilter` from its number (0 off … 5 trace); `None` for off.
fn level_filter(n: u8) -> Option<log::LevelFilter> {
    match n {
        0 => None,
        1 => Some(log::LevelFilter::Error),
        2 => Some(log::LevelFilter::Warn),
        3 => Some(log::LevelFilter::Info),
        4 => Some(log::LevelFilter::Debug),
        _ => Some(log::LevelFilter::Trace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ipc::frames::{Fill, FrameReader, decode_header};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn record(message: &str) -> LogRecord {
        LogRecord {
            level: log::Level::Info as u8,
            target: "app".into(),
            message: message.into(),
            module_path: None,
            file: None,
            line: Some(1),
        }
    }

    fn outbox(sock: &UnixStream, lent: bool) -> Outbox {
        Outbox {
            out: FrameWriter::default(),
            queued: 0,
            dropped: 0,
            lent,
            sock: sock.as_raw_fd(),
            max_frame: 1 << 20,
            pid: std::process::id(),
        }
    }

    /// The messages of the `Log` frames readable on `sock`, in order.
    fn received(sock: &UnixStream) -> Vec<String> {
        let mut reader = FrameReader::new(1 << 20);
        while let Ok(Fill::Read(n)) = reader.fill(sock) {
            if n == 0 {
                break;
            }
        }
        let mut got = Vec::new();
        while let Ok(Some(payload)) = reader.next_frame() {
            match decode_header::<FromWorker>(payload) {
                Ok((FromWorker::Log(r), _)) => got.push(r.message),
                other => panic!("not a log record: {other:?}"),
            }
        }
        got
    }

    #[test]
    fn a_lent_socket_carries_each_record_as_it_comes() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        theirs.set_nonblocking(true).expect("nonblocking");
        let mut outbox = outbox(&ours, true);
        outbox.send(record("one"));
        outbox.send(record("two"));
        assert!(outbox.out.is_empty());
        assert_eq!(received(&theirs), ["one", "two"]);
    }

    #[test]
    fn records_wait_while_the_socket_is_not_lent() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        theirs.set_nonblocking(true).expect("nonblocking");
        let mut outbox = outbox(&ours, false);
        outbox.send(record("waits"));
        assert!(received(&theirs).is_empty());
        let mut main = FrameWriter::default();
        main.append(&mut outbox.out);
        assert!(main.flush(&ours).expect("flush"));
        assert_eq!(received(&theirs), ["waits"]);
    }

    #[test]
    fn past_the_cap_records_are_dropped_then_counted() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        theirs.set_nonblocking(true).expect("nonblocking");
        let mut outbox = outbox(&ours, false);
        outbox.send(record("kept"));
        outbox.queued = QUEUE_CAP;
        outbox.send(record("dropped"));
        outbox.send(record("dropped too"));
        assert_eq!(outbox.dropped, 2);
        // The socket takes it all: the warning goes first, then the record.
        outbox.lent = true;
        outbox.queued = 0;
        outbox.send(record("after"));
        let got = received(&theirs);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "kept");
        assert!(got[1].starts_with("2 log records dropped"), "{got:?}");
        assert_eq!(got[2], "after");
    }

    #[test]
    fn levels_by_number() {
        assert_eq!(level_filter(0), None);
        assert_eq!(
            level_filter(log::LevelFilter::Info as u8),
            Some(log::LevelFilter::Info)
        );
        assert_eq!(
            level_filter(log::LevelFilter::Trace as u8),
            Some(log::LevelFilter::Trace)
        );
        assert_eq!(level_filter(200), Some(log::LevelFilter::Trace));
    }
}
