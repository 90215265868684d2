//! The test report (`x-hookgate-test: true`): what was sent, what came back, and the envelope.

use crate::event::Webhook;
use crate::limit::LimitState;
use serde_json::{json, Map, Value};

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
    pub fn render(&self) -> Vec<u8> {
        let report = json!({
            "request": self.request.map(|r| json!({
                "method": "POST",
                "url": r.url,
                "headers": headers(&r.headers),
                "body": serde_json::from_slice::<Value>(&r.body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned())),
            })),
            "webhook": self.webhook.map(|w| json!({"name": w.name, "url": w.url})),
            "response": self.response.map(|r| json!({
                "status": r.status,
                "headers": headers(&r.headers),
                "body": String::from_utf8_lossy(&r.body),
            })),
            "envelope": serde_json::from_slice::<Value>(self.envelope).unwrap_or(Value::Null),
            "limit": self.limit.map(|l| serde_json::to_value(l).unwrap_or(Value::Null)),
        });
        serde_json::to_vec(&report).unwrap_or_else(|_| self.envelope.to_vec())
    }
}

fn headers(pairs: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (name, value) in pairs {
        map.insert(name.clone(), Value::String(value.clone()));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
