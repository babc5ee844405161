//! What stands behind a [`Shared`](crate::Shared) value: its bytes, sealed and
//! read-only, that every worker maps (or, across MPI ranks, receives once); the
//! registry through which a worker finds a share by its id; and the collector that
//! notes which shares a batch of arguments refers to, so the backend delivers each
//! to a worker before the first task that needs it.
//!
//! A share travels in a task's arguments as its id alone (8 bytes): what a task
//! costs does not grow with the value's size.

use crate::error::{Error, Result};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Bytes nobody writes any more: a read-only mapping of a sealed memfd, or (on an
/// MPI rank, which receives them in a message) a heap buffer aligned like a page.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) enum FrozenBytes {
    /// Nothing to hold (an empty value): no mapping, no descriptor.
    Empty,
    /// A read-only shared mapping of `len` bytes.
    Mapped { base: NonNull<u8>, len: usize },
    /// Received whole, in cache lines so the bytes are aligned for any `Pod`
    /// type a share holds as a slice (as a page-aligned mapping is).
    Heap { lines: Vec<Line>, len: usize },
}

// SAFETY: the mapping is read-only (PROT_READ, of a memfd sealed against writes), so
// any thread may read it; it lives until Drop, and nothing hands out a `&mut`.
unsafe impl Send for FrozenBytes {}
// SAFETY: as above: shared reads only.
unsafe impl Sync for FrozenBytes {}

impl FrozenBytes {
    /// Maps `len` bytes of `fd` read-only.
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> Result<FrozenBytes> {
        use rustix::mm::{MapFlags, ProtFlags, mmap};
        if len == 0 {
            return Ok(FrozenBytes::Empty);
        }
        let size = rustix::fs::fstat(fd)?.st_size;
        if u64::try_from(size).ok() != Some(len as u64) {
            return Err(Error::Protocol(format!(
                "a shared value of {size} bytes, expected {len}"
            )));
        }
        // SAFETY: a fresh read-only shared mapping (no address hint: nothing existing
        // is replaced) of exactly the file's `len` bytes, unmapped only in Drop.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| Error::Protocol("mmap returned null".into()))?;
        Ok(FrozenBytes::Mapped { base, len })
    }

    /// Keeps bytes received whole, aligned.
    #[cfg_attr(not(any(feature = "mpi", test)), allow(dead_code))]
    pub(crate) fn from_heap(bytes: &[u8]) -> FrozenBytes {
        let mut lines = vec![Line([0; 64]); bytes.len().div_ceil(64)];
        bytemuck::cast_slice_mut::<Line, u8>(&mut lines)[..bytes.len()].copy_from_slice(bytes);
        FrozenBytes::Heap {
            lines,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            FrozenBytes::Empty => &[],
            // SAFETY: `base..base + len` is our live read-only mapping (see `map`).
            FrozenBytes::Mapped { base, len } => unsafe {
                std::slice::from_raw_parts(base.as_ptr(), *len)
            },
            FrozenBytes::Heap { lines, len } => &bytemuck::cast_slice(lines)[..*len],
        }
    }
}

impl Drop for FrozenBytes {
    fn drop(&mut self) {
        if let FrozenBytes::Mapped { base, len } = self {
            // SAFETY: we mapped exactly this range in `map`; slices from `bytes`
            // borrow `self`, so none outlives it.
            unsafe {
                let _ = rustix::mm::munmap(base.as_ptr().cast(), *len);
            }
        }
    }
}

/// 64 bytes aligned like a cache line: the unit of [`FrozenBytes::Heap`].
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

/// A sealed memfd holding `bytes`: nobody can write, grow or shrink it, so a
/// worker that maps it reads what the parent wrote, forever.
fn sealed_memfd(bytes: &[u8]) -> Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, ftruncate, memfd_create};
    let fd = memfd_create(
        "fondo-shared",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    ftruncate(&fd, bytes.len() as u64)?;
    let mut written = 0;
    while written < bytes.len() {
        written += rustix::io::pwrite(&fd, &bytes[written..], written as u64)?;
    }
    fcntl_add_seals(
        &fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(fd)
}

/// One shared value, in whichever process holds it.
pub struct Share {
    /// Unique in the parent that made it.
    id: u64,
    /// The value's bytes (postcard for a serde value, raw for a slice).
    bytes: FrozenBytes,
    /// The sealed memfd: the parent hands it to workers (MPI ranks get the bytes
    /// instead); a worker keeps it so that unmapping frees nothing ([`Share::release`]).
    fd: Option<OwnedFd>,
    /// The decoded value: the parent's own; in a worker, decoded at the first use.
    value: OnceLock<std::result::Result<Box<dyn Any + Send + Sync>, String>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("id", &self.id)
            .field("len", &self.len())
            .finish()
    }
}

impl Share {
    /// A new share of `bytes` (parent side), with the value they encode if any.
    pub(crate) fn create(
        bytes: &[u8],
        value: Option<Box<dyn Any + Send + Sync>>,
    ) -> Result<Arc<Share>> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // The process id in the high half: a share made in a worker (a task's own
        // pool) can never be mistaken for one of its parent's.
        let id = (u64::from(std::process::id()) << 32)
            | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff);
        let (fd, frozen) = if bytes.is_empty() {
            (None, FrozenBytes::Empty)
        } else {
            let fd = sealed_memfd(bytes)?;
            let frozen = FrozenBytes::map(fd.as_fd(), bytes.len())?;
            (Some(fd), frozen)
        };
        let cell = OnceLock::new();
        if let Some(v) = value {
            let _ = cell.set(Ok(v));
        }
        let share = Arc::new(Share {
            id,
            bytes: frozen,
            fd,
            value: cell,
        });
        registry().made(&share);
        Ok(share)
    }

    /// A share received from the parent (worker side), registered under `id`;
    /// `fd` is the memfd `bytes` maps, if it came as one.
    pub(crate) fn receive(id: u64, bytes: FrozenBytes, fd: Option<OwnedFd>) -> Arc<Share> {
        let share = Arc::new(Share {
            id,
            bytes,
            fd,
            value: OnceLock::new(),
        });
        registry().insert(id, share.clone());
        share
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Ends a share nobody holds any more (worker side). Its mapping goes now — the
    /// worker is told to forget a share before its next job, and by then the share
    /// is gone from its address space — but its memory is freed on the releasing
    /// thread (`release.rs`): closing the last reference to a big memfd, or freeing
    /// a big buffer or decoded value, takes time proportional to its size.
    fn release(self) {
        let Share {
            bytes, fd, value, ..
        } = self;
        let bytes = match bytes {
            // Unmapped here: the descriptor, closed later, keeps the pages alive.
            mapped @ FrozenBytes::Mapped { .. } if fd.is_some() => {
                drop(mapped);
                None
            }
            other => Some(other),
        };
        super::release::drop_later(Box::new((bytes, fd, value)));
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.bytes().len()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes.bytes()
    }

    /// The memfd to hand to a worker (parent side; `None` for an empty value).
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// The decoded value, decoding it with `decode` the first time.
    pub(crate) fn value<T: Any + Send + Sync>(
        &self,
        decode: impl FnOnce(&[u8]) -> std::result::Result<T, String>,
    ) -> std::result::Result<&T, String> {
        let decoded = self.value.get_or_init(|| {
            decode(self.bytes()).map(|v| Box::new(v) as Box<dyn Any + Send + Sync>)
        });
        match decoded {
            Ok(any) => any.downcast_ref::<T>().ok_or_else(|| {
                format!(
                    "shared value {} is not a {}",
                    self.id,
                    std::any::type_name::<T>()
                )
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

/// The shares a worker has received, by id.
#[derive(Default)]
pub(crate) struct Registry {
    shares: Mutex<HashMap<u64, Known>>,
}

/// How a process knows a share.
enum Known {
    /// Received from the parent: held until the parent says to forget it.
    Received(Arc<Share>),
    /// Made here: known while some handle holds it (a task may send it back).
    Made(std::sync::Weak<Share>),
}

impl Registry {
    fn insert(&self, id: u64, share: Arc<Share>) {
        self.lock().insert(id, Known::Received(share));
    }

    fn made(&self, share: &Arc<Share>) {
        let mut shares = self.lock();
        // Forget the dead while here: a process making shares one after another
        // must not grow this table without end.
        shares.retain(|_, k| !matches!(k, Known::Made(w) if w.strong_count() == 0));
        shares.insert(share.id, Known::Made(Arc::downgrade(share)));
    }

    /// The share `id`, if this process made it or received it.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Share>> {
        match self.lock().get(&id)? {
            Known::Received(share) => Some(share.clone()),
            Known::Made(weak) => weak.upgrade(),
        }
    }

    /// Forgets share `id` (the parent's last handle went): its memory goes once
    /// the tasks still holding it are done.
    pub(crate) fn forget(&self, id: u64) {
        let known = self.lock().remove(&id);
        // A task still holding it frees it when done, wherever; else it ends here.
        if let Some(Known::Received(share)) = known
            && let Some(share) = Arc::into_inner(share)
        {
            share.release();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Known>> {
        self.shares.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// This process's registry of received shares.
pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// The shares one worker (process or rank) holds, as its parent tracks them: what
/// a job needs sent first, and what to tell the worker to forget.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    shares: HashMap<u64, std::sync::Weak<Share>>,
}

impl Delivered {
    /// The ids of delivered shares whose last handle in the parent went: the
    /// worker may forget them. They count as no longer delivered.
    pub(crate) fn gone(&mut self) -> Vec<u64> {
        if self.shares.is_empty() {
            return Vec::new();
        }
        let gone: Vec<u64> = self
            .shares
            .iter()
            .filter(|(_, share)| share.strong_count() == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.shares.remove(id);
        }
        gone
    }

    /// Those of `needed` the worker lacks, counted as delivered from now on.
    pub(crate) fn missing<'a>(&mut self, needed: &'a [Arc<Share>]) -> Vec<&'a Arc<Share>> {
        needed
            .iter()
            .filter(|share| {
                let new = !self.shares.contains_key(&share.id);
                if new {
                    self.shares.insert(share.id, Arc::downgrade(share));
                }
                new
            })
            .collect()
    }
}

thread_local! {
    /// While a batch's arguments are encoded: the shares they refer to.
    static COLLECTING: RefCell<Option<Vec<Arc<Share>>>> = const { RefCell::new(None) };
}

/// Notes the shares serialised on this thread while it lives (see [`note`]).
pub(crate) struct Collector {
    /// What was being collected when this one started (collections nest).
    outer: Option<Vec<Arc<Share>>>,
}

impl Collector {
    /// Starts noting.
    pub(crate) fn start() -> Collector {
        Collector {
            outer: COLLECTING.with(|c| c.borrow_mut().replace(Vec::new())),
        }
    }

    /// The shares noted since the start or the last `take`, each once.
    pub(crate) fn take(&self) -> Vec<Arc<Share>> {
        let mut noted = COLLECTING
            .with(|c| c.borrow_mut().as_mut().map(std::mem::take))
            .unwrap_or_default();
        noted.sort_by_key(|s| s.id);
        noted.dedup_by_key(|s| s.id);
        noted
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let outer = self.outer.take();
        COLLECTING.with(|c| *c.borrow_mut() = outer);
    }
}

/// A share is being serialised: note it for the batch being encoded, if any.
pub(crate) fn note(share: &Arc<Share>) {
    COLLECTING.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut()
            && let Some(noted) = c.as_mut()
        {
            noted.push(share.clone());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_sealed_and_mapped_read_only() {
        let share = Share::create(b"hello, workers", None).expect("share");
        assert_eq!(share.bytes(), b"hello, workers");
        let fd = share.fd().expect("a memfd");
        // Sealed: nobody can write it any more, not even through the descriptor.
        assert!(rustix::io::pwrite(fd, b"J", 0).is_err());
        let seen = FrozenBytes::map(fd, share.len()).expect("a second mapping");
        assert_eq!(seen.bytes(), b"hello, workers");
        assert!(
            FrozenBytes::map(fd, 3).is_err(),
            "a wrong length is refused"
        );
    }

    #[test]
    fn delivered_shares_are_sent_once_and_forgotten_when_gone() {
        let a = Share::create(b"a", None).expect("a");
        let b = Share::create(b"b", None).expect("b");
        let mut delivered = Delivered::default();
        let needed = [a.clone(), b.clone()];
        assert_eq!(delivered.missing(&needed).len(), 2);
        assert!(delivered.missing(&needed).is_empty(), "sent once");
        assert!(delivered.gone().is_empty());
        let b_id = b.id();
        drop(needed);
        drop(b);
        assert_eq!(delivered.gone(), [b_id]);
        assert_eq!(delivered.missing(&[a]).len(), 0);
    }

    #[test]
    fn heap_bytes_are_aligned_for_any_pod() {
        let frozen = FrozenBytes::from_heap(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(frozen.bytes(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(frozen.bytes().as_ptr() as usize % 64, 0);
        assert!(FrozenBytes::from_heap(&[]).bytes().is_empty());
    }

    #[test]
    fn the_collector_notes_each_share_once_and_nests() {
        let a = Share::create(b"a", None).expect("a");
        let b = Share::create(b"b", None).expect("b");
        let outer = Collector::start();
        note(&a);
        {
            let inner = Collector::start();
            note(&b);
            assert_eq!(inner.take().len(), 1);
        }
        note(&a);
        assert_eq!(
            outer.take().iter().map(|s| s.id()).collect::<Vec<_>>(),
            [a.id()]
        );
        assert!(outer.take().is_empty(), "taken");
        drop(outer);
        note(&b); // outside any collection: nothing happens
    }

    #[test]
    fn a_value_decodes_once_and_checks_its_type() {
        let share = Share::receive(u64::MAX - 7, FrozenBytes::from_heap(&[5]), None);
        let mut calls = 0;
        let v = share.value(|b| {
            calls += 1;
            Ok(u32::from(b[0]))
        });
        assert_eq!(v, Ok(&5));
        assert_eq!(share.value::<u32>(|_| unreachable!()), Ok(&5));
        assert_eq!(calls, 1);
        assert!(
            share.value::<u8>(|_| Ok(0)).is_err(),
            "another type is an error"
        );
        assert!(registry().get(u64::MAX - 7).is_some());
        registry().forget(u64::MAX - 7);
        assert!(registry().get(u64::MAX - 7).is_none());
    }
}
