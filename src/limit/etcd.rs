//! The limit and verification state in etcd, for a fleet of Envoys (`state.backend = "etcd"`).
//!
//! Pure: this module builds the requests for etcd's v3 JSON gateway (`POST /v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/grant`; keys and values base64) and reads etcd's answers; the
//! filter carries them through an Envoy cluster with `dispatch_http_call`. Every decision is the
//! core's ([`Limiter::admit`], [`Limiter::verify_record`], [`give_back_send`]), the same as for
//! the local backend: etcd only stores.
//!
//! # Keys and values
//! One key per webhook: `<prefix>/<namespace>/webhook/<name>/<normalised url>`, with `%` and
//! `/` of the name percent-escaped (so no two webhooks share a key, and `etcdctl get --prefix`
//! shows them readably). The value is JSON: `{"v":1,"name":..,"url":..,"verified":..,
//! "sends":[unix seconds, ascending]}`. A value that does not decode is never overwritten: its
//! webhook gets `LimitUnavailable`.
//!
//! # One decision, compare-and-swap
//! Acquire reads the key (`range`), lets the core decide, and writes the new record with a
//! transaction that compares the key's `mod_revision` with the one read (or `create_revision ==
//! 0` when it was absent), whose failure branch reads the key again: two Envoys that both read
//! "absent" cannot both create it, and the loser decides again on what the winner wrote (at most
//! [`MAX_ATTEMPTS`] rounds, then `LimitUnavailable`). A refusal costs one read, an allowed send
//! a read and a write, and once a minute (or every 1000 writes) per worker a lease grant more
//! (`lease.rs`).
//!
//! A webhook whose key the worker has not seen within the hour (`seen.rs`) starts at the write
//! instead, decided on an absent record: a first send is then that one transaction, and for a key
//! that does exist its failure branch is the read, decided on as above.
//!
//! # Expiry and which clock decides
//! The hour is decided by the clock of the Envoy that decides, against the send times stored in
//! the value (written by whichever Envoy sent): the same rolling window and the same rules as the
//! local backend. Clock skew between Envoys shifts the window by the skew: an Envoy whose clock
//! is `s` seconds ahead of the one that sent allows the next send `s` seconds early (and one
//! behind, `s` seconds late); keep the fleet on NTP (skews of milliseconds do not matter). A
//! send time more than an hour in the future is taken for a clock error and dropped, as locally.
//! The decider reads its clock when the record is in hand (each read, each failed compare), not
//! when the request arrived: a send another Envoy stored meanwhile is then never in its future.
//!
//! etcd's clock only collects garbage: every write of an unverified record attaches a lease that
//! ends at least the hour plus a margin after the write ([`lease::TTL_SECS`], asked for at most
//! [`lease::REUSE_SECS`] before the write), so the key of a webhook that stops sending
//! disappears by itself; verified records are written without a lease and stay
//! (verification never reverts). Compaction (`--auto-compaction-retention`) then drops the old
//! revisions. Only a skew larger than the margin could let a lease end a window early.
//!
//! # Give-back
//! A delivery that never reached the receiver removes only its own send time, by a
//! compare-and-swap on the revision it wrote (the key is deleted when nothing else is left in
//! it); when another write came in between, it reads again and removes its own send from what is
//! there, never anyone else's.

pub mod lease;
mod lift;
pub mod seen;
mod update;
mod wire;

pub use lift::Support;
pub use update::Update;

use lease::{KeptLease, Lease, LeaseUse};
use seen::{Seen, Sighting};
use wire::{
    decode_record, encode_record, lease_grant, ok_body, parse_lease, parse_range, parse_txn, range,
    txn_put, Kv, Txn,
};

use super::state::StateConfig;
use super::{give_back_send, Admission, Ident, LimitState, Limiter, Record, Ticket, WebhookId};
use crate::clock::Clock;
use crate::error::Failure;
use std::cell::Cell;

/// Rounds (compare failures, or failed calls retried) before `LimitUnavailable`.
pub const MAX_ATTEMPTS: u32 = 8;
/// Failed calls (no answer, or not 200) retried in one operation before giving up.
pub const MAX_RETRIES: u32 = 3;
/// The format version in every value.
pub const VALUE_VERSION: u32 = 1;

/// One call to etcd's JSON gateway: `POST <path>` with this JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub path: &'static str,
    pub body: String,
}

/// What came back from a call: the HTTP status (None: no answer, e.g. a timeout or a reset)
/// and the body.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    pub status: Option<u16>,
    pub body: &'a [u8],
}

/// An operation's next move.
#[derive(Debug)]
pub enum Next<T> {
    Call(Call),
    Done(T),
}

/// The etcd backend of one configuration.
#[derive(Debug)]
pub struct Etcd {
    prefix: String,
    /// This worker's lease (each worker has its own configuration, hence its own `Etcd`).
    kept: KeptLease,
    /// The keys this worker saw existing lately (which call an acquire starts with).
    seen: Seen,
}

impl Etcd {
    pub fn new(config: &StateConfig) -> Self {
        Etcd {
            prefix: config.prefix.clone(),
            kept: KeptLease::default(),
            seen: Seen::default(),
        }
    }

    /// What a finished acquire did with leases and learnt about its key, for the worker's next.
    pub fn note(&self, decided: &Decided) {
        self.kept.note(decided.lease);
        if let Some(sighting) = decided.sighting {
            self.seen.note(sighting);
        }
    }

    /// On the tick: the lease grant this worker asks for ahead of need (`lease.rs`), or None.
    pub fn lease_ahead(&self, now: u64) -> Option<Call> {
        self.kept.ask_ahead(now).then(lease_grant)
    }

    /// etcd's answer to the call of [`Etcd::lease_ahead`]; on a failure the tick asks again later
    /// (and a send that needs a lease meanwhile asks for its own).
    pub fn on_lease_ahead(&self, reply: Reply) -> Result<(), String> {
        let id = ok_body(reply).and_then(parse_lease)?;
        self.kept.granted_ahead(id);
        Ok(())
    }

    /// The key of a webhook (name and normalised URL) in this limit namespace.
    pub fn key(&self, limiter: &Limiter, name: &str, url: &str) -> String {
        let mut key = format!("{}/{}/webhook/", self.prefix, limiter.namespace);
        for c in name.chars() {
            match c {
                '%' => key.push_str("%25"),
                '/' => key.push_str("%2F"),
                c => key.push(c),
            }
        }
        key.push('/');
        key.push_str(url);
        key
    }
}

/// A send etcd let through, with what this delivery wrote (for give-back and verification).
#[derive(Debug)]
pub struct Admitted {
    pub ticket: Ticket,
    /// The revision of this delivery's write (0: nothing written).
    revision: i64,
    /// The record as written.
    record: Record,
    /// The lease attached to the write (0: none).
    lease: i64,
}

impl Admitted {
    /// Whether etcd's record let the send through as verified and unlimited: this Envoy may then
    /// cache the webhook as verified (verification never reverts), so its later sends need no call.
    pub fn free_by_verification(&self) -> bool {
        self.ticket.verified && self.ticket.taken.is_none()
    }
}

/// The end of an acquire: the decision, the state it saw (for the test report), and what it did
/// with leases and learnt about its key (for [`Etcd::note`]).
#[derive(Debug)]
pub struct Decided {
    pub result: Result<Admitted, Failure>,
    pub state: Option<LimitState>,
    pub lease: LeaseUse,
    pub sighting: Option<Sighting>,
}

enum AcquireState {
    Reading,
    Granting { record: Record, kv: Option<Kv> },
    Writing { record: Record, at: u64 },
}

/// Takes a send for one webhook, or refuses it.
pub struct Acquire {
    key: String,
    ident: Ident,
    pre: bool,
    /// The decider's clock, read when the record is in hand (see `decide`).
    now: u64,
    attempts: u32,
    retries: u32,
    /// The worker's kept lease, until a write finds it gone.
    kept: Option<Lease>,
    /// The lease of this acquire's write (0: none yet): the kept one, or `granted`.
    lease: i64,
    granted: Option<Lease>,
    /// Whether the key exists, by the last answer (None: no answer read yet).
    exists: Option<bool>,
    last: Call,
    state: AcquireState,
}

impl Acquire {
    /// The worker's kept lease (`lease.rs`) is attached to the write while it is fresh. An
    /// unverified webhook whose key the worker has not seen lately starts at the write, when the
    /// kept lease can carry it (else with the read; the grant then comes once the read said
    /// "absent", as a refusal needs no lease).
    pub fn start(
        etcd: &Etcd,
        limiter: &Limiter,
        id: &WebhookId,
        clock: &dyn Clock,
    ) -> (Acquire, Call) {
        let ident = Ident::new(id);
        let key = etcd.key(limiter, &ident.name, &ident.url);
        let call = range(&key);
        let mut op = Acquire {
            pre: limiter.is_pre_verified(&ident),
            key,
            ident,
            now: 0,
            attempts: 0,
            retries: 0,
            kept: etcd.kept.get(),
            lease: 0,
            granted: None,
            exists: None,
            last: call.clone(),
            state: AcquireState::Reading,
        };
        let now = clock.now();
        let fresh_lease = op.kept.is_some_and(|kept| kept.reusable_at(now));
        if !op.pre && fresh_lease && !etcd.seen.knows(op.ident.hash(), now) {
            // Unverified and absent: the decision is a counted send, the write with the kept lease.
            if let Ok(Next::Call(write)) = op.decide(limiter, None, clock) {
                op.last = write.clone();
                return (op, write);
            }
            op.lease = 0;
            op.state = AcquireState::Reading;
        }
        (op, call)
    }

    /// `clock` is read only when a record has just been read and a decision is made on it.
    pub fn on_reply(
        &mut self,
        limiter: &Limiter,
        reply: Reply,
        clock: &dyn Clock,
    ) -> Next<Decided> {
        if self.reused()
            && matches!(self.state, AcquireState::Writing { .. })
            && lease::not_found(reply.status, reply.body)
        {
            // The kept lease is gone (nothing was written): read again and ask for a new one.
            self.kept = None;
            self.lease = 0;
            self.state = AcquireState::Reading;
            let call = range(&self.key);
            self.last = call.clone();
            return Next::Call(call);
        }
        let body = match ok_body(reply) {
            Ok(body) => body,
            Err(why) => return self.retry(why),
        };
        let state = std::mem::replace(&mut self.state, AcquireState::Reading);
        let step = match state {
            AcquireState::Reading => parse_range(body).and_then(|kv| {
                self.exists = Some(kv.is_some());
                self.decide(limiter, kv, clock)
            }),
            AcquireState::Granting { record, kv } => parse_lease(body).map(|id| {
                self.lease = id;
                self.granted = Some(Lease {
                    id,
                    asked_at: self.now,
                });
                self.write(record, kv)
            }),
            AcquireState::Writing { record, at } => match parse_txn(body) {
                Ok(Txn::Succeeded { revision }) => {
                    self.exists = Some(true);
                    Ok(Next::Done(Decided {
                        state: Some(limiter.record_state(&record, self.pre, self.now)),
                        result: Ok(Admitted {
                            ticket: self.ticket(Some(at), record.verified),
                            revision,
                            lease: if record.verified { 0 } else { self.lease },
                            record,
                        }),
                        lease: self.lease_use(true),
                        sighting: self.sighting(),
                    }))
                }
                Ok(Txn::Failed { kv }) => {
                    self.exists = Some(kv.is_some());
                    self.attempts += 1;
                    if self.attempts >= MAX_ATTEMPTS {
                        return refused(Failure::LimitUnavailable(format!(
                            "etcd: key still contended after {MAX_ATTEMPTS} attempts"
                        )));
                    }
                    self.decide(limiter, kv, clock)
                }
                Err(why) => Err(why),
            },
        };
        match step {
            Ok(Next::Call(call)) => {
                self.last = call.clone();
                Next::Call(call)
            }
            Ok(done) => done,
            Err(why) => refused(Failure::LimitUnavailable(format!("etcd: {why}"))),
        }
    }

    /// A failed call is sent again (the compare in every write makes that safe: a write that did
    /// land the first time fails its compare and is decided again on what it wrote).
    fn retry(&mut self, why: String) -> Next<Decided> {
        self.retries += 1;
        if self.retries <= MAX_RETRIES {
            Next::Call(self.last.clone())
        } else {
            refused(Failure::LimitUnavailable(format!("etcd: {why}")))
        }
    }

    fn decide(
        &mut self,
        limiter: &Limiter,
        kv: Option<Kv>,
        clock: &dyn Clock,
    ) -> Result<Next<Decided>, String> {
        let mut record = match &kv {
            Some(kv) => decode_record(kv, &self.ident)?,
            None => Record::default(),
        };
        // Read after the record: a send another Envoy stored meanwhile is never in this
        // decider's future, so a refusal says at most an hour (a clock read when the request
        // arrived said 3601 after losing a race to a send made in the next second).
        self.now = clock.now();
        let admission = limiter.admit(&mut record, self.pre, self.now);
        let state = Some(limiter.record_state(&record, self.pre, self.now));
        Ok(match admission {
            Admission::Free => Next::Done(Decided {
                result: Ok(Admitted {
                    ticket: self.ticket(None, true),
                    revision: 0,
                    record,
                    lease: 0,
                }),
                state,
                lease: self.lease_use(false),
                sighting: self.sighting(),
            }),
            Admission::Refused(retry) => Next::Done(Decided {
                result: Err(Failure::OverLimit(retry)),
                state,
                lease: self.lease_use(false),
                sighting: self.sighting(),
            }),
            Admission::Counted(_) if !record.verified && self.lease == 0 => {
                match self.kept.filter(|kept| kept.reusable_at(self.now)) {
                    Some(kept) => {
                        self.lease = kept.id;
                        self.write(record, kv)
                    }
                    None => {
                        self.state = AcquireState::Granting { record, kv };
                        Next::Call(lease_grant())
                    }
                }
            }
            Admission::Counted(_) => self.write(record, kv),
        })
    }

    fn write(&mut self, record: Record, kv: Option<Kv>) -> Next<Decided> {
        let lease = if record.verified { 0 } else { self.lease };
        let call = txn_put(
            &self.key,
            kv.as_ref().map_or(0, |kv| kv.mod_revision),
            &encode_record(&record, &self.ident),
            lease,
        );
        self.state = AcquireState::Writing {
            record,
            at: self.now,
        };
        Next::Call(call)
    }

    /// What this acquire learnt about its key, once decided.
    fn sighting(&self) -> Option<Sighting> {
        self.exists.map(|exists| Sighting {
            hash: self.ident.hash(),
            exists,
            at: self.now,
        })
    }

    /// Whether the write carries the worker's kept lease (the not-found path forgets it).
    fn reused(&self) -> bool {
        self.lease != 0 && self.kept.is_some_and(|kept| kept.id == self.lease)
    }

    /// What this acquire did with leases, once decided; `wrote`: a write carried `self.lease`.
    fn lease_use(&self, wrote: bool) -> LeaseUse {
        match self.granted {
            Some(granted) => LeaseUse::Granted(granted),
            None if wrote && self.reused() => LeaseUse::Kept,
            None => LeaseUse::Nothing,
        }
    }

    fn ticket(&self, taken: Option<u64>, verified: bool) -> Ticket {
        Ticket {
            name: self.ident.name.clone(),
            url: self.ident.url.clone(),
            at: self.now,
            taken,
            verified,
            given_back: Cell::new(false),
        }
    }
}

/// The body of a 200 answer, or the move after a failed call: the same call again (at most
/// [`MAX_RETRIES`] times in one operation), then `LimitUnavailable`.
fn body_or_retry<'a, T>(
    reply: Reply<'a>,
    retries: &mut u32,
    last: &Call,
) -> Result<&'a [u8], Next<Result<T, Failure>>> {
    ok_body(reply).map_err(|why| {
        *retries += 1;
        if *retries > MAX_RETRIES {
            Next::Done(Err(Failure::LimitUnavailable(format!("etcd: {why}"))))
        } else {
            Next::Call(last.clone())
        }
    })
}

fn refused(failure: Failure) -> Next<Decided> {
    Next::Done(Decided {
        result: Err(failure),
        state: None,
        lease: LeaseUse::Nothing,
        sighting: None,
    })
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
