//! `Region`: a sparse memfd mapped by the parent and its workers, with bounds-checked
//! copies in and out. Who may touch which bytes when is the caller's protocol
//! (`lanes`, `arena`); this module only keeps every access inside the mapping.

use crate::error::{Error, Result};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

/// One process's mapping of a shared memfd.
pub(crate) struct Region {
    base: NonNull<u8>,
    len: usize,
    /// The memfd, until the region has been handed to the worker (the mapping
    /// needs no descriptor: a pool of many workers must not run out of them).
    fd: Option<OwnedFd>,
}

// SAFETY: `Region` is a pointer to a shared mapping that lives as long as the value;
// every access is bounds-checked here, and its callers uphold their ownership
// protocol (who writes which bytes when) whatever thread they run on.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// A fresh region of `len` bytes (parent side), in a memfd workers inherit.
    /// Sparse: it costs address space, not memory, until written.
    pub(crate) fn create(name: &str, len: usize) -> Result<Region> {
        use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
        if len == 0 {
            return Err(Error::Config(format!("empty shared region {name}")));
        }
        let fd = memfd_create(name, MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, len as u64)?;
        Self::map(fd, len)
    }

    /// Maps a region the parent created (worker side); it must be `len` bytes.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> Result<Region> {
        let size = rustix::fs::fstat(&fd)?.st_size;
        if len == 0 || u64::try_from(size).ok() != Some(len as u64) {
            return Err(Error::Protocol(format!(
                "shared region of {size} bytes, expected {len}"
            )));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Region> {
        use rustix::mm::{MapFlags, ProtFlags, mmap};
        // SAFETY: a fresh shared mapping (no address hint: nothing existing is
        // replaced) of a memfd exactly `len` bytes long, unmapped only in Drop.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::NORESERVE,
                &fd,
                0,
            )?
        };
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| Error::Protocol("mmap returned null".into()))?;
        Ok(Region {
            base,
            len,
            fd: Some(fd),
        })
    }

    /// Where the mapping starts (page-aligned), for a caller that lays its own
    /// atomic cells over the region (`progress.rs`).
    pub(crate) fn base(&self) -> std::ptr::NonNull<u8> {
        self.base
    }

    /// The memfd, to hand to a worker; an error once it was closed.
    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or_else(|| Error::Spawn("a shared region's descriptor is closed".into()))
    }

    /// Closes the memfd, once the worker has its own: the mapping stays.
    pub(crate) fn close_fd(&mut self) {
        self.fd = None;
    }

    /// The bytes `at .. at + len`, checked to lie inside the mapping.
    #[inline]
    fn range(&self, at: usize, len: usize) -> Result<*mut u8> {
        match at.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: `at <= end <= self.len`: the offset stays inside the mapping.
                Ok(unsafe { self.base.as_ptr().add(at) })
            }
            _ => Err(Error::Protocol(format!(
                "{len} bytes at {at} fall outside a shared region of {}",
                self.len
            ))),
        }
    }

    /// Copies `bytes` to offset `at`.
    ///
    /// # Safety
    /// The caller must own those bytes under its protocol: nobody else reads or
    /// writes them until it hands them over.
    pub(crate) unsafe fn write(&self, at: usize, bytes: &[u8]) -> Result<()> {
        let dst = self.range(at, bytes.len())?;
        // SAFETY: in bounds (checked by `range`); `bytes` is this process's memory
        // outside the bytes the caller owns here, so they cannot overlap; the caller
        // owns the destination.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        Ok(())
    }

    /// The `len` bytes at offset `at`, to read.
    ///
    /// # Safety
    /// Nobody may write those bytes while the slice lives: their writer has handed
    /// them over and takes them back only when the caller says so.
    pub(crate) unsafe fn read(&self, at: usize, len: usize) -> Result<&[u8]> {
        let src = self.range(at, len)?;
        // SAFETY: in bounds, initialised (memfd pages read as zero until written),
        // and unchanging while the caller owns them.
        Ok(unsafe { std::slice::from_raw_parts(src, len) })
    }

    /// The `len` bytes at offset `at`, to write.
    ///
    /// # Safety
    /// The caller must own those bytes exclusively for as long as the slice lives:
    /// no other slice over them, in this process or another.
    #[allow(clippy::mut_from_ref)] // the exclusivity is the caller's protocol, not a borrow
    #[inline]
    pub(crate) unsafe fn write_window(&self, at: usize, len: usize) -> Result<&mut [u8]> {
        let dst = self.range(at, len)?;
        // SAFETY: in bounds and initialised; exclusive by the caller's contract.
        Ok(unsafe { std::slice::from_raw_parts_mut(dst, len) })
    }

    /// Gives the memory behind `at .. at + len` back to the system; it reads as
    /// zeros after. Only for bytes nobody is using.
    pub(crate) fn release(&self, at: usize, len: usize) {
        // Whole pages only: MADV_REMOVE punches a hole in the memfd behind them, as
        // fallocate would, without needing its descriptor.
        let page = rustix::param::page_size();
        let Some(end) = at.checked_add(len).filter(|&end| end <= self.len) else {
            return;
        };
        let (first, last) = (at.next_multiple_of(page), end / page * page);
        if first >= last {
            return;
        }
        // SAFETY: `first..last` lies inside our mapping (checked above, and the
        // mapping starts on a page); MADV_REMOVE only drops the pages' contents,
        // which nobody is using by the caller's contract: they read as zeros after.
        unsafe {
            let _ = rustix::mm::madvise(
                self.base.as_ptr().add(first).cast(),
                last - first,
                rustix::mm::Advice::LinuxRemove,
            );
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this region in `map`; slices from `read` and
        // `write_window` borrow `self`, so none outlives it.
        unsafe {
            let _ = rustix::mm::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_by_one_mapping_are_read_by_another() {
        let parent = Region::create("test", 1 << 20).expect("create");
        let fd = parent
            .fd()
            .expect("open")
            .try_clone_to_owned()
            .expect("dup");
        let worker = Region::open(fd, 1 << 20).expect("open");
        let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        // SAFETY: single-threaded test: nobody else touches the region.
        unsafe {
            parent.write(4096, &body).expect("write");
            assert_eq!(worker.read(4096, body.len()).expect("read"), &body[..]);
            worker
                .write_window(0, 6)
                .expect("window")
                .copy_from_slice(b"answer");
            assert_eq!(parent.read(0, 6).expect("read"), b"answer");
        }
    }

    #[test]
    fn accesses_outside_the_mapping_are_errors() {
        let region = Region::create("test", 4096).expect("create");
        // SAFETY: single-threaded test.
        unsafe {
            assert!(region.write(4000, &[0; 97]).is_err());
            assert!(region.read(0, 4097).is_err());
            assert!(region.read(usize::MAX, 2).is_err(), "no overflow");
            assert!(region.write_window(4096, 1).is_err());
        }
        let fd = region
            .fd()
            .expect("open")
            .try_clone_to_owned()
            .expect("dup");
        assert!(Region::open(fd, 8192).is_err(), "size mismatch refused");
        assert!(Region::create("test", 0).is_err());
    }

    #[test]
    fn released_memory_reads_as_zero() {
        let region = Region::create("test", 1 << 16).expect("create");
        // SAFETY: single-threaded test.
        unsafe {
            region.write(8192, &[9; 100]).expect("write");
            region.release(0, 1 << 16);
            assert_eq!(region.read(8192, 100).expect("read"), &[0; 100][..]);
        }
    }
}
