//! `SpillBuf`: an encoding buffer that starts on the heap and, once it holds
//! [`SPILL_MIN`] bytes, moves into a window of shared memory and goes on writing
//! there, so a big value is encoded once, straight where the other process reads it.

use super::item::Out;

/// Bodies at least this big move into shared memory (an up lane, an arena slot);
/// smaller ones are cheaper inline in a frame.
pub(crate) const SPILL_MIN: usize = 1 << 20;

/// Shared memory a buffer may write into, owned by the writer until handed over.
pub(crate) trait Window {
    /// All the window's bytes, to write.
    fn window(&mut self) -> &mut [u8];
    /// The first `len` bytes, to read.
    fn bytes(&self, len: usize) -> &[u8];
}

/// Where a buffer finds a window when it grows big; asked once at most.
pub(crate) trait WindowSource {
    /// The window type handed out.
    type W: Window;
    /// A free window, if there is one.
    fn take(&mut self) -> Option<Self::W>;
}

/// Where the bytes are.
pub(crate) enum Place<W> {
    /// On the heap.
    Heap(Vec<u8>),
    /// The first `len` bytes of a window.
    Window { window: W, len: usize },
}

/// An encoding buffer that moves into shared memory when it grows big (and back to
/// the heap, intact, if it outgrows the window).
pub(crate) struct SpillBuf<S: WindowSource> {
    /// Asked for a window when the bytes reach `SPILL_MIN`; `None` once asked.
    source: Option<S>,
    place: Place<S::W>,
    /// The heap buffer while the bytes are in a window, kept for reuse.
    spare: Vec<u8>,
}

impl<S: WindowSource> SpillBuf<S> {
    /// A buffer that appends to what `heap` holds and moves into a window from
    /// `source` once big.
    pub(crate) fn new(heap: Vec<u8>, source: Option<S>) -> Self {
        SpillBuf {
            source,
            place: Place::Heap(heap),
            spare: Vec::new(),
        }
    }

    /// Where the bytes ended up, and the heap buffer left over (if they are in a window).
    pub(crate) fn finish(self) -> (Place<S::W>, Vec<u8>) {
        (self.place, self.spare)
    }

    fn move_to_window(&mut self) {
        let Some(mut window) = self.source.take().and_then(|mut s| s.take()) else {
            return;
        };
        let Place::Heap(heap) = &mut self.place else {
            return;
        };
        let len = heap.len();
        let Some(dst) = window.window().get_mut(..len) else {
            return; // The window is smaller than what we hold already: stay.
        };
        dst.copy_from_slice(heap);
        let mut heap = std::mem::take(heap);
        heap.clear();
        self.spare = heap;
        self.place = Place::Window { window, len };
    }

    /// Bytes that make the buffer move: into a window once big, back to the heap
    /// if they outgrow it.
    #[cold]
    #[inline(never)]
    fn extend_moving(&mut self, bytes: &[u8]) {
        if self.source.is_some()
            && matches!(&self.place, Place::Heap(v) if v.len() + bytes.len() >= SPILL_MIN)
        {
            self.move_to_window();
        }
        if let Place::Window { window, len } = &mut self.place {
            if append_to_window(window, len, bytes) {
                return;
            }
            self.move_to_heap(bytes.len());
        }
        if let Place::Heap(v) = &mut self.place {
            v.extend_from_slice(bytes);
        }
    }

    fn move_to_heap(&mut self, room: usize) {
        if let Place::Window { window, len } = &self.place {
            let mut heap = std::mem::take(&mut self.spare);
            heap.reserve(len + room);
            heap.extend_from_slice(window.bytes(*len));
            self.place = Place::Heap(heap);
        }
    }
}

/// Writes `bytes` after the first `len` bytes of `window` if they fit; false if not.
#[inline]
fn append_to_window<W: Window>(window: &mut W, len: &mut usize, bytes: &[u8]) -> bool {
    let end = *len + bytes.len();
    match window.window().get_mut(*len..end) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            *len = end;
            true
        }
        None => false,
    }
}

impl<S: WindowSource> Out for SpillBuf<S> {
    fn len(&self) -> usize {
        match &self.place {
            Place::Heap(v) => v.len(),
            Place::Window { len, .. } => *len,
        }
    }

    /// Inline for the common cases (room where the bytes are); moves go to a cold call.
    #[inline]
    fn extend(&mut self, bytes: &[u8]) {
        match &mut self.place {
            Place::Window { window, len } => {
                if append_to_window(window, len, bytes) {
                    return;
                }
            }
            Place::Heap(v) if self.source.is_none() || v.len() + bytes.len() < SPILL_MIN => {
                v.extend_from_slice(bytes);
                return;
            }
            Place::Heap(_) => {}
        }
        self.extend_moving(bytes);
    }

    /// postcard writes some values (a `Vec<u8>`, for one) a byte at a time: this
    /// runs once per byte, so it stores the byte itself (no one-byte `memcpy`) and
    /// is always inlined into the encoder's loop (left to the heuristics, some
    /// callers got a call per byte: 0.41 GB/s instead of 0.8 for a `Vec<u8>`).
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        match &mut self.place {
            Place::Window { window, len } => {
                if let Some(slot) = window.window().get_mut(*len) {
                    *slot = byte;
                    *len += 1;
                    return;
                }
            }
            Place::Heap(v) if self.source.is_none() || v.len() + 1 < SPILL_MIN => {
                v.push(byte);
                return;
            }
            Place::Heap(_) => {}
        }
        self.extend_moving(&[byte]);
    }

    fn truncate(&mut self, to: usize) {
        match &mut self.place {
            Place::Heap(v) => v.truncate(to),
            Place::Window { len, .. } => *len = (*len).min(to),
        }
    }

    fn patch(&mut self, at: usize, bytes: [u8; 4]) {
        let target = match &mut self.place {
            Place::Heap(v) => v.get_mut(at..at + 4),
            Place::Window { window, .. } => window.window().get_mut(at..at + 4),
        };
        if let Some(target) = target {
            target.copy_from_slice(&bytes);
        }
    }
}

/// Shared memory lent whole to a buffer: a worker's free up lane, say.
impl Window for &mut [u8] {
    #[inline]
    fn window(&mut self) -> &mut [u8] {
        self
    }

    fn bytes(&self, len: usize) -> &[u8] {
        self.get(..len).unwrap_or_default()
    }
}

/// The window an answer may move into when it grows big, if one is free.
pub(crate) struct FreeWindow<'w>(pub(crate) Option<&'w mut [u8]>);

impl<'w> WindowSource for FreeWindow<'w> {
    type W = &'w mut [u8];
    fn take(&mut self) -> Option<&'w mut [u8]> {
        self.0.take()
    }
}

/// A worker's outcomes being encoded: on the heap while small, in a free window
/// of shared memory once big. The one output type every entry point writes to.
pub(crate) type AnswerBuf<'w> = SpillBuf<FreeWindow<'w>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A window over a plain buffer, for testing the moves.
    struct Boxed(Vec<u8>);

    impl Window for Boxed {
        fn window(&mut self) -> &mut [u8] {
            &mut self.0
        }
        fn bytes(&self, len: usize) -> &[u8] {
            &self.0[..len]
        }
    }

    struct OneBox(usize);

    impl WindowSource for OneBox {
        type W = Boxed;
        fn take(&mut self) -> Option<Boxed> {
            Some(Boxed(vec![0; self.0]))
        }
    }

    fn content(place: &Place<Boxed>) -> &[u8] {
        match place {
            Place::Heap(v) => v,
            Place::Window { window, len } => window.bytes(*len),
        }
    }

    #[test]
    fn small_stays_big_moves_too_big_comes_back_intact() {
        let mut small = SpillBuf::new(Vec::new(), Some(OneBox(4 * SPILL_MIN)));
        small.extend(b"abc");
        small.push(b'd');
        let (place, _) = small.finish();
        assert!(matches!(place, Place::Heap(_)));
        assert_eq!(content(&place), b"abcd");

        let mut big = SpillBuf::new(Vec::new(), Some(OneBox(2 * SPILL_MIN)));
        big.extend(&[0; 4]);
        big.extend(&vec![1u8; SPILL_MIN]);
        big.patch(0, [9, 9, 9, 9]);
        big.push(2);
        assert_eq!(big.len(), SPILL_MIN + 5);
        let (place, _) = big.finish();
        assert!(matches!(place, Place::Window { .. }));
        let bytes = content(&place);
        assert_eq!(
            (bytes[..4].to_vec(), bytes[4], bytes[SPILL_MIN + 4]),
            (vec![9; 4], 1, 2)
        );

        let mut over = SpillBuf::new(Vec::new(), Some(OneBox(SPILL_MIN)));
        over.extend(&vec![3u8; SPILL_MIN]);
        over.extend(&[4u8; 3]);
        over.truncate(SPILL_MIN + 2);
        let (place, _) = over.finish();
        assert!(matches!(place, Place::Heap(_)), "outgrew its window");
        let bytes = content(&place);
        assert_eq!(bytes.len(), SPILL_MIN + 2);
        assert_eq!(bytes[SPILL_MIN - 1..], [3, 4, 4][..]);
    }

    /// One step of a random encoding.
    #[derive(Debug, Clone)]
    enum Op {
        Extend(usize, u8),
        Push(u8),
        Truncate(usize),
        Patch(usize, u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..SPILL_MIN / 2, any::<u8>()).prop_map(|(n, b)| Op::Extend(n, b)),
            any::<u8>().prop_map(Op::Push),
            (0..3 * SPILL_MIN).prop_map(Op::Truncate),
            (0..3 * SPILL_MIN, any::<u8>()).prop_map(|(at, b)| Op::Patch(at, b)),
        ]
    }

    fn apply(out: &mut impl Out, op: &Op) {
        match *op {
            Op::Extend(n, b) => out.extend(&vec![b; n]),
            Op::Push(b) => out.push(b),
            Op::Truncate(to) => out.truncate(to),
            // Patches only what is written, as push_item does.
            Op::Patch(at, b) if at + 4 <= out.len() => out.patch(at, [b; 4]),
            Op::Patch(..) => {}
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the moves between heap and window, the bytes are a `Vec`'s.
        #[test]
        fn any_sequence_of_writes_ends_as_in_a_vec(
            ops in proptest::collection::vec(op(), 1..12),
            window in SPILL_MIN..3 * SPILL_MIN,
        ) {
            let mut vec = Vec::new();
            let mut buf = SpillBuf::new(Vec::new(), Some(OneBox(window)));
            for op in &ops {
                apply(&mut vec, op);
                apply(&mut buf, op);
                proptest::prop_assert_eq!(Out::len(&vec), buf.len());
            }
            let (place, _) = buf.finish();
            proptest::prop_assert!(content(&place) == &vec[..]);
        }
    }

    #[test]
    fn without_a_window_everything_stays_on_the_heap() {
        struct NoBox;
        impl WindowSource for NoBox {
            type W = Boxed;
            fn take(&mut self) -> Option<Boxed> {
                None
            }
        }
        let mut buf = SpillBuf::new(Vec::new(), Some(NoBox));
        buf.extend(&vec![1u8; SPILL_MIN + 1]);
        buf.push(7);
        let (place, _) = buf.finish();
        assert!(matches!(&place, Place::Heap(v) if v.len() == SPILL_MIN + 2));
    }
}
