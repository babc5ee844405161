//! `Lanes`: shared memory beside a worker's socket, where big frame bodies travel
//! with one copy instead of through the kernel's socket buffers.
//!
//! A worker has two lanes each way, each `max_frame` bytes of one sparse memfd
//! mapped by both processes: memory is used only as far as bodies reach, and stays
//! warm for the next body (a fresh page costs more than copying into it). Who may
//! touch a lane is settled by messages, never by racing:
//! - a *down* lane is written by the parent before it sends `RunInLane`, read by the
//!   worker while it runs that job, and free again once the job's answer arrives;
//! - an *up* lane is written by the worker before it sends `DoneInLane`, read by the
//!   parent while it decodes that answer, and handed back through the progress page.

use super::messages::{FromWorker, body_len};
use super::shm::Region;
use crate::error::{Error, Result};
use std::os::fd::{BorrowedFd, OwnedFd};

/// Lanes each way: two, so one body can be written while the other is read.
pub(crate) const LANES: usize = 2;

/// Which way a lane carries bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// Parent to worker: arguments.
    Down,
    /// Worker to parent: outcomes.
    Up,
}

/// One process's mapping of a worker's lanes.
#[derive(Debug)]
pub(crate) struct Lanes {
    region: Region,
    /// Bytes per lane.
    lane_len: usize,
}

impl Lanes {
    /// Fresh lanes of `lane_len` bytes each (parent side), in a memfd the worker inherits.
    pub(crate) fn create(lane_len: usize) -> Result<Lanes> {
        let region = Region::create("fondo-lanes", Self::total(lane_len)?)?;
        Ok(Lanes { region, lane_len })
    }

    /// Maps the lanes the parent created (worker side).
    pub(crate) fn open(fd: OwnedFd, lane_len: usize) -> Result<Lanes> {
        let region = Region::open(fd, Self::total(lane_len)?)?;
        Ok(Lanes { region, lane_len })
    }

    fn total(lane_len: usize) -> Result<usize> {
        lane_len
            .checked_mul(2 * LANES)
            .ok_or_else(|| Error::Config(format!("lanes of {lane_len} bytes do not fit memory")))
    }

    /// The memfd, to hand to the worker.
    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.region.fd()
    }

    /// Closes the memfd once the worker has its own copy (see `Region::close_fd`).
    pub(crate) fn close_fd(&mut self) {
        self.region.close_fd();
    }

    /// Where lane `lane` starts, checking that `len` bytes fit it.
    fn start(&self, way: Way, lane: usize, len: usize) -> Result<usize> {
        if lane >= LANES {
            return Err(Error::Protocol(format!("no lane {lane}")));
        }
        if len > self.lane_len {
            return Err(Error::Protocol(format!(
                "a body of {len} bytes exceeds the {}-byte lane",
                self.lane_len
            )));
        }
        let index = match way {
            Way::Down => lane,
            Way::Up => LANES + lane,
        };
        Ok(index * self.lane_len)
    }

    /// Copies `bytes` to the start of a lane.
    ///
    /// # Safety
    /// The caller must own the lane under the module's protocol: no other process
    /// or thread reads or writes it until the caller hands it over.
    pub(crate) unsafe fn write(&self, way: Way, lane: usize, bytes: &[u8]) -> Result<()> {
        let at = self.start(way, lane, bytes.len())?;
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.region.write(at, bytes) }
    }

    /// The first `len` bytes of a lane.
    ///
    /// # Safety
    /// The caller must own the lane under the module's protocol for as long as the
    /// slice lives: its writer has handed it over and will not touch it again until
    /// the caller hands it back.
    pub(crate) unsafe fn read(&self, way: Way, lane: usize, len: usize) -> Result<&[u8]> {
        let at = self.start(way, lane, len)?;
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.region.read(at, len) }
    }

    /// Up lane `lane`, whole, for the worker to encode an answer straight into.
    ///
    /// # Safety
    /// Worker side, with the lane free: the parent has handed it back after every
    /// body sent through it, so it reads it no more until the next `DoneInLane`;
    /// and the caller holds no other slice of it.
    // A window into shared memory: exclusive by the lane protocol, not by borrow.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn up_window(&self, lane: usize) -> Result<&mut [u8]> {
        let at = self.start(Way::Up, lane, 0)?;
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.region.write_window(at, self.lane_len) }
    }

    /// Gives the lanes' memory back to the system; the next body faults it in again.
    /// Only while no lane is in use.
    pub(crate) fn release_memory(&self) {
        self.region.release(0, self.lane_len * 2 * LANES);
    }
}

/// A worker's answer, its body found wherever it travelled.
pub(crate) struct Answer<'a> {
    /// The job answered.
    pub(crate) job: u64,
    /// Outcomes in the body.
    pub(crate) count: u32,
    /// The encoded outcomes.
    pub(crate) body: &'a [u8],
    /// The up lane holding the body, to hand back once the body is decoded.
    pub(crate) lane: Option<usize>,
}

impl<'a> Answer<'a> {
    /// Finds the body `header` announces: `inline` after it, or in an up lane.
    ///
    /// # Safety
    /// Parent side only, with `header` just received from the worker `lanes` belong
    /// to, and the lane (if any) not handed back while the answer lives: the worker
    /// wrote it before sending the header and leaves it alone until then.
    pub(crate) unsafe fn locate(
        header: FromWorker,
        inline: &'a [u8],
        lanes: Option<&'a Lanes>,
    ) -> Result<Answer<'a>> {
        match header {
            FromWorker::Done { job, count } => Ok(Answer {
                job,
                count,
                body: inline,
                lane: None,
            }),
            FromWorker::DoneInLane {
                job,
                count,
                lane,
                len,
            } => {
                let lanes =
                    lanes.ok_or_else(|| Error::Protocol("an answer in lanes it lacks".into()))?;
                let lane = usize::from(lane);
                let len = body_len(len)?;
                // SAFETY: forwarded from the caller's contract.
                let body = unsafe { lanes.read(Way::Up, lane, len)? };
                Ok(Answer {
                    job,
                    count,
                    body,
                    lane: Some(lane),
                })
            }
            FromWorker::InitFailed { message } => Err(Error::InitializerFailed { message }),
            FromWorker::Hello { .. } => Err(Error::Protocol(
                "unexpected Hello from a running worker".into(),
            )),
            // Readers hand log records to the logger before looking for answers.
            FromWorker::Log(_) => Err(Error::Protocol("a log record is not an answer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::item::Out;
    use crate::boundary::spill::{AnswerBuf, FreeWindow, Place, SPILL_MIN as LANE_MIN};

    #[test]
    fn the_four_lanes_are_apart_and_seen_by_both_mappings() {
        let parent = Lanes::create(1 << 16).expect("create");
        let fd = parent
            .fd()
            .expect("open")
            .try_clone_to_owned()
            .expect("dup");
        let worker = Lanes::open(fd, 1 << 16).expect("open");
        let ways = [Way::Down, Way::Up];
        // SAFETY: single-threaded test: nobody else touches the lanes.
        unsafe {
            for (w, way) in ways.iter().enumerate() {
                for lane in 0..LANES {
                    let tag = (w * LANES + lane) as u8 + 1;
                    parent.write(*way, lane, &[tag; 1 << 16]).expect("write");
                }
            }
            for (w, way) in ways.iter().enumerate() {
                for lane in 0..LANES {
                    let tag = (w * LANES + lane) as u8 + 1;
                    let seen = worker.read(*way, lane, 1 << 16).expect("read");
                    assert!(seen.iter().all(|&b| b == tag), "lane {lane} of {way:?}");
                }
            }
        }
    }

    #[test]
    fn out_of_range_lanes_and_lengths_are_errors() {
        let lanes = Lanes::create(4096).expect("create");
        // SAFETY: single-threaded test.
        unsafe {
            assert!(lanes.write(Way::Up, LANES, b"x").is_err());
            assert!(lanes.write(Way::Down, 0, &[0; 4097]).is_err());
            assert!(lanes.read(Way::Up, 0, 4097).is_err());
            assert!(lanes.read(Way::Down, 7, 1).is_err());
            assert!(lanes.up_window(LANES).is_err());
        }
        let fd = lanes.fd().expect("open").try_clone_to_owned().expect("dup");
        assert!(Lanes::open(fd, 8192).is_err(), "size mismatch refused");
    }

    #[test]
    fn an_answer_encoded_into_an_up_lane_is_found_by_the_parent() {
        let parent = Lanes::create(4 * LANE_MIN).expect("create");
        let fd = parent
            .fd()
            .expect("open")
            .try_clone_to_owned()
            .expect("dup");
        let worker = Lanes::open(fd, 4 * LANE_MIN).expect("open");
        // SAFETY: single-threaded test: the lane is free.
        let window = unsafe { worker.up_window(1) }.expect("lane");
        let mut out = AnswerBuf::new(Vec::new(), Some(FreeWindow(Some(window))));
        out.extend(&vec![42u8; LANE_MIN + 3]);
        let (Place::Window { len, .. }, _) = out.finish() else {
            panic!("a big answer moves into the lane");
        };
        let header = FromWorker::DoneInLane {
            job: 7,
            count: 1,
            lane: 1,
            len: len as u64,
        };
        // SAFETY: the "worker" is done writing; nobody touches the lane meanwhile.
        let answer = unsafe { Answer::locate(header, &[], Some(&parent)) }.expect("locate");
        assert_eq!((answer.job, answer.count, answer.lane), (7, 1, Some(1)));
        assert_eq!(answer.body.len(), LANE_MIN + 3);
        assert!(answer.body.iter().all(|&b| b == 42));
    }
}
