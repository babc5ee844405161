//! The item codec: one value — a task's arguments or its outcome — as a
//! length-prefixed postcard item. A user `Serialize` or `Deserialize` that fails or
//! panics fails that one value, with the type's name and its own message; it never
//! unwinds into fondo's threads or aborts a worker.

use super::codec::Kept;
use super::failure::WireResult;
use crate::error::{Error, Payload, SerdeStep};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where encoded bytes go: a `Vec`, or a buffer that may move into shared memory
/// as it grows (`arena::ArgBuf`).
pub(crate) trait Out {
    /// Bytes written so far.
    fn len(&self) -> usize;
    /// Appends `bytes`.
    fn extend(&mut self, bytes: &[u8]);
    /// Appends one byte (postcard writes many that way).
    fn push(&mut self, byte: u8) {
        self.extend(&[byte]);
    }
    /// Forgets everything after the first `len` bytes.
    fn truncate(&mut self, len: usize);
    /// Overwrites the 4 bytes at `at` (a length prefix written earlier).
    fn patch(&mut self, at: usize, bytes: [u8; 4]);
}

impl Out for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline]
    fn extend(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
    fn patch(&mut self, at: usize, bytes: [u8; 4]) {
        self[at..at + 4].copy_from_slice(&bytes);
    }
}

/// A postcard output that appends to a borrowed buffer, so many values can share
/// one buffer without a copy each.
struct AppendTo<'a, O: ?Sized>(&'a mut O);

impl<O: Out + ?Sized> postcard::ser_flavors::Flavor for AppendTo<'_, O> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend(data);
        Ok(())
    }
    #[inline(always)] // once per byte of a `Vec<u8>`: see `SpillBuf::push`
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `value`'s encoding to `out`; on failure `out` is left as it was, and
/// the error keeps the message a user's `Serialize` gave it (`codec.rs`).
pub(crate) fn encode_into<T: Serialize + ?Sized, O: Out + ?Sized>(
    out: &mut O,
    value: &T,
) -> Result<(), Kept<postcard::Error>> {
    let mark = out.len();
    let r = super::codec::serialize_with_flavor(value, AppendTo(&mut *out));
    if r.is_err() {
        out.truncate(mark);
    }
    r
}

/// Appends `value` as one length-prefixed item (`u32` LE length, then its postcard
/// bytes), so a reader can skip an item it cannot decode and go on with the next.
pub(crate) fn push_item<T: Serialize + ?Sized, O: Out + ?Sized>(
    out: &mut O,
    value: &T,
) -> Result<(), Kept<postcard::Error>> {
    let mark = out.len();
    out.extend(&[0; 4]);
    if let Err(e) = encode_into(out, value) {
        out.truncate(mark);
        return Err(e);
    }
    match u32::try_from(out.len() - mark - 4) {
        Ok(len) => {
            out.patch(mark, len.to_le_bytes());
            Ok(())
        }
        Err(_) => {
            out.truncate(mark);
            Err(Kept::plain(postcard::Error::SerializeBufferFull))
        }
    }
}

/// Takes the next length-prefixed item off the front of `bytes`; `None` when the
/// bytes run out or the length points past them.
pub(crate) fn next_item<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        *bytes = &[];
        return None;
    }
    let (item, rest) = rest.split_at(len);
    *bytes = rest;
    Some(item)
}

/// A value that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SerdeFailure {
    pub(crate) what: Payload,
    pub(crate) step: SerdeStep,
    pub(crate) type_name: String,
    pub(crate) message: String,
}

impl SerdeFailure {
    fn new<T: ?Sized>(what: Payload, step: SerdeStep, message: String) -> SerdeFailure {
        SerdeFailure {
            what,
            step,
            type_name: std::any::type_name::<T>().to_owned(),
            message,
        }
    }

    /// The failure of a value that is missing from its batch.
    pub(crate) fn missing<T: ?Sized>(what: Payload) -> SerdeFailure {
        Self::new::<T>(
            what,
            SerdeStep::Deserialize,
            "the batch ended before this value".into(),
        )
    }
}

impl From<SerdeFailure> for Error {
    fn from(f: SerdeFailure) -> Self {
        Error::Serialization {
            what: f.what,
            step: f.step,
            type_name: f.type_name,
            message: f.message,
        }
    }
}

/// Appends `value` as one item; on failure (an error or a panic in its
/// `Serialize`) `out` is left as it was.
pub(crate) fn encode_item<T: Serialize + ?Sized, O: Out + ?Sized>(
    out: &mut O,
    value: &T,
    what: Payload,
) -> Result<(), SerdeFailure> {
    let mark = out.len();
    let failure = match crate::panic::catch(|| push_item(&mut *out, value)) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(caught) => format!("panicked: {}", caught.message),
    };
    out.truncate(mark);
    Err(SerdeFailure::new::<T>(what, SerdeStep::Serialize, failure))
}

/// Appends `value` as one item, not catching a panic: for callers that catch one for
/// a whole batch (`panic::catch_each`), and undo a panic's partial write themselves.
/// On an error `out` is left as it was.
#[inline]
pub(crate) fn encode_item_unguarded<T: Serialize + ?Sized, O: Out + ?Sized>(
    out: &mut O,
    value: &T,
    what: Payload,
) -> Result<(), SerdeFailure> {
    push_item(out, value)
        .map_err(|e| SerdeFailure::new::<T>(what, SerdeStep::Serialize, e.to_string()))
}

/// The failure of a `T` whose `Serialize` panicked.
pub(crate) fn serialize_panicked<T: ?Sized>(
    what: Payload,
    caught: &crate::panic::Caught,
) -> SerdeFailure {
    SerdeFailure::new::<T>(
        what,
        SerdeStep::Serialize,
        format!("panicked: {}", caught.message),
    )
}

/// Decodes one item's bytes as a `T`; an error or a panic in its `Deserialize` is
/// a failure of this value only.
pub(crate) fn decode_item<T: DeserializeOwned>(
    bytes: &[u8],
    what: Payload,
) -> Result<T, SerdeFailure> {
    crate::panic::catch(|| decode_unguarded::<T>(bytes, what))
        .unwrap_or_else(|caught| Err(deserialize_panicked::<T>(what, &caught)))
}

/// Decodes one item's bytes as a `T`, not catching a panic: for callers that catch
/// one for a whole batch (`panic::catch_each`).
#[inline(always)] // per outcome: moving its result out of a call cost more than decoding it
fn decode_unguarded<T: DeserializeOwned>(bytes: &[u8], what: Payload) -> Result<T, SerdeFailure> {
    super::codec::from_bytes::<T>(bytes)
        .map_err(|e| SerdeFailure::new::<T>(what, SerdeStep::Deserialize, e.to_string()))
}

/// The failure of a `T` whose `Deserialize` panicked.
fn deserialize_panicked<T: ?Sized>(what: Payload, caught: &crate::panic::Caught) -> SerdeFailure {
    SerdeFailure::new::<T>(
        what,
        SerdeStep::Deserialize,
        format!("panicked: {}", caught.message),
    )
}

/// A decoded `WireResult<R>` as the task's outcome; a failure to decode it is named
/// after `R`.
#[inline(always)]
fn outcome_of<R>(decoded: Result<WireResult<R>, SerdeFailure>) -> crate::Result<R> {
    match decoded {
        Ok(outcome) => outcome.map_err(Error::from),
        Err(mut failure) => {
            std::any::type_name::<R>().clone_into(&mut failure.type_name);
            Err(failure.into())
        }
    }
}

/// Decodes a task's outcome (a `WireResult<R>` item, or its absence): the value, the
/// task's own failure, or the failure to decode it, named after `R`.
pub(crate) fn decode_outcome<R: DeserializeOwned>(item: Option<&[u8]>) -> crate::Result<R> {
    let Some(bytes) = item else {
        return Err(SerdeFailure::missing::<R>(Payload::Result).into());
    };
    outcome_of(decode_item::<WireResult<R>>(bytes, Payload::Result))
}

/// Decodes the `count` outcomes of a batch off `body`, each as [`decode_outcome`]
/// would, under one `catch` for the batch: a `Deserialize` that panics fails its
/// own outcome, and decoding goes on with the next.
pub(crate) fn decode_outcomes<R: DeserializeOwned>(
    count: usize,
    body: &[u8],
) -> Vec<crate::Result<R>> {
    let mut state = (Vec::with_capacity(count), body);
    crate::panic::catch_each(
        count,
        &mut state,
        |(outcomes, body), _| {
            // `next_item` moves past the item before it is decoded, so a panic
            // leaves `body` at the next one.
            let outcome = match next_item(body) {
                Some(bytes) => {
                    outcome_of(decode_unguarded::<WireResult<R>>(bytes, Payload::Result))
                }
                None => Err(SerdeFailure::missing::<R>(Payload::Result).into()),
            };
            outcomes.push(outcome);
        },
        |(outcomes, _), _, caught| {
            let failure = deserialize_panicked::<WireResult<R>>(Payload::Result, &caught);
            outcomes.push(outcome_of::<R>(Err(failure)));
        },
    );
    debug_assert_eq!(state.0.len(), count, "one outcome per task");
    state.0
}

/// Takes the next item off `bytes` and decodes it, not catching a panic (see
/// [`decode_outcomes`]).
pub(crate) fn decode_next_unguarded<T: DeserializeOwned>(
    bytes: &mut &[u8],
    what: Payload,
) -> Result<T, SerdeFailure> {
    decode_unguarded(next_of::<T>(bytes, what)?, what)
}

/// Takes the next item off `bytes` and decodes it.
#[cfg(test)]
pub(crate) fn decode_next<T: DeserializeOwned>(
    bytes: &mut &[u8],
    what: Payload,
) -> Result<T, SerdeFailure> {
    decode_item(next_of::<T>(bytes, what)?, what)
}

/// The next item off `bytes`, or the failure of a `T` that is missing.
fn next_of<'a, T>(bytes: &mut &'a [u8], what: Payload) -> Result<&'a [u8], SerdeFailure> {
    next_item(bytes).ok_or_else(|| SerdeFailure::missing::<T>(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserializer, Serializer};

    /// Fails or panics in both directions on demand.
    #[derive(Debug, PartialEq)]
    struct Moody(u8);

    impl Serialize for Moody {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                1 => Err(serde::ser::Error::custom("one will not go")),
                2 => panic!("two panics going out"),
                n => s.serialize_u8(n),
            }
        }
    }

    impl<'de> Deserialize<'de> for Moody {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match u8::deserialize(d)? {
                3 => Err(serde::de::Error::custom("three will not come")),
                4 => panic!("four panics coming in"),
                n => Ok(Moody(n)),
            }
        }
    }

    #[test]
    fn values_round_trip_as_items() {
        let mut out = Vec::new();
        encode_item(&mut out, &Moody(9), Payload::Result).expect("encodes");
        encode_item(&mut out, &Moody(10), Payload::Result).expect("encodes");
        let mut rest = &out[..];
        assert_eq!(decode_next(&mut rest, Payload::Result), Ok(Moody(9)));
        assert_eq!(decode_next(&mut rest, Payload::Result), Ok(Moody(10)));
        let missing = decode_next::<Moody>(&mut rest, Payload::Result).expect_err("none left");
        assert!(missing.type_name.ends_with("Moody"));
    }

    #[test]
    fn a_failing_or_panicking_serialize_leaves_the_output_as_it_was() {
        let mut out = Vec::new();
        encode_item(&mut out, &Moody(9), Payload::Arguments).expect("encodes");
        let before = out.clone();
        for n in [1, 2] {
            let failure = encode_item(&mut out, &Moody(n), Payload::Arguments).expect_err("fails");
            assert_eq!(out, before);
            assert_eq!(
                (failure.what, failure.step),
                (Payload::Arguments, SerdeStep::Serialize)
            );
            assert!(failure.type_name.ends_with("Moody"), "{failure:?}");
        }
        let panicked = encode_item(&mut out, &Moody(2), Payload::Arguments).expect_err("fails");
        assert!(
            panicked.message.contains("two panics going out"),
            "{panicked:?}"
        );
    }

    #[test]
    fn a_failing_or_panicking_deserialize_fails_that_value_only() {
        let mut out = Vec::new();
        for n in [3u8, 4, 5] {
            encode_item(&mut out, &n, Payload::Result).expect("encodes");
        }
        let mut rest = &out[..];
        let refused = decode_next::<Moody>(&mut rest, Payload::Result).expect_err("3 fails");
        assert_eq!(refused.step, SerdeStep::Deserialize);
        let panicked = decode_next::<Moody>(&mut rest, Payload::Result).expect_err("4 panics");
        assert!(
            panicked.message.contains("four panics coming in"),
            "{panicked:?}"
        );
        assert_eq!(decode_next(&mut rest, Payload::Result), Ok(Moody(5)));
    }
}
