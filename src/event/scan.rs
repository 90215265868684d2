//! The body read in one hand-written pass that also checks it is JSON: its event objects, keys
//! borrowed where they hold no escape, values raw, and whether `variables` is the documented
//! array exactly as it is written out (then copied whole, never walked again). Written by hand
//! because serde's reading of a large event (its raw-value validation, then a second walk of
//! `variables`) cost more than half of hookgate's wasm time, and serde's generic visitor calls
//! cost more in wasm than a scan (BENCHMARKS.md, "Large events").
//!
//! It accepts exactly the bodies serde_json accepts (`from_slice` into raw values, the test
//! `accepts_exactly_what_serde_accepts` and its corpus): the text is UTF-8, strings hold no
//! control character and only JSON's escapes (`\u` with any four hex digits inside values, as
//! serde's raw values; names of the event's own fields decoded by serde itself), numbers follow
//! JSON's grammar, values nest to any depth (serde's raw values have no depth limit), nothing
//! follows the body but spaces. Whatever it refuses, or any other shape than an object or an
//! array of objects, is read again by serde (`read.rs`), which names the error as before.

use super::cursor::Cursor;
use super::{Key, Object};

/// The body's event objects (one object, or an array of them: true); None where serde must read
/// it.
pub(super) fn objects(body: &[u8]) -> Option<(Vec<Object<'_>>, bool)> {
    // One check of the whole text: JSON's text outside strings is ASCII, so no byte escapes it.
    let text = core::str::from_utf8(body).ok()?;
    let mut json = Json {
        cursor: Cursor::new(text),
        frames: Vec::new(),
    };
    json.cursor.space();
    let mut objects = Vec::new();
    let array = json.cursor.eat(b'[');
    if array {
        json.cursor.space();
        if !json.cursor.eat(b']') {
            loop {
                objects.push(json.object()?);
                if !json.cursor.next_or_end(b']')? {
                    break;
                }
            }
        }
    } else {
        objects.push(json.object()?);
    }
    json.cursor.space();
    (json.cursor.at == text.len()).then_some((objects, array))
}

/// A cursor over the body.
struct Json<'a> {
    cursor: Cursor<'a, false>,
    /// The closing bytes of the arrays and objects a value is inside, innermost last.
    frames: Vec<u8>,
}

impl<'a> Json<'a> {
    /// One event object: its fields in order, values raw.
    fn object(&mut self) -> Option<Object<'a>> {
        self.cursor.expect(b'{')?;
        let mut fields = Vec::with_capacity(8);
        let mut variables_as_sent = false;
        self.cursor.space();
        if !self.cursor.eat(b'}') {
            loop {
                let key = self.key()?;
                self.cursor.space();
                self.cursor.expect(b':')?;
                self.cursor.space();
                let start = self.cursor.at;
                if key == "variables" {
                    variables_as_sent = self.variables()?;
                } else {
                    self.value()?;
                }
                fields.push((key, self.cursor.text.get(start..self.cursor.at)?));
                if !self.cursor.next_or_end(b'}')? {
                    break;
                }
            }
        }
        Some(Object {
            fields,
            variables_as_sent,
        })
    }

    /// A field name of an event.
    fn key(&mut self) -> Option<Key<'a>> {
        let start = self.cursor.at;
        let escaped = self.string()?;
        self.cursor.key_since(start, escaped)
    }

    /// Past `variables`' value; whether it is the documented array as written out (no space
    /// between its tokens, one unescaped name per object).
    fn variables(&mut self) -> Option<bool> {
        let start = self.cursor.at;
        if self.documented_variables().is_some() {
            return Some(true);
        }
        self.cursor.at = start;
        self.value().map(|()| false)
    }

    fn documented_variables(&mut self) -> Option<()> {
        self.cursor.expect(b'[')?;
        if self.cursor.eat(b']') {
            return Some(());
        }
        loop {
            self.cursor.expect(b'{')?;
            if self.string()? {
                return None;
            }
            self.cursor.expect(b':')?;
            if self.cursor.peek() == Some(b'"') {
                self.string()?;
            } else {
                self.value()?;
            }
            match self
                .cursor
                .bytes()
                .get(self.cursor.at..self.cursor.at + 2)?
            {
                [b'}', b','] => self.cursor.at += 2,
                [b'}', b']'] => {
                    self.cursor.at += 2;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Past one string, its quotes included; whether it held an escape.
    fn string(&mut self) -> Option<bool> {
        self.cursor.expect(b'"')?;
        let mut escaped = false;
        loop {
            self.cursor.at += string_stop(self.cursor.bytes().get(self.cursor.at..)?)?;
            match self.cursor.peek()? {
                b'"' => {
                    self.cursor.at += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return None, // a control character
            }
        }
    }

    /// Past one escape, at its backslash.
    fn escape(&mut self) -> Option<()> {
        let at = self.cursor.at;
        match self.cursor.bytes().get(at + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.cursor.at += 2,
            b'u' => {
                let hex = self.cursor.bytes().get(at + 2..at + 6)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                self.cursor.at += 6;
            }
            _ => return None,
        }
        Some(())
    }

    /// Past one value of any depth, at its first byte; nesting is kept in `frames`, not on the
    /// call stack.
    fn value(&mut self) -> Option<()> {
        self.frames.clear();
        loop {
            match self.cursor.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' => {
                    self.cursor.at += 1;
                    self.cursor.space();
                    if !self.cursor.eat(b'}') {
                        self.frames.push(b'}');
                        self.member_name()?;
                        continue;
                    }
                }
                b'[' => {
                    self.cursor.at += 1;
                    self.cursor.space();
                    if !self.cursor.eat(b']') {
                        self.frames.push(b']');
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // A value ended: close what ends with it, up to the next element.
            loop {
                let Some(&close) = self.frames.last() else {
                    return Some(());
                };
                if self.cursor.next_or_end(close)? {
                    if close == b'}' {
                        self.member_name()?;
                    }
                    break;
                }
                self.frames.pop();
            }
        }
    }

    /// `"name":` inside a value, up to the member's value.
    fn member_name(&mut self) -> Option<()> {
        self.string()?;
        self.cursor.space();
        self.cursor.expect(b':')?;
        self.cursor.space();
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.cursor.at + word.len();
        (self.cursor.bytes().get(self.cursor.at..end)? == word).then(|| self.cursor.at = end)
    }

    /// JSON's number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Option<()> {
        self.cursor.eat(b'-');
        match self.cursor.peek()? {
            b'0' => self.cursor.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.cursor.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if matches!(self.cursor.peek(), Some(b'e' | b'E')) {
            self.cursor.at += 1;
            if matches!(self.cursor.peek(), Some(b'+' | b'-')) {
                self.cursor.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// Past a run of digits; how many.
    fn digits(&mut self) -> usize {
        let start = self.cursor.at;
        while matches!(self.cursor.peek(), Some(b'0'..=b'9')) {
            self.cursor.at += 1;
        }
        self.cursor.at - start
    }
}

/// The index of the first byte that ends a string's plain run: `"`, `\\` or a control
/// character; eight bytes at a time (the SWAR test for a zero byte, as serde_json's own string
/// scan does). Also used on text already known to be JSON (`variables.rs`), which holds no
/// control character in a string.
pub(super) fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Zero bytes of `x` (and bytes above one) get their high bit set here, kept by `& !word`.
    let zero_in = |x: u64| x.wrapping_sub(ONES);
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(word).ok()?);
        // A byte's high bit is set where it is a stop (and maybe above one: only the lowest is
        // trusted); `& !word` leaves out bytes of 0x80 and above, which never stop a string.
        let found = (zero_in(word ^ (ONES * u64::from(b'"')))
            | zero_in(word ^ (ONES * u64::from(b'\\')))
            | word.wrapping_sub(ONES * 0x20))
            & !word
            & HIGHS;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}
