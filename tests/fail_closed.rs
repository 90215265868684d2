//! `failure_policy: FAIL_CLOSED` in every shipped configuration (and in the check after DNS that
//! looking up IPv6 adds), and what it does. A filter
//! that cannot run refuses requests instead of letting them through unchecked, and a module that
//! cannot load stops Envoy with a clear message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_yaml::Value as Yaml;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{repo, scratch, Behaviour, EnvoyConfig, Gateway, Receiver};

fn shipped() -> Vec<String> {
    let mut paths: Vec<String> = std::fs::read_dir(repo().join("envoy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| format!("envoy/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_shipped_configuration_fails_closed() {
    let paths = shipped();
    assert!(paths.len() >= 3, "{paths:?}");
    for path in paths {
        // With IPv6 looked up as documented, its check after DNS too.
        let mut config = EnvoyConfig::load(&path).dual_stack();
        let filters = config.hookgate_filters();
        assert!(!filters.is_empty(), "{path}: no hookgate filter");
        assert!(
            filters
                .iter()
                .any(|f| f["typed_config"]["config"]["root_id"] == "hookgate-after-dns"),
            "{path}: no check after DNS"
        );
        for filter in filters {
            let plugin = &filter["typed_config"]["config"];
            assert_eq!(plugin["failure_policy"], "FAIL_CLOSED", "{path}");
            assert_eq!(plugin["allow_on_headers_stop_iteration"], true, "{path}");
        }
    }
}

/// tests/fixtures/trap.wat assembled: a filter whose request-headers callback traps.
fn trap_module() -> PathBuf {
    let out = scratch("trap").join("trap.wasm");
    let status = Command::new("wat2wasm")
        .arg(repo().join("tests/fixtures/trap.wat"))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("wat2wasm (scripts/test.sh installs wabt)");
    assert!(status.success());
    out
}

/// The production configuration running `module`, with the given failure policy, and a route
/// to the receiver open to any request that carries the marker (as a rewritten one would).
fn with_module(module: &Path, policy: &str) -> EnvoyConfig {
    let policy = policy.to_string();
    let module = module.display().to_string();
    support::loopback_config().edit(move |yaml| {
        let mut config = EnvoyConfig { yaml: yaml.clone() };
        for filter in config.hookgate_filters() {
            let plugin = &mut filter["typed_config"]["config"];
            plugin["failure_policy"] = Yaml::String(policy.clone());
            plugin["vm_config"]["code"]["local"]["filename"] = Yaml::String(module.clone());
        }
        *yaml = config.yaml;
    })
}

/// What a request that skipped hookgate would look like: the route marker and the receiver
/// (`address`, its port) as authority. Only an unchecked pass could deliver it.
fn unchecked_request(address: &str, receiver: &Receiver) -> Vec<u8> {
    let body = r#"[{"raw":"not reshaped"}]"#;
    format!(
        "POST /stolen HTTP/1.1\r\nhost: {address}:{}\r\nx-hookgate-route: http\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        receiver.port,
        body.len()
    )
    .into_bytes()
}

/// An address no deny list holds (on the test namespace's loopback): Envoy's guard before
/// connecting lets it through without hookgate, so only hookgate stands before it.
fn public_address() -> String {
    std::net::Ipv4Addr::from(support::dns::PUBLIC).to_string()
}

#[test]
fn a_crashed_filter_refuses_every_request_and_nothing_is_sent() {
    support::isolated();
    let module = trap_module();
    let public = public_address();
    let receiver = Receiver::start_on(&public, Behaviour::json(200, "{}"));
    let gw = Gateway::start(with_module(&module, "FAIL_CLOSED"));
    for attempt in 0..5 {
        let reply = gw.raw(&unchecked_request(&public, &receiver));
        assert_eq!(reply.status, 503, "attempt {attempt}: {}", reply.text());
        assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
        assert_eq!(reply.json()[0]["code"], 21111011);
    }
    assert_eq!(receiver.records().len(), 0);
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
}

/// The control that shows the test above can fail: the same crash with FAIL_OPEN lets later
/// unchecked requests through to a receiver on a public address. Never shipped. (A receiver on
/// an excepted loopback address stays refused even then: only hookgate hands Envoy's guard the
/// exception, per webhook.)
#[test]
fn the_same_crash_with_fail_open_would_let_it_through() {
    support::isolated();
    let module = trap_module();
    let public = public_address();
    let receiver = Receiver::start_on(&public, Behaviour::json(200, "{}"));
    let excepted = Receiver::start(Behaviour::json(200, "{}"));
    let gw = Gateway::start(with_module(&module, "FAIL_OPEN"));
    // The request during which the VM crashes fails (wasm_fail_stream); every later one passes
    // unchecked.
    let statuses: Vec<u16> = (0..3)
        .map(|_| gw.raw(&unchecked_request(&public, &receiver)).status)
        .collect();
    assert_eq!(statuses, [503, 200, 200]);
    assert_eq!(
        receiver.records().len(),
        2,
        "FAIL_OPEN passed requests unchecked"
    );
    let loopback = gw.raw(&unchecked_request("127.0.0.1", &excepted));
    assert_eq!(loopback.status, 403, "{}", loopback.text());
    assert_eq!(*excepted.connections.lock().unwrap(), 0);
}

#[test]
fn a_module_that_cannot_load_stops_envoy_with_a_clear_message() {
    let dir = scratch("badwasm");
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"this is not a wasm module").unwrap();
    for (module, expected) in [
        (garbage, "wasm"),
        (dir.join("missing.wasm"), "missing.wasm"),
    ] {
        let log = with_module(&module, "FAIL_CLOSED").refused_by_envoy();
        assert!(log.contains(expected), "{}: {log}", module.display());
    }
}
