//! What the body's reading (`scan.rs`) and `variables`' writing (`variables.rs`) share: a cursor
//! over JSON text, the tokens between values, and a field name taken as a key. Their strings
//! differ: the body's reading checks every escape, `variables`' writing trusts text already
//! checked.

use super::Key;
use std::borrow::Cow;

pub(super) trait Cursor<'a> {
    fn text(&self) -> &'a str;
    fn at(&self) -> usize;
    fn at_mut(&mut self) -> &mut usize;

    fn bytes(&self) -> &'a [u8] {
        self.text().as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at()).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            *self.at_mut() += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            *self.at_mut() += 1;
        }
    }

    /// After an element: Some(true) at a comma (another follows), Some(false) at `end`.
    fn next_or_end(&mut self, end: u8) -> Option<bool> {
        self.space();
        if self.eat(b',') {
            self.space();
            Some(true)
        } else {
            self.expect(end).map(|()| false)
        }
    }

    /// The field name read from `start` (its opening quote) to here, borrowed unless it held an
    /// escape (decoded by serde, which refuses a lone surrogate in a name as it does reading a
    /// body).
    fn key_since(&self, start: usize, escaped: bool) -> Option<Key<'a>> {
        let quoted = self.text().get(start..self.at())?;
        if escaped {
            serde_json::from_str(quoted).ok().map(Cow::Owned)
        } else {
            quoted.get(1..quoted.len() - 1).map(Cow::Borrowed)
        }
    }
}
