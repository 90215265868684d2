//! The inbound event (automation engine -> gateway) and the documented webhook it becomes.
//!
//! Values are carried as raw JSON text (`RawValue`): what the engine sent travels byte for byte,
//! in its order. The body is read in one pass (its objects' fields, keys borrowed where they
//! hold no escape, values raw); only `webhook` and `variables` are then read once more, typed,
//! from their own raw text. Error details name fields, never their values, so that no personal
//! data reaches a log line.

mod variables;

use crate::clock::{format_utc, Clock};
use crate::envelope::push_json_string;
use crate::error::Failure;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

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
    let objects = read_objects(body)?;
    let webhook = common_webhook(&objects)?;
    check_name(&webhook.name, max_name_length)?;

    let mut payload = Vec::with_capacity(body.len());
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

/// The body's event objects, in one pass over the bytes; no duplicate field in any of them.
fn read_objects(body: &[u8]) -> Result<Vec<Object<'_>>, Failure> {
    // Which event a shape error is about: None for the body itself, Some(i) for array item i.
    let at = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let read = TopSeed(&at)
        .deserialize(&mut deserializer)
        .and_then(|top| deserializer.end().map(|()| top));
    let what = |at: Option<usize>| match at {
        None => "the event".to_string(),
        Some(i) => format!("event [{i}]"),
    };
    let (objects, array) = match read {
        Ok(read) => read,
        // Shape errors of serde name the value they met: never echoed, only where it was.
        Err(e) if e.is_data() => {
            return Err(Failure::InvalidEvent(format!(
                "wrong shape for {} (an object)",
                what(at.get())
            )))
        }
        Err(e) => {
            return Err(Failure::InvalidEvent(format!(
                "not JSON ({:?} at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )))
        }
    };
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

fn parse_raw<'a, T: Deserialize<'a>>(raw: &'a RawValue, what: &str) -> Result<T, Failure> {
    serde_json::from_str(raw.get())
        .map_err(|_| Failure::InvalidEvent(format!("wrong shape for {what}")))
}

/// A field name: borrowed from the body unless it held an escape.
type Key<'a> = Cow<'a, str>;

/// A JSON object with its fields in the order sent; values stay raw.
struct Object<'a> {
    fields: Vec<(Key<'a>, &'a RawValue)>,
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

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The field if present and not null.
    fn present(&self, key: &str) -> Option<&'a RawValue> {
        self.get(key).filter(|v| v.get() != "null")
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
        event: &RawValue,
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
            write_field(out, &mut first, key, value.get().as_bytes());
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
    /// written from its raw text (`variables.rs`).
    fn write_variables(&self, out: &mut Vec<u8>) -> Result<(), Failure> {
        let Some(raw) = self.present("variables") else {
            out.extend_from_slice(b"[]");
            return Ok(());
        };
        variables::write(raw.get(), out).ok_or_else(|| {
            Failure::InvalidEvent(
                "wrong shape for variables (an array of one-key objects, or an object)".into(),
            )
        })
    }
}

/// A string field as raw JSON; numbers (where allowed) become the string of their literal.
fn stringish<'a>(
    value: &'a RawValue,
    field: &str,
    numbers: bool,
) -> Result<Cow<'a, [u8]>, Failure> {
    let text = value.get();
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

/// A field name, borrowed when the body holds it without escapes.
struct KeySeed;

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
fn read_fields<'de, M: MapAccess<'de>>(
    mut map: M,
) -> Result<Vec<(Key<'de>, &'de RawValue)>, M::Error> {
    let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
    while let Some(key) = map.next_key_seed(KeySeed)? {
        fields.push((key, map.next_value::<&'de RawValue>()?));
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_641_286_959; // 2022-01-04 09:02:39

    fn out(body: &str) -> String {
        String::from_utf8(parse(body.as_bytes(), &NOW, 64).unwrap().payload).unwrap()
    }

    fn refused(body: &str) -> Failure {
        parse(body.as_bytes(), &NOW, 64).unwrap_err()
    }

    #[test]
    fn the_documents_automation_example_round_trips() {
        let body = r#"{"webhook":{"name":"LeadCalled3","url":"https://crm.example.com/hooks/sendpulse"},
            "automation_id":"123456789","title":"New Automation","execution_date":"2022-01-04 09:02:39",
            "email":"example@example.com","phone":"+380631234567","variables":[{"name1":"value1"},{"name2":"value2"}]}"#;
        let event = parse(body.as_bytes(), &0, 64).unwrap();
        assert_eq!(
            event.webhook,
            Webhook {
                name: "LeadCalled3".into(),
                url: "https://crm.example.com/hooks/sendpulse".into()
            }
        );
        assert_eq!(
            String::from_utf8(event.payload).unwrap(),
            r#"[{"automation_id":"123456789","title":"New Automation","execution_date":"2022-01-04 09:02:39","email":"example@example.com","phone":"+380631234567","variables":[{"name1":"value1"},{"name2":"value2"}]}]"#
        );
    }

    #[test]
    fn defaults_and_conversions() {
        let body = r#"{"phone":null,"variables":{"a":1,"b":{"c":[true]}},"automation_id":42,"webhook":{"url":"http://x.example/","name":"A1"}}"#;
        assert_eq!(
            out(body),
            r#"[{"automation_id":"42","title":"","execution_date":"2022-01-04 09:02:39","email":"","phone":"","variables":[{"a":1},{"b":{"c":[true]}}]}]"#
        );
    }

    #[test]
    fn a_number_phone_is_its_string_and_a_null_email_is_empty() {
        let body = r#"{"webhook":{"name":"A1","url":"http://x.example/"},"automation_id":"1","email":null,"phone":380631234567}"#;
        assert_eq!(
            out(body),
            r#"[{"automation_id":"1","title":"","execution_date":"2022-01-04 09:02:39","email":"","phone":"380631234567","variables":[]}]"#
        );
    }

    #[test]
    fn the_documents_event_examples_come_out_identical() {
        let spam = r#"{"timestamp":1496827422,"event":"spam","task_id":3668141,"email":"john.doe@sendpulse.com","source":"automation360","automation_id":"123456789"}"#;
        let unsubscribe = r#"{"task_id":"3668141","timestamp":"1496827872","from_all":1,"email":"john.doe@sendpulse.com","reason":null,"book_id":490686,"event":"unsubscribe","categories":"","source":"automation360","automation_id":"123456789"}"#;
        for event in [spam, unsubscribe] {
            let with_webhook = format!(
                "{},\"webhook\":{{\"name\":\"Unsub1\",\"url\":\"https://crm.example.com/\"}}}}",
                &event[..event.len() - 1]
            );
            assert_eq!(out(&with_webhook), format!("[{event}]"));
        }
    }

    #[test]
    fn events_get_source_and_timestamp_when_absent() {
        let body =
            r#"{"webhook":{"name":"S","url":"https://x.example/"},"event":"spam","email":"a@b.c"}"#;
        assert_eq!(
            out(body),
            r#"[{"event":"spam","email":"a@b.c","source":"automation360","timestamp":1641286959}]"#
        );
    }

    #[test]
    fn an_array_of_events_goes_as_one_delivery() {
        let body = r#"[{"webhook":{"name":"S","url":"https://x.example/"},"automation_id":"1"},{"automation_id":"2","variables":[]}]"#;
        let event = parse(body.as_bytes(), &NOW, 64).unwrap();
        assert_eq!(event.webhook.name, "S");
        assert_eq!(
            String::from_utf8(event.payload).unwrap(),
            r#"[{"automation_id":"1","title":"","execution_date":"2022-01-04 09:02:39","email":"","phone":"","variables":[]},{"automation_id":"2","title":"","execution_date":"2022-01-04 09:02:39","email":"","phone":"","variables":[]}]"#
        );
    }

    #[test]
    fn wrong_events_are_refused_with_400() {
        let bad = [
            "",
            "not json",
            "{",
            "[]",
            "3",
            r#"{"automation_id":"1"}"#,
            r#"{"webhook":{"name":"A"},"automation_id":"1"}"#,
            r#"{"webhook":"x","automation_id":"1"}"#,
            r#"{"webhook":{"name":"A","url":"u"}}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":true}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","title":5}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":{}}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":5}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":-5.5e3}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":true}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":["a@b.c"]}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","phone":true}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","phone":{}}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","variables":"x"}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","variables":[{"a":1,"b":2}]}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","variables":[{}]}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","variables":[1]}"#,
            r#"{"webhook":{"name":"A","url":"u"},"event":"open"}"#,
            r#"{"webhook":{"name":"A","url":"u"},"event":1}"#,
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","automation_id":"2"}"#,
            r#"[{"webhook":{"name":"A","url":"u"},"automation_id":"1"},{"webhook":{"name":"B","url":"u"},"automation_id":"1"}]"#,
            r#"[{"webhook":{"name":"A","url":"u"},"automation_id":"1"},7]"#,
        ];
        for body in bad {
            let failure = refused(body);
            assert_eq!(failure.http_status(), 400, "{body}: {failure:?}");
            assert_eq!(failure.code().number(), 21111011, "{body}");
        }
    }

    #[test]
    fn names_are_latin_letters_and_digits_only() {
        for good in ["A", "LeadCalled3", "z9", &"a".repeat(64)] {
            assert_eq!(check_name(good, 64), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Lead Called",
            "Lead-1",
            "Лид",
            "naïve",
            "a_b",
            "a\u{0}",
            "１",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(check_name(bad, 64), Err(Failure::InvalidName(_))),
                "{bad}"
            );
        }
        let body =
            r#"{"webhook":{"name":"bad name","url":"https://x.example/"},"automation_id":"1"}"#;
        assert!(matches!(refused(body), Failure::InvalidName(_)));
    }

    #[test]
    fn details_never_echo_values() {
        let body =
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":{"secret@x":1}}"#;
        assert!(!refused(body).to_string().contains("secret"));
        assert!(!refused("{\"secret@x\" 1}").to_string().contains("secret"));
    }

    /// Found by fuzzing (fuzz target `event`, RELIABILITY.md): a number beyond f64, such as
    /// `1E22490687`, is valid JSON (RFC 8259 sets no range). It is accepted and travels as
    /// written, and the payload stays valid JSON; only a reader into f64 would refuse it.
    #[test]
    fn numbers_beyond_f64_travel_as_written() {
        let event = r#"{"reason":null,"book_id": 1E22490687
            ,"event":"unsubscribe","webhook":{"name":"Unsub1","url":"http://x.example/"}}"#;
        let sent = out(event);
        assert_eq!(
            sent,
            r#"[{"reason":null,"book_id":1E22490687,"event":"unsubscribe","source":"automation360","timestamp":1641286959}]"#
        );
        let automation =
            r#"{"webhook":{"name":"A","url":"u"},"automation_id":1e400,"variables":{"v":-1e400}}"#;
        let sent_too = out(automation);
        assert!(
            sent_too.contains(r#""automation_id":"1e400""#),
            "{sent_too}"
        );
        assert!(sent_too.contains(r#"[{"v":-1e400}]"#), "{sent_too}");
        for payload in [sent, sent_too] {
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(&payload).is_ok());
        }
    }
}
