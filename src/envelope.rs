//! The documented status envelope: `[{"status":..,"message":..,"code":..}]`, one element.

use crate::error::{Code, Failure};

/// The envelope for a delivered webhook: the receiver's body, as received, is the message.
pub fn success(receiver_body: &str) -> Vec<u8> {
    render(true, receiver_body, Code::Success)
}

/// The envelope for any failure: the document's fixed message for its code.
pub fn failure(failure: &Failure) -> Vec<u8> {
    refusal(failure.code())
}

/// The envelope of a refusal with this code (the support API's refusals).
pub fn refusal(code: Code) -> Vec<u8> {
    render(false, code.message(), code)
}

fn render(status: bool, message: &str, code: Code) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    out.extend_from_slice(b"[{\"status\":");
    out.extend_from_slice(if status { b"true" } else { b"false" });
    out.extend_from_slice(b",\"message\":");
    push_json_string(&mut out, message);
    out.extend_from_slice(b",\"code\":");
    out.extend_from_slice(itoa::Buffer::new().format(code.number()).as_bytes());
    out.extend_from_slice(b"}]");
    out
}

/// Appends `text` as a JSON string literal.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str into a Vec cannot fail; fall back to an empty string rather than panic.
    if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_carries_the_receivers_body_as_text() {
        assert_eq!(
            String::from_utf8(success("{\"ok\":true}")).unwrap(),
            r#"[{"status":true,"message":"{\"ok\":true}","code":1}]"#
        );
    }

    #[test]
    fn failures_carry_the_documents_message_and_code() {
        assert_eq!(
            String::from_utf8(failure(&Failure::BlockedDestination("x".into()))).unwrap(),
            r#"[{"status":false,"message":"Incorrect url ip","code":11110114}]"#
        );
        assert_eq!(
            String::from_utf8(failure(&Failure::InvalidName("x".into()))).unwrap(),
            r#"[{"status":false,"message":"Error during query execution","code":21111011}]"#
        );
    }
}
