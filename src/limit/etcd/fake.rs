//! A fake etcd for unit tests: answers the JSON gateway's calls as etcd 3.4 does (same fields,
//! int64 as strings, `succeeded` omitted when false), with one revision counter, keys with
//! create/mod revisions, and leases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::{Call, Etcd, Reply};
use crate::limit::{Limiter, WebhookId};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const LEASE_NOT_FOUND: &str = r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;

/// What the fake answered to one call; `reply()` hands it to an operation as Envoy would.
pub(crate) struct Answered {
    status: Option<u16>,
    body: String,
}

impl Answered {
    pub(crate) fn reply(&self) -> Reply<'_> {
        Reply {
            status: self.status,
            body: self.body.as_bytes(),
        }
    }
}

/// A fake etcd: one revision counter, keys with create/mod revisions and leases.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) revision: i64,
    next_lease: i64,
    /// Leases granted and not yet revoked.
    pub(crate) leases: BTreeSet<i64>,
    pub(crate) keys: BTreeMap<Vec<u8>, Stored>,
    pub(crate) calls: Vec<Call>,
    /// Answers forced for the next calls (status, body), before the normal ones.
    pub(crate) forced: Vec<(Option<u16>, String)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) value: Vec<u8>,
    pub(crate) create: i64,
    pub(crate) modified: i64,
    pub(crate) lease: i64,
}

pub(crate) fn b64(v: &Json) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap()).unwrap()
}

impl Fake {
    pub(crate) fn new() -> Fake {
        Fake {
            revision: 1,
            next_lease: 7000,
            ..Fake::default()
        }
    }

    fn header(&self) -> Json {
        json!({"cluster_id": "1", "member_id": "2", "revision": self.revision.to_string(), "raft_term": "2"})
    }

    fn kvs(&self, key: &[u8]) -> Json {
        match self.keys.get(key) {
            None => json!({"header": {"revision": self.revision.to_string()}}),
            Some(s) => {
                let mut kv = json!({"key": STANDARD.encode(key), "create_revision": s.create.to_string(),
                    "mod_revision": s.modified.to_string(), "version": "1", "value": STANDARD.encode(&s.value)});
                if s.lease != 0 {
                    kv["lease"] = json!(s.lease.to_string());
                }
                json!({"header": {"revision": self.revision.to_string()}, "kvs": [kv], "count": "1"})
            }
        }
    }

    pub(crate) fn answer(&mut self, call: &Call) -> Answered {
        self.calls.push(call.clone());
        let (status, body) = if self.forced.is_empty() {
            self.respond(call)
        } else {
            self.forced.remove(0)
        };
        Answered { status, body }
    }

    fn respond(&mut self, call: &Call) -> (Option<u16>, String) {
        let body: Json = serde_json::from_str(&call.body).unwrap();
        match call.path {
            "/v3/kv/range" => {
                let mut answer = self.kvs(&b64(&body["key"]));
                answer["header"] = self.header();
                (Some(200), answer.to_string())
            }
            "/v3/lease/grant" => {
                self.next_lease += 1;
                self.leases.insert(self.next_lease);
                let answer = json!({"header": self.header(), "ID": self.next_lease.to_string(), "TTL": body["TTL"]});
                (Some(200), answer.to_string())
            }
            "/v3/kv/txn" => {
                let compare = &body["compare"][0];
                let key = b64(&compare["key"]);
                let stored = self.keys.get(&key);
                let holds = match compare["target"].as_str().unwrap() {
                    "CREATE" => {
                        let want: i64 = compare["create_revision"]
                            .as_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        stored.map_or(0, |s| s.create) == want
                    }
                    "MOD" => {
                        let want: i64 = compare["mod_revision"].as_str().unwrap().parse().unwrap();
                        stored.map_or(0, |s| s.modified) == want
                    }
                    other => panic!("compare target {other}"),
                };
                assert_eq!(compare["result"], "EQUAL");
                if !holds {
                    let range = &body["failure"][0]["request_range"];
                    let kvs = self.kvs(&b64(&range["key"]));
                    let answer =
                        json!({"header": self.header(), "responses": [{"response_range": kvs}]});
                    return (Some(200), answer.to_string());
                }
                let op = &body["success"][0];
                if let Some(put) = op.get("request_put") {
                    let lease = put
                        .get("lease")
                        .map_or(0, |l| l.as_str().unwrap().parse().unwrap());
                    if lease != 0 && !self.leases.contains(&lease) {
                        return (Some(404), LEASE_NOT_FOUND.to_string());
                    }
                    self.revision += 1;
                    let key = b64(&put["key"]);
                    let create = self.keys.get(&key).map_or(self.revision, |s| s.create);
                    self.keys.insert(
                        key,
                        Stored {
                            value: b64(&put["value"]),
                            create,
                            modified: self.revision,
                            lease,
                        },
                    );
                } else if let Some(delete) = op.get("request_delete_range") {
                    self.revision += 1;
                    self.keys.remove(&b64(&delete["key"]));
                } else {
                    panic!("success op {op}");
                }
                let answer = json!({"header": self.header(), "succeeded": true, "responses": [{"response_put": {"header": {"revision": self.revision.to_string()}}}]});
                (Some(200), answer.to_string())
            }
            other => panic!("path {other}"),
        }
    }

    pub(crate) fn value(
        &self,
        etcd: &Etcd,
        limiter: &Limiter,
        id: &WebhookId,
    ) -> Option<(Json, i64)> {
        let key = etcd.key(limiter, id.name, &crate::limit::normalise_url(id.url));
        self.keys
            .get(key.as_bytes())
            .map(|s| (serde_json::from_slice(&s.value).unwrap(), s.lease))
    }
}
