//! etcd's v3 JSON gateway on the wire: the requests (keys and values base64, int64 as strings),
//! the answers as etcd writes them, and the value stored per webhook.

use super::{lease, Call, Reply, VALUE_VERSION};
use crate::limit::{Ident, Record};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

// ---- Requests ----

pub(super) fn range(key: &str) -> Call {
    Call {
        path: "/v3/kv/range",
        body: format!(r#"{{"key":"{}"}}"#, STANDARD.encode(key.as_bytes())),
    }
}

pub(super) fn lease_grant() -> Call {
    Call {
        path: "/v3/lease/grant",
        body: format!(r#"{{"TTL":"{}"}}"#, lease::TTL_SECS),
    }
}

/// The compare of every write: the key is still at `revision` (0: still absent).
pub(super) fn compare(key: &str, revision: i64) -> String {
    if revision == 0 {
        format!(r#"{{"target":"CREATE","key":"{key}","create_revision":"0","result":"EQUAL"}}"#)
    } else {
        format!(r#"{{"target":"MOD","key":"{key}","mod_revision":"{revision}","result":"EQUAL"}}"#)
    }
}

pub(super) fn txn(key: &str, revision: i64, success: String) -> Call {
    let key = STANDARD.encode(key.as_bytes());
    Call {
        path: "/v3/kv/txn",
        body: format!(
            r#"{{"compare":[{}],"success":[{success}],"failure":[{{"request_range":{{"key":"{key}"}}}}]}}"#,
            compare(&key, revision)
        ),
    }
}

pub(super) fn txn_put(key: &str, revision: i64, value: &[u8], lease: i64) -> Call {
    let b64 = STANDARD.encode(key.as_bytes());
    let lease = if lease == 0 {
        String::new()
    } else {
        format!(r#","lease":"{lease}""#)
    };
    let put = format!(
        r#"{{"request_put":{{"key":"{b64}","value":"{}"{lease}}}}}"#,
        STANDARD.encode(value)
    );
    txn(key, revision, put)
}

pub(super) fn txn_delete(key: &str, revision: i64) -> Call {
    let b64 = STANDARD.encode(key.as_bytes());
    txn(
        key,
        revision,
        format!(r#"{{"request_delete_range":{{"key":"{b64}"}}}}"#),
    )
}

// ---- Answers ----

/// One key-value as etcd returns it (int64 fields are JSON strings).
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub(super) struct Kv {
    #[serde(default)]
    pub(super) value: String,
    #[serde(default, deserialize_with = "int64")]
    pub(super) mod_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    pub(super) lease: i64,
}

#[derive(Deserialize)]
pub(super) struct RangeAnswer {
    #[serde(default)]
    kvs: Vec<Kv>,
}

#[derive(Deserialize)]
pub(super) struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

#[derive(Deserialize)]
pub(super) struct TxnAnswer {
    header: Header,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<ResponseOp>,
}

#[derive(Deserialize)]
pub(super) struct ResponseOp {
    response_range: Option<RangeAnswer>,
}

#[derive(Deserialize)]
pub(super) struct LeaseAnswer {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    id: i64,
    #[serde(default)]
    error: Option<String>,
}

pub(super) enum Txn {
    Succeeded { revision: i64 },
    Failed { kv: Option<Kv> },
}

pub(super) fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

/// The body of a 200 answer, or why there is none.
pub(super) fn ok_body<'a>(reply: Reply<'a>) -> Result<&'a [u8], String> {
    match reply.status {
        None => Err("no answer (timeout, reset or connection failure)".to_string()),
        Some(200) => Ok(reply.body),
        Some(status) => {
            let text: String = String::from_utf8_lossy(reply.body)
                .chars()
                .filter(|c| !c.is_control())
                .take(160)
                .collect();
            Err(format!("HTTP {status}: {text}"))
        }
    }
}

pub(super) fn parse_range(body: &[u8]) -> Result<Option<Kv>, String> {
    let answer: RangeAnswer =
        serde_json::from_slice(body).map_err(|e| format!("range answer: {e}"))?;
    Ok(answer.kvs.into_iter().next())
}

pub(super) fn parse_txn(body: &[u8]) -> Result<Txn, String> {
    let answer: TxnAnswer = serde_json::from_slice(body).map_err(|e| format!("txn answer: {e}"))?;
    if answer.succeeded {
        if answer.header.revision <= 0 {
            return Err("txn answer without a revision".to_string());
        }
        return Ok(Txn::Succeeded {
            revision: answer.header.revision,
        });
    }
    let range = answer
        .responses
        .into_iter()
        .find_map(|r| r.response_range)
        .ok_or("failed txn answer without its range")?;
    Ok(Txn::Failed {
        kv: range.kvs.into_iter().next(),
    })
}

pub(super) fn parse_lease(body: &[u8]) -> Result<i64, String> {
    let answer: LeaseAnswer =
        serde_json::from_slice(body).map_err(|e| format!("lease answer: {e}"))?;
    if let Some(error) = answer.error {
        return Err(format!("lease grant: {error}"));
    }
    if answer.id == 0 {
        return Err("lease answer without an ID".to_string());
    }
    Ok(answer.id)
}

// ---- Values ----

#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Value {
    v: u32,
    name: String,
    url: String,
    verified: bool,
    sends: Vec<u64>,
}

pub(super) fn encode_record(record: &Record, ident: &Ident) -> Vec<u8> {
    let mut sends = record.sends.clone();
    sends.sort_unstable();
    let value = Value {
        v: VALUE_VERSION,
        name: ident.name.clone(),
        url: ident.url.clone(),
        verified: record.verified,
        sends,
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

pub(super) fn decode_record(kv: &Kv, ident: &Ident) -> Result<Record, String> {
    let bytes = STANDARD
        .decode(&kv.value)
        .map_err(|_| "value is not base64")?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!("value this version cannot read ({e}); use another limit.namespace")
    })?;
    if value.v != VALUE_VERSION || value.name != ident.name || value.url != ident.url {
        return Err("value of another version or webhook; use another limit.namespace".to_string());
    }
    let mut sends = value.sends;
    sends.sort_unstable();
    Ok(Record {
        verified: value.verified,
        sends,
    })
}
