//! An image (a JSON object's text) read without copying: each attribute's
//! name and its value's raw JSON text, borrowed from the image.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// An item's attributes in the order of its text.
#[derive(Debug)]
pub struct Image<'a> {
    attrs: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// What a value's raw text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An object.
    Object,
    /// An array.
    Array,
}

/// The kind of a raw value (its first character: serde_json's raw values
/// start at the value, after any whitespace).
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        _ => Kind::Number,
    }
}

/// A string value's text (borrowed unless it has escapes); None for any
/// other kind.
pub fn str_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    if kind(raw) != Kind::String {
        return None;
    }
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

/// A value's text as PII scrubbing reads it: a string's own text, any
/// other value's JSON text.
pub fn text_of(raw: &RawValue) -> Cow<'_, str> {
    str_of(raw).unwrap_or_else(|| Cow::Borrowed(raw.get().trim()))
}

impl<'a> Image<'a> {
    /// Reads an image's text: an error unless it is one JSON object.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// An attribute's raw value (the last one of that name, as a parser
    /// into a map would keep).
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.attrs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// An attribute's value when it is a string.
    pub fn get_str(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).and_then(str_of)
    }

    /// The attributes, in the text's order.
    pub fn attrs(&self) -> &[(Cow<'a, str>, &'a RawValue)] {
        &self.attrs
    }
}

/// An attribute name, borrowed unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Image<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Image<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut attrs = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Name(k), v)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
                    attrs.push((k, v));
                }
                Ok(Image { attrs })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_borrowed_raw_text_and_the_last_name_wins() {
        let text = r#"{"a":"x","b\u0062":1.5,"c":{"d":[1]},"e":null,"a":"y\"z","f":true}"#;
        let image = Image::parse(text).expect("object");
        assert_eq!(image.attrs().len(), 6);
        assert!(matches!(image.attrs()[0].0, Cow::Borrowed("a")));
        assert_eq!(image.attrs()[1].0, "bb");
        assert_eq!(image.get_str("a").as_deref(), Some("y\"z"));
        assert_eq!(image.get("bb").map(RawValue::get), Some("1.5"));
        assert_eq!(image.get("c").map(kind), Some(Kind::Object));
        assert_eq!(image.get("e").map(kind), Some(Kind::Null));
        assert_eq!(image.get("f").map(kind), Some(Kind::Bool));
        assert_eq!(image.get("bb").map(kind), Some(Kind::Number));
        assert_eq!(
            image.get("c").map(|v| text_of(v).into_owned()),
            Some(r#"{"d":[1]}"#.to_string())
        );
        assert!(image.get("zz").is_none());
        let spaced = Image::parse(" { \"a\" : 1 ,\n \"b\":\t\"x\" } ").expect("object");
        assert_eq!(spaced.get("a").map(RawValue::get), Some("1"));
        assert_eq!(spaced.get("b").map(kind), Some(Kind::String));
        assert!(Image::parse("[1]").is_err());
        assert!(Image::parse("{\"a\":").is_err());
    }
}
