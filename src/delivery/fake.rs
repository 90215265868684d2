//! A recording host for unit tests: holds the stream as Envoy would (request and response
//! headers and bodies), keeps every effect a delivery asks for, and counts every host call
//! (shared data and clock included) by name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::{Host, HostError, HostResult};
use crate::abi::serialize_map;
use crate::clock::Clock;
use crate::limit::SharedStore;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

/// The engine's answer as the host was told to give it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent as a local reply (not written over the upstream answer).
    pub local: bool,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// A call to etcd as dispatched.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatched {
    pub cluster: String,
    pub path: String,
    pub body: String,
}

#[derive(Default)]
pub struct FakeHost {
    pub request_headers: RefCell<Vec<(String, String)>>,
    pub request_body: RefCell<Vec<u8>>,
    /// The engine's address (`source.address`); loopback unless a test says otherwise.
    pub source: RefCell<String>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    /// The response body Envoy holds now (the current chunk).
    pub response_body: RefCell<Vec<u8>>,
    pub code_details: RefCell<Option<String>>,
    pub upstream_address: RefCell<Option<String>>,
    pub local_reply: RefCell<Option<Answer>>,
    pub dispatched: RefCell<Vec<Dispatched>>,
    pub decision: RefCell<Option<String>>,
    pub counters: RefCell<BTreeMap<String, u64>>,
    pub trailers_removed: Cell<bool>,
    pub request_resumed: Cell<u32>,
    pub response_resumed: Cell<u32>,
    /// Every host call, by name, in order.
    pub calls: RefCell<Vec<&'static str>>,
    /// Calls that fail with this host status instead (by name).
    pub failing: RefCell<BTreeMap<&'static str, u32>>,
    pub store: MemStore,
    pub now: Cell<u64>,
    ids: Cell<u64>,
}

impl FakeHost {
    pub fn at(now: u64) -> FakeHost {
        let host = FakeHost::default();
        host.now.set(now);
        *host.source.borrow_mut() = "127.0.0.1:40000".to_string();
        host
    }

    fn call(&self, name: &'static str) -> HostResult<()> {
        self.calls.borrow_mut().push(name);
        match self.failing.borrow().get(name) {
            Some(&status) => Err(HostError(status)),
            None => Ok(()),
        }
    }

    /// How many host calls of each name were made (shared data and clock included).
    pub fn call_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for name in self.calls.borrow().iter() {
            *counts.entry(*name).or_insert(0) += 1;
        }
        for (name, count) in [
            ("shared_data_get", self.store.gets.get()),
            ("shared_data_set", self.store.sets.get()),
        ] {
            if count > 0 {
                counts.insert(name, count);
            }
        }
        counts
    }

    /// The answer the engine gets: the local reply, else the upstream answer as rewritten.
    pub fn answer(&self) -> Answer {
        if let Some(reply) = self.local_reply.borrow().clone() {
            return reply;
        }
        let headers = self.response_headers.borrow().clone();
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        Answer {
            status,
            headers,
            body: self.response_body.borrow().clone(),
            local: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.request_headers
            .borrow()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }
}

/// Replaces the first `size` bytes of a buffer, as `proxy_set_buffer_bytes` does.
fn replace_front(held: &mut Vec<u8>, size: usize, body: &[u8]) {
    let end = size.min(held.len());
    held.splice(..end, body.iter().copied());
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Host for FakeHost {
    fn request_headers(&self) -> HostResult<Vec<u8>> {
        self.call("request_headers")?;
        let headers = self.request_headers.borrow();
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Ok(serialize_map(&pairs))
    }

    fn source_address(&self) -> HostResult<Option<Vec<u8>>> {
        self.call("source_address")?;
        Ok(Some(self.source.borrow().clone().into_bytes()))
    }

    fn request_body(&self, size: usize) -> HostResult<Vec<u8>> {
        self.call("request_body")?;
        let body = self.request_body.borrow();
        Ok(body[..size.min(body.len())].to_vec())
    }

    fn set_request_headers(&self, headers: &[(&str, &str)]) -> HostResult<()> {
        self.call("set_request_headers")?;
        *self.request_headers.borrow_mut() = owned(headers);
        Ok(())
    }

    fn set_request_body(&self, size: usize, body: &[u8]) -> HostResult<()> {
        self.call("set_request_body")?;
        replace_front(&mut self.request_body.borrow_mut(), size, body);
        Ok(())
    }

    fn set_request_header(&self, name: &str, value: &str) -> HostResult<()> {
        self.call("set_request_header")?;
        let mut headers = self.request_headers.borrow_mut();
        headers.retain(|(k, _)| k != name);
        headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn remove_request_trailers(&self) -> HostResult<()> {
        self.call("remove_request_trailers")?;
        self.trailers_removed.set(true);
        Ok(())
    }

    fn resume_request(&self) -> HostResult<()> {
        self.call("resume_request")?;
        self.request_resumed.set(self.request_resumed.get() + 1);
        Ok(())
    }

    fn local_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
        self.call("local_reply")?;
        *self.local_reply.borrow_mut() = Some(Answer {
            status,
            headers: owned(headers),
            body: body.to_vec(),
            local: true,
        });
        Ok(())
    }

    fn response_header(&self, name: &str) -> HostResult<Option<String>> {
        self.call("response_header")?;
        Ok(self
            .response_headers
            .borrow()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()))
    }

    fn response_headers(&self) -> HostResult<Vec<(String, String)>> {
        self.call("response_headers")?;
        Ok(self.response_headers.borrow().clone())
    }

    fn response_code(&self) -> HostResult<Option<Vec<u8>>> {
        self.call("response_code")?;
        if let Some(reply) = self.local_reply.borrow().as_ref() {
            return Ok(Some(reply.status.to_string().into_bytes()));
        }
        let headers = self.response_headers.borrow();
        let status = headers.iter().find(|(k, _)| k == ":status");
        Ok(status.map(|(_, v)| v.clone().into_bytes()))
    }

    fn response_code_details(&self) -> HostResult<Option<Vec<u8>>> {
        self.call("response_code_details")?;
        Ok(self.code_details.borrow().clone().map(String::into_bytes))
    }

    fn upstream_address(&self) -> HostResult<Option<Vec<u8>>> {
        self.call("upstream_address")?;
        Ok(self
            .upstream_address
            .borrow()
            .clone()
            .map(String::into_bytes))
    }

    fn set_response_headers(&self, headers: &[(&str, &str)]) -> HostResult<()> {
        self.call("set_response_headers")?;
        *self.response_headers.borrow_mut() = owned(headers);
        Ok(())
    }

    fn response_body(&self, size: usize) -> HostResult<Vec<u8>> {
        self.call("response_body")?;
        let body = self.response_body.borrow();
        Ok(body[..size.min(body.len())].to_vec())
    }

    fn set_response_body(&self, size: usize, body: &[u8]) -> HostResult<()> {
        self.call("set_response_body")?;
        replace_front(&mut self.response_body.borrow_mut(), size, body);
        Ok(())
    }

    fn resume_response(&self) -> HostResult<()> {
        self.call("resume_response")?;
        self.response_resumed.set(self.response_resumed.get() + 1);
        Ok(())
    }

    fn dispatch(
        &self,
        cluster: &str,
        path: &str,
        body: &[u8],
        _timeout: std::time::Duration,
    ) -> HostResult<()> {
        self.call("dispatch")?;
        self.dispatched.borrow_mut().push(Dispatched {
            cluster: cluster.to_string(),
            path: path.to_string(),
            body: String::from_utf8(body.to_vec()).unwrap(),
        });
        Ok(())
    }

    fn set_decision(&self, record: &str) -> HostResult<()> {
        self.call("set_decision")?;
        *self.decision.borrow_mut() = Some(record.to_string());
        Ok(())
    }

    fn new_webhook_id(&self) -> String {
        self.calls.borrow_mut().push("new_webhook_id");
        self.ids.set(self.ids.get() + 1);
        format!("msg_test_{}", self.ids.get())
    }

    fn count_sent(&self) {
        self.calls.borrow_mut().push("count_sent");
        *self
            .counters
            .borrow_mut()
            .entry("hookgate.sent".into())
            .or_default() += 1;
    }

    fn count_outcome(&self, reason: &'static str, code: Option<u32>) {
        self.calls.borrow_mut().push("count_outcome");
        let mut counters = self.counters.borrow_mut();
        *counters
            .entry(format!("hookgate.outcome.{reason}"))
            .or_default() += 1;
        if let Some(code) = code {
            *counters.entry(format!("hookgate.code.{code}")).or_default() += 1;
        }
    }

    fn count_receiver_answer(&self, status: u16) {
        self.calls.borrow_mut().push("count_receiver_answer");
        *self
            .counters
            .borrow_mut()
            .entry(format!("receiver.{}xx", status / 100))
            .or_default() += 1;
    }

    fn store(&self) -> &dyn SharedStore {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        self
    }
}

impl Clock for FakeHost {
    fn now(&self) -> u64 {
        self.calls.borrow_mut().push("clock");
        self.now.get()
    }
}

/// Shared data in memory, with CAS as the host does it (a missing key takes any CAS), counting
/// reads and writes; `down` makes every call fail.
#[derive(Default)]
pub struct MemStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    last_cas: Cell<u32>,
    pub down: Cell<bool>,
    pub gets: Cell<usize>,
    pub sets: Cell<usize>,
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        self.gets.set(self.gets.get() + 1);
        if self.down.get() {
            return Err("host says no".into());
        }
        Ok(match self.map.borrow().get(key) {
            None => (None, None),
            Some((value, cas)) if value.is_empty() => (None, Some(*cas)),
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        self.sets.set(self.sets.get() + 1);
        if self.down.get() {
            return Err("host says no".into());
        }
        let mut map = self.map.borrow_mut();
        if let (Some(wanted), Some((_, current))) = (cas, map.get(key)) {
            if wanted != *current {
                return Ok(false);
            }
        }
        self.last_cas.set(self.last_cas.get() + 1);
        map.insert(key.to_string(), (value.to_vec(), self.last_cas.get()));
        Ok(true)
    }
}
