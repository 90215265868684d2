//! The hand-written reading (`scan.rs`) against serde's (`read.rs`), its oracle: over a corpus of
//! valid and invalid JSON in every place of an event, every cut of valid events and seeded
//! mutations of them, it accepts exactly what serde accepts, reads the same fields, and `parse`
//! answers exactly as it did with serde alone (the same payload, or the same error).

use super::read::{checked, serde_objects};
use super::{from_objects, parse, scan, variables, Event, Failure};

const NOW: u64 = 1_641_286_959;

fn parse_by_serde(body: &[u8]) -> Result<Event, Failure> {
    from_objects(checked(serde_objects(body)?)?, body.len(), &NOW, 64)
}

/// Everything the two readings must agree on, for one body.
fn agree(body: &[u8]) {
    let shown = String::from_utf8_lossy(body);
    let fast = scan::objects(body);
    let slow = serde_objects(body);
    assert_eq!(
        fast.is_some(),
        slow.is_ok(),
        "accepted by one only: {shown}"
    );
    if let (Some((fast, fast_array)), Ok((slow, slow_array))) = (&fast, &slow) {
        assert_eq!(fast_array, slow_array, "{shown}");
        assert_eq!(fast.len(), slow.len(), "{shown}");
        for (f, s) in fast.iter().zip(slow) {
            assert_eq!(f.fields, s.fields, "{shown}");
            let as_sent = f
                .get("variables")
                .is_some_and(|raw| variables::scan(raw, |_, _| ()) == Some(true));
            assert_eq!(f.variables_as_sent, as_sent, "{shown}");
        }
    }
    assert_eq!(parse(body, &NOW, 64), parse_by_serde(body), "{shown}");
}

/// JSON values, valid and not (the kinds of JSONTestSuite's cases), as bytes.
fn values() -> Vec<Vec<u8>> {
    let text = [
        // valid
        "0",
        "-0",
        "1",
        "-1",
        "1.5",
        "-0.0e0",
        "1e5",
        "1E+5",
        "1e-5",
        "2.5E-3",
        "123456789012345678901234567890",
        "1E22490687",
        "true",
        "false",
        "null",
        r#""""#,
        r#""a""#,
        r#""\u0041\u00e9""#,
        r#""\ud83d\ude00""#,
        r#""\ud83d""#,
        r#""\ude00""#,
        r#""\uDEAD\uD800x""#,
        r#""\/\b\f\n\r\t\"\\""#,
        "\"é😀\u{7f}\"",
        "[]",
        "{}",
        "[ ]",
        "{ }",
        r#"[1,[2,{"a":[]}],"]"]"#,
        r#"{"a":{"b":{}},"c":"}"}"#,
        " [ 1 ,\t2\n,\r3 ] ",
        r#"{"a" : 1 , "b":[ ]}"#,
        r#"{"":""}"#,
        r#"{"\ud800":1}"#,
        r#"[{"a":1},{"b":2}]"#,
        // JSON, but not `variables`' shape
        r#"[{"a":1,"b":2},{"c":3}]"#,
        r#"[{"a":1},{"b":2,"c":3},{"d":4}]"#,
        r#"[{},{"a":1}]"#,
        r#"[{"a":1},[],{"b":2}]"#,
        r#"[{"a":1},"b",{"c":2}]"#,
        // invalid
        r#"[{"a":1}{"b":2}]"#,
        "",
        " ",
        "01",
        "-01",
        "00",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "1.e5",
        "0x10",
        "1.5.3",
        "NaN",
        "Infinity",
        "-Infinity",
        "tru",
        "nul",
        "True",
        "nulls",
        "truefalse",
        r#""abc"#,
        r#""\x""#,
        r#""\u12""#,
        r#""\u12G4""#,
        r#""\U0041""#,
        r#""\'""#,
        "\"a\tb\"",
        "\"a\u{0}b\"",
        "\"\u{1f}\"",
        r#""\"#,
        "[1,]",
        "[,1]",
        "[1 2]",
        "[1,,2]",
        r#"{"a":1,}"#,
        "{,}",
        r#"{"a"}"#,
        r#"{"a" 1}"#,
        r#"{"a":}"#,
        "{1:1}",
        "{'a':1}",
        r#"["a":1]"#,
        r#"{"a":1 "b":2}"#,
        "]",
        "}",
        "[}",
        "{]",
        "[",
        "{",
        "[[[]]",
        "1 2",
        "'a'",
        "/*c*/1",
        "\u{feff}1",
        "\u{a0}1",
        "[\u{c}]",
    ];
    let mut values: Vec<Vec<u8>> = text.iter().map(|v| v.as_bytes().to_vec()).collect();
    // Not UTF-8: a lone byte, overlong, an encoded surrogate, cut, beyond U+10FFFF; in a
    // string and outside one.
    for bad in [
        &b"\xff"[..],
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xe2\x82",
        b"\xf4\x90\x80\x80",
        b"\xc3",
    ] {
        values.push([&b"\"a"[..], bad, b"\""].concat());
        values.push([&b"["[..], bad, b"]"].concat());
    }
    // Deep nesting (serde's raw values have no depth limit), closed and not.
    for depth in [127, 128, 129, 300, 10_000] {
        values.push([b"[".repeat(depth), b"]".repeat(depth)].concat());
        values.push([b"{\"a\":".repeat(depth), b"1".to_vec(), b"}".repeat(depth)].concat());
        values.push(b"[".repeat(depth));
    }
    values
}

/// Each value in every place of a body it can take: the body, a field, `variables` and a
/// variable's value, the webhook and a field of it, an item of the event array, a name.
fn bodies_around(value: &[u8]) -> Vec<Vec<u8>> {
    const HOOK: &str = r#"{"webhook":{"name":"A1","url":"http://x.example/"},"automation_id":"1""#;
    let places = [
        (String::new(), ""),
        (format!("{HOOK},\"title\":"), "}"),
        (format!("{HOOK},\"variables\":"), "}"),
        (format!("{HOOK},\"variables\":[{{\"a\":"), "}]}"),
        (format!("{HOOK},\"variables\":{{\"a\":"), "}}"),
        (r#"[{"automation_id":"1","webhook":"#.to_string(), "}]"),
        (format!("[{HOOK}}},"), "]"),
        (
            r#"{"webhook":{"name":"A1","url":"u","x":"#.to_string(),
            r#"},"automation_id":"1"}"#,
        ),
        ("{".to_string(), r#":1,"webhook":{"name":"A1","url":"u"}}"#),
    ];
    places
        .iter()
        .map(|(before, after)| [before.as_bytes(), value, after.as_bytes()].concat())
        .collect()
}

/// Valid events: the documented shapes, spaces, escapes, non-ASCII, arrays of events.
fn events() -> Vec<Vec<u8>> {
    [
        r#"{"webhook":{"name":"LeadCalled3","url":"https://crm.example.com/hooks"},"automation_id":"123456789","title":"New","execution_date":"2022-01-04 09:02:39","email":"a@b.c","phone":"+380631234567","variables":[{"name1":"value1"},{"name2":"value2"}]}"#,
        r#"{"phone":380631234567,"variables":{"a":1,"b":{"c":[true,null,-1.5e3]}},"automation_id":42,"webhook":{"url":"http://x.example/","name":"A1"}}"#,
        " {\"webhook\" : {\"name\":\"A1\",\"url\":\"u\"} ,\n\"automation_id\":\"1\",\t\"variables\" : [ {\"k\\\"ey\":\"v\\u00e9\"} , {\"😀\":[{}]} ] }\r\n",
        r#"{"timestamp":1496827422,"event":"spam","task_id":3668141,"email":"j@s.com","webhook":{"name":"S1","url":"http://x/"}}"#,
        r#"[{"webhook":{"name":"S","url":"https://x.example/"},"automation_id":"1","variables":[{"a":"]"}]},{"automation_id":"2","variables":[]}]"#,
        r#"{"webhook":{"name":"A1","url":"u"},"automation_id":"1","variables":[{"a":{"x" : [1, "\ud800"]}},{"":null},{"b":"\"}"}],"t\u00edtle":"\/"}"#,
    ]
    .iter()
    .map(|e| e.as_bytes().to_vec())
    .collect()
}

#[test]
fn accepts_exactly_what_serde_accepts() {
    let values = values();
    assert!(values.len() > 100);
    for value in &values {
        for body in bodies_around(value) {
            agree(&body);
        }
    }
    // A key of the event's own: a lone surrogate is refused there (serde decodes names), an
    // unknown escape anywhere.
    for key in [
        r#""\ud800""#,
        r#""\udc00x""#,
        r#""\ud83d\ude00""#,
        r#""\q""#,
        r#""a\u0062""#,
    ] {
        agree(format!(r#"{{{key}:1,"webhook":{{"name":"A1","url":"u"}}}}"#).as_bytes());
    }
}

#[test]
fn every_cut_of_a_valid_event_is_judged_as_serde_judges_it() {
    for event in events() {
        agree(&event);
        for end in 0..event.len() {
            agree(event.get(..end).unwrap_or_default());
        }
        agree(&[&event[..], b" x"].concat());
        agree(&[&event[..], b",{}"].concat());
        agree(&[b"\xef\xbb\xbf", &event[..]].concat());
    }
}

/// A small seeded generator (xorshift64*): the same mutations on every run.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

#[test]
fn mutated_events_are_judged_as_serde_judges_them() {
    // Bytes that matter to JSON's grammar, and some that break UTF-8.
    let alphabet = b"\"\\{}[],: \t\n0123456789-+.eEtrufalsn/bu\x00\x1f\x7f\xc3\xa9\xed\xa0\xff";
    let events = events();
    let mut random = Seeded(0x9e37_79b9_7f4a_7c15);
    let rounds = if cfg!(debug_assertions) {
        40_000
    } else {
        400_000
    };
    for _ in 0..rounds {
        let mut body = events[random.below(events.len())].clone();
        for _ in 0..=random.below(3) {
            if body.is_empty() {
                break;
            }
            let at = random.below(body.len());
            let byte = alphabet[random.below(alphabet.len())];
            match random.below(5) {
                0 => body[at] = byte,
                1 => body.insert(at, byte),
                2 => drop(body.remove(at)),
                3 => {
                    let end = (at + random.below(12)).min(body.len());
                    let copy = body[at..end].to_vec();
                    body.splice(at..at, copy);
                }
                _ => {
                    let other = random.below(body.len());
                    body.swap(at, other);
                }
            }
        }
        agree(&body);
    }
}

#[test]
fn the_documented_array_as_written_out_is_found_while_reading() {
    let read = |body: &str| {
        let (objects, _) = scan::objects(body.as_bytes()).unwrap();
        objects
            .iter()
            .map(|o| o.variables_as_sent)
            .collect::<Vec<_>>()
    };
    let hook = r#""webhook":{"name":"A1","url":"u"},"automation_id":"1""#;
    let with = |variables: &str| format!("{{{hook},\"variables\":{variables}}}");
    for as_sent in [
        r#"[{"a":"1"},{"b":{"x" : [1]}}]"#,
        "[]",
        r#"[{"a":"1"},{"b":{"x" : [1, 2]}},{"":null}]"#,
        r#"[{"k":"v\"q"}]"#,
    ] {
        assert_eq!(read(&with(as_sent)), [true], "{as_sent}");
    }
    for other in [
        "{}",
        "[ ]",
        r#"[{"a":1}, {"b":2}]"#,
        r#"[{"a": 1}]"#,
        r#"[{"a" :1}]"#,
        r#"[{"a":1 }]"#,
        r#"[{"\u0041":1}]"#,
        "[{\"a\":1}\n]",
        "null",
        "[1]",
    ] {
        assert_eq!(read(&with(other)), [false], "{other}");
    }
    assert_eq!(read(&format!("{{{hook}}}")), [false]);
}

#[test]
fn a_string_stops_at_the_first_quote_backslash_or_control_character() {
    for len in 0..40 {
        for at in 0..=len {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                // Bytes close to the stops, and UTF-8, before it; another stop after it.
                let mut bytes: Vec<u8> = (0..len)
                    .map(|i| [b'!', b'#', b'[', 0xc3, 0xa2, 0xdc, b' ', 0x7f, 0xa0][i % 9])
                    .collect();
                if at < len {
                    bytes[at] = stop;
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                    }
                }
                let expected = bytes
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
                assert_eq!(scan::string_stop(&bytes), expected, "{bytes:?}");
            }
        }
    }
}
