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
mod config;
mod decisions;
pub mod etcd;
mod key;
pub mod slot;
pub mod state;
mod table;

pub use config::{LimitConfig, VerifiedWebhook};
use decisions::counts_at;
pub use decisions::{give_back_send, Admission, Lift, Lifted, LimitState, Record};
pub use key::KeyVerdict;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;

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

/// Proxy-wasm shared data as the limiter needs it. The host adapter must map
/// `Status::CasMismatch` to `Ok(false)` and `NotFound` to `Ok((None, None))`; a present key with
/// an empty value may come back as `(None, Some(cas))` (the SDK does that) or as an empty vector.
pub trait SharedStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String>;
    /// Ok(true) stored, Ok(false) CAS mismatch, Err(host failure)
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String>;
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

impl Limiter {
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
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(&(self.name.len() as u64).to_le_bytes());
        hasher.write(self.name.as_bytes());
        hasher.write(self.url.as_bytes());
        hasher.finish()
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

fn unavailable(e: String) -> Failure {
    Failure::LimitUnavailable(format!("shared data: {e}"))
}

#[cfg(test)]
mod tests;
