//! End to end: faults through a real Envoy. Receivers that refuse, reset, stall, trickle,
//! answer too much, answer bytes that are not JSON, gzip, or any status; engines that send broken,
//! deep, huge, empty, mistyped or non-POST events. Each gets the documented envelope, status and
//! `x-hookgate-delivered` (never Envoy's bare reply, never a hang), and the receiver's records say
//! what really left.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../support/mod.rs"]
mod support;

mod connections;
mod events;
mod receivers;

use support::{assert_answer, loopback_config, Gateway, Reply, QUERY_ERROR};

/// The production configuration with loopback receivers allowed (10 s route timeout).
fn gateway() -> Gateway {
    Gateway::start(loopback_config())
}

fn head(status: u16, content_type: &str, length: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// Checks a refusal and that nothing reached the receiver.
fn assert_refused(reply: &Reply, status: u16) {
    assert_answer(reply, status, "no", 21111011, QUERY_ERROR);
    assert!(reply.header("x-hookgate-detail").is_some());
    assert_eq!(reply.header("x-hookgate-upstream-status"), None);
}
