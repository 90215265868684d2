//! `variables` written as the documented array from its raw text, when the body's reading
//! (`scan.rs`) did not find it already written out so. That reading (or serde's) has checked that
//! the text is JSON, so this only follows its structure: the documented array of one-key
//! objects, or a flat object. Reading it with serde a second time was half of the cost of a
//! large event, and serde's typed reading in the first pass cost more in wasm than this scan
//! (BENCHMARKS.md, 1000 variables).

use super::cursor::Cursor;
use super::scan::string_stop;
use super::{push_key, Key};

/// Appends `variables` to `out` as the documented array of one-key objects; None for any other
/// shape (`out` then holds part of it).
pub(super) fn write(raw: &str, out: &mut Vec<u8>) -> Option<()> {
    // The documented array as written out never comes here: the body's reading found it and it
    // is copied whole (`Object::variables_as_sent`); written pair by pair it would read the same.
    out.push(b'[');
    let mut first = true;
    scan(raw, |key, value| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'{');
        push_key(out, &key);
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'}');
    })?;
    out.push(b']');
    Some(())
}

/// Hands each pair (name, raw value text) of `variables` to `pair`, in order; None for any
/// other shape, else whether the text is the documented array exactly as it is written out (no
/// space between its tokens, no escaped name): the body's reading must find the same
/// (`scan_tests.rs`, its oracle).
pub(super) fn scan<'a>(raw: &'a str, mut pair: impl FnMut(Key<'a>, &'a str)) -> Option<bool> {
    let mut scan = Scan {
        cursor: Cursor::new(raw),
        escaped_key: false,
    };
    let array = raw.starts_with('[');
    let mut field = |scan: &mut Scan<'a>| {
        let (key, value) = scan.field()?;
        pair(key, value);
        Some(())
    };
    scan.cursor.space();
    if scan.cursor.eat(b'[') {
        scan.cursor.space();
        if !scan.cursor.eat(b']') {
            loop {
                scan.cursor.space();
                if !scan.cursor.eat(b'{') {
                    return None;
                }
                field(&mut scan)?;
                scan.cursor.space();
                if !scan.cursor.eat(b'}') {
                    return None; // a second field
                }
                if !scan.cursor.next_or_end(b']')? {
                    break;
                }
            }
        }
    } else if scan.cursor.eat(b'{') {
        scan.cursor.space();
        if !scan.cursor.eat(b'}') {
            loop {
                field(&mut scan)?;
                if !scan.cursor.next_or_end(b'}')? {
                    break;
                }
            }
        }
    } else {
        return None;
    }
    scan.cursor.space();
    (scan.cursor.at == raw.len()).then_some(array && !scan.cursor.spaced && !scan.escaped_key)
}

/// A cursor over JSON text known to be valid.
struct Scan<'a> {
    cursor: Cursor<'a, true>,
    /// Set once a field name held an escape.
    escaped_key: bool,
}

impl<'a> Scan<'a> {
    /// `"name": value`, the name borrowed unless it holds an escape.
    fn field(&mut self) -> Option<(Key<'a>, &'a str)> {
        self.cursor.space();
        let start = self.cursor.at;
        let escaped = self.string()?;
        self.escaped_key |= escaped;
        let key = self.cursor.key_since(start, escaped)?;
        self.cursor.space();
        if !self.cursor.eat(b':') {
            return None;
        }
        self.cursor.space();
        let value_start = self.cursor.at;
        self.value()?;
        Some((key, self.cursor.text.get(value_start..self.cursor.at)?))
    }

    /// Past one string, its quotes included; whether it held an escape. Jumps from quote or
    /// backslash to the next (a byte-by-byte cursor was a fifth of a large event's cost); the
    /// text is JSON, so no control character stops it.
    fn string(&mut self) -> Option<bool> {
        if !self.cursor.eat(b'"') {
            return None;
        }
        let mut escaped = false;
        loop {
            let rest = self.cursor.text.as_bytes().get(self.cursor.at..)?;
            let stop = string_stop(rest)?;
            if rest.get(stop) == Some(&b'"') {
                self.cursor.at += stop + 1;
                return Some(escaped);
            }
            escaped = true;
            self.cursor.at += stop + 2;
        }
    }

    /// Past one value: a string, an object or array (nested to any depth), or a literal.
    fn value(&mut self) -> Option<()> {
        match self.cursor.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.cursor.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth = depth.checked_sub(1)?,
                        _ => {}
                    }
                    self.cursor.at += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
            _ => {
                let start = self.cursor.at;
                while !matches!(
                    self.cursor.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.cursor.at += 1;
                }
                (self.cursor.at > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::read::{read_fields, KeySeed};
    use super::*;
    use serde::de::{
        Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };
    use serde_json::value::RawValue;
    use std::borrow::Cow;
    use std::fmt;

    /// The reading this scan replaced (serde, typed), kept as its oracle.
    struct Variables<'a>(Vec<(Key<'a>, &'a str)>);

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
        type Value = (Key<'de>, &'de str);
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            struct PairVisitor;
            impl<'de> Visitor<'de> for PairVisitor {
                type Value = (Key<'de>, &'de str);
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object of one field")
                }
                fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                    use serde::de::Error;
                    let key = map
                        .next_key_seed(KeySeed)?
                        .ok_or_else(|| M::Error::custom("an empty variable"))?;
                    let value = map.next_value::<&'de RawValue>()?.get();
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
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn scanned(raw: &str) -> Option<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        scan(raw, |k, v| pairs.push((k.to_string(), v.to_string())))?;
        Some(pairs)
    }

    /// What `write` must give: the pairs as the documented array.
    fn written(pairs: &[(String, String)]) -> String {
        let items: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{{{}:{v}}}", serde_json::to_string(k).unwrap()))
            .collect();
        format!("[{}]", items.join(","))
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
            let mut out = Vec::new();
            let wrote = write(raw, &mut out).map(|()| String::from_utf8(out).unwrap());
            assert_eq!(wrote, oracle(raw).map(|p| written(&p)), "{raw}");
        }
    }

    #[test]
    fn the_documented_array_as_written_out_is_told_from_other_shapes() {
        let as_sent = [
            "[]",
            r#"[{"a":"1"},{"b":{"x" : [1, 2]}},{"":null}]"#,
            r#"[{"k":"v\"q"}]"#,
        ];
        for raw in as_sent {
            assert_eq!(scan(raw, |_, _| ()), Some(true), "{raw}");
        }
        let rewritten = [
            "{}",
            r#"{"a":1}"#,
            " []",
            "[ ]",
            r#"[{"a":1}, {"b":2}]"#,
            r#"[{"a" :1}]"#,
            r#"[{"a":1 }]"#,
            "[{\"a\":1}\n]",
            r#"[{"\u0041":1}]"#,
        ];
        for raw in rewritten {
            assert_eq!(scan(raw, |_, _| ()), Some(false), "{raw}");
        }
    }

    #[test]
    fn keys_borrow_unless_escaped() {
        let mut read = Vec::new();
        scan(r#"[{"plain":1},{"es\"caped":2}]"#, |k, _| {
            read.push((k, ()))
        })
        .unwrap();
        assert!(matches!(read[0].0, Cow::Borrowed("plain")));
        assert!(matches!(&read[1].0, Cow::Owned(k) if k == "es\"caped"));
    }

    #[test]
    fn never_panics_on_cut_or_odd_text() {
        let whole = r#"[{"a":"x\"y"},{"b":[1,{"c":"]"}]},{"d":null}]"#;
        for end in 0..=whole.len() {
            if let Some(part) = whole.get(..end) {
                let _ = write(part, &mut Vec::new());
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
            let _ = write(odd, &mut Vec::new());
        }
    }
}
