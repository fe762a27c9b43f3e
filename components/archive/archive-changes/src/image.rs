//! An image (a JSON object's text) read without copying: each attribute's
//! name and its value's raw JSON text, borrowed from the image.
//!
//! The reader is this crate's own single-pass scanner rather than
//! `serde_json` (whose `RawValue` map reading was about a sixth of the
//! archive's time in wasm, P5 in BENCHMARKS.md): it checks the whole text
//! against JSON's grammar (RFC 8259: strings with their escapes and no raw
//! control characters, numbers, literals, nested objects and arrays) and
//! finds each top-level value's span. The tests hold it to `serde_json` on
//! valid, broken and mutated texts: the same texts are accepted, with the
//! same attributes. One difference: nesting deeper than 128 levels (the
//! image's own object counted) is refused (the scanner recurses; `serde_json` skips a raw value at any
//! depth).

use std::borrow::Cow;

/// An item's attributes in the order of its text.
#[derive(Debug)]
pub struct Image<'a> {
    attrs: Vec<(Cow<'a, str>, Raw<'a>)>,
}

/// A value's JSON text as it is in the image (no whitespace before or
/// after it), and for a string whether it has escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a> {
    text: &'a str,
    escaped: bool,
}

impl<'a> Raw<'a> {
    /// The value's JSON text.
    pub fn get(self) -> &'a str {
        self.text
    }
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

/// The kind of a raw value (its first character).
pub fn kind(raw: Raw<'_>) -> Kind {
    match raw.text.as_bytes().first() {
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
pub fn str_of(raw: Raw<'_>) -> Option<Cow<'_, str>> {
    if kind(raw) != Kind::String {
        return None;
    }
    if !raw.escaped {
        return raw
            .text
            .get(1..raw.text.len().saturating_sub(1))
            .map(Cow::Borrowed);
    }
    serde_json::from_str::<String>(raw.text)
        .ok()
        .map(Cow::Owned)
}

/// A value's text as PII scrubbing reads it: a string's own text, any
/// other value's JSON text.
pub fn text_of(raw: Raw<'_>) -> Cow<'_, str> {
    str_of(raw).unwrap_or(Cow::Borrowed(raw.text))
}

/// Why a text is not one JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError {
    /// What was expected or found.
    pub what: &'static str,
    /// The byte offset where.
    pub at: usize,
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl<'a> Image<'a> {
    /// Reads an image's text: an error unless it is one JSON object.
    pub fn parse(text: &'a str) -> Result<Self, ImageError> {
        Self::parse_in(text, Vec::with_capacity(16))
    }

    /// [`Image::parse`] into a vector of an earlier image
    /// ([`Image::into_attrs`]), so a batch allocates it once.
    pub fn parse_in(
        text: &'a str,
        mut attrs: Vec<(Cow<'a, str>, Raw<'a>)>,
    ) -> Result<Self, ImageError> {
        attrs.clear();
        let b = text.as_bytes();
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return Err(err("expected an object", i));
        }
        i = ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                if b.get(i) != Some(&b'"') {
                    return Err(err("expected an attribute name", i));
                }
                let (end, escaped) = string_end(b, i)?;
                let name = if escaped {
                    // Escapes are rare in names: serde_json decodes them.
                    let decoded = serde_json::from_str::<String>(&text[i..end])
                        .map_err(|_| err("a bad escape in a name", i))?;
                    Cow::Owned(decoded)
                } else {
                    Cow::Borrowed(&text[i + 1..end - 1])
                };
                i = ws(b, end);
                if b.get(i) != Some(&b':') {
                    return Err(err("expected ':'", i));
                }
                let start = ws(b, i + 1);
                let (end, escaped) = match b.get(start) {
                    Some(b'"') => string_end(b, start)?,
                    _ => (value_end(b, start, 1)?, false),
                };
                attrs.push((
                    name,
                    Raw {
                        text: &text[start..end],
                        escaped,
                    },
                ));
                i = ws(b, end);
                match b.get(i) {
                    Some(b',') => i = ws(b, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return Err(err("expected ',' or '}'", i)),
                }
            }
        }
        if ws(b, i) != b.len() {
            return Err(err("trailing characters", ws(b, i)));
        }
        Ok(Image { attrs })
    }

    /// An attribute's raw value (the last one of that name, as a parser
    /// into a map would keep).
    pub fn get(&self, name: &str) -> Option<Raw<'a>> {
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
    pub fn attrs(&self) -> &[(Cow<'a, str>, Raw<'a>)] {
        &self.attrs
    }

    /// The attributes' vector, for [`Image::parse_in`].
    pub fn into_attrs(self) -> Vec<(Cow<'a, str>, Raw<'a>)> {
        self.attrs
    }
}

/// How deep objects and arrays may nest (`serde_json`'s limit).
const MAX_DEPTH: usize = 128;

fn err(what: &'static str, at: usize) -> ImageError {
    ImageError { what, at }
}

/// The offset of the first byte from `i` on that is not JSON whitespace.
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The end (after the closing quote) of the string starting at `i` (its
/// opening quote), and whether it has escapes.
fn string_end(b: &[u8], start: usize) -> Result<(usize, bool), ImageError> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        i = plain_run_end(b, i);
        match b.get(i) {
            None => return Err(err("an unterminated string", start)),
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let hex = b.get(i + 2..i + 6).ok_or(err("a bad \\u escape", i))?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(err("a bad \\u escape", i));
                        }
                        i += 6;
                    }
                    _ => return Err(err("a bad escape", i)),
                }
            }
            Some(c) if *c < 0x20 => return Err(err("a control character in a string", i)),
            Some(_) => i += 1,
        }
    }
}

/// The offset of the first byte from `i` on that ends a string's plain
/// run: a quote, a backslash or a control character (or the end). Eight
/// bytes at a time (the "has a zero byte" and "has a byte less than n"
/// tests of Bit Twiddling Hacks: a byte that matches sets its high bit, and
/// a false one can only follow a true one, as a borrow carries upwards, so
/// the lowest set bit is the first match), then byte by byte for the last
/// few.
fn plain_run_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let found = ((quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// The end of the value starting at `i` (after whitespace), nested
/// `depth` levels deep.
fn value_end(b: &[u8], i: usize, depth: usize) -> Result<usize, ImageError> {
    match b.get(i) {
        Some(b'"') => string_end(b, i).map(|(end, _)| end),
        Some(b'{') => container_end(b, i, depth, b'}'),
        Some(b'[') => container_end(b, i, depth, b']'),
        Some(b't') => literal_end(b, i, b"true"),
        Some(b'f') => literal_end(b, i, b"false"),
        Some(b'n') => literal_end(b, i, b"null"),
        Some(b'-' | b'0'..=b'9') => number_end(b, i),
        _ => Err(err("expected a value", i)),
    }
}

fn literal_end(b: &[u8], i: usize, literal: &[u8]) -> Result<usize, ImageError> {
    if b.get(i..i + literal.len()) == Some(literal) {
        Ok(i + literal.len())
    } else {
        Err(err("a bad literal", i))
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn number_end(b: &[u8], start: usize) -> Result<usize, ImageError> {
    let digits = |mut i: usize| {
        let from = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i > from)
    };
    let mut i = start;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i).0,
        _ => return Err(err("a bad number", start)),
    }
    if b.get(i) == Some(&b'.') {
        let (end, any) = digits(i + 1);
        if !any {
            return Err(err("a bad number", start));
        }
        i = end;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let (end, any) = digits(i);
        if !any {
            return Err(err("a bad number", start));
        }
        i = end;
    }
    Ok(i)
}

/// The end of the object (`close` `}`) or array (`]`) opening at `start`.
fn container_end(b: &[u8], start: usize, depth: usize, close: u8) -> Result<usize, ImageError> {
    if depth >= MAX_DEPTH {
        return Err(err("nested too deep", start));
    }
    let mut i = ws(b, start + 1);
    if b.get(i) == Some(&close) {
        return Ok(i + 1);
    }
    loop {
        if close == b'}' {
            if b.get(i) != Some(&b'"') {
                return Err(err("expected an attribute name", i));
            }
            i = ws(b, string_end(b, i)?.0);
            if b.get(i) != Some(&b':') {
                return Err(err("expected ':'", i));
            }
            i = ws(b, i + 1);
        }
        i = ws(b, value_end(b, i, depth + 1)?);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(c) if *c == close => return Ok(i + 1),
            _ => return Err(err("expected ',' or the end of a container", i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;
    use std::fmt;

    /// The oracle: the attributes as serde_json reads them (names decoded,
    /// values as raw text).
    struct Oracle(Vec<(String, String)>);

    impl<'de> Deserialize<'de> for Oracle {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Oracle;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Oracle, M::Error> {
                    let mut attrs = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                        attrs.push((k, v.get().to_string()));
                    }
                    Ok(Oracle(attrs))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn ours(text: &str) -> Option<Vec<(String, String)>> {
        Image::parse(text).ok().map(|i| {
            i.attrs()
                .iter()
                .map(|(k, v)| (k.to_string(), v.get().to_string()))
                .collect()
        })
    }

    fn oracle(text: &str) -> Option<Vec<(String, String)>> {
        serde_json::from_str::<Oracle>(text).ok().map(|o| o.0)
    }

    #[test]
    fn a_plain_run_ends_at_the_first_quote_backslash_or_control_character() {
        let naive = |b: &[u8], i: usize| {
            (i..b.len())
                .find(|&k| b[k] == b'"' || b[k] == b'\\' || b[k] < 0x20)
                .unwrap_or(b.len())
        };
        for len in 0..20 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
                    let mut b: Vec<u8> = "é€abcdefghijklmnopqrstuvwxyz ~\u{7f}"
                        .bytes()
                        .cycle()
                        .take(len)
                        .collect();
                    if at < len {
                        b[at] = special;
                    }
                    for from in 0..=len.min(3) {
                        assert_eq!(plain_run_end(&b, from), naive(&b, from), "{b:?} {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_plain_run_ends_where_a_byte_by_byte_scan_says_on_random_bytes() {
        let alphabet = [
            b'"', b'\\', 0, 0x1f, 0x20, b'a', 0x7f, 0x80, 0xc3, 0xff, b'!', b'#',
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let b: Vec<u8> = (0..len)
                .map(|k| alphabet[((seed >> (k % 60)) as usize + k * 7) % alphabet.len()])
                .collect();
            let from = (seed as usize >> 3) % (len + 1);
            let naive = (from..len)
                .find(|&k| b[k] == b'"' || b[k] == b'\\' || b[k] < 0x20)
                .unwrap_or(len);
            assert_eq!(plain_run_end(&b, from), naive, "{b:?} from {from}");
        }
    }

    #[test]
    fn attributes_are_borrowed_raw_text_and_the_last_name_wins() {
        let text = r#"{"a":"x","b\u0062":1.5,"c":{"d":[1]},"e":null,"a":"y\"z","f":true}"#;
        let image = Image::parse(text).expect("object");
        assert_eq!(image.attrs().len(), 6);
        assert!(matches!(image.attrs()[0].0, Cow::Borrowed("a")));
        assert_eq!(image.attrs()[1].0, "bb");
        assert_eq!(image.get_str("a").as_deref(), Some("y\"z"));
        assert_eq!(image.get("bb").map(Raw::get), Some("1.5"));
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
        assert_eq!(spaced.get("a").map(Raw::get), Some("1"));
        assert_eq!(spaced.get("b").map(kind), Some(Kind::String));
        assert!(Image::parse("[1]").is_err());
        assert!(Image::parse("{\"a\":").is_err());
    }

    #[test]
    fn the_scanner_accepts_what_serde_json_accepts_with_the_same_attributes() {
        let cases = [
            "{}",
            " {} ",
            r#"{"a":1}"#,
            r#"{"a":-0,"b":0.5,"c":1e5,"d":1E+5,"e":-1.25e-3,"f":123456789012345678901234567890}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"\u00e9\n\t\"\\\/\b\f\r","é":"😀"}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"nl\nhere\"}",
            r#"{"a":[1,[2,{"b":[]}],{}],"c":{"d":{"e":null}}}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1}x"#,
            r#"{"a":1} {"b":2}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":falsey}"#,
            r#"{"a":true,"b":false,"c":null}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b" "c"}}"#,
            r#"{"a":{"b":}}"#,
            r#"{"\ud83d\ude00":1,"k\"q":2}"#,
            "",
            "   ",
            "null",
            "[{}]",
            "{\"a\":1",
            "{\"a\"",
            "{\"a",
            "{",
        ];
        for text in cases {
            assert_eq!(ours(text), oracle(text), "{text:?}");
        }
        // 128 levels (the image's object and 127 arrays) pass; deeper is
        // refused (serde_json skips a raw value at any depth: the one
        // difference).
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert_eq!(ours(&deep(127)), oracle(&deep(127)));
        assert!(ours(&deep(127)).is_some());
        assert!(ours(&deep(128)).is_none());
    }

    #[test]
    fn mutated_images_are_accepted_or_refused_as_serde_json_does() {
        let base = r#"{"PK":"ENTRY#c1#fan-1","SK":"ENTRY","entry":{"firstName":"Zo\u00eb \"Z\"","age":31,"tags":["a",true,null,-2.5e3]},"version":7,"n":null,"ok":false}"#;
        // Every truncation.
        for end in 0..base.len() {
            if base.is_char_boundary(end) {
                let text = &base[..end];
                assert_eq!(ours(text), oracle(text), "{text:?}");
            }
        }
        // Seeded random edits: a byte replaced, removed or inserted.
        let alphabet = b"{}[]\":,.-+eE0123456789 \\\tntrufalsx/u";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(bytes.len());
                let c = alphabet[next(alphabet.len())];
                match next(3) {
                    0 => bytes[at] = c,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, c),
                }
            }
            if let Ok(text) = String::from_utf8(bytes) {
                assert_eq!(ours(&text), oracle(&text), "{text:?}");
            }
        }
    }
}
