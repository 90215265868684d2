//! Verification by key: what the receiver's answer says about the key a webhook expects.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::{Limiter, Ticket};

/// What the receiver's answer said about verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// The right key: the webhook is verified from now on.
    Verified,
    /// A key that does not match: report `Failure::WrongKey`; the webhook stays unverified.
    WrongKey,
    /// Nothing to judge (no key field, not JSON, no expected key configured, or the webhook
    /// was already verified, whose answers are not checked any more). Nothing changes.
    NoKey,
}

pub(super) enum Answer {
    Absent,
    Match,
    Mismatch,
}

impl Limiter {
    /// What the receiver's answer says about the key for this ticket's webhook (no store
    /// touched): `Verified` means the backend must now record the verification.
    pub fn judge_key(&self, ticket: &Ticket, answer_body: &[u8]) -> KeyVerdict {
        if ticket.verified {
            return KeyVerdict::NoKey;
        }
        let Some(expected) = self.keys.get(&ticket.name).or(self.default_key.as_ref()) else {
            return KeyVerdict::NoKey;
        };
        match judge_answer(answer_body, &self.key_field, expected) {
            Answer::Absent => KeyVerdict::NoKey,
            Answer::Mismatch => KeyVerdict::WrongKey,
            Answer::Match => KeyVerdict::Verified,
        }
    }
}

/// Finds the key field in a JSON object answer, or in the first element of an array answer.
/// A string matches when equal to `expected`; a number when its literal text is; `null` counts
/// as absent; any other value is a mismatch.
pub(super) fn judge_answer(body: &[u8], field: &str, expected: &str) -> Answer {
    let Ok(raw) = serde_json::from_slice::<&RawValue>(body) else {
        return Answer::Absent;
    };
    let text = raw.get().trim_start();
    let object = if text.starts_with('{') {
        text
    } else if text.starts_with('[') {
        let Ok(elements) = serde_json::from_str::<Vec<&RawValue>>(text) else {
            return Answer::Absent;
        };
        match elements.first() {
            Some(first) if first.get().trim_start().starts_with('{') => first.get(),
            _ => return Answer::Absent,
        }
    } else {
        return Answer::Absent;
    };
    let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(object) else {
        return Answer::Absent;
    };
    let Some(value) = fields.get(field) else {
        return Answer::Absent;
    };
    let literal = value.get().trim();
    match literal.chars().next() {
        Some('"') => match serde_json::from_str::<String>(literal) {
            Ok(key) if key == expected => Answer::Match,
            _ => Answer::Mismatch,
        },
        Some('-' | '0'..='9') if literal == expected => Answer::Match,
        Some('n') => Answer::Absent,
        _ => Answer::Mismatch,
    }
}
