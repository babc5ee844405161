//! `Shared<T>`: a read-only value every worker sees without copying it per task —
//! a big dataset, a model, a lookup table, the context your tasks need.
//!
//! The notebook says processes cannot share memory ("no es posible que compartan
//! memoria"); with fondo they can share what does not change. [`Shared::new`]
//! encodes a value once into sealed shared memory (a memfd nobody can write any
//! more); [`Shared::from_slice`] copies plain numbers there as they are. A task
//! receives a `Shared` like any argument, but what crosses per task is its id, 8
//! bytes: each worker process gets the memory itself once, the first time a task
//! of its needs it, maps it read-only, and (for a serde value) decodes it once.
//! Slices of [`bytemuck::Pod`] numbers are read in place: zero copies, and a
//! worker's memory grows only by the pages it reads. The memory goes away with the
//! last handle and the workers that hold it — also after a `kill -9` of anyone: it
//! lives in no file.
//!
//! Threads see the very same value by reference; MPI ranks receive its bytes once
//! each.
//!
//! ```
//! use fondo::{Pool, Shared};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Model { weights: Vec<f64>, bias: f64 }
//!
//! fn predict(model: &Model, x: f64) -> f64 {
//!     model.weights.iter().map(|w| w * x).sum::<f64>() + model.bias
//! }
//! fn total(data: Shared<[u32]>, from: usize) -> u64 {
//!     data[from..].iter().map(|&v| u64::from(v)).sum()
//! }
//!
//! let pool = Pool::processes(2)?;
//! // Context sent once per worker, not once per task:
//! let model = Shared::new(Model { weights: vec![1.0, 2.0], bias: 0.5 })?;
//! assert_eq!(pool.map_with(&model, predict, [1.0, 2.0])?, [3.5, 6.5]);
//! // A dataset read in place by every worker:
//! let data = Shared::from_slice(&[1u32, 2, 3, 4])?;
//! assert_eq!(pool.starmap(total, [(data.clone(), 0), (data, 2)])?, [10, 7]);
//! # Ok::<(), fondo::Error>(())
//! ```
//!
//! # What a worker process does not inherit
//!
//! Worker processes are this program started again, diverted before `main`: they
//! never run `main`, so nothing `main` set up exists there — a static you filled,
//! a `OnceLock` you initialised, a file you opened all read as they would before
//! `main` (log records are the exception: fondo forwards them to the parent's
//! logger). Pass what tasks need as arguments, as a `Shared`
//! value (once per worker), or set it up in each worker with
//! [`Builder::initializer`](crate::Builder::initializer).

use crate::boundary::shares::{self, Share};
use crate::error::{Error, Result};
use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::marker::PhantomData;
use std::sync::Arc;

/// A read-only value shared with every worker without a copy per task (see the
/// [module docs](self)). Cloning it clones a handle.
pub struct Shared<T: ?Sized> {
    share: Arc<Share>,
    _value: PhantomData<fn(&T)>,
}

impl<T: ?Sized> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            share: self.share.clone(),
            _value: PhantomData,
        }
    }
}

impl<T: ?Sized> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("type", &std::any::type_name::<T>())
            .field("bytes", &self.share.len())
            .finish()
    }
}

/// What a [`Shared`] value can hold: a serde value (decoded at most once per
/// process) or a slice of plain numbers (read in place). Sealed.
pub trait Shareable: sealed::Access {}

impl<T: ?Sized + sealed::Access> Shareable for T {}

mod sealed {
    use crate::boundary::shares::Share;
    use crate::error::Error;
    use bytemuck::Pod;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// How the value behind a share is reached.
    pub trait Access {
        /// The value, decoding it the first time if needed.
        fn access(share: &Share) -> std::result::Result<&Self, String>;
    }

    impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Access for T {
        fn access(share: &Share) -> std::result::Result<&T, String> {
            share.value(|bytes| {
                crate::boundary::item::decode_item::<T>(bytes, crate::error::Payload::Arguments)
                    .map_err(|f| Error::from(f).to_string())
            })
        }
    }

    impl<P: Pod> Access for [P] {
        fn access(share: &Share) -> std::result::Result<&[P], String> {
            bytemuck::try_cast_slice(share.bytes()).map_err(|e| {
                format!(
                    "shared bytes are not a [{}]: {e}",
                    std::any::type_name::<P>()
                )
            })
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Shared<T> {
    /// Encodes `value` once into sealed shared memory. The caller keeps using the
    /// value itself (no decoding in this process); each worker decodes it once.
    pub fn new(value: T) -> Result<Self> {
        let mut bytes = Vec::new();
        crate::boundary::item::encode_into(&mut bytes, &value).map_err(|kept| {
            Error::Serialization {
                what: crate::error::Payload::Arguments,
                step: crate::error::SerdeStep::Serialize,
                type_name: std::any::type_name::<T>().to_owned(),
                message: kept.to_string(),
            }
        })?;
        Ok(Shared {
            share: Share::create(&bytes, Some(Box::new(value)))?,
            _value: PhantomData,
        })
    }
}

impl<P: Pod + Send + Sync> Shared<[P]> {
    /// Copies `values` once into sealed shared memory, where every process reads
    /// them in place.
    pub fn from_slice(values: &[P]) -> Result<Self> {
        Ok(Shared {
            share: Share::create(bytemuck::cast_slice(values), None)?,
            _value: PhantomData,
        })
    }
}

impl<T: ?Sized + Shareable> Shared<T> {
    /// The value; in a worker, decoded the first time it is asked for. An error
    /// if it cannot be decoded there (its `Deserialize` fails).
    pub fn try_get(&self) -> Result<&T> {
        T::access(&self.share).map_err(|message| Error::Serialization {
            what: crate::error::Payload::Arguments,
            step: crate::error::SerdeStep::Deserialize,
            type_name: std::any::type_name::<T>().to_owned(),
            message,
        })
    }

    /// The value, as [`try_get`](Self::try_get) gives it. Panics if it cannot be
    /// decoded in this process; in a task, that panic is the task's
    /// `Err(Panicked)`.
    pub fn get(&self) -> &T {
        match self.try_get() {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// Bytes the value takes in shared memory (encoded, or the slice's).
    pub fn byte_len(&self) -> usize {
        self.share.len()
    }
}

impl<T: ?Sized + Shareable> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.get()
    }
}

/// A task of the form `f(&context, item)` (see [`Pool::map_with`](crate::Pool::map_with)):
/// `f` with the shared context put before each item. Zero-sized and `Copy` when `f`
/// is, so it runs in worker processes as `f` would.
pub struct WithContext<F, C: ?Sized>(pub(crate) F, PhantomData<fn(&C)>);

impl<F, C: ?Sized> WithContext<F, C> {
    pub(crate) fn new(f: F) -> Self {
        WithContext(f, PhantomData)
    }
}

impl<F: Clone, C: ?Sized> Clone for WithContext<F, C> {
    fn clone(&self) -> Self {
        WithContext(self.0.clone(), PhantomData)
    }
}

impl<F: Copy, C: ?Sized> Copy for WithContext<F, C> {}

impl<F, C: ?Sized> std::fmt::Debug for WithContext<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithContext")
    }
}

impl<F, C, T, R> crate::Task<(Shared<C>, T)> for WithContext<F, C>
where
    F: Fn(&C, T) -> R + Send + Sync + 'static,
    C: ?Sized + Shareable + 'static,
{
    type Output = R;

    #[inline]
    fn call(&self, (context, item): (Shared<C>, T)) -> R {
        (self.0)(context.get(), item)
    }
}

/// Pairs a context with a task that takes it (what [`partial!`](crate::partial) makes):
/// the closure gets its signature, `Fn(&C, T) -> R`, from here.
#[doc(hidden)]
pub fn bind<C: ?Sized, F, T, R>(context: Shared<C>, task: F) -> (Shared<C>, F)
where
    F: Fn(&C, T) -> R,
{
    (context, task)
}

/// Writes a task that needs values from its surroundings, Python's
/// `functools.partial`: list the values it captures, and get a context
/// ([`Shared`], sent once per worker) and a task that takes it, for
/// [`Pool::map_with`](crate::Pool::map_with). Inside the body the listed names are
/// references to the context's copies.
///
/// ```
/// let (offset, scale) = (10u64, 3u64);
/// let (context, task) = fondo::partial!((offset, scale) |x: u64| (x + offset) * scale)?;
/// let pool = fondo::Pool::processes(2)?;
/// assert_eq!(pool.map_with(&context, task, 0..3)?, [30, 33, 36]);
/// # Ok::<(), fondo::Error>(())
/// ```
///
/// A value the body uses but the list leaves out makes the task a capturing
/// closure, refused by the compiler at this line; a listed value that is not
/// `serde` is refused at this line too.
///
/// ```compile_fail
/// let (offset, name) = (10u64, String::from("left out"));
/// let (context, task) = fondo::partial!((offset) |x: u64| x + offset + name.len() as u64)?;
/// let pool = fondo::Pool::processes(2)?;
/// let _ = pool.map_with(&context, task, 0..3);
/// # Ok::<(), fondo::Error>(())
/// ```
#[macro_export]
macro_rules! partial {
    (($($captured:ident),+ $(,)?) |$arg:ident : $ty:ty| $body:expr) => {
        $crate::Shared::new(($($captured,)+)).map(|context| {
            $crate::shared::bind(context, |($($captured,)+), $arg: $ty| $body)
        })
    };
    (($($captured:ident),+ $(,)?) |$arg:ident| $body:expr) => {
        $crate::Shared::new(($($captured,)+)).map(|context| {
            $crate::shared::bind(context, |($($captured,)+), $arg| $body)
        })
    };
}

/// A `Shared` travels as its id: the backend delivers the memory itself to each
/// worker once, before the first task that needs it.
impl<T: ?Sized> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        shares::note(&self.share);
        serializer.serialize_u64(self.share.id())
    }
}

impl<'de, T: ?Sized> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let id = u64::deserialize(deserializer)?;
        let share = shares::registry().get(id).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "shared value {id:#x} was never delivered to this process (a Shared made \
                 in a worker cannot travel back to its parent)"
            ))
        })?;
        Ok(Shared {
            share,
            _value: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_value_reads_back_where_it_was_made() {
        let s = Shared::new(vec![String::from("a"), String::from("b")]).expect("share");
        assert_eq!(s.get(), &["a", "b"]);
        assert!(s.byte_len() > 0);
        let n = Shared::from_slice(&[1.5f64, 2.5]).expect("share");
        assert_eq!(&*n, &[1.5, 2.5]);
        let empty = Shared::<[u8]>::from_slice(&[]).expect("empty");
        assert!(empty.is_empty());
    }

    #[test]
    fn a_shared_value_travels_as_its_id_and_is_found_again() {
        let s = Shared::new(7u64).expect("share");
        let collector = shares::Collector::start();
        let bytes = postcard::to_allocvec(&(s.clone(), 1u8)).expect("encodes");
        assert_eq!(
            collector.take().len(),
            1,
            "the share was noted for delivery"
        );
        drop(collector);
        assert!(
            bytes.len() <= 1 + 10,
            "an id, not the value: {} bytes",
            bytes.len()
        );
        let (back, _): (Shared<u64>, u8) = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(*back, 7);
    }

    #[test]
    fn an_unknown_id_is_a_clear_error() {
        let bytes = postcard::to_allocvec(&12345u64).expect("encodes");
        let err = crate::boundary::item::decode_item::<Shared<u64>>(
            &bytes,
            crate::error::Payload::Arguments,
        )
        .expect_err("never delivered");
        assert!(err.message.contains("never delivered"), "{err:?}");
    }
}
