//! The hourly limit for unverified webhooks and their verification by key (SendPulse: "the
//! service allows you to send one webhook per hour" until the receiver answers the first
//! webhook with the configured key).
//!
//! A webhook is its name plus its normalised URL (`url::Url::parse`, fragment dropped; a URL
//! that does not parse is used as written). Its state lives in proxy-wasm shared data, which
//! every Envoy worker of one `vm_id` sees, behind the [`SharedStore`] trait.
//!
//! # The table
//! Shared data can neither delete a key nor expire one, and CAS does not protect creating a key.
//! So the state is a fixed table created up front, never a key per webhook:
//!
//! * `hookgate/<namespace>/meta`: the layout (`hookgate-limit v2 bucket_entries=8
//!   probes=32:splitmix redirects=24 max_tracked=N`). `prepare` refuses a configuration whose
//!   layout differs from the one already in the `vm_id` (changing `max_tracked` would move every
//!   webhook to another bucket and forget verifications; a table of another format version
//!   cannot be read): keep the value, choose another `namespace`, or restart Envoy.
//! * `hookgate/<namespace>/bucket/<i>` for `i` in `0..ceil(max_tracked / 8)`: each bucket holds
//!   up to 8 webhooks (the last one the remainder, so the table holds exactly `max_tracked`)
//!   and up to [`MAX_REDIRECTS`] redirects, encoded as in [`codec`]. A bucket is one key, so
//!   every change to it is one atomic read-CAS-write (at most [`MAX_CAS_ATTEMPTS`] tries, then
//!   `LimitUnavailable`).
//! * `hookgate/<namespace>/cas-probe`: written to obtain a CAS value that belongs to this key
//!   and so can never be the CAS of a bucket: buckets are created with that value, which makes
//!   creation create-if-absent (a concurrent creator never overwrites a live bucket). The host's
//!   CAS counter is a `u32` shared by all keys; only after 2^32 writes could it come round.
//! * `hookgate/<namespace>/scan`: the time of the last count for the `tracked_webhooks` gauge
//!   ([`Limiter::claim_scan`]).
//!
//! A webhook's home bucket is FNV-1a 64 of (name length, name, URL) modulo the bucket count
//! (stable across builds and reloads); the high 32 bits of that hash are its fingerprint. It
//! lives in its home bucket when there was room there when it was placed. When there was not,
//! it lives in one of up to [`MAX_PROBE_BUCKETS`] other buckets (pseudo-random from its hash),
//! and its home bucket holds a **redirect** (fingerprint, offset, until) that says so. The home
//! bucket decides: every operation reads it first, and the placement is final only once the
//! redirect is written there by CAS; a placement the home bucket contradicts by then (the
//! webhook was placed at home meanwhile) is taken back before anything is answered. So two
//! workers can never record one webhook in two places, even when places at home come free
//! during a placement (the race that a plain "first free place" probe loses). The protocol and
//! its argument are in `table.rs`.
//!
//! Unverified entries whose sends are all older than an hour are dropped whenever their bucket
//! is written, freeing their place. Verified entries stay for the life of the `vm_id`, and so do
//! the redirects to them. A redirect to unverified webhooks lapses two hours after the last send
//! through it. Webhooks listed in `verified` need no entry when `verified_per_hour` is unset.
//!
//! # The ceiling
//! When a new webhook finds no place (its home bucket full and none of its probed buckets with
//! room, or its home holding [`MAX_REDIRECTS`] redirects already) the send is refused with
//! `LimitUnavailable("webhook table full ...")` (503): never let through unlimited. Places of
//! unverified webhooks come free an hour after their last send. Measured: the first refusal
//! comes at 95-97% of `max_tracked` webhooks active, none at 90% (tests, `fill_measurement`).
//!
//! # Memory
//! One tracked webhook takes `name + url + 9` bytes in its bucket value for an unverified
//! webhook with one send (1 flag, 1+1 lengths, 1 count, 5 for the send time), each further send
//! in the window 1 to 2 bytes, a verified unlimited webhook `name + url + 4`, and a webhook
//! away from its home 7 to 12 more bytes for its redirect. Each bucket adds its key (about 30
//! bytes), 3 bytes of header and the host's map node (roughly 100 bytes) for up to 8 webhooks:
//! about `name + url + 30` bytes per tracked webhook in all, e.g. about 1.4 MB for 10000
//! webhooks with 100-byte URLs, once per `vm_id` (not per worker). An update copies one bucket
//! (up to 8 entries and its redirects, about 500 bytes with 37-byte URLs) out of and back into
//! the host; one away from home reads two buckets, and writes its home once an hour.
//!
//! # Undecodable values
//! A bucket value that does not decode (another format version, garbage, a redirect beyond the
//! table) is treated as occupied by something unknown: webhooks whose home it is are refused
//! with `LimitUnavailable`, placements pass it over, and it is never overwritten (not even by
//! `prepare`). An empty value is an empty bucket. Recovery: a new `namespace` (or `vm_id`).

mod codec;
pub mod etcd;
mod table;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Failure;
use codec::Entry;

/// The rolling window, in seconds.
pub const WINDOW_SECS: u64 = 3600;
/// Webhooks per bucket (part of the table layout recorded in the meta key).
pub const BUCKET_ENTRIES: u32 = 8;
/// Buckets after its home where a webhook may be placed when its home is full (part of the
/// layout).
pub const MAX_PROBE_BUCKETS: u32 = 32;
/// Redirects one home bucket may hold (part of the layout).
pub const MAX_REDIRECTS: u32 = 24;
/// Read-CAS-write attempts on one bucket before giving up with `LimitUnavailable`. An attempt
/// only fails when another worker wrote the same bucket in between, so this bounds a pathological
/// case; it is generous because a worker descheduled between its read and its write (a loaded
/// machine) can lose many rounds in a row to busy neighbours: at 64, eight threads hammering one
/// bucket on a loaded 2-core machine gave up now and then.
pub const MAX_CAS_ATTEMPTS: u32 = 1024;

const MAX_UNVERIFIED_PER_HOUR: u32 = 1000;
const MAX_VERIFIED_PER_HOUR: u32 = 10_000;
const MAX_TRACKED: u32 = 1_000_000;
const MAX_NAMESPACE_LEN: usize = 64;

/// Proxy-wasm shared data as the limiter needs it. The host adapter must map
/// `Status::CasMismatch` to `Ok(false)` and `NotFound` to `Ok((None, None))`; a present key with
/// an empty value may come back as `(None, Some(cas))` (the SDK does that) or as an empty vector.
pub trait SharedStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String>;
    /// Ok(true) stored, Ok(false) CAS mismatch, Err(host failure)
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String>;
}

/// The `limit` section of the configuration.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    /// Sends allowed in any rolling hour before verification: 1..=1000, default 1.
    pub unverified_per_hour: u32,
    /// Sends allowed in any rolling hour once verified: 1..=10000; unset = unlimited.
    pub verified_per_hour: Option<u32>,
    /// Expected verification key per webhook name.
    pub keys: BTreeMap<String, String>,
    /// Expected key for names not in `keys`.
    pub default_key: Option<String>,
    /// Top-level field of the receiver's JSON answer that carries the key, default "key".
    pub key_field: String,
    /// Webhooks verified before this configuration (e.g. restored after a `vm_id` change).
    pub verified: Vec<VerifiedWebhook>,
    /// Webhooks the table can track: 1..=1000000, default 10000.
    pub max_tracked: u32,
    /// Two configurations in one `vm_id` share state iff they have the same namespace.
    pub namespace: String,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            unverified_per_hour: 1,
            verified_per_hour: None,
            keys: BTreeMap::new(),
            default_key: None,
            key_field: "key".to_string(),
            verified: Vec::new(),
            max_tracked: 10_000,
            namespace: "default".to_string(),
        }
    }
}

/// A webhook known to be verified; `url` is compared after normalisation.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VerifiedWebhook {
    pub name: String,
    pub url: String,
}

/// The webhook a request is about.
#[derive(Clone, Copy, Debug)]
pub struct WebhookId<'a> {
    pub name: &'a str,
    /// The URL as the event gave it (normalised here), or already normalised.
    pub url: &'a str,
    /// `url` is already in the tracked form (`Destination::url` is): it is not parsed again.
    pub normalised: bool,
}

/// What `acquire` took, for `give_back` and `observe_answer`.
#[derive(Debug)]
pub struct Ticket {
    name: String,
    url: String,
    /// The time of the acquire (also the time reference of later updates made for it).
    at: u64,
    /// The send time recorded, None when nothing was counted (verified and unlimited).
    taken: Option<u64>,
    /// Verified when acquired: its answers are no longer checked.
    verified: bool,
    given_back: Cell<bool>,
}

impl Ticket {
    /// The send time counted for this delivery, if one was.
    pub fn taken(&self) -> Option<u64> {
        self.taken
    }

    /// Whether the webhook was already verified when the send was allowed.
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// The normalised URL the webhook is tracked under.
    pub fn tracked_url(&self) -> &str {
        &self.url
    }
}

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

/// The limit state of one webhook, for the test report.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct LimitState {
    pub verified: bool,
    pub sends_in_window: u32,
    /// None = unlimited.
    pub allowed_per_hour: Option<u32>,
    /// Seconds until the next send is allowed, when one would be refused now.
    pub retry_after: Option<u64>,
}

/// One webhook's state, whatever stores it (a bucket entry in shared data, a value in etcd):
/// what the decisions below read and change. The core decides; the backends only store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub verified: bool,
    /// Unix seconds of the sends still counted, ascending.
    pub sends: Vec<u64>,
}

/// What a support operator lifts from one webhook (the support listener, `crate::support`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lift {
    /// Marks it verified, as the receiver's right key would.
    Verify,
    /// Forgets the sends counted in the window: its next send is allowed at once.
    ResetWindow,
}

/// What a support operation saw and left: the state before and after (the same when it only
/// looked, or there was nothing to change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifted {
    pub before: LimitState,
    pub after: LimitState,
    pub changed: bool,
}

/// What the core decided for one send of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Allowed, and counted at this time: the changed record must be stored.
    Counted(u64),
    /// Allowed without counting (verified and unlimited): nothing to store.
    Free,
    /// Over the limit: the seconds until the next send fits (Retry-After).
    Refused(u64),
}

pub struct Limiter {
    unverified_per_hour: u32,
    verified_per_hour: Option<u32>,
    keys: BTreeMap<String, String>,
    default_key: Option<String>,
    key_field: String,
    pre_verified: BTreeSet<(String, String)>,
    max_tracked: u32,
    buckets: u32,
    namespace: String,
}

struct Ident {
    name: String,
    url: String,
}

enum Answer {
    Absent,
    Match,
    Mismatch,
}

impl Limiter {
    pub fn new(config: &LimitConfig) -> Result<Self, String> {
        if !(1..=MAX_UNVERIFIED_PER_HOUR).contains(&config.unverified_per_hour) {
            return Err(format!(
                "limit.unverified_per_hour: must be 1..={MAX_UNVERIFIED_PER_HOUR}"
            ));
        }
        if let Some(v) = config.verified_per_hour {
            if !(1..=MAX_VERIFIED_PER_HOUR).contains(&v) {
                return Err(format!(
                    "limit.verified_per_hour: must be 1..={MAX_VERIFIED_PER_HOUR}, or absent for unlimited"
                ));
            }
        }
        if !(1..=MAX_TRACKED).contains(&config.max_tracked) {
            return Err(format!("limit.max_tracked: must be 1..={MAX_TRACKED}"));
        }
        if config.key_field.is_empty() {
            return Err("limit.key_field: must not be empty".to_string());
        }
        for (name, key) in &config.keys {
            if name.is_empty() {
                return Err("limit.keys: a webhook name must not be empty".to_string());
            }
            if key.is_empty() {
                return Err(format!("limit.keys.{name}: the key must not be empty"));
            }
        }
        if config.default_key.as_deref() == Some("") {
            return Err("limit.default_key: must not be empty".to_string());
        }
        let ns = &config.namespace;
        if ns.is_empty()
            || ns.len() > MAX_NAMESPACE_LEN
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(format!(
                "limit.namespace: must be 1..={MAX_NAMESPACE_LEN} characters of A-Z a-z 0-9 . _ -"
            ));
        }
        let mut pre_verified = BTreeSet::new();
        for (index, webhook) in config.verified.iter().enumerate() {
            if webhook.name.is_empty() {
                return Err(format!("limit.verified[{index}].name: must not be empty"));
            }
            let mut url = url::Url::parse(&webhook.url)
                .map_err(|e| format!("limit.verified[{index}].url: {e}"))?;
            url.set_fragment(None);
            pre_verified.insert((webhook.name.clone(), String::from(url)));
        }
        Ok(Limiter {
            unverified_per_hour: config.unverified_per_hour,
            verified_per_hour: config.verified_per_hour,
            keys: config.keys.clone(),
            default_key: config.default_key.clone(),
            key_field: config.key_field.clone(),
            pre_verified,
            max_tracked: config.max_tracked,
            buckets: config.max_tracked.div_ceil(BUCKET_ENTRIES),
            namespace: config.namespace.clone(),
        })
    }

    // ---- The decisions, pure: the same for every backend ----

    /// Brings a record to `now`: sends out of the window dropped, sends of a verified unlimited
    /// webhook cleared. A record left unverified with no send carries nothing any more.
    pub fn compact_record(&self, record: &mut Record, now: u64) {
        if record.verified && self.verified_per_hour.is_none() {
            record.sends.clear();
        } else {
            prune(&mut record.sends, now);
        }
    }

    /// Decides one send now for a webhook with this record (`Record::default()` when none is
    /// stored; `pre`: listed in `verified`), and changes the record accordingly: compacted,
    /// verified when pre-verified, and with the send added when counted.
    pub fn admit(&self, record: &mut Record, pre: bool, now: u64) -> Admission {
        self.compact_record(record, now);
        record.verified |= pre;
        let Some(limit) = self.allowed(record.verified) else {
            return Admission::Free;
        };
        if let Some(retry) = retry_after(&record.sends, limit, now) {
            return Admission::Refused(retry);
        }
        let at = record.sends.partition_point(|&s| s <= now);
        record.sends.insert(at, now);
        Admission::Counted(now)
    }

    /// Marks a record verified (for ever); false when it already was.
    pub fn verify_record(&self, record: &mut Record) -> bool {
        if record.verified {
            return false;
        }
        record.verified = true;
        if self.verified_per_hour.is_none() {
            record.sends.clear();
        }
        true
    }

    /// Applies a support operator's lift to a record brought to `now`; false when it changed
    /// nothing (already verified, or no send in the window).
    pub fn lift_record(&self, record: &mut Record, lift: Lift, now: u64) -> bool {
        self.compact_record(record, now);
        match lift {
            Lift::Verify => self.verify_record(record),
            Lift::ResetWindow => !std::mem::take(&mut record.sends).is_empty(),
        }
    }

    /// The limit state a record gives now, for the test report.
    pub fn record_state(&self, record: &Record, pre: bool, now: u64) -> LimitState {
        let verified = record.verified || pre;
        let mut sends = record.sends.clone();
        prune(&mut sends, now);
        let allowed = self.allowed(verified);
        LimitState {
            verified,
            sends_in_window: u32::try_from(sends.len()).unwrap_or(u32::MAX),
            allowed_per_hour: allowed,
            retry_after: allowed.and_then(|limit| retry_after(&sends, limit, now)),
        }
    }

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

    /// Whether the webhook is listed in `verified` (normalised URL).
    pub fn pre_verified(&self, id: &WebhookId) -> bool {
        self.is_pre_verified(&Ident::new(id))
    }

    /// The namespace of this configuration's state table.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Sends allowed per hour once verified (None = unlimited).
    pub fn verified_per_hour(&self) -> Option<u32> {
        self.verified_per_hour
    }

    fn allowed(&self, verified: bool) -> Option<u32> {
        if verified {
            self.verified_per_hour
        } else {
            Some(self.unverified_per_hour)
        }
    }

    fn is_pre_verified(&self, ident: &Ident) -> bool {
        self.pre_verified
            .contains(&(ident.name.clone(), ident.url.clone()))
    }

    fn home_bucket(&self, ident: &Ident) -> u32 {
        u32::try_from(ident.hash() % u64::from(self.buckets)).unwrap_or(0)
    }
}

impl Ident {
    fn new(id: &WebhookId) -> Self {
        Ident {
            name: id.name.to_string(),
            url: if id.normalised {
                id.url.to_string()
            } else {
                normalise_url(id.url)
            },
        }
    }

    fn is(&self, entry: &Entry) -> bool {
        entry.name == self.name && entry.url == self.url
    }

    /// FNV-1a 64 of (name length, name, URL): the home bucket is it modulo the bucket count.
    fn hash(&self) -> u64 {
        fnv1a64(&[
            &(self.name.len() as u64).to_le_bytes(),
            self.name.as_bytes(),
            self.url.as_bytes(),
        ])
    }

    /// The high half of the hash: which redirect of its home bucket applies to the webhook.
    fn fingerprint(&self) -> u32 {
        (self.hash() >> 32) as u32
    }
}

impl Ticket {
    fn ident(&self) -> Ident {
        Ident {
            name: self.name.clone(),
            url: self.url.clone(),
        }
    }
}

/// The URL a webhook is tracked under: parsed and serialised by `url` (scheme and host lower
/// case, default port dropped, path normalised), without its fragment; as written when it
/// does not parse.
pub fn normalise_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            url.set_fragment(None);
            url.into()
        }
        Err(_) => raw.to_string(),
    }
}

/// FNV-1a 64 over the parts in order: stable across builds, platforms and reloads.
pub(crate) fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

fn unavailable(e: String) -> Failure {
    Failure::LimitUnavailable(format!("shared data: {e}"))
}

/// Keeps the sends within the window ending at `now`, sorted. After the clock went back, a
/// send up to an hour "in the future" still counts (until an hour after its own time); one
/// further ahead is taken for a clock error and dropped, so that no jump of the clock can
/// block a webhook for longer than two hours.
fn prune(sends: &mut Vec<u64>, now: u64) {
    sends.sort_unstable();
    sends.retain(|&s| counts_at(s, now));
}

/// Whether a send at `send` still counts at `now` (see `prune`).
fn counts_at(send: u64, now: u64) -> bool {
    send.saturating_add(WINDOW_SECS) > now && send <= now.saturating_add(WINDOW_SECS)
}

/// Removes one send at `taken` (this delivery's) from the record; false when it is not there
/// (already given back, or out of the window and compacted away).
pub fn give_back_send(record: &mut Record, taken: u64) -> bool {
    match record.sends.iter().position(|&s| s == taken) {
        Some(index) => {
            record.sends.remove(index);
            true
        }
        None => false,
    }
}

/// Seconds until one more send fits, when `sends` (pruned, ascending) already hold `limit`.
fn retry_after(sends: &[u64], limit: u32, now: u64) -> Option<u64> {
    let excess = sends.len().checked_sub(limit as usize)?;
    let oldest_to_expire = sends.get(excess)?;
    Some(
        oldest_to_expire
            .saturating_add(WINDOW_SECS)
            .saturating_sub(now)
            .max(1),
    )
}

/// Finds the key field in a JSON object answer, or in the first element of an array answer.
/// A string matches when equal to `expected`; a number when its literal text is; `null` counts
/// as absent; any other value is a mismatch.
fn judge_answer(body: &[u8], field: &str, expected: &str) -> Answer {
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

#[cfg(test)]
mod tests;
