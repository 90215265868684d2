//! hookgate's second place in Envoy, where IPv6 is looked up (the shipped configurations look up
//! IPv4 only and have none): an upstream filter of the forward-proxy route (root id
//! `hookgate-after-dns`), with the same plugin configuration. Envoy runs it for every try whose
//! picked host's address is not IPv4 (docs/security.md wraps it in a matcher that skips it for
//! IPv4, which the guard before connecting judges whole: `after_dns_matcher`); it judges
//! that address with the destination policy and refuses it with a local reply, which the
//! engine-facing filter turns into the envelope (`crate::destination::refused_after_dns`).
//!
//! Measured (docs/security.md): Envoy has already started the connection to the picked host
//! when this filter runs (and, for https, sent the TLS ClientHello), so the upstream RBAC before
//! it stays the guard that refuses before any connection (fed by the engine-facing filter with
//! what of the plugin policy applies, `crate::destination` guard.rs); this filter applies the
//! whole plugin policy where the guard cannot (IPv6 deny_cidrs, ISATAP interface ids), before any
//! byte of the request is sent.

use super::host;
use crate::config::Settings;
use crate::destination::{REFUSAL_DETAIL_HEADER, REFUSED_AFTER_DNS};
use crate::envelope;
use crate::error::Failure;
use crate::headers::header_safe;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::rc::Rc;

/// The root id that selects this filter in the plugin's `config` (envoy/*.yaml).
pub use crate::destination::AFTER_DNS_ROOT_ID as ROOT_ID;

pub struct AfterDns {
    settings: Option<Rc<Settings>>,
}

impl AfterDns {
    pub fn new(settings: Option<Rc<Settings>>) -> Self {
        AfterDns { settings }
    }

    fn judge(&self) -> Result<(), Failure> {
        let settings = self
            .settings
            .as_ref()
            .ok_or_else(|| Failure::Internal("no valid configuration".into()))?;
        let read = |path: &[&str]| {
            host::get_property(path)
                .ok()
                .flatten()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        };
        let address = read(&["upstream", "address"]);
        // The authority only names a refusal (and a debug line): read when needed, so an
        // allowed send makes one host call here, not two.
        let authority = || {
            host::get_header_text(MapType::HttpRequestHeaders, ":authority")
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("hookgate: after DNS: {} -> {address}", authority());
        }
        let policy = &settings.destinations;
        // Judged first without the name (it changes only the message), then again with it.
        policy
            .check_resolved("", &address)
            .or_else(|_| policy.check_resolved(&authority(), &address))
    }
}

impl Context for AfterDns {}

impl HttpContext for AfterDns {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Err(failure) = self.judge() else {
            return Action::Continue;
        };
        let detail = match &failure {
            Failure::BlockedDestination(why) => header_safe(why),
            other => header_safe(&other.to_string()),
        };
        let headers = [
            ("content-type", "application/json"),
            (REFUSAL_DETAIL_HEADER, detail.as_str()),
        ];
        let body = envelope::failure(&failure);
        if let Err(e) = host::send_local_response_details(403, REFUSED_AFTER_DNS, &headers, &body) {
            log::error!(
                "hookgate: after DNS: local reply failed (host status {})",
                e.0
            );
        }
        Action::Pause
    }
}
