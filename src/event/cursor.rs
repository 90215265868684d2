//! What the body's reading (`scan.rs`) and `variables`' writing (`variables.rs`) share: a cursor
//! over JSON text, the tokens between values, and a field name taken as a key. Their strings
//! differ: the body's reading checks every escape, `variables`' writing trusts text already
//! checked.

use super::Key;
use std::borrow::Cow;

/// `TELLS_SPACES`: whether `spaced` is kept (`variables`' writing needs it, the body's reading
/// not: kept there it cost 1% of a large event's instructions).
pub(super) struct Cursor<'a, const TELLS_SPACES: bool> {
    pub(super) text: &'a str,
    pub(super) at: usize,
    /// Set once a space between tokens was skipped (`variables` written out without one is the
    /// documented array as the engine sends it).
    pub(super) spaced: bool,
}

impl<'a, const TELLS_SPACES: bool> Cursor<'a, TELLS_SPACES> {
    pub(super) fn new(text: &'a str) -> Self {
        Cursor {
            text,
            at: 0,
            spaced: false,
        }
    }

    pub(super) fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    pub(super) fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    pub(super) fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    pub(super) fn space(&mut self) {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
        if TELLS_SPACES {
            self.spaced |= self.at != start;
        }
    }

    /// After an element: Some(true) at a comma (another follows), Some(false) at `end`.
    pub(super) fn next_or_end(&mut self, end: u8) -> Option<bool> {
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
    pub(super) fn key_since(&self, start: usize, escaped: bool) -> Option<Key<'a>> {
        let quoted = self.text.get(start..self.at)?;
        if escaped {
            serde_json::from_str(quoted).ok().map(Cow::Owned)
        } else {
            quoted.get(1..quoted.len() - 1).map(Cow::Borrowed)
        }
    }
}
