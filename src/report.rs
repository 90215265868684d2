//! The test report (`x-hookgate-test: true`): what was sent, what came back, and the envelope.

use crate::event::Webhook;
use crate::limit::LimitState;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The request hookgate sent (or would have sent) to the receiver.
#[derive(Clone, Debug, Default)]
pub struct SentRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The receiver's own answer.
#[derive(Clone, Debug, Default)]
pub struct ReceivedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Everything the test report shows.
pub struct Report<'a> {
    pub webhook: Option<&'a Webhook>,
    pub request: Option<&'a SentRequest>,
    pub response: Option<&'a ReceivedResponse>,
    pub envelope: &'a [u8],
    pub limit: Option<&'a LimitState>,
}

impl Report<'_> {
    /// The report, fields in the documented order; the bodies hookgate wrote are embedded as the
    /// exact JSON that was sent.
    pub fn render(&self) -> Vec<u8> {
        let report = Rendered {
            request: self.request.map(|r| RenderedRequest {
                method: "POST",
                url: &r.url,
                headers: headers(&r.headers),
                body: raw_or_text(&r.body),
            }),
            webhook: self.webhook,
            response: self.response.map(|r| RenderedResponse {
                status: r.status,
                headers: headers(&r.headers),
                body: String::from_utf8_lossy(&r.body),
            }),
            envelope: raw_or_text(self.envelope),
            limit: self.limit,
        };
        serde_json::to_vec(&report).unwrap_or_else(|_| self.envelope.to_vec())
    }
}

#[derive(Serialize)]
struct Rendered<'a> {
    request: Option<RenderedRequest<'a>>,
    webhook: Option<&'a Webhook>,
    response: Option<RenderedResponse<'a>>,
    envelope: Body,
    limit: Option<&'a LimitState>,
}

#[derive(Serialize)]
struct RenderedRequest<'a> {
    method: &'static str,
    url: &'a str,
    headers: Map<String, Value>,
    body: Body,
}

#[derive(Serialize)]
struct RenderedResponse<'a> {
    status: u16,
    headers: Map<String, Value>,
    body: std::borrow::Cow<'a, str>,
}

/// JSON text kept as written (field order included), or a string when it is not JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum Body {
    Json(Box<RawValue>),
    Text(String),
}

fn raw_or_text(bytes: &[u8]) -> Body {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match RawValue::from_string(text.clone()) {
        Ok(raw) => Body::Json(raw),
        Err(_) => Body::Text(text),
    }
}

/// Headers as an object, pseudo-headers left out.
fn headers(pairs: &[(String, String)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter(|(name, _)| !name.starts_with(':'))
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_has_the_documented_parts() {
        let webhook = Webhook {
            name: "A".into(),
            url: "https://x.example/".into(),
        };
        let request = SentRequest {
            url: "https://x.example:443/".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"[{\"a\":1}]".to_vec(),
        };
        let envelope = crate::envelope::success("{}");
        let report = Report {
            webhook: Some(&webhook),
            request: Some(&request),
            response: None,
            envelope: &envelope,
            limit: None,
        };
        let value: Value = serde_json::from_slice(&report.render()).unwrap();
        assert_eq!(value["request"]["body"], json!([{"a": 1}]));
        assert_eq!(value["request"]["method"], "POST");
        assert_eq!(value["webhook"]["name"], "A");
        assert_eq!(value["response"], Value::Null);
        assert_eq!(value["envelope"][0]["code"], 1);
        let text = String::from_utf8(report.render()).unwrap();
        assert!(
            text.starts_with(r#"{"request":{"method":"POST","url":"#),
            "{text}"
        );
        assert!(text.contains(r#""body":[{"a":1}]"#), "{text}");
    }
}
