//! `variables` read into its pairs from its raw text, in one scan. The body's first pass
//! (serde_json, `RawValue`) has already checked that the text is JSON, so this only follows its
//! structure: the documented array of one-key objects, or a flat object. Reading it with serde a
//! second time was half of the cost of a large event (BENCHMARKS.md, 1000 variables).

use super::Key;
use std::borrow::Cow;

/// The pairs (name, raw value text) of `variables`; None for any other shape.
pub(super) fn pairs(raw: &str) -> Option<Vec<(Key<'_>, &str)>> {
    let mut scan = Scan { text: raw, at: 0 };
    let mut pairs = Vec::new();
    scan.space();
    if scan.eat(b'[') {
        scan.space();
        if !scan.eat(b']') {
            loop {
                scan.space();
                if !scan.eat(b'{') {
                    return None;
                }
                pairs.push(scan.field()?);
                scan.space();
                if !scan.eat(b'}') {
                    return None; // a second field
                }
                if !scan.next_or_end(b']')? {
                    break;
                }
            }
        }
    } else if scan.eat(b'{') {
        scan.space();
        if !scan.eat(b'}') {
            loop {
                pairs.push(scan.field()?);
                if !scan.next_or_end(b'}')? {
                    break;
                }
            }
        }
    } else {
        return None;
    }
    scan.space();
    (scan.at == raw.len()).then_some(pairs)
}

/// A cursor over JSON text known to be valid.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// After an element: Some(true) at a comma (another follows), Some(false) at `end`.
    fn next_or_end(&mut self, end: u8) -> Option<bool> {
        self.space();
        if self.eat(b',') {
            self.space();
            Some(true)
        } else if self.eat(end) {
            Some(false)
        } else {
            None
        }
    }

    /// `"name": value`, the name borrowed unless it holds an escape.
    fn field(&mut self) -> Option<(Key<'a>, &'a str)> {
        self.space();
        let start = self.at;
        let escaped = self.string()?;
        let quoted = self.text.get(start..self.at)?;
        let key = if escaped {
            Cow::Owned(serde_json::from_str::<String>(quoted).ok()?)
        } else {
            Cow::Borrowed(quoted.get(1..quoted.len() - 1)?)
        };
        self.space();
        if !self.eat(b':') {
            return None;
        }
        self.space();
        let value_start = self.at;
        self.value()?;
        Some((key, self.text.get(value_start..self.at)?))
    }

    /// Past one string, its quotes included; whether it held an escape. Jumps from quote or
    /// backslash to the next (a byte-by-byte cursor was a fifth of a large event's cost).
    fn string(&mut self) -> Option<bool> {
        if !self.eat(b'"') {
            return None;
        }
        let mut escaped = false;
        loop {
            let rest = self.text.as_bytes().get(self.at..)?;
            let stop = quote_or_backslash(rest)?;
            if rest.get(stop) == Some(&b'"') {
                self.at += stop + 1;
                return Some(escaped);
            }
            escaped = true;
            self.at += stop + 2;
        }
    }

    /// Past one value: a string, an object or array (nested to any depth), or a literal.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth = depth.checked_sub(1)?,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
            _ => {
                let start = self.at;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                (self.at > start).then_some(())
            }
        }
    }
}

/// The index of the first `"` or `\\`, eight bytes at a time (the SWAR test for a zero byte, as
/// serde_json's own string scan does): 11% fewer instructions for the whole parse of a
/// 1000-variable event than a byte-by-byte search.
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(word).ok()?);
        // A byte's high bit is set where it is a quote or a backslash (and maybe above one:
        // only the lowest is trusted).
        let found =
            zero_in(word ^ (ONES * u64::from(b'"'))) | zero_in(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::super::{read_fields, KeySeed};
    use super::*;
    use serde::de::{
        Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };
    use serde_json::value::RawValue;
    use std::fmt;

    /// The reading this scan replaced (serde, typed), kept as its oracle.
    struct Variables<'a>(Vec<(Key<'a>, &'a RawValue)>);

    impl<'de: 'a, 'a> Deserialize<'de> for Variables<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct VariablesVisitor;
            impl<'de> Visitor<'de> for VariablesVisitor {
                type Value = Variables<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an array of one-key objects, or an object")
                }
                fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Variables<'de>, M::Error> {
                    Ok(Variables(read_fields(map)?))
                }
                fn visit_seq<S: SeqAccess<'de>>(
                    self,
                    mut seq: S,
                ) -> Result<Variables<'de>, S::Error> {
                    let mut pairs = Vec::new();
                    while let Some(pair) = seq.next_element_seed(PairSeed)? {
                        pairs.push(pair);
                    }
                    Ok(Variables(pairs))
                }
            }
            deserializer.deserialize_any(VariablesVisitor)
        }
    }

    struct PairSeed;

    impl<'de> DeserializeSeed<'de> for PairSeed {
        type Value = (Key<'de>, &'de RawValue);
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            struct PairVisitor;
            impl<'de> Visitor<'de> for PairVisitor {
                type Value = (Key<'de>, &'de RawValue);
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object of one field")
                }
                fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                    use serde::de::Error;
                    let key = map
                        .next_key_seed(KeySeed)?
                        .ok_or_else(|| M::Error::custom("an empty variable"))?;
                    let value = map.next_value::<&'de RawValue>()?;
                    if map.next_key::<IgnoredAny>()?.is_some() {
                        return Err(M::Error::custom("a variable of several fields"));
                    }
                    Ok((key, value))
                }
            }
            d.deserialize_map(PairVisitor)
        }
    }

    fn oracle(raw: &str) -> Option<Vec<(String, String)>> {
        let read = serde_json::from_str::<Variables>(raw).ok()?;
        Some(
            read.0
                .iter()
                .map(|(k, v)| (k.to_string(), v.get().to_string()))
                .collect(),
        )
    }

    fn scanned(raw: &str) -> Option<Vec<(String, String)>> {
        Some(
            pairs(raw)?
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn reads_what_serde_read_for_every_shape() {
        let cases = [
            r#"[]"#,
            r#"{}"#,
            r#" [ ] "#,
            r#"[{"a":"1"},{"b":2},{"c":null},{"d":true},{"e":-1.5e3}]"#,
            r#"{"a":"1","b":{"x":[1,{"y":"]}"}]},"c":[]}"#,
            r#"[ { "a" : "x" } , {"b":[ "}", "]", "\"", {"z":{}} ]} ]"#,
            r#"[{"k\"ey":"v\\"},{"\u0041":"\u00e9"},{"caf\u00e9":"x"}]"#,
            "[{\"a\":\n\"1\"\t}\r\n]",
            r#"[{"a":"1","b":"2"}]"#,
            r#"[{}]"#,
            r#"["a"]"#,
            r#"[{"a":1},3]"#,
            r#"[[{"a":1}]]"#,
            r#""a""#,
            r#"12"#,
            r#"true"#,
            r#"{"a":1,"a":2}"#,
            r#"[{"a":{"b":{"c":{"d":[[[["deep"]]]]}}}}]"#,
            r#"[{"":""}]"#,
            r#"{"emoji":"😀","esc":"\ud83d\ude00"}"#,
        ];
        for raw in cases {
            assert_eq!(scanned(raw), oracle(raw), "{raw}");
        }
    }

    #[test]
    fn finds_the_first_quote_or_backslash_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for (stop, other) in [(b'"', b'\\'), (b'\\', b'"')] {
                    // Bytes close to the stops (and UTF-8) before it, the other stop after it.
                    let mut bytes: Vec<u8> = (0..len)
                        .map(|i| [b'!', b'#', b'[', 0xc3, 0xa2, 0xdc][i % 6])
                        .collect();
                    if at < len {
                        bytes[at] = stop;
                        if at + 1 < len {
                            bytes[at + 1] = other;
                        }
                    }
                    let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\');
                    assert_eq!(quote_or_backslash(&bytes), expected, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn keys_borrow_unless_escaped() {
        let read = pairs(r#"[{"plain":1},{"es\"caped":2}]"#).unwrap();
        assert!(matches!(read[0].0, Cow::Borrowed("plain")));
        assert!(matches!(&read[1].0, Cow::Owned(k) if k == "es\"caped"));
    }

    #[test]
    fn never_panics_on_cut_or_odd_text() {
        let whole = r#"[{"a":"x\"y"},{"b":[1,{"c":"]"}]},{"d":null}]"#;
        for end in 0..=whole.len() {
            if let Some(part) = whole.get(..end) {
                let _ = pairs(part);
            }
        }
        for odd in [
            "[",
            "{",
            "[{",
            "[{\"",
            "[{\"a\"",
            "[{\"a\":",
            "\"\\",
            "[{\"a\":1}",
            "}",
            "]",
        ] {
            let _ = pairs(odd);
        }
    }
}
