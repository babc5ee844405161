//! Frames between parent and worker: length-prefixed on a socketpair, read and
//! written without ever blocking, with a size cap checked before any allocation.
//!
//! A frame is `len: u32 LE` followed by `len` bytes: a postcard-encoded header
//! (`messages.rs`), then the body (encoded arguments or outcomes, as items of
//! `boundary::item`) up to the end of the frame.

use crate::boundary::item::encode_into;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// Appends a whole frame (`len`, header, body) to `out`; `body` writes the body.
pub(crate) fn encode_frame<H: Serialize>(
    out: &mut Vec<u8>,
    header: &H,
    max_frame: usize,
    body: impl FnOnce(&mut Vec<u8>),
) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = encode_into(out, header) {
        out.truncate(start);
        return Err(Error::Protocol(format!(
            "could not encode a frame header: {e}"
        )));
    }
    body(out);
    let len = out.len() - start - 4;
    if len > max_frame {
        out.truncate(start);
        return Err(Error::Protocol(format!(
            "frame of {len} bytes exceeds the {max_frame}-byte limit"
        )));
    }
    let len = u32::try_from(len)
        .map_err(|_| Error::Protocol(format!("frame of {len} bytes does not fit a u32 length")))?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Splits a frame's payload into its decoded header and the body that follows.
pub(crate) fn decode_header<'a, H: Deserialize<'a>>(payload: &'a [u8]) -> Result<(H, &'a [u8])> {
    postcard::take_from_bytes(payload)
        .map_err(|e| Error::Protocol(format!("bad frame header: {e}")))
}

/// Incoming bytes, cut into frames as they complete.
pub(crate) struct FrameReader {
    /// Initialised bytes; those received are `consumed..end`.
    buf: Vec<u8>,
    /// End of the bytes received.
    end: usize,
    /// Bytes of `buf` already handed out as frames.
    consumed: usize,
    max_frame: usize,
    /// Descriptors received with the bytes, in order (`SCM_RIGHTS`), when this end
    /// takes them (a worker does; the parent never does: what a worker might
    /// send is dropped by the kernel unread).
    descriptors: Option<std::collections::VecDeque<OwnedFd>>,
}

/// What one non-blocking read did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Read this many bytes (0: nothing available now).
    Read(usize),
    /// The peer closed the connection.
    Eof,
}

/// Descriptors one read takes at most (a `Share` frame carries one).
const MAX_DESCRIPTORS: usize = 8;

impl FrameReader {
    pub(crate) fn new(max_frame: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            end: 0,
            consumed: 0,
            max_frame,
            descriptors: None,
        }
    }

    /// A reader that also takes the descriptors the peer sends with its bytes
    /// (worker side: the parent sends shared memory this way).
    pub(crate) fn taking_descriptors(max_frame: usize) -> Self {
        FrameReader {
            descriptors: Some(std::collections::VecDeque::new()),
            ..FrameReader::new(max_frame)
        }
    }

    /// The oldest descriptor received and not yet taken.
    pub(crate) fn take_descriptor(&mut self) -> Option<OwnedFd> {
        self.descriptors.as_mut()?.pop_front()
    }

    /// Reads whatever the socket has now, without blocking (the socket must be non-blocking).
    pub(crate) fn fill(&mut self, fd: impl AsFd) -> io::Result<Fill> {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.end, 0);
            self.end -= self.consumed;
            self.consumed = 0;
        }
        let mut total = 0;
        loop {
            // Room for the frame being read (capped, so a lying length cannot make us
            // reserve more than the frame limit), or 64 KiB for the next headers.
            let want = self.pending_len().map_or(0, |n| n.min(self.max_frame) + 4);
            let need = want.saturating_sub(self.end).clamp(64 * 1024, 64 << 20);
            if self.buf.len() < self.end + need {
                self.buf.resize(self.end + need, 0);
            }
            match self.receive(fd.as_fd()) {
                Ok(0) if total == 0 => return Ok(Fill::Eof),
                Ok(0) => return Ok(Fill::Read(total)),
                // A peer that dies with our data unread resets the connection: for us
                // that is the same end of stream as a clean close.
                Err(rustix::io::Errno::CONNRESET) if total == 0 => return Ok(Fill::Eof),
                Err(rustix::io::Errno::CONNRESET) => return Ok(Fill::Read(total)),
                Ok(n) => {
                    total += n;
                    self.end += n;
                    // Stop at a whole (or oversized) frame: memory then depends on the
                    // frame cap, not on how fast the peer writes.
                    if self.has_frame() {
                        return Ok(Fill::Read(total));
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(Fill::Read(total)),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One read into `buf[end..]`, taking descriptors that come with the bytes if
    /// this end takes them.
    fn receive(&mut self, fd: BorrowedFd<'_>) -> rustix::io::Result<usize> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
        let dst = &mut self.buf[self.end..];
        let Some(queue) = self.descriptors.as_mut() else {
            return rustix::io::read(fd, dst);
        };
        let mut space =
            [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_DESCRIPTORS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = recvmsg(
            fd,
            &mut [io::IoSliceMut::new(dst)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                queue.extend(fds);
            }
        }
        Ok(received.bytes)
    }

    /// Length announced by the next frame's prefix, once its 4 bytes are here.
    fn pending_len(&self) -> Option<usize> {
        let prefix = self.buf[..self.end].get(self.consumed..self.consumed + 4)?;
        let bytes: [u8; 4] = prefix.try_into().ok()?;
        Some(u32::from_le_bytes(bytes) as usize)
    }

    /// True when a complete frame (or an oversized one, to be reported) is buffered.
    pub(crate) fn has_frame(&self) -> bool {
        self.pending_len()
            .is_some_and(|len| len > self.max_frame || self.end >= self.consumed + 4 + len)
    }

    /// The next complete frame's payload, if one has arrived.
    pub(crate) fn next_frame(&mut self) -> Result<Option<&[u8]>> {
        let Some(len) = self.pending_len() else {
            return Ok(None);
        };
        if len > self.max_frame {
            return Err(Error::Protocol(format!(
                "incoming frame of {len} bytes exceeds the {}-byte limit",
                self.max_frame
            )));
        }
        let start = self.consumed + 4;
        if self.end < start + len {
            return Ok(None);
        }
        self.consumed = start + len;
        Ok(Some(&self.buf[start..start + len]))
    }
}

/// Outgoing frames, written as far as the socket takes them without blocking.
///
/// Big bodies are kept as shared buffers and sent with one gathering `sendmsg`, not copied.
#[derive(Default)]
pub(crate) struct FrameWriter {
    chunks: std::collections::VecDeque<Chunk>,
    /// The largest frame buffer already written out, kept for the next frame: a fresh
    /// multi-megabyte buffer costs a page fault per 4 KiB, more than the copy itself.
    spare: Vec<u8>,
}

/// Buffers at least this large are worth keeping for reuse.
const KEEP_BUFFER: usize = 1 << 20;

enum Chunk {
    Owned(Vec<u8>, usize),
    Shared(Arc<dyn AsRef<[u8]> + Send + Sync>, usize),
    /// A frame that carries a descriptor (`SCM_RIGHTS`) with its first byte.
    WithFd(Vec<u8>, usize, OwnedFd),
}

impl Chunk {
    fn rest(&self) -> &[u8] {
        match self {
            Chunk::Owned(v, at) | Chunk::WithFd(v, at, _) => &v[*at..],
            Chunk::Shared(v, at) => &(**v).as_ref()[*at..],
        }
    }
    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Owned(_, at) | Chunk::Shared(_, at) | Chunk::WithFd(_, at, _) => *at += n,
        }
    }
    /// The descriptor still to go with this chunk's first byte, if any.
    fn unsent_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Chunk::WithFd(_, 0, fd) => Some(fd.as_fd()),
            _ => None,
        }
    }
}

impl FrameWriter {
    /// Queues a frame whose body is already encoded in `body`, shared so a retry can resend it.
    pub(crate) fn push_shared<H: Serialize, B: AsRef<[u8]> + Send + Sync + 'static>(
        &mut self,
        header: &H,
        body: &Arc<B>,
        max_frame: usize,
    ) -> Result<()> {
        let body: Arc<dyn AsRef<[u8]> + Send + Sync> = body.clone();
        let body_len = (*body).as_ref().len();
        let mut head = Vec::with_capacity(32);
        encode_frame(
            &mut head,
            header,
            max_frame.saturating_sub(body_len),
            |_| {},
        )?;
        let len = u32::try_from(head.len() - 4 + body_len)
            .map_err(|_| Error::Protocol("frame does not fit a u32 length".into()))?;
        head[..4].copy_from_slice(&len.to_le_bytes());
        self.chunks.push_back(Chunk::Owned(head, 0));
        if body_len > 0 {
            self.chunks.push_back(Chunk::Shared(body, 0));
        }
        Ok(())
    }

    /// Queues a frame with a header and a body written by `body`.
    pub(crate) fn push<H: Serialize>(
        &mut self,
        header: &H,
        max_frame: usize,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let mut frame = std::mem::take(&mut self.spare);
        frame.clear();
        encode_frame(&mut frame, header, max_frame, body)?;
        self.chunks.push_back(Chunk::Owned(frame, 0));
        Ok(())
    }

    /// Queues a frame (header only) that carries `fd` to the peer: its first byte
    /// goes in a `sendmsg` of its own, with the descriptor.
    pub(crate) fn push_with_fd<H: Serialize>(
        &mut self,
        header: &H,
        max_frame: usize,
        fd: OwnedFd,
    ) -> Result<()> {
        let mut frame = Vec::with_capacity(32);
        encode_frame(&mut frame, header, max_frame, |_| {})?;
        self.chunks.push_back(Chunk::WithFd(frame, 0, fd));
        Ok(())
    }

    /// Moves `other`'s queued frames (a part of one already written included) to
    /// the end of this writer's, in order.
    pub(crate) fn append(&mut self, other: &mut FrameWriter) {
        self.chunks.append(&mut other.chunks);
    }

    /// True when everything queued has been written.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes as much as the socket takes now; true when nothing is left.
    ///
    /// Never raises SIGPIPE, whatever the program did with that signal: a peer
    /// that has gone (EPIPE) ends the stream as an EOF does, so what is queued is
    /// dropped and the reading side finds out, as it does for every other death.
    pub(crate) fn flush(&mut self, fd: impl AsFd) -> io::Result<bool> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
        while let Some(front) = self.chunks.front() {
            // A descriptor goes alone with its frame's first byte; other chunks
            // gather up to the next such frame.
            let carried = front.unsent_fd().map(|fd| [fd]);
            let slices: Vec<IoSlice<'_>> = match carried {
                Some(_) => vec![IoSlice::new(front.rest())],
                None => self
                    .chunks
                    .iter()
                    .take(64)
                    .take_while(|c| c.unsent_fd().is_none())
                    .map(|c| IoSlice::new(c.rest()))
                    .collect(),
            };
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if let Some(fds) = &carried
                && !control.push(SendAncillaryMessage::ScmRights(fds))
            {
                return Err(io::Error::other("no room to send a descriptor"));
            }
            let sent = sendmsg(fd.as_fd(), &slices, &mut control, SendFlags::NOSIGNAL);
            match sent {
                Ok(mut n) => {
                    while n > 0 {
                        let Some(front) = self.chunks.front_mut() else {
                            break;
                        };
                        let left = front.rest().len();
                        if n >= left {
                            n -= left;
                            if let Some(Chunk::Owned(v, _)) = self.chunks.pop_front()
                                && v.capacity() >= KEEP_BUFFER.max(self.spare.capacity())
                            {
                                self.spare = v;
                            }
                        } else {
                            front.advance(n);
                            n = 0;
                        }
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(false),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET) => {
                    self.chunks.clear();
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::messages::ToWorker;
    use super::*;
    use std::os::unix::net::UnixStream;

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        (a, b)
    }

    #[test]
    fn frames_round_trip_in_order() {
        let (a, b) = pair();
        let mut w = FrameWriter::default();
        w.push(&ToWorker::Shutdown, 1 << 20, |_| {}).expect("push");
        let body = Arc::new(vec![7u8; 100_000]);
        w.push_shared(
            &ToWorker::Run {
                job: 3,
                entry: -5,
                count: 2,
            },
            &body,
            1 << 20,
        )
        .expect("push");
        let mut r = FrameReader::new(1 << 20);
        let mut got = Vec::new();
        while got.len() < 2 {
            w.flush(&a).expect("flush");
            r.fill(&b).expect("fill");
            while let Some(f) = r.next_frame().expect("frame") {
                let (h, body): (ToWorker, &[u8]) = decode_header(f).expect("header");
                got.push((h, body.len()));
            }
        }
        assert_eq!(got[0], (ToWorker::Shutdown, 0));
        assert_eq!(
            got[1],
            (
                ToWorker::Run {
                    job: 3,
                    entry: -5,
                    count: 2
                },
                100_000
            )
        );
    }

    #[test]
    fn oversized_frame_is_an_error_before_allocation() {
        let (a, b) = pair();
        rustix::io::write(&a, &u32::MAX.to_le_bytes()).expect("write");
        let mut r = FrameReader::new(1024);
        r.fill(&b).expect("fill");
        assert!(matches!(r.next_frame(), Err(Error::Protocol(_))));
        assert!(r.buf.capacity() < 1 << 20);
    }

    #[test]
    fn a_peer_that_is_gone_takes_what_was_queued() {
        let (a, b) = pair();
        drop(b);
        let mut w = FrameWriter::default();
        w.push(&ToWorker::Shutdown, 1 << 20, |_| {}).expect("push");
        w.push_shared(&ToWorker::Shutdown, &Arc::new(vec![1u8; 1 << 20]), 2 << 20)
            .expect("push");
        // EPIPE: the end of the stream, not an error (and never a SIGPIPE).
        assert!(w.flush(&a).expect("flush to a closed peer"));
        assert!(w.is_empty());
    }

    #[test]
    fn eof_is_reported() {
        let (a, b) = pair();
        drop(a);
        let mut r = FrameReader::new(1024);
        assert_eq!(r.fill(&b).expect("fill"), Fill::Eof);
    }

    #[test]
    fn garbage_header_is_an_error() {
        let bad = [0xff_u8, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_header::<ToWorker>(&bad).is_err());
    }
}
