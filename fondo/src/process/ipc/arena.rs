//! `Arena`: shared memory where big arguments are encoded in place and read by a
//! worker straight from there — no copy into a worker's lane or through a socket.
//!
//! A pool owns one arena of `slots` × `slot_len` bytes, a sparse memfd every worker
//! maps. A slot belongs to the one job whose arguments it holds, from encoding until
//! the job is answered or given up: the parent writes it only while encoding, before
//! the job is queued; workers read it only while running that job; dropping the
//! job's arguments returns it. Freed slots stay warm for the next big arguments and
//! give their memory back once they have sat unused a while.

use super::shm::Region;
use crate::boundary::spill::{Place, SPILL_MIN, SpillBuf, Window, WindowSource};
use crate::error::{Error, Result};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Slots per worker: enough for the jobs a worker holds plus those being encoded.
const SLOTS_PER_WORKER: usize = 4;
/// At most this many slots per pool (each reserves `max_frame` of address space).
const MAX_SLOTS: usize = 32;

/// One process's mapping of a pool's arena.
#[derive(Debug)]
pub(crate) struct Arena {
    region: Region,
    slots: usize,
    slot_len: usize,
    /// Parent side: free slots, the most recently freed (warmest) last.
    free: Mutex<Vec<usize>>,
    /// Parent side: when a slot was last freed, while free slots may hold memory.
    dirty_since: Mutex<Option<Instant>>,
}

impl Arena {
    /// The arena for a pool of `workers` (parent side); `None` when frames are too
    /// small to ever use it.
    pub(crate) fn for_pool(workers: usize, max_frame: usize) -> Result<Option<Arc<Arena>>> {
        if max_frame < SPILL_MIN {
            return Ok(None);
        }
        let slots = workers.saturating_mul(SLOTS_PER_WORKER).clamp(1, MAX_SLOTS);
        let region = Region::create("fondo-arena", Self::total(slots, max_frame)?)?;
        Ok(Some(Arc::new(Arena {
            region,
            slots,
            slot_len: max_frame,
            free: Mutex::new((0..slots).rev().collect()),
            dirty_since: Mutex::new(None),
        })))
    }

    /// Maps the arena the parent created (worker side).
    pub(crate) fn open(fd: OwnedFd, slots: usize, slot_len: usize) -> Result<Arena> {
        let region = Region::open(fd, Self::total(slots, slot_len)?)?;
        Ok(Arena {
            region,
            slots,
            slot_len,
            free: Mutex::new(Vec::new()),
            dirty_since: Mutex::new(None),
        })
    }

    fn total(slots: usize, slot_len: usize) -> Result<usize> {
        slots
            .checked_mul(slot_len)
            .ok_or_else(|| Error::Config(format!("{slots} slots of {slot_len} bytes")))
    }

    /// The memfd, to hand to workers.
    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.region.fd()
    }

    /// How many slots the arena has.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    fn free_list(&self) -> MutexGuard<'_, Vec<usize>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dirty(&self) -> MutexGuard<'_, Option<Instant>> {
        self.dirty_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A free slot, the warmest one, if any is free.
    fn take(self: &Arc<Self>) -> Option<ArenaSlot> {
        let index = self.free_list().pop()?;
        Some(ArenaSlot {
            arena: self.clone(),
            index,
        })
    }

    /// Worker: the `len` bytes of arguments in slot `slot`.
    ///
    /// # Safety
    /// Only while running the job the parent sent these arguments with: the parent
    /// wrote them before sending it and leaves them alone until the job is answered.
    pub(crate) unsafe fn read(&self, slot: usize, len: usize) -> Result<&[u8]> {
        if slot >= self.slots || len > self.slot_len {
            return Err(Error::Protocol(format!(
                "{len} bytes in slot {slot} of an arena of {} × {}",
                self.slots, self.slot_len
            )));
        }
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.region.read(slot * self.slot_len, len) }
    }

    /// Parent: gives back the memory of the free slots once no slot has been freed
    /// for `idle`; otherwise says how long until that may be.
    pub(crate) fn release_idle(&self, idle: Duration) -> Option<Duration> {
        let mut dirty = self.dirty();
        let since = (*dirty)?;
        let left = idle.saturating_sub(since.elapsed());
        if !left.is_zero() {
            return Some(left);
        }
        // Hold the free list: a slot cannot be taken while its pages are punched out.
        let free = self.free_list();
        for &slot in free.iter() {
            self.region.release(slot * self.slot_len, self.slot_len);
        }
        *dirty = None;
        None
    }
}

/// A slot owned by one buffer or one job's arguments; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct ArenaSlot {
    arena: Arc<Arena>,
    index: usize,
}

impl Window for ArenaSlot {
    #[inline]
    fn window(&mut self) -> &mut [u8] {
        let (at, len) = (self.index * self.arena.slot_len, self.arena.slot_len);
        // SAFETY: the slot is ours alone: taken off the free list, and no job holding
        // it has been queued yet (a queued job's arguments are never written).
        unsafe { self.arena.region.write_window(at, len) }.unwrap_or_default()
    }

    fn bytes(&self, len: usize) -> &[u8] {
        let at = self.index * self.arena.slot_len;
        // SAFETY: only the owner of the slot writes it, and only through `window`
        // before the arguments are frozen; workers only read.
        unsafe { self.arena.region.read(at, len) }.unwrap_or_default()
    }
}

impl Drop for ArenaSlot {
    fn drop(&mut self) {
        let mut free = self.arena.free_list();
        debug_assert!(
            !free.contains(&self.index) && self.index < self.arena.slots,
            "arena slot {} freed twice or out of range",
            self.index
        );
        free.push(self.index);
        drop(free);
        *self.arena.dirty() = Some(Instant::now());
    }
}

impl WindowSource for Arc<Arena> {
    type W = ArenaSlot;
    fn take(&mut self) -> Option<ArenaSlot> {
        Arena::take(self)
    }
}

/// Arguments being encoded: on the heap while small, in an arena slot once big
/// (if one is free).
pub(crate) type ArgBuf = SpillBuf<Arc<Arena>>;

impl From<ArgBuf> for ArgBytes {
    /// The arguments, read-only from now on.
    fn from(buf: ArgBuf) -> ArgBytes {
        match buf.finish().0 {
            Place::Heap(v) => ArgBytes::Heap(v),
            Place::Window { window, len } => ArgBytes::Slot { slot: window, len },
        }
    }
}

/// Encoded arguments, no longer written: on the heap, or in an arena slot.
#[derive(Debug)]
pub(crate) enum ArgBytes {
    Heap(Vec<u8>),
    Slot { slot: ArenaSlot, len: usize },
}

impl ArgBytes {
    /// The arena slot and length, when the arguments are in the arena.
    pub(crate) fn in_arena(&self) -> Option<(usize, usize)> {
        match self {
            ArgBytes::Heap(_) => None,
            ArgBytes::Slot { slot, len } => Some((slot.index, *len)),
        }
    }

    /// The heap buffer back, for reuse.
    pub(crate) fn into_heap(self) -> Option<Vec<u8>> {
        match self {
            ArgBytes::Heap(v) => Some(v),
            ArgBytes::Slot { .. } => None,
        }
    }
}

impl std::ops::Deref for ArgBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ArgBytes::Heap(v) => v,
            ArgBytes::Slot { slot, len } => slot.bytes(*len),
        }
    }
}

impl AsRef<[u8]> for ArgBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::item::{Out, push_item};

    fn arena(workers: usize) -> Arc<Arena> {
        Arena::for_pool(workers, 4 << 20)
            .expect("create")
            .expect("frames big enough")
    }

    #[test]
    fn small_arguments_stay_on_the_heap_big_ones_move_into_a_slot() {
        let arena = arena(1);
        let mut small = ArgBuf::new(Vec::new(), Some(arena.clone()));
        push_item(&mut small, &[1u8; 100][..]).expect("encode");
        assert!(ArgBytes::from(small).in_arena().is_none());

        let big = vec![7u8; SPILL_MIN + 10];
        let mut buf = ArgBuf::new(Vec::new(), Some(arena.clone()));
        push_item(&mut buf, &(1u32, 2u32)).expect("encode");
        push_item(&mut buf, &big).expect("encode");
        let frozen = ArgBytes::from(buf);
        let (_, len) = frozen.in_arena().expect("moved into the arena");
        assert_eq!(len, frozen.len());
        // The bytes read back are what a heap buffer would hold.
        let mut heap = Vec::new();
        push_item(&mut heap, &(1u32, 2u32)).expect("encode");
        push_item(&mut heap, &big).expect("encode");
        assert_eq!(&frozen[..], &heap[..]);
    }

    #[test]
    fn a_worker_mapping_reads_what_the_parent_encoded() {
        let arena = arena(1);
        let mut buf = ArgBuf::new(Vec::new(), Some(arena.clone()));
        push_item(&mut buf, &vec![3u8; 2 * SPILL_MIN]).expect("encode");
        let frozen = ArgBytes::from(buf);
        let (slot, len) = frozen.in_arena().expect("in the arena");
        let fd = arena.fd().expect("open").try_clone_to_owned().expect("dup");
        let worker = Arena::open(fd, arena.slots(), 4 << 20).expect("open");
        // SAFETY: the test is the only user: nobody writes the slot meanwhile.
        let seen = unsafe { worker.read(slot, len) }.expect("read");
        assert_eq!(seen, &frozen[..]);
        // SAFETY: as above; out-of-range reads are refused before any access.
        unsafe {
            assert!(worker.read(arena.slots(), 1).is_err());
            assert!(worker.read(0, (4 << 20) + 1).is_err());
        }
    }

    #[test]
    fn slots_are_reused_and_with_none_free_arguments_stay_on_the_heap() {
        let arena = arena(1);
        let held: Vec<ArgBytes> = (0..arena.slots())
            .map(|_| {
                let mut buf = ArgBuf::new(Vec::new(), Some(arena.clone()));
                buf.extend(&vec![1u8; SPILL_MIN]);
                ArgBytes::from(buf)
            })
            .collect();
        assert!(held.iter().all(|a| a.in_arena().is_some()));
        let mut extra = ArgBuf::new(Vec::new(), Some(arena.clone()));
        extra.extend(&vec![2u8; SPILL_MIN]);
        extra.push(9);
        let extra = ArgBytes::from(extra);
        assert!(extra.in_arena().is_none(), "no slot free: heap");
        assert_eq!(extra.len(), SPILL_MIN + 1);
        let freed = held
            .last()
            .and_then(ArgBytes::in_arena)
            .map(|(slot, _)| slot);
        drop(held);
        let mut again = ArgBuf::new(Vec::new(), Some(arena.clone()));
        again.extend(&vec![3u8; SPILL_MIN]);
        let reused = ArgBytes::from(again).in_arena().map(|(slot, _)| slot);
        assert_eq!(reused, freed, "the warmest free slot is taken first");
    }

    #[test]
    fn arguments_that_outgrow_a_slot_go_back_to_the_heap_intact() {
        let arena = Arena::for_pool(1, SPILL_MIN)
            .expect("create")
            .expect("arena");
        let mut buf = ArgBuf::new(Vec::new(), Some(arena));
        buf.extend(&vec![5u8; SPILL_MIN - 2]);
        buf.extend(&[6u8; 2]); // moves into the slot, which it fills exactly
        buf.extend(&[7u8; 10]);
        let frozen = ArgBytes::from(buf);
        assert!(frozen.in_arena().is_none());
        assert_eq!(frozen.len(), SPILL_MIN + 10);
        assert_eq!(frozen[SPILL_MIN - 3..SPILL_MIN + 1], [5, 6, 6, 7][..]);
    }

    #[test]
    fn idle_free_slots_give_their_memory_back() {
        let arena = arena(1);
        let mut buf = ArgBuf::new(Vec::new(), Some(arena.clone()));
        buf.extend(&vec![1u8; SPILL_MIN]);
        let (slot, _) = ArgBytes::from(buf).in_arena().expect("in the arena");
        assert!(
            arena.release_idle(Duration::from_secs(60)).is_some(),
            "not yet"
        );
        assert_eq!(arena.release_idle(Duration::ZERO), None);
        assert_eq!(
            arena.release_idle(Duration::ZERO),
            None,
            "nothing dirty now"
        );
        // SAFETY: the slot is free and the test is its only user.
        let after = unsafe { arena.read(slot, 16) }.expect("read");
        assert_eq!(after, &[0u8; 16][..]);
    }
}
