//! End to end: the limit and the verification state in etcd, shared by a fleet of
//! Envoys. A real etcd (Debian's, installed by scripts/ensure-tool.sh) started on loopback ports
//! in a temporary directory, two Envoys (two workers each) with envoy/fleet.yaml, its mTLS
//! replaced by plain loopback for the rig, except in the mTLS test (certificates generated with
//! openssl). What the receiver got and what the engine got back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../support/mod.rs"]
mod support;

mod etcd;
mod pki;
mod reaching_etcd;
mod rig;
mod sharing;
