//! hookgate: a webhook egress gateway for Envoy.
//!
//! The pure core (event, destination, limit, answer, envelope, report, config, and `delivery`,
//! the request's state machine) knows nothing of the host and is unit-tested natively; `filter`
//! is the thin proxy-wasm layer that hands Envoy's callbacks to a delivery and makes its host
//! calls.

pub mod abi;
pub mod answer;
pub mod caller;
pub mod cidr;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod destination;
pub mod envelope;
pub mod error;
pub mod event;
pub mod headers;
pub mod limit;
/// The operators' checker (`hookgate check`, `hookgate explain`); native builds only.
#[cfg(feature = "cli")]
pub mod operator;
pub mod report;
pub mod signing;
pub mod support;

// The proxy-wasm layer calls host functions that only exist inside Envoy; unit tests of the
// core do not link it.
#[cfg(not(test))]
mod filter;
