//! Serde proxies that keep the messages of custom errors, which postcard throws away.
//!
//! postcard turns every `Error::custom(msg)` into a bare `SerdeDeCustom` /
//! `SerdeSerCustom`, so a user type whose `Deserialize` says "port must be below
//! 65536" reaches the user as "Serde Deserialization Error". The proxies here sit
//! between user code and any serde format: user code sees an error type of ours
//! ([`Raised`]), which holds the message; where an error has to go back through
//! the format (a user `Visitor`, `DeserializeSeed` or `Serialize` called *by* the
//! format), the message is parked in a cell owned by the top-level call, and
//! picked up again when the format hands its error back. The call returns a
//! [`Kept`]: the format's error, the message, and the type that raised it.
//!
//! Every piece is generic and inlined: on the happy path the proxies add no
//! allocation and no dynamic dispatch, only a pointer to the cell; the error paths
//! are out of line (`#[cold]`), and the error user code sees is two words, so
//! the `Result`s on the hot path stay small. Still, an extra layer changes what
//! the compiler inlines: a struct with an enum and a `String` took 15% more
//! instructions to encode and 22% more to decode (primitives and bytes: none).
//! So [`from_bytes`], `take_from_bytes` and [`serialize_with_flavor`] run
//! postcard alone and go through the proxies only to recover a message postcard
//! dropped (within 2% of postcard alone); they are the ones for the hot path.
//!
//! Limits: serde's hidden, "not public API" hooks (`__deserialize_content_v1`,
//! `__private_visit_untagged_option`) are left to their defaults, which is what
//! postcard gets anyway; a format that drops an error a user callback returned
//! and goes on may leave its message parked, to be attached to its next error.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};

/// An error of the wrapped format, with the custom message it was raised with.
#[derive(Debug)]
pub(crate) struct Kept<E> {
    /// The format's own error (for postcard, `SerdeDeCustom` when `custom` is set).
    pub(crate) inner: E,
    /// The message of the `custom` (or `invalid_type`, `missing_field`…) error that
    /// failed the call, when user code raised one.
    pub(crate) custom: Option<String>,
    /// With `custom`: the innermost type whose `Serialize`/`Deserialize` returned
    /// it to the format (or the top-level type), as `std::any::type_name` spells it.
    pub(crate) origin: Option<&'static str>,
}

/// Shows the user's message (after its type, when known) rather than the format's
/// error, which for postcard says only "Serde Deserialization Error".
impl<E: fmt::Display> fmt::Display for Kept<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.custom {
            Some(message) => show(f, message, self.origin),
            None => self.inner.fmt(f),
        }
    }
}

fn show(f: &mut fmt::Formatter<'_>, message: &str, origin: Option<&str>) -> fmt::Result {
    match origin {
        Some(origin) => write!(f, "{origin}: {message}"),
        None => f.write_str(message),
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Kept<E> {}

impl<E> Kept<E> {
    /// A format error no user message came with.
    #[cold]
    pub(crate) fn plain(inner: E) -> Self {
        Kept {
            inner,
            custom: None,
            origin: None,
        }
    }
}

/// The proxies' error type, which user code sees: the format's error and, when
/// user code raised it, its message. The message is boxed, so that the `Result`s
/// every proxied call returns stay small (two words for postcard): with the
/// message inline (48 bytes), decoding a small struct took 70% more instructions.
#[derive(Debug)]
struct Raised<E> {
    inner: E,
    note: Option<Box<Note>>,
}

/// A message raised by user code.
#[derive(Debug)]
struct Note {
    message: String,
    /// Set when the message first crosses the format (see [`Kept::origin`]).
    origin: Option<&'static str>,
}

impl<E> Raised<E> {
    /// An error raised by user code: the format gets its own error for `message`.
    #[cold]
    fn new(inner: E, message: String) -> Self {
        let note = Note {
            message,
            origin: None,
        };
        Raised {
            inner,
            note: Some(Box::new(note)),
        }
    }

    /// Names `T` as the origin of a message that has none yet.
    #[cold]
    fn named_after<T: ?Sized>(mut self) -> Self {
        if let Some(note) = &mut self.note
            && note.origin.is_none()
        {
            note.origin = origin_name::<T>();
        }
        self
    }

    /// The top-level error, where `T` is the top-level type.
    #[cold]
    fn kept<T: ?Sized>(self) -> Kept<E> {
        let Raised { inner, note } = self.named_after::<T>();
        let (custom, origin) = match note {
            Some(note) => (Some(note.message), note.origin),
            None => (None, None),
        };
        Kept {
            inner,
            custom,
            origin,
        }
    }
}

/// `T`'s name, without the `&` of a value serialized through a reference; `None`
/// for serde-derive's helpers (`__Field`, the variant or field name read before
/// the value, and `__DeserializeWith`), so the type they belong to is named.
fn origin_name<T: ?Sized>() -> Option<&'static str> {
    let name = std::any::type_name::<T>();
    (!name.contains("::__")).then(|| name.trim_start_matches('&'))
}

impl<E: fmt::Display> fmt::Display for Raised<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.note.as_deref() {
            Some(note) => show(f, &note.message, note.origin),
            None => self.inner.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Raised<E> {}

impl<E: ser::Error> ser::Error for Raised<E> {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let message = msg.to_string();
        Raised::new(E::custom(&message), message)
    }
}

/// The `de::Error` constructors other than `custom` go to the format's own ones
/// (some formats word them better); the kept message is serde's wording, taken
/// from serde's plain error type.
impl<E: de::Error> de::Error for Raised<E> {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let message = msg.to_string();
        Raised::new(E::custom(&message), message)
    }
    #[cold]
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let message = de::value::Error::invalid_type(unexp, exp).to_string();
        Raised::new(E::invalid_type(unexp, exp), message)
    }
    #[cold]
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let message = de::value::Error::invalid_value(unexp, exp).to_string();
        Raised::new(E::invalid_value(unexp, exp), message)
    }
    #[cold]
    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        let message = de::value::Error::invalid_length(len, exp).to_string();
        Raised::new(E::invalid_length(len, exp), message)
    }
    #[cold]
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let message = de::value::Error::unknown_variant(variant, expected).to_string();
        Raised::new(E::unknown_variant(variant, expected), message)
    }
    #[cold]
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let message = de::value::Error::unknown_field(field, expected).to_string();
        Raised::new(E::unknown_field(field, expected), message)
    }
    #[cold]
    fn missing_field(field: &'static str) -> Self {
        let message = de::value::Error::missing_field(field).to_string();
        Raised::new(E::missing_field(field), message)
    }
    #[cold]
    fn duplicate_field(field: &'static str) -> Self {
        let message = de::value::Error::duplicate_field(field).to_string();
        Raised::new(E::duplicate_field(field), message)
    }
}

/// Serializes `value` into `serializer` as `value.serialize(serializer)` would,
/// but a custom error raised by any `Serialize` in it keeps its message.
#[inline]
pub(crate) fn serialize_keeping_messages<S, T>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, Kept<S::Error>>
where
    S: Serializer,
    T: Serialize + ?Sized,
{
    let parked = Cell::new(None);
    let proxy = Slot(&parked).ser(serializer);
    value.serialize(proxy).map_err(Raised::kept::<T>)
}

/// Deserializes a `T` from `deserializer` as `T::deserialize(deserializer)`
/// would, but a custom error raised by any `Deserialize` in it keeps its message.
#[inline]
pub(crate) fn deserialize_keeping_messages<'de, D, T>(deserializer: D) -> Result<T, Kept<D::Error>>
where
    D: Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    let parked = Cell::new(None);
    let proxy = Slot(&parked).de(deserializer);
    T::deserialize(proxy).map_err(Raised::kept::<T>)
}

// ---------------------------------------------------------------------------
// postcard at its own speed: these run postcard alone, and only when it failed
// with a custom error (whose message it dropped) run the same encoding or
// decoding again through the proxies, for the message. A failure costs its work
// twice; a `Serialize`/`Deserialize` that fails runs twice, and one that fails
// only sometimes may leave no message. As with postcard, what a failed encoding
// wrote into the flavor is the caller's to discard.

/// `postcard::from_bytes`, keeping the message of a custom error.
#[inline]
pub(crate) fn from_bytes<'a, T>(bytes: &'a [u8]) -> Result<T, Kept<postcard::Error>>
where
    T: de::Deserialize<'a>,
{
    postcard::from_bytes(bytes).map_err(|e| match e {
        postcard::Error::SerdeDeCustom => decode_again::<T>(bytes, e),
        e => Kept::plain(e),
    })
}

/// `postcard::take_from_bytes`, keeping the message of a custom error.
#[inline]
#[cfg(test)]
pub(crate) fn take_from_bytes<'a, T>(
    bytes: &'a [u8],
) -> Result<(T, &'a [u8]), Kept<postcard::Error>>
where
    T: de::Deserialize<'a>,
{
    postcard::take_from_bytes(bytes).map_err(|e| match e {
        postcard::Error::SerdeDeCustom => decode_again::<T>(bytes, e),
        e => Kept::plain(e),
    })
}

/// Decodes `bytes` again, through the proxy, for the message postcard dropped
/// from `first`.
#[cold]
#[inline(never)]
fn decode_again<'a, T: de::Deserialize<'a>>(
    bytes: &'a [u8],
    first: postcard::Error,
) -> Kept<postcard::Error> {
    let mut deserializer = postcard::Deserializer::from_bytes(bytes);
    match deserialize_keeping_messages::<_, T>(&mut deserializer) {
        Err(kept) => kept,
        Ok(_) => Kept::plain(first), // it failed only the first time
    }
}

/// `postcard::serialize_with_flavor`, keeping the message of a custom error.
#[inline]
pub(crate) fn serialize_with_flavor<T, F>(
    value: &T,
    flavor: F,
) -> Result<F::Output, Kept<postcard::Error>>
where
    T: Serialize + ?Sized,
    F: postcard::ser_flavors::Flavor,
{
    postcard::serialize_with_flavor(value, flavor).map_err(|e| match e {
        postcard::Error::SerdeSerCustom => encode_again(value, e),
        e => Kept::plain(e),
    })
}

/// Encodes `value` again, through the proxy and into nothing, for the message
/// postcard dropped from `first`.
#[cold]
#[inline(never)]
fn encode_again<T: Serialize + ?Sized>(value: &T, first: postcard::Error) -> Kept<postcard::Error> {
    let mut serializer = postcard::Serializer {
        output: postcard::ser_flavors::Size::default(),
    };
    match serialize_keeping_messages(value, &mut serializer) {
        Err(kept) => kept,
        Ok(()) => Kept::plain(first), // it failed only the first time
    }
}

/// The top-level call's cell for a message on its way through the format, whose
/// errors cannot carry it; shared by every proxy piece of the call. A pointer
/// rather than a thread-local: no lookup, and calls cannot mix their messages.
#[derive(Clone, Copy)]
struct Slot<'c>(&'c Cell<Option<Box<Note>>>);

impl<'c> Slot<'c> {
    /// An error the format returns: it takes the message parked with it, if any.
    #[cold]
    fn take_back<E>(self, inner: E) -> Raised<E> {
        let note = self.0.take();
        Raised { inner, note }
    }

    /// An error going back into the format from the user code that made a `T`:
    /// parks its message and returns the format's error. Overwrites what is
    /// parked, so a message the format dropped (with its error) does not linger.
    #[cold]
    fn hand_over<T: ?Sized, E>(self, raised: Raised<E>) -> E {
        let raised = raised.named_after::<T>();
        self.0.set(raised.note);
        raised.inner
    }

    #[inline]
    fn de<D>(self, inner: D) -> De<'c, D> {
        De { inner, slot: self }
    }

    #[inline]
    fn visitor<V>(self, inner: V) -> Vis<'c, V> {
        Vis { inner, slot: self }
    }

    #[inline]
    fn seed<T>(self, inner: T) -> Seed<'c, T> {
        Seed { inner, slot: self }
    }

    #[inline]
    fn access<A>(self, inner: A) -> Access<'c, A> {
        Access { inner, slot: self }
    }

    #[inline]
    fn ser<S>(self, inner: S) -> Ser<'c, S> {
        Ser { inner, slot: self }
    }

    #[inline]
    fn value<T>(self, value: T) -> Value<'c, T> {
        Value { value, slot: self }
    }

    /// Wraps one of the format's `Serialize*` states, or keeps its error.
    #[inline]
    fn compound<C, E>(self, state: Result<C, E>) -> Result<Compound<'c, C>, Raised<E>> {
        match state {
            Ok(inner) => Ok(Compound { inner, slot: self }),
            Err(e) => Err(self.take_back(e)),
        }
    }
}

// ---------------------------------------------------------------------------
// Deserialization: `De` wraps the format's deserializer; the format calls back
// `Vis` (a wrapped visitor) and `Seed` (a wrapped seed); user code walks the
// format's accessors through `Access`.

/// The proxy deserializer: the format's, with [`Raised`] errors.
struct De<'c, D> {
    inner: D,
    slot: Slot<'c>,
}

/// A user visitor the format calls: it sees the format's values through proxies.
struct Vis<'c, V> {
    inner: V,
    slot: Slot<'c>,
}

/// A user seed the format calls (an element, key, value or variant payload).
struct Seed<'c, T> {
    inner: T,
    slot: Slot<'c>,
}

/// The format's `SeqAccess`, `MapAccess`, `EnumAccess` or `VariantAccess`.
struct Access<'c, A> {
    inner: A,
    slot: Slot<'c>,
}

/// `deserialize_*` methods: the visitor goes in wrapped, the error comes out kept.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            let slot = self.slot;
            let value = self.inner.$method($($arg,)* slot.visitor(visitor));
            value.map_err(|e| slot.take_back(e))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = Raised<D::Error>;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// `visit_*` methods with a plain value: the user visitor gets [`Raised`] as its
/// error type, so its custom errors keep their message.
macro_rules! forward_visit {
    ($($method:ident($($arg:ident: $ty:ty)?);)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self $(, $arg: $ty)?) -> Result<V::Value, E> {
            let slot = self.slot;
            let value = self.inner.$method::<Raised<E>>($($arg)?);
            value.map_err(|k| slot.hand_over::<V::Value, E>(k))
        }
    )*};
}

/// `visit_*` methods handing over a deserializer or an accessor, which goes in
/// wrapped.
macro_rules! forward_visit_wrapped {
    ($($method:ident<$t:ident: $bound:ident>($wrap:ident);)*) => {$(
        #[inline]
        fn $method<$t: de::$bound<'de>>(self, inner: $t) -> Result<V::Value, $t::Error> {
            let slot = self.slot;
            let value = self.inner.$method(slot.$wrap(inner));
            value.map_err(|k| slot.hand_over::<V::Value, _>(k))
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(v: bool);
        visit_i8(v: i8);
        visit_i16(v: i16);
        visit_i32(v: i32);
        visit_i64(v: i64);
        visit_i128(v: i128);
        visit_u8(v: u8);
        visit_u16(v: u16);
        visit_u32(v: u32);
        visit_u64(v: u64);
        visit_u128(v: u128);
        visit_f32(v: f32);
        visit_f64(v: f64);
        visit_char(v: char);
        visit_str(v: &str);
        visit_borrowed_str(v: &'de str);
        visit_string(v: String);
        visit_bytes(v: &[u8]);
        visit_borrowed_bytes(v: &'de [u8]);
        visit_byte_buf(v: Vec<u8>);
        visit_none();
        visit_unit();
    }

    forward_visit_wrapped! {
        visit_some<D: Deserializer>(de);
        visit_newtype_struct<D: Deserializer>(de);
        visit_seq<A: SeqAccess>(access);
        visit_map<A: MapAccess>(access);
        visit_enum<A: EnumAccess>(access);
    }
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = T::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T::Value, D::Error> {
        let slot = self.slot;
        let value = self.inner.deserialize(slot.de(deserializer));
        value.map_err(|k| slot.hand_over::<T::Value, _>(k))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = Raised<A::Error>;

    #[inline]
    fn next_element_seed<T>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error>
    where
        T: DeserializeSeed<'de>,
    {
        let slot = self.slot;
        let value = self.inner.next_element_seed(slot.seed(seed));
        value.map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = Raised<A::Error>;

    #[inline]
    fn next_key_seed<K>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error>
    where
        K: DeserializeSeed<'de>,
    {
        let slot = self.slot;
        let key = self.inner.next_key_seed(slot.seed(seed));
        key.map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn next_value_seed<V>(&mut self, seed: V) -> Result<V::Value, Self::Error>
    where
        V: DeserializeSeed<'de>,
    {
        let slot = self.slot;
        let value = self.inner.next_value_seed(slot.seed(seed));
        value.map_err(|e| slot.take_back(e))
    }

    /// Forwarded (not left to the default) for a format that reads entries whole.
    #[inline]
    fn next_entry_seed<K, V>(
        &mut self,
        key: K,
        value: V,
    ) -> Result<Option<(K::Value, V::Value)>, Self::Error>
    where
        K: DeserializeSeed<'de>,
        V: DeserializeSeed<'de>,
    {
        let slot = self.slot;
        let entry = self.inner.next_entry_seed(slot.seed(key), slot.seed(value));
        entry.map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'c, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'c, A> {
    type Error = Raised<A::Error>;
    type Variant = Access<'c, A::Variant>;

    #[inline]
    fn variant_seed<V>(self, seed: V) -> Result<(V::Value, Self::Variant), Self::Error>
    where
        V: DeserializeSeed<'de>,
    {
        let slot = self.slot;
        match self.inner.variant_seed(slot.seed(seed)) {
            Ok((value, variant)) => Ok((value, slot.access(variant))),
            Err(e) => Err(slot.take_back(e)),
        }
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = Raised<A::Error>;

    #[inline]
    fn unit_variant(self) -> Result<(), Self::Error> {
        let slot = self.slot;
        self.inner.unit_variant().map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn newtype_variant_seed<T>(self, seed: T) -> Result<T::Value, Self::Error>
    where
        T: DeserializeSeed<'de>,
    {
        let slot = self.slot;
        let value = self.inner.newtype_variant_seed(slot.seed(seed));
        value.map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn tuple_variant<V>(self, len: usize, visitor: V) -> Result<V::Value, Self::Error>
    where
        V: Visitor<'de>,
    {
        let slot = self.slot;
        let value = self.inner.tuple_variant(len, slot.visitor(visitor));
        value.map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn struct_variant<V>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error>
    where
        V: Visitor<'de>,
    {
        let slot = self.slot;
        let value = self.inner.struct_variant(fields, slot.visitor(visitor));
        value.map_err(|e| slot.take_back(e))
    }
}

// ---------------------------------------------------------------------------
// Serialization: `Ser` wraps the format's serializer; every value the format is
// asked to serialize goes in as a `Value`, so nested `Serialize` impls see `Ser`
// too; `Compound` wraps the format's `Serialize*` states.

/// The proxy serializer: the format's, with [`Raised`] errors.
struct Ser<'c, S> {
    inner: S,
    slot: Slot<'c>,
}

/// A value the format serializes, through the proxy: a `&T` mostly, or an item
/// of `collect_seq`/`collect_map`.
struct Value<'c, T> {
    value: T,
    slot: Slot<'c>,
}

/// The format's `SerializeSeq`, `SerializeMap`… state.
struct Compound<'c, C> {
    inner: C,
    slot: Slot<'c>,
}

impl<T: Serialize> Serialize for Value<'_, T> {
    #[inline]
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let slot = self.slot;
        let done = self.value.serialize(slot.ser(serializer));
        done.map_err(|k| slot.hand_over::<T, _>(k))
    }
}

/// `serialize_*` methods with plain arguments: the error comes out kept.
macro_rules! forward_serialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method(self, $($arg: $ty),*) -> Result<S::Ok, Self::Error> {
            let slot = self.slot;
            self.inner.$method($($arg),*).map_err(|e| slot.take_back(e))
        }
    )*};
}

/// `serialize_*` methods that start a compound: its state comes out wrapped.
macro_rules! forward_compound_start {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $state:ident;)*) => {$(
        #[inline]
        fn $method(self, $($arg: $ty),*) -> Result<Self::$state, Self::Error> {
            self.slot.compound(self.inner.$method($($arg),*))
        }
    )*};
}

impl<'c, S: Serializer> Serializer for Ser<'c, S> {
    type Ok = S::Ok;
    type Error = Raised<S::Error>;
    type SerializeSeq = Compound<'c, S::SerializeSeq>;
    type SerializeTuple = Compound<'c, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'c, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'c, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'c, S::SerializeMap>;
    type SerializeStruct = Compound<'c, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'c, S::SerializeStructVariant>;

    forward_serialize! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    forward_compound_start! {
        serialize_seq(len: Option<usize>) -> SerializeSeq;
        serialize_tuple(len: usize) -> SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> SerializeTupleStruct;
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize)
            -> SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> SerializeMap;
        serialize_struct(name: &'static str, len: usize) -> SerializeStruct;
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize)
            -> SerializeStructVariant;
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, Self::Error> {
        let slot = self.slot;
        let done = self.inner.serialize_some(&slot.value(value));
        done.map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, Self::Error> {
        let slot = self.slot;
        let done = self
            .inner
            .serialize_newtype_struct(name, &slot.value(value));
        done.map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, Self::Error> {
        let slot = self.slot;
        let value = slot.value(value);
        let done = self
            .inner
            .serialize_newtype_variant(name, index, variant, &value);
        done.map_err(|e| slot.take_back(e))
    }

    /// Forwarded (not left to the default) so a format that collects better than
    /// element by element still does.
    #[inline]
    fn collect_seq<I>(self, iter: I) -> Result<S::Ok, Self::Error>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let slot = self.slot;
        let items = iter.into_iter().map(move |item| slot.value(item));
        self.inner.collect_seq(items).map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn collect_map<K, V, I>(self, iter: I) -> Result<S::Ok, Self::Error>
    where
        K: Serialize,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        let slot = self.slot;
        let entries = iter
            .into_iter()
            .map(move |(k, v)| (slot.value(k), slot.value(v)));
        self.inner
            .collect_map(entries)
            .map_err(|e| slot.take_back(e))
    }

    /// Forwarded: the default would build a `String` first (postcard writes the
    /// text straight out), and a `Display` cannot raise serde errors anyway.
    #[inline]
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, Self::Error> {
        let slot = self.slot;
        self.inner.collect_str(value).map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The `Serialize*` traits whose values come alone: the value goes in wrapped.
macro_rules! forward_compound {
    ($($trait:ident::$method:ident;)*) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = Raised<C::Error>;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
                let slot = self.slot;
                self.inner.$method(&slot.value(value)).map_err(|e| slot.take_back(e))
            }

            #[inline]
            fn end(self) -> Result<C::Ok, Self::Error> {
                let slot = self.slot;
                self.inner.end().map_err(|e| slot.take_back(e))
            }
        }
    )*};
}

forward_compound! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
}

/// `SerializeStruct` and `SerializeStructVariant`: fields with names.
macro_rules! forward_struct {
    ($($trait:ident;)*) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = Raised<C::Error>;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Self::Error> {
                let slot = self.slot;
                let done = self.inner.serialize_field(key, &slot.value(value));
                done.map_err(|e| slot.take_back(e))
            }

            #[inline]
            fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
                let slot = self.slot;
                self.inner.skip_field(key).map_err(|e| slot.take_back(e))
            }

            #[inline]
            fn end(self) -> Result<C::Ok, Self::Error> {
                let slot = self.slot;
                self.inner.end().map_err(|e| slot.take_back(e))
            }
        }
    )*};
}

forward_struct! {
    SerializeStruct;
    SerializeStructVariant;
}

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = Raised<C::Error>;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        let slot = self.slot;
        self.inner
            .serialize_key(&slot.value(key))
            .map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        let slot = self.slot;
        self.inner
            .serialize_value(&slot.value(value))
            .map_err(|e| slot.take_back(e))
    }

    /// Forwarded (not left to the default) for a format that writes entries whole.
    #[inline]
    fn serialize_entry<K, V>(&mut self, key: &K, value: &V) -> Result<(), Self::Error>
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        let slot = self.slot;
        let done = self
            .inner
            .serialize_entry(&slot.value(key), &slot.value(value));
        done.map_err(|e| slot.take_back(e))
    }

    #[inline]
    fn end(self) -> Result<C::Ok, Self::Error> {
        let slot = self.slot;
        self.inner.end().map_err(|e| slot.take_back(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postcard::ser_flavors::Size;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize, de::Error as _, ser::Error as _};
    use std::collections::BTreeMap;

    const TOO_BIG: &str = "port must be below 65536";
    const REFUSED: &str = "this value may not leave the process";

    /// A postcard output appending to a borrowed `Vec`, as `wire::AppendTo` does.
    struct Append<'a>(&'a mut Vec<u8>);

    impl postcard::ser_flavors::Flavor for Append<'_> {
        type Output = ();
        #[inline]
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }
        #[inline(always)]
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.0.push(data);
            Ok(())
        }
        fn finalize(self) -> postcard::Result<()> {
            Ok(())
        }
    }

    /// Appends `value` to `out` through the proxy.
    fn encode_into<T: Serialize + ?Sized>(
        out: &mut Vec<u8>,
        value: &T,
    ) -> Result<(), Kept<postcard::Error>> {
        let mut ser = postcard::Serializer {
            output: Append(out),
        };
        serialize_keeping_messages(value, &mut ser)
    }

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Kept<postcard::Error>> {
        let mut out = Vec::new();
        encode_into(&mut out, value)?;
        Ok(out)
    }

    fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Kept<postcard::Error>> {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        deserialize_keeping_messages(&mut de)
    }

    /// A port number whose `Deserialize` refuses 65536 and above.
    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
    struct Port(u32);

    impl<'de> Deserialize<'de> for Port {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let port = u32::deserialize(d)?;
            if port > 65535 {
                return Err(D::Error::custom(TOO_BIG));
            }
            Ok(Port(port))
        }
    }

    /// A port checked in its visitor (the error goes back through the format there).
    #[derive(Debug, PartialEq)]
    struct VisitedPort(u32);

    impl<'de> Deserialize<'de> for VisitedPort {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = VisitedPort;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a port")
                }
                fn visit_u32<E: de::Error>(self, v: u32) -> Result<VisitedPort, E> {
                    if v > 65535 {
                        return Err(E::custom(TOO_BIG));
                    }
                    Ok(VisitedPort(v))
                }
            }
            d.deserialize_u32(V)
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Config<P> {
        name: String,
        port: P,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape<P> {
        Unit,
        Newtype(P),
        Tuple(u8, P),
        Struct { id: u16, port: P },
    }

    /// Asserts `result` failed with the port message, from a type named `origin`.
    fn assert_too_big<T: fmt::Debug>(result: Result<T, Kept<postcard::Error>>, origin: &str) {
        let kept = result.expect_err("the bad port should fail");
        assert_eq!(kept.custom.as_deref(), Some(TOO_BIG), "{kept:?}");
        assert_eq!(kept.inner, postcard::Error::SerdeDeCustom);
        let name = kept.origin.expect("an origin with the message");
        assert!(name.ends_with(origin), "origin {name}, expected {origin}");
        assert!(
            kept.to_string().ends_with(&format!(": {TOO_BIG}")),
            "{kept}"
        );
    }

    /// Encodes `raw` (ports as plain `u32`s) and decodes it as `T`.
    fn decode_as<R: Serialize, T: for<'a> Deserialize<'a> + fmt::Debug>(
        raw: &R,
    ) -> Result<T, Kept<postcard::Error>> {
        let bytes = postcard::to_stdvec(raw).expect("plain values encode");
        // Without the proxy the message is lost: the reason for this module.
        let plain = postcard::from_bytes::<T>(&bytes).expect_err("the bad port should fail");
        assert_eq!(plain, postcard::Error::SerdeDeCustom);
        // The fast path (postcard, then the proxy for the message) says the same.
        let fast = from_bytes::<T>(&bytes).expect_err("the bad port should fail");
        let taken = take_from_bytes::<T>(&bytes).expect_err("the bad port should fail");
        let proxied = decode(&bytes);
        let same = |k: &Kept<postcard::Error>| (k.inner.clone(), k.custom.clone(), k.origin);
        assert_eq!(same(&fast), same(&taken));
        assert_eq!(Some(same(&fast)), proxied.as_ref().err().map(same));
        proxied
    }

    #[test]
    fn a_nested_deserialize_message_survives() {
        assert_too_big(decode_as::<_, Port>(&70000u32), "Port");
        assert_too_big(decode_as::<_, Vec<Port>>(&vec![1u32, 70000]), "Port");
        assert_too_big(
            decode_as::<_, Option<Port>>(&Some(70000u32)),
            "Option<fondo::boundary::codec::tests::Port>",
        );
        let config = Config {
            name: "db".to_string(),
            port: 70000u32,
        };
        assert_too_big(decode_as::<_, Config<Port>>(&config), "Port");
        assert_too_big(
            decode_as::<_, Vec<Option<Config<Port>>>>(&vec![None, Some(config)]),
            "Port",
        );
        for shape in [
            Shape::Newtype(70000u32),
            Shape::Tuple(1, 70000),
            Shape::Struct { id: 2, port: 70000 },
        ] {
            assert_too_big(decode_as::<_, Shape<Port>>(&shape), "Port");
        }
        let values = BTreeMap::from([("a".to_string(), 1u32), ("b".to_string(), 70000)]);
        assert_too_big(decode_as::<_, BTreeMap<String, Port>>(&values), "Port");
        let keys = BTreeMap::from([(70000u32, 1u8)]);
        assert_too_big(decode_as::<_, BTreeMap<Port, u8>>(&keys), "Port");
        assert_too_big(decode_as::<_, (u8, Port)>(&(1u8, 70000u32)), "Port");
    }

    fn below_65536<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        Port::deserialize(d).map(|port| port.0)
    }

    #[test]
    fn a_message_from_deserialize_with_names_its_struct() {
        #[derive(Debug, Deserialize)]
        struct Listen {
            #[serde(deserialize_with = "below_65536")]
            _port: u32,
        }
        assert_too_big(decode_as::<_, Listen>(&(70000u32,)), "::Listen");
    }

    #[test]
    fn a_message_raised_in_a_visitor_survives() {
        assert_too_big(decode_as::<_, VisitedPort>(&70000u32), "VisitedPort");
        let shape = Shape::Struct {
            id: 2,
            port: 70000u32,
        };
        assert_too_big(decode_as::<_, Shape<VisitedPort>>(&shape), "VisitedPort");
    }

    #[test]
    fn serde_own_messages_survive_too() {
        // A variant index past the last variant: derive's `invalid_value`.
        let kept = decode::<Shape<u32>>(&[9]).expect_err("no variant 9");
        let message = kept.custom.expect("serde's message");
        assert!(message.contains("variant index 0 <= i < 4"), "{message}");
        assert_eq!(
            kept.origin,
            Some("fondo::boundary::codec::tests::Shape<u32>")
        );
        // A visitor without `visit_u32` for a `u32`: serde's `invalid_type`.
        struct NotANumber;
        impl<'de> Deserialize<'de> for NotANumber {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = NotANumber;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("anything but a number")
                    }
                }
                d.deserialize_u32(V)
            }
        }
        let kept = decode::<NotANumber>(&[5]).err().expect("a number");
        assert_eq!(
            kept.custom.as_deref(),
            Some("invalid type: integer `5`, expected anything but a number")
        );
    }

    #[test]
    fn a_wrapped_message_keeps_the_inner_one() {
        struct Strict;
        impl<'de> Deserialize<'de> for Strict {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <(Port,)>::deserialize(d)
                    .map_err(|e| D::Error::custom(format_args!("strict mode: {e}")))?;
                Ok(Strict)
            }
        }
        let bytes = postcard::to_stdvec(&(70000u32,)).expect("encodes");
        let kept = decode::<Strict>(&bytes).err().expect("too big");
        let message = kept.custom.expect("the wrapping message");
        assert!(message.starts_with("strict mode: "), "{message}");
        assert!(message.ends_with(&format!("Port: {TOO_BIG}")), "{message}");
        assert!(kept.origin.is_some_and(|o| o.ends_with("Strict")));
    }

    /// A value whose `Serialize` refuses.
    #[derive(Debug)]
    struct Secret;

    impl Serialize for Secret {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(S::Error::custom(REFUSED))
        }
    }

    fn assert_refused<T: Serialize + ?Sized>(value: &T) {
        let plain = postcard::to_stdvec(value).expect_err("a secret should fail");
        assert_eq!(plain, postcard::Error::SerdeSerCustom);
        let mut out = vec![7];
        let kept = encode_into(&mut out, value).expect_err("a secret should fail");
        assert_eq!(kept.custom.as_deref(), Some(REFUSED), "{kept:?}");
        assert_eq!(kept.inner, postcard::Error::SerdeSerCustom);
        assert!(
            kept.origin.is_some_and(|o| o.ends_with("Secret")),
            "{kept:?}"
        );
        let fast = serialize_with_flavor(value, Append(&mut out)).expect_err("a secret");
        assert_eq!(
            (fast.inner, fast.custom, fast.origin),
            (kept.inner, kept.custom, kept.origin)
        );
    }

    #[test]
    fn a_nested_serialize_message_survives() {
        assert_refused(&Secret);
        assert_refused(&vec![Secret]);
        assert_refused(&[Secret]);
        assert_refused(&Some(Secret));
        assert_refused(&(1u8, Secret));
        assert_refused(&Config {
            name: "x".into(),
            port: Secret,
        });
        assert_refused(&vec![Config {
            name: "x".into(),
            port: Secret,
        }]);
        assert_refused(&Shape::Newtype(Secret));
        assert_refused(&Shape::Tuple(1, Secret));
        assert_refused(&Shape::Struct {
            id: 1,
            port: Secret,
        });
        assert_refused(&BTreeMap::from([(1u8, Secret)]));
        assert_refused(&BTreeMap::from([(
            Port(1),
            Config {
                name: "x".into(),
                port: Secret,
            },
        )]));
        struct Entry;
        impl Serialize for Entry {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map([("k", Secret)])
            }
        }
        assert_refused(&Entry);
    }

    #[test]
    fn a_format_error_stays_the_formats() {
        let config = Config {
            name: "db".to_string(),
            port: Port(80),
        };
        let bytes = postcard::to_stdvec(&config).expect("encodes");
        let truncated = &bytes[..bytes.len() - 1];
        let plain = postcard::from_bytes::<Config<Port>>(truncated).expect_err("truncated");
        let kept = decode::<Config<Port>>(truncated).expect_err("truncated");
        assert_eq!(kept.inner, plain);
        assert_eq!(kept.inner, postcard::Error::DeserializeUnexpectedEnd);
        assert_eq!((kept.custom, kept.origin), (None, None));
        assert_eq!(
            decode::<Config<Port>>(&[]).err().map(|k| k.to_string()),
            Some(plain.to_string())
        );
        // A sequence of unknown length, which postcard cannot write.
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq([1u8].into_iter().filter(|_| true))
            }
        }
        let kept = encode(&Unsized).expect_err("no length");
        assert_eq!(kept.inner, postcard::Error::SerializeSeqLengthUnknown);
        assert_eq!(kept.custom, None);
        let fast = serialize_with_flavor(&Unsized, Size::default()).expect_err("no length");
        assert_eq!((fast.inner, fast.custom), (kept.inner, None));
        let fast = take_from_bytes::<Config<Port>>(truncated).expect_err("truncated");
        assert_eq!((fast.inner, fast.custom), (plain, None));
    }

    #[test]
    fn the_fast_path_takes_values_off_the_front() {
        let mut bytes = postcard::to_stdvec(&(Port(80), "x")).expect("encodes");
        bytes.push(7);
        let ((port, text), rest) = take_from_bytes::<(Port, &str)>(&bytes).expect("decodes");
        assert_eq!((port, text, rest), (Port(80), "x", &[7][..]));
        let mut out = vec![1];
        serialize_with_flavor(&(Port(80), "x"), Append(&mut out)).expect("encodes");
        assert_eq!(out[1..], bytes[..bytes.len() - 1]);
    }

    thread_local! {
        /// Calls of `Flaky`'s `Serialize` or `Deserialize` on this test's thread.
        static FLAKY_CALLS: Cell<u32> = const { Cell::new(0) };
    }

    /// Fails its first `Serialize` and its first `Deserialize` on a thread, only.
    struct Flaky;

    impl Flaky {
        fn fails() -> bool {
            FLAKY_CALLS.set(FLAKY_CALLS.get() + 1);
            FLAKY_CALLS.get() == 1
        }
    }

    impl Serialize for Flaky {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if Flaky::fails() {
                return Err(S::Error::custom(REFUSED));
            }
            s.serialize_unit()
        }
    }

    impl<'de> Deserialize<'de> for Flaky {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            <()>::deserialize(d)?;
            if Flaky::fails() {
                return Err(D::Error::custom(TOO_BIG));
            }
            Ok(Flaky)
        }
    }

    #[test]
    fn the_fast_path_runs_user_code_again_only_on_failure() {
        FLAKY_CALLS.set(0);
        let kept = serialize_with_flavor(&Flaky, Size::default()).expect_err("fails once");
        // Postcard's attempt failed, the proxy's did not: no message to give.
        assert_eq!(
            (kept.inner, kept.custom),
            (postcard::Error::SerdeSerCustom, None)
        );
        assert_eq!(FLAKY_CALLS.get(), 2);
        assert!(serialize_with_flavor(&Flaky, Size::default()).is_ok());
        assert_eq!(FLAKY_CALLS.get(), 3);
        FLAKY_CALLS.set(0);
        let kept = take_from_bytes::<Flaky>(&[]).err().expect("fails once");
        assert_eq!(
            (kept.inner, kept.custom),
            (postcard::Error::SerdeDeCustom, None)
        );
        assert_eq!(FLAKY_CALLS.get(), 2);
        assert!(take_from_bytes::<Flaky>(&[]).is_ok());
        assert_eq!(FLAKY_CALLS.get(), 3);
    }

    #[test]
    fn a_panic_is_not_caught() {
        #[derive(Debug)]
        struct Panics;
        impl<'de> Deserialize<'de> for Panics {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                panic!("deserialize panicked");
            }
        }
        let bytes = postcard::to_stdvec(&vec![1u8]).expect("encodes");
        let payload = std::panic::catch_unwind(|| decode::<Vec<Panics>>(&bytes))
            .expect_err("the panic should go through");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"deserialize panicked")
        );
    }

    #[test]
    fn borrowed_data_is_still_borrowed() {
        #[derive(Serialize, Deserialize)]
        struct Borrowed<'a> {
            text: &'a str,
            #[serde(with = "serde_bytes")]
            bytes: &'a [u8],
        }
        let bytes = encode(&Borrowed {
            text: "hello",
            bytes: b"world",
        })
        .expect("encodes");
        let back: Borrowed<'_> = decode(&bytes).expect("decodes");
        let within = |p: *const u8| bytes.as_ptr_range().contains(&p);
        assert!(within(back.text.as_ptr()) && within(back.bytes.as_ptr()));
        assert_eq!((back.text, back.bytes), ("hello", &b"world"[..]));
    }

    #[test]
    fn human_readability_and_collect_str_go_through() {
        /// Writes whether its serializer is human-readable, and a collected string.
        struct Mode;
        impl Serialize for Mode {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let readable = s.is_human_readable();
                s.collect_str(&format_args!("{readable}-{}", 42))
            }
        }
        impl<'de> Deserialize<'de> for Mode {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let expected = format!("{}-42", d.is_human_readable());
                let got = String::deserialize(d)?;
                if got != expected {
                    return Err(D::Error::custom(format_args!("{got} != {expected}")));
                }
                Ok(Mode)
            }
        }
        let bytes = encode(&Mode).expect("encodes");
        assert_eq!(bytes, postcard::to_stdvec(&Mode).expect("encodes"));
        assert!(decode::<Mode>(&bytes).is_ok());
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Unit;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Newtype(i64);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct TupleStruct(u16, Option<char>);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Unit,
        Newtype(u64),
        Tuple(i8, String),
        Struct { w: f32, h: Option<u16> },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rich {
        unit: (Unit, ()),
        small: (bool, u8, i16, u32, i64),
        wide: (i128, u128),
        floats: (f32, f64),
        text: String,
        newtype: Newtype,
        tuple: TupleStruct,
        kinds: Vec<Kind>,
        map: BTreeMap<String, Kind>,
        maybe: Option<Box<Kind>>,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        buf: serde_bytes::ByteBuf,
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Unit),
            any::<u64>().prop_map(Kind::Newtype),
            (any::<i8>(), ".{0,8}").prop_map(|(a, b)| Kind::Tuple(a, b)),
            (any::<f32>(), any::<Option<u16>>()).prop_map(|(w, h)| Kind::Struct { w, h }),
        ]
    }

    fn rich() -> impl Strategy<Value = Rich> {
        let scalars = (
            any::<(bool, u8, i16, u32, i64)>(),
            any::<(i128, u128)>(),
            any::<(f32, f64)>(),
            ".{0,16}",
            any::<(i64, u16, Option<char>)>(),
        );
        let nested = (
            prop::collection::vec(kind(), 0..6),
            prop::collection::btree_map(".{0,6}", kind(), 0..4),
            prop::option::of(kind()),
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..64),
        );
        (scalars, nested).prop_map(|((small, wide, floats, text, (n, t0, t1)), nested)| {
            let (kinds, map, maybe, bytes, buf) = nested;
            Rich {
                unit: (Unit, ()),
                small,
                wide,
                floats,
                text,
                newtype: Newtype(n),
                tuple: TupleStruct(t0, t1),
                kinds,
                map,
                maybe: maybe.map(Box::new),
                bytes,
                buf: serde_bytes::ByteBuf::from(buf),
            }
        })
    }

    /// The proxy writes the bytes postcard writes, and reads back what it reads.
    fn same_bytes<T>(value: &T) -> Result<(), TestCaseError>
    where
        T: Serialize + for<'a> Deserialize<'a>,
    {
        let direct = postcard::to_stdvec(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let proxied = encode(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&proxied, &direct);
        // Compared re-encoded, as a NaN is not equal to itself.
        let back: T = decode(&direct).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = postcard::to_stdvec(&back).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, direct);
        Ok(())
    }

    proptest! {
        #[test]
        fn rich_values_are_byte_identical(value in rich()) {
            same_bytes(&value)?;
        }

        #[test]
        fn kinds_are_byte_identical(value in prop::collection::vec(kind(), 0..16)) {
            same_bytes(&value)?;
        }

        #[test]
        fn wide_integers_are_byte_identical(value in any::<(i128, u128, Option<i128>)>()) {
            same_bytes(&value)?;
        }
    }

    #[test]
    fn a_rich_value_round_trips() {
        let value = Rich {
            unit: (Unit, ()),
            small: (true, 255, -300, 70000, i64::MIN),
            wide: (i128::MIN, u128::MAX),
            floats: (1.5, -2.25),
            text: "é ∑ 🦀".to_string(),
            newtype: Newtype(-1),
            tuple: TupleStruct(9, Some('ß')),
            kinds: vec![
                Kind::Unit,
                Kind::Newtype(u64::MAX),
                Kind::Tuple(-8, "t".into()),
                Kind::Struct { w: 0.5, h: None },
            ],
            map: BTreeMap::from([("k".to_string(), Kind::Struct { w: 1.0, h: Some(3) })]),
            maybe: Some(Box::new(Kind::Unit)),
            bytes: vec![0, 1, 2, 255],
            buf: serde_bytes::ByteBuf::from(vec![9; 300]),
        };
        let bytes = encode(&value).expect("encodes");
        assert_eq!(bytes, postcard::to_stdvec(&value).expect("encodes"));
        assert_eq!(decode::<Rich>(&bytes).expect("decodes"), value);
    }

    // -----------------------------------------------------------------------
    // A timing probe, run by hand (release):
    //   cargo test -p fondo --lib --release codec::tests::timing -- --ignored --nocapture

    #[derive(Clone, Serialize, Deserialize)]
    struct Small {
        id: u32,
        score: f64,
        tag: Option<u8>,
        kind: Kind,
    }

    /// Nanoseconds `f` takes.
    fn time(f: impl FnOnce()) -> f64 {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_nanos() as f64
    }

    // The loops are separate functions, never inlined, so that a profiler
    // counting instructions (valgrind --tool=callgrind --toggle-collect=...)
    // can tell them apart: wall-clock time on a loaded machine is noisy.

    #[inline(never)]
    fn encode_direct<T: Serialize>(values: &[T], out: &mut Vec<u8>) {
        for value in values {
            out.clear();
            let value = std::hint::black_box(value);
            postcard::serialize_with_flavor(value, Append(out)).expect("encodes");
        }
    }

    #[inline(never)]
    fn encode_proxied<T: Serialize>(values: &[T], out: &mut Vec<u8>) {
        for value in values {
            out.clear();
            encode_into(out, std::hint::black_box(value)).expect("encodes");
        }
    }

    #[inline(never)]
    fn encode_fast<T: Serialize>(values: &[T], out: &mut Vec<u8>) {
        for value in values {
            out.clear();
            let value = std::hint::black_box(value);
            serialize_with_flavor(value, Append(out)).expect("encodes");
        }
    }

    #[inline(never)]
    fn decode_direct<T: for<'a> Deserialize<'a>>(encoded: &[Vec<u8>]) {
        for bytes in encoded {
            let value = postcard::from_bytes::<T>(std::hint::black_box(bytes));
            std::hint::black_box(value.expect("decodes"));
        }
    }

    #[inline(never)]
    fn decode_proxied<T: for<'a> Deserialize<'a>>(encoded: &[Vec<u8>]) {
        for bytes in encoded {
            let value = decode::<T>(std::hint::black_box(bytes));
            std::hint::black_box(value.expect("decodes"));
        }
    }

    #[inline(never)]
    fn decode_fast<T: for<'a> Deserialize<'a>>(encoded: &[Vec<u8>]) {
        for bytes in encoded {
            let value = from_bytes::<T>(std::hint::black_box(bytes));
            std::hint::black_box(value.expect("decodes"));
        }
    }

    /// Encodes each of `values` as its own top-level value (as a task's argument
    /// is), then decodes each: postcard alone (0), through the proxy (1), or by
    /// the fast path (2). Returns (encode, decode) ns.
    fn run<T>(values: &[T], encoded: &[Vec<u8>], way: usize) -> [f64; 2]
    where
        T: Serialize + for<'a> Deserialize<'a>,
    {
        let mut out = Vec::with_capacity(encoded.iter().map(Vec::len).max().unwrap_or(0));
        let out = &mut out;
        match way {
            0 => [
                time(|| encode_direct(values, out)),
                time(|| decode_direct::<T>(encoded)),
            ],
            1 => [
                time(|| encode_proxied(values, out)),
                time(|| decode_proxied::<T>(encoded)),
            ],
            _ => [
                time(|| encode_fast(values, out)),
                time(|| decode_fast::<T>(encoded)),
            ],
        }
    }

    /// Prints the best of `runs` per value, the three ways taking turns (the
    /// machine's load changes by the second; whoever runs first in a round was
    /// seen to lose up to 20% on the 64 MiB case, so the order rotates too).
    fn compare<T>(what: &str, values: &[T], runs: usize)
    where
        T: Serialize + for<'a> Deserialize<'a>,
    {
        let encoded: Vec<Vec<u8>> = (values.iter())
            .map(|v| postcard::to_stdvec(v).expect("encodes"))
            .collect();
        let mut best = [[f64::INFINITY; 2]; 3];
        for round in 0..runs {
            for turn in 0..3 {
                let way = (round + turn) % 3;
                let ns = run(values, &encoded, way);
                for (best, ns) in best[way].iter_mut().zip(ns) {
                    *best = best.min(ns / values.len() as f64);
                }
            }
        }
        for (i, op) in ["encode", "decode"].into_iter().enumerate() {
            let [direct, proxied, fast] = best.map(|b| b[i]);
            println!(
                "{what:<26} {op}: postcard {}, proxy {} (x{:.3}), fast path {} (x{:.3})",
                duration(direct),
                duration(proxied),
                proxied / direct,
                duration(fast),
                fast / direct,
            );
        }
    }

    /// `ns` nanoseconds, in ns or ms.
    fn duration(ns: f64) -> String {
        if ns < 1e6 {
            format!("{ns:>6.1} ns")
        } else {
            format!("{:>6.1} ms", ns / 1e6)
        }
    }

    #[test]
    #[ignore = "a timing probe, run by hand in release"]
    fn timing() {
        let n = 1_000_000u64;
        let numbers: Vec<u64> = (0..n)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 64))
            .collect();
        let kinds = [
            Kind::Unit,
            Kind::Newtype(7),
            Kind::Tuple(-1, "ab".into()),
            Kind::Struct { w: 1.0, h: Some(2) },
        ];
        let smalls: Vec<Small> = (0..n)
            .map(|i| Small {
                id: i as u32,
                score: i as f64 * 0.5,
                tag: (i % 3 == 0).then_some(i as u8),
                kind: kinds[i as usize % 4].clone(),
            })
            .collect();
        let big = serde_bytes::ByteBuf::from(vec![0xa5u8; 64 << 20]);
        // CODEC_PROBE_ONLY=<word> runs only the cases named with it, and
        // CODEC_PROBE_RUNS=<n> sets the runs: 1 under callgrind.
        let only = std::env::var("CODEC_PROBE_ONLY").unwrap_or_default();
        let runs = std::env::var("CODEC_PROBE_RUNS").map_or(11, |r| r.parse().expect("a number"));
        let run = |what: &str| what.contains(only.as_str());
        if run("1M u64, one call each") {
            compare("1M u64, one call each", &numbers, runs);
        }
        if run("1M small structs, each") {
            compare("1M small structs, each", &smalls, runs);
        }
        if run("a Vec of 1M u64") {
            compare("a Vec of 1M u64", &[numbers], runs);
        }
        if run("a Vec of 1M small structs") {
            compare("a Vec of 1M small structs", &[smalls], runs);
        }
        if run("a 64 MiB ByteBuf") {
            compare("a 64 MiB ByteBuf", &[big], runs);
        }
    }
}
