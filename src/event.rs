//! The inbound event (automation engine -> gateway) and the documented webhook it becomes.
//!
//! Values are carried as raw JSON text: what the engine sent travels byte for byte, in its
//! order. The body is read and checked in one pass (`scan.rs`: its objects' fields, keys
//! borrowed where they hold no escape, values raw); only `webhook`, and `variables` when it is
//! not the documented array as written out, are then read once more from their own raw text.
//! Error details name fields, never their values, so that no personal data reaches a log line.

mod cursor;
mod read;
mod scan;
mod variables;

use read::read_objects;

use crate::clock::{format_utc, Clock};
use crate::envelope::push_json_string;
use crate::error::Failure;
use serde::de::Deserialize;
use std::borrow::Cow;

/// The webhook the engine asked for: its name and the customer's URL as written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Webhook {
    pub name: String,
    pub url: String,
}

/// A parsed event: where it goes and the exact body to send.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    pub webhook: Webhook,
    pub payload: Vec<u8>,
}

/// Checks the document's rule: only Latin letters and digits, not empty, not too long.
pub fn check_name(name: &str, max_length: usize) -> Result<(), Failure> {
    if name.is_empty() {
        return Err(Failure::InvalidName("empty".into()));
    }
    if name.len() > max_length {
        return Err(Failure::InvalidName(format!(
            "longer than {max_length} characters"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Failure::InvalidName(
            "only Latin letters and digits (A-Z a-z 0-9) are allowed".into(),
        ));
    }
    Ok(())
}

/// Parses the engine's body (one event, or an array of events for one webhook) into the webhook
/// to send. The clock gives the defaults (`execution_date`, `timestamp`); it is read only when
/// an event lacks one.
pub fn parse(body: &[u8], clock: &dyn Clock, max_name_length: usize) -> Result<Event, Failure> {
    from_objects(read_objects(body)?, body.len(), clock, max_name_length)
}

/// The webhook the body's objects become (`size`: the body's, to size the payload).
fn from_objects(
    objects: Vec<Object>,
    size: usize,
    clock: &dyn Clock,
    max_name_length: usize,
) -> Result<Event, Failure> {
    let webhook = common_webhook(&objects)?;
    check_name(&webhook.name, max_name_length)?;

    let mut payload = Vec::with_capacity(size);
    payload.push(b'[');
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            payload.push(b',');
        }
        object.write_webhook(&mut payload, clock)?;
    }
    payload.push(b']');
    Ok(Event { webhook, payload })
}

/// Every event of one body must name the same webhook (at least one must name it).
fn common_webhook(objects: &[Object]) -> Result<Webhook, Failure> {
    let mut found: Option<Webhook> = None;
    for object in objects {
        let Some(raw) = object.get("webhook") else {
            continue;
        };
        let webhook: Webhook = parse_raw(raw, "webhook (an object with string name and url)")?;
        match &found {
            Some(first) if *first != webhook => {
                return Err(Failure::InvalidEvent(
                    "events of one body name different webhooks".into(),
                ))
            }
            _ => found = Some(webhook),
        }
    }
    found.ok_or_else(|| Failure::InvalidEvent("missing webhook".into()))
}

fn parse_raw<'a, T: Deserialize<'a>>(raw: &'a str, what: &str) -> Result<T, Failure> {
    serde_json::from_str(raw).map_err(|_| Failure::InvalidEvent(format!("wrong shape for {what}")))
}

/// A field name: borrowed from the body unless it held an escape.
type Key<'a> = Cow<'a, str>;

/// A JSON object with its fields in the order sent; values stay raw JSON text.
struct Object<'a> {
    fields: Vec<(Key<'a>, &'a str)>,
    /// `variables` was found to be the documented array exactly as written out, while the body
    /// was read: it is copied whole.
    variables_as_sent: bool,
}

impl<'a> Object<'a> {
    /// A field name that occurs twice, if any.
    fn duplicate_key(&self) -> Option<&str> {
        let fields = &self.fields;
        if fields.len() <= 16 {
            return fields.iter().enumerate().find_map(|(i, (key, _))| {
                fields
                    .iter()
                    .skip(i + 1)
                    .any(|(other, _)| other == key)
                    .then_some(key.as_ref())
            });
        }
        // Many fields: sorted, not compared pairwise (a body of 100 000 fields stays cheap).
        let mut keys: Vec<&str> = fields.iter().map(|(key, _)| key.as_ref()).collect();
        keys.sort_unstable();
        keys.windows(2).find_map(|pair| match pair {
            [a, b] if a == b => Some(*a),
            _ => None,
        })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The field if present and not null.
    fn present(&self, key: &str) -> Option<&'a str> {
        self.get(key).filter(|v| *v != "null")
    }

    fn write_webhook(&self, out: &mut Vec<u8>, clock: &dyn Clock) -> Result<(), Failure> {
        match self.get("event") {
            Some(event) => self.write_event_webhook(out, event, clock),
            None => self.write_automation_webhook(out, clock),
        }
    }

    /// Unsubscribe and spam events travel as sent, without `webhook`; `source` and
    /// `timestamp` are appended only when absent.
    fn write_event_webhook(
        &self,
        out: &mut Vec<u8>,
        event: &str,
        clock: &dyn Clock,
    ) -> Result<(), Failure> {
        let kind: Cow<str> = parse_raw(event, "event (a string)")?;
        if kind != "unsubscribe" && kind != "spam" {
            return Err(Failure::InvalidEvent(
                "event must be \"unsubscribe\" or \"spam\"".into(),
            ));
        }
        out.push(b'{');
        let mut first = true;
        for (key, value) in self.fields.iter().filter(|(k, _)| k != "webhook") {
            write_field(out, &mut first, key, value.as_bytes());
        }
        if self.get("source").is_none() {
            write_field(out, &mut first, "source", b"\"automation360\"");
        }
        if self.get("timestamp").is_none() {
            write_field(
                out,
                &mut first,
                "timestamp",
                clock.now().to_string().as_bytes(),
            );
        }
        out.push(b'}');
        Ok(())
    }

    /// The document's automation webhook, in the document's field order.
    fn write_automation_webhook(
        &self,
        out: &mut Vec<u8>,
        clock: &dyn Clock,
    ) -> Result<(), Failure> {
        let mut first = true;
        out.push(b'{');
        let automation_id = self
            .present("automation_id")
            .ok_or_else(|| Failure::InvalidEvent("missing automation_id".into()))?;
        write_field(
            out,
            &mut first,
            "automation_id",
            &stringish(automation_id, "automation_id", true)?,
        );
        let title = self
            .present("title")
            .map(|v| stringish(v, "title", false))
            .transpose()?;
        write_field(
            out,
            &mut first,
            "title",
            title.as_deref().unwrap_or(b"\"\""),
        );
        let date = match self.present("execution_date") {
            Some(v) => stringish(v, "execution_date", false)?,
            None => Cow::Owned(quoted(&format_utc(clock.now()))),
        };
        write_field(out, &mut first, "execution_date", &date);
        // A phone may be given as a number (sent as its string); an email is a string.
        for (key, numbers) in [("email", false), ("phone", true)] {
            let value = self
                .present(key)
                .map(|v| stringish(v, key, numbers))
                .transpose()?;
            write_field(out, &mut first, key, value.as_deref().unwrap_or(b"\"\""));
        }
        out.extend_from_slice(b",\"variables\":");
        self.write_variables(out)?;
        out.push(b'}');
        Ok(())
    }

    /// `variables`: the documented array of one-key objects, or a flat object turned into it;
    /// copied whole when the body's reading found it as written out, else written from its raw
    /// text (`variables.rs`).
    fn write_variables(&self, out: &mut Vec<u8>) -> Result<(), Failure> {
        let Some(raw) = self.present("variables") else {
            out.extend_from_slice(b"[]");
            return Ok(());
        };
        if self.variables_as_sent {
            out.extend_from_slice(raw.as_bytes());
            return Ok(());
        }
        variables::write(raw, out).ok_or_else(|| {
            Failure::InvalidEvent(
                "wrong shape for variables (an array of one-key objects, or an object)".into(),
            )
        })
    }
}

/// A string field as raw JSON; numbers (where allowed) become the string of their literal.
fn stringish<'a>(text: &'a str, field: &str, numbers: bool) -> Result<Cow<'a, [u8]>, Failure> {
    if text.starts_with('"') {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    if numbers && text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(Cow::Owned(quoted(text)));
    }
    let expected = if numbers {
        "a string or a number"
    } else {
        "a string"
    };
    Err(Failure::InvalidEvent(format!("{field} must be {expected}")))
}

fn quoted(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    push_json_string(&mut out, text);
    out
}

/// A field name as a JSON string: a borrowed name held no escape, no quote and no control
/// character (JSON allows none unescaped), so its text between quotes is already the literal.
fn push_key(out: &mut Vec<u8>, key: &Key) {
    match key {
        Cow::Borrowed(text) => {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(text) => push_json_string(out, text),
    }
}

fn write_field(out: &mut Vec<u8>, first: &mut bool, key: &str, raw_value: &[u8]) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    push_json_string(out, key);
    out.push(b':');
    out.extend_from_slice(raw_value);
}

#[cfg(test)]
mod scan_tests;
#[cfg(test)]
mod tests;
