//! The body's event objects: read by the hand-written pass (`scan.rs`), or by serde where that
//! pass refuses the body, so that every error is named as serde names it.

use super::{scan, Key, Object};
use crate::error::Failure;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

/// The body's event objects, in one pass over the bytes; no duplicate field in any of them.
pub(super) fn read_objects(body: &[u8]) -> Result<Vec<Object<'_>>, Failure> {
    match scan::objects(body) {
        Some(read) => checked(read),
        None => checked(serde_objects(body)?),
    }
}

/// The objects read (and whether the body is an array) if there is at least one and none
/// holds a field twice.
pub(super) fn checked<'a>(
    (objects, array): (Vec<Object<'a>>, bool),
) -> Result<Vec<Object<'a>>, Failure> {
    if objects.is_empty() {
        return Err(Failure::InvalidEvent("empty event array".into()));
    }
    for (i, object) in objects.iter().enumerate() {
        if let Some(key) = object.duplicate_key() {
            return Err(Failure::InvalidEvent(format!(
                "duplicate field {key:?} in {}",
                what(array.then_some(i))
            )));
        }
    }
    Ok(objects)
}

/// Which event an error is about: None for the body itself, Some(i) for array item i.
fn what(at: Option<usize>) -> String {
    match at {
        None => "the event".to_string(),
        Some(i) => format!("event [{i}]"),
    }
}

/// The body read by serde, into raw values: what is not JSON, or not an object or an array of
/// objects, is named as serde finds it. With whether the body is an array.
pub(super) fn serde_objects(body: &[u8]) -> Result<(Vec<Object<'_>>, bool), Failure> {
    // Which event a shape error is about: None for the body itself, Some(i) for array item i.
    let at = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let read = TopSeed(&at)
        .deserialize(&mut deserializer)
        .and_then(|top| deserializer.end().map(|()| top));
    match read {
        Ok(read) => Ok(read),
        // Shape errors of serde name the value they met: never echoed, only where it was.
        Err(e) if e.is_data() => Err(Failure::InvalidEvent(format!(
            "wrong shape for {} (an object)",
            what(at.get())
        ))),
        Err(e) => Err(Failure::InvalidEvent(format!(
            "not JSON ({:?} at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))),
    }
}

/// A field name, borrowed when the body holds it without escapes.
pub(super) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'de>, E> {
                Ok(Cow::Borrowed(text))
            }
            fn visit_str<E>(self, text: &str) -> Result<Key<'de>, E> {
                Ok(Cow::Owned(text.to_owned()))
            }
            fn visit_string<E>(self, text: String) -> Result<Key<'de>, E> {
                Ok(Cow::Owned(text))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The fields of one object, keys borrowed and values raw.
pub(super) fn read_fields<'de, M: MapAccess<'de>>(
    mut map: M,
) -> Result<Vec<(Key<'de>, &'de str)>, M::Error> {
    let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
    while let Some(key) = map.next_key_seed(KeySeed)? {
        fields.push((key, map.next_value::<&'de RawValue>()?.get()));
    }
    Ok(fields)
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Object<'de>, M::Error> {
        Ok(Object {
            fields: read_fields(map)?,
            variables_as_sent: false,
        })
    }
}

/// The body: one event object, or an array of them (true); `at` follows the item being read.
struct TopSeed<'c>(&'c Cell<Option<usize>>);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = (Vec<Object<'de>>, bool);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = (Vec<Object<'de>>, bool);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object or an array of them")
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
        Ok((vec![ObjectVisitor.visit_map(map)?], false))
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut objects = Vec::new();
        loop {
            self.0.set(Some(objects.len()));
            match seq.next_element_seed(ItemSeed)? {
                Some(object) => objects.push(object),
                None => break,
            }
        }
        Ok((objects, true))
    }
}

/// One item of the event array: an object.
struct ItemSeed;

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Object<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Object<'de>, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}
