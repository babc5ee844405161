//! Numeric arrays that cross a process boundary as raw bytes: [`Array<T>`] for a
//! vector of plain numbers, and `#[serde(with = "fondo::array")]` for a `Vec<T>`
//! field of a struct.
//!
//! serde sends a `Vec<f64>` one element at a time (a varint, or eight bytes, each
//! through a call); as bytes it is one copy, and big ones go through fondo's shared
//! memory untouched, like `serde_bytes` does for `Vec<u8>`. `T` is any
//! [`bytemuck::Pod`] type — `f32`, `f64`, integers, arrays of them, `#[repr(C)]`
//! structs of them. The bytes are the machine's own (endianness included): both
//! ends of a fondo pool run the same executable, on the same architecture.
//!
//! ```
//! use fondo::Array;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Signal {
//!     rate: u32,
//!     #[serde(with = "fondo::array")]
//!     samples: Vec<f32>,
//! }
//!
//! fn energy(s: Signal) -> f64 { s.samples.iter().map(|x| f64::from(x * x)).sum() }
//! fn doubled(a: Array<f64>) -> Array<f64> { Array(a.iter().map(|x| 2.0 * x).collect()) }
//!
//! let pool = fondo::Pool::processes(2)?;
//! let e = pool.apply(energy, (Signal { rate: 8000, samples: vec![0.5; 4] },))?;
//! assert_eq!(e, 1.0);
//! let d = pool.apply(doubled, (Array(vec![1.0, 2.5]),))?;
//! assert_eq!(*d, [2.0, 5.0]);
//! # Ok::<(), fondo::Error>(())
//! ```

use bytemuck::Pod;
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// A vector of plain numbers that is serialised as its raw bytes (see the
/// [module docs](self)). Derefs to the `Vec<T>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Array<T: Pod>(pub Vec<T>);

impl<T: Pod> std::ops::Deref for Array<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Pod> std::ops::DerefMut for Array<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Pod> From<Vec<T>> for Array<T> {
    fn from(v: Vec<T>) -> Self {
        Array(v)
    }
}

impl<T: Pod> From<Array<T>> for Vec<T> {
    fn from(a: Array<T>) -> Self {
        a.0
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(Array)
    }
}

/// Serialises `values` as their raw bytes: `#[serde(with = "fondo::array")]`.
pub fn serialize<S: Serializer, T: Pod>(values: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytemuck::cast_slice(values))
}

/// Deserialises a vector from raw bytes written by [`serialize`]: one copy, into a
/// fresh, properly aligned vector.
pub fn deserialize<'de, D: Deserializer<'de>, T: Pod>(deserializer: D) -> Result<Vec<T>, D::Error> {
    deserializer.deserialize_bytes(PodVisitor(PhantomData))
}

struct PodVisitor<T>(PhantomData<T>);

impl<T: Pod> Visitor<'_> for PodVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the raw bytes of [{}]", std::any::type_name::<T>())
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<T>, E> {
        let size = std::mem::size_of::<T>();
        if size == 0 {
            return Err(E::custom(
                "an array of zero-sized elements has no bytes to carry",
            ));
        }
        if !bytes.len().is_multiple_of(size) {
            return Err(E::custom(format!(
                "{} bytes are not a whole number of {}-byte {}",
                bytes.len(),
                size,
                std::any::type_name::<T>()
            )));
        }
        // Zeroed by the allocator (fresh pages need no memset), then one copy.
        let mut values: Vec<T> = bytemuck::allocation::zeroed_vec(bytes.len() / size);
        bytemuck::cast_slice_mut::<T, u8>(&mut values).copy_from_slice(bytes);
        Ok(values)
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<T>, E> {
        self.visit_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        name: String,
        #[serde(with = "crate::array")]
        xs: Vec<f64>,
        #[serde(with = "crate::array")]
        ids: Vec<[u32; 3]>,
    }

    #[test]
    fn arrays_round_trip_as_bytes() {
        let a = Array(vec![1.5f64, -2.0, f64::MAX, 0.0]);
        let bytes = postcard::to_allocvec(&a).expect("encodes");
        // A length prefix and the raw 32 bytes: no per-element encoding.
        assert_eq!(bytes.len(), 1 + 32);
        let back: Array<f64> = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, a);
        let h = Holder {
            name: "h".into(),
            xs: vec![0.25; 1000],
            ids: vec![[1, 2, 3], [4, 5, 6]],
        };
        let back: Holder =
            postcard::from_bytes(&postcard::to_allocvec(&h).expect("encodes")).expect("decodes");
        assert_eq!(back, h);
    }

    #[test]
    fn a_ragged_byte_count_is_an_error_not_a_panic() {
        let bytes = postcard::to_allocvec(&serde_bytes::ByteBuf::from(vec![0u8; 7])).expect("e");
        let err = postcard::from_bytes::<Array<f64>>(&bytes).expect_err("7 bytes of f64");
        assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");
        let empty: Array<u64> =
            postcard::from_bytes(&postcard::to_allocvec(&Array::<u64>(vec![])).expect("e"))
                .expect("an empty array is fine");
        assert!(empty.is_empty());
    }
}
