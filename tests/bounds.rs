//! No client can hold the gateway: the shipped configuration's bounds on engine connections and
//! requests (docs/operations.md), end to end through a real Envoy. Short timeouts are set in
//! test variants of envoy/envoy.yaml; a peer "from a refused network" binds 127.0.0.2 while the
//! engine's network is narrowed to 127.0.0.1.
// Tests may panic; the no-panic lints guard the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_yaml::Value as Yaml;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::http::{connect, connect_from, read_reply};
use support::{
    assert_answer, event, eventually, loopback_config, unique_name, Behaviour, EnvoyConfig,
    Gateway, Receiver, Reply, QUERY_ERROR,
};

/// The engine chain's connection manager (the first filter chain: the engine's networks).
fn engine_hcm(yaml: &mut Yaml) -> &mut Yaml {
    let chain = &mut yaml["static_resources"]["listeners"][0]["filter_chains"][0];
    assert!(chain["filter_chain_match"]["source_prefix_ranges"].is_sequence());
    &mut chain["filters"][0]["typed_config"]
}

/// The loopback test configuration with the engine chain's connection manager edited.
fn with_engine(edit: impl FnOnce(&mut Yaml)) -> EnvoyConfig {
    loopback_config().edit(|yaml| edit(engine_hcm(yaml)))
}

fn set(hcm: &mut Yaml, path: &[&str], value: &str) {
    let mut at = hcm;
    for key in path {
        at = &mut at[*key];
    }
    *at = Yaml::String(value.into());
}

/// Reads until the peer closes (Ok) or the read times out (Err); bounded.
fn closed_by_peer(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        if stream.read(&mut buf)? == 0 {
            return Ok(());
        }
    }
    Err(std::io::Error::other("still reading"))
}

/// The head of a POST of `body` (its full content-length) and the first `sent` bytes of it.
fn partial_post(body: &str, sent: usize) -> Vec<u8> {
    let mut bytes = format!(
        "POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body.as_bytes()[..sent]);
    bytes
}

/// Envoy's (or hookgate's) answer to an engine request cut by a timeout: 408, the envelope,
/// nothing sent, the timeout named.
fn assert_event_timeout(reply: &Reply, timeout: &str) {
    assert_answer(reply, 408, "no", 21111011, QUERY_ERROR);
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some(format!("event not received in time: {timeout}").as_str())
    );
}

/// An engine connection that carries no request is closed after the idle timeout (1 s here;
/// 300 s shipped), and one from another network after the default chain's (1 s here, 10 s
/// shipped).
#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let gw = Gateway::start(
        narrow_callers(
            with_engine(|hcm| set(hcm, &["common_http_protocol_options", "idle_timeout"], "1s")),
            "127.0.0.1",
        )
        .edit(|yaml| {
            let hcm = &mut other_networks(yaml)[1]["typed_config"];
            set(hcm, &["common_http_protocol_options", "idle_timeout"], "1s");
        }),
    );
    // A request from another network still gets the caller refusal's envelope, from hookgate.
    let mut refused = connect_from("127.0.0.2", gw.port);
    refused
        .write_all(&support::http::post_request("/", b"{}", &[]))
        .unwrap();
    let reply = read_reply(&mut BufReader::new(refused)).unwrap();
    assert_answer(&reply, 403, "no", 21111011, QUERY_ERROR);
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some("caller refused: source 127.0.0.2 is not in the configured callers")
    );
    let mut engine = connect_from("127.0.0.1", gw.port);
    let mut other = connect_from("127.0.0.2", gw.port);
    closed_by_peer(&mut engine).expect("the idle engine connection is closed");
    closed_by_peer(&mut other).expect("the idle connection from another network is closed");
    assert_eq!(gw.stat("http.hookgate.downstream_cx_idle_timeout"), Some(1));
    assert_eq!(
        gw.stat("http.other_networks.downstream_cx_idle_timeout"),
        Some(1)
    );
}

/// Headers trickled slower than `request_headers_timeout` (1 s here, 10 s shipped): 408 and the
/// envelope, from the local-reply mapper (hookgate never saw the request), then closed.
#[test]
fn slowloris_headers_get_408_with_the_envelope() {
    let gw = Gateway::start(with_engine(|hcm| {
        set(hcm, &["request_headers_timeout"], "1s")
    }));
    let reply = gw.raw(b"POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: appl");
    assert_event_timeout(&reply, "request_header_timeout");
    assert_eq!(
        gw.stat("http.hookgate.downstream_rq_header_timeout"),
        Some(1)
    );
    assert_eq!(
        gw.stat("wasmcustom.hookgate.outcomes.plan.default.outcome.internal.code.21111011"),
        None
    );
}

/// `request_timeout` (1 s here, 30 s shipped) cuts the engine's request: before its headers were
/// complete (the mapper answers), while the body stalls or trickles (hookgate answers). Each is
/// 408, 21111011, nothing sent, the timeout named, counted `event_timeout`, never `internal`.
/// A request the engine resets mid-body has no one to answer: counted `engine_reset`, recorded.
#[test]
fn a_stalled_or_slow_request_is_408_never_an_internal_failure() {
    let gw = Gateway::start(with_engine(|hcm| {
        set(hcm, &["request_timeout"], "1s");
        set(hcm, &["request_headers_timeout"], "20s");
    }));
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let body = event(&unique_name("Slow"), &receiver.url("/"));

    let reply = gw.raw(b"POST / HTTP/1.1\r\nhost: gw\r\n");
    assert_event_timeout(&reply, "request_overall_timeout");
    // hookgate never saw it: Envoy's counter, not hookgate's.
    assert_eq!(gw.stat("http.hookgate.downstream_rq_timeout"), Some(1));
    assert_eq!(
        gw.stat("wasmcustom.hookgate.outcomes.plan.default.outcome.event_timeout.code.21111011"),
        None
    );

    let reply = gw.raw(&partial_post(&body, 30));
    assert_event_timeout(&reply, "request_overall_timeout");
    let timeouts = "wasmcustom.hookgate.outcomes.plan.default.outcome.event_timeout.code.21111011";
    support::settles(timeouts, || gw.stat(timeouts), Some(1));

    // One byte every 200 ms: the body would take longer than the request timeout allows.
    let mut slow = connect(gw.port).unwrap();
    let head = partial_post(&body, 0);
    slow.write_all(&head).unwrap();
    let mut reader = BufReader::new(slow.try_clone().unwrap());
    let writer = std::thread::spawn(move || {
        for byte in body.as_bytes().iter().take(50) {
            if slow.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let reply = read_reply(&mut reader).unwrap();
    assert_event_timeout(&reply, "request_overall_timeout");
    writer.join().unwrap();
    let timeouts = "wasmcustom.hookgate.outcomes.plan.default.outcome.event_timeout.code.21111011";
    support::settles(timeouts, || gw.stat(timeouts), Some(2));

    let mut reset = connect(gw.port).unwrap();
    reset
        .write_all(&partial_post(&event("Reset", &receiver.url("/")), 30))
        .unwrap();
    // hookgate has the headers once Envoy counts the request; then the engine goes.
    eventually("the request reaching Envoy", || {
        gw.stat("http.hookgate.downstream_rq_total") == Some(4)
    });
    drop(reset);
    eventually("the reset counted", || {
        gw.stat("wasmcustom.hookgate.outcomes.plan.default.outcome.engine_reset") == Some(1)
    });
    // Its decision record, in the access log like every other one.
    let record = "webhook=- host=- outcome=engine_reset detail=\"the engine reset its request \
                  before its event was complete: nothing was sent\"";
    eventually("the reset's record in the access log", || {
        gw.access_log().lines().any(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            line["hookgate"] == record && line["status"] == 0
        })
    });
    assert_eq!(
        gw.stat("wasmcustom.hookgate.outcomes.plan.default.outcome.internal.code.21111011"),
        None
    );
    assert!(receiver.records().is_empty());
}

/// Kept-alive engine connections carry event after event, however long the pause between them
/// (here longer than the headers timeout, which starts only with a request's first byte).
#[test]
fn keep_alive_between_events_still_works() {
    let gw = Gateway::start(with_engine(|hcm| {
        set(hcm, &["request_headers_timeout"], "1s")
    }));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":1}"#));
    let mut stream = connect(gw.port).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        let body = event(&unique_name("Kept"), &receiver.url("/"));
        stream.write_all(&partial_post(&body, body.len())).unwrap();
        let reply = read_reply(&mut reader).unwrap_or_else(|e| panic!("event {i}: {e}"));
        assert_answer(&reply, 200, "yes", 1, r#"{"ok":1}"#);
        assert_eq!(reply.header("connection"), None, "event {i}");
    }
    assert_eq!(receiver.records().len(), 3);
    assert_eq!(gw.stat("http.hookgate.downstream_cx_total"), Some(1));
}

/// Narrows the engine's network to `source`/32: the filter chain match and the plugin's
/// `callers`.
fn narrow_callers(config: EnvoyConfig, source: &str) -> EnvoyConfig {
    let cidr = format!("{source}/32");
    config
        .edit(|yaml| {
            let chain = &mut yaml["static_resources"]["listeners"][0]["filter_chains"][0];
            chain["filter_chain_match"]["source_prefix_ranges"] = serde_yaml::from_str(&format!(
                r#"[{{address_prefix: "{source}", prefix_len: 32}}]"#
            ))
            .unwrap();
        })
        .edit_plugin_configs(move |json| json["callers"] = serde_json::json!([cidr]))
}

/// The filters of the first listener's default chain (peers from networks the engine chain does
/// not name): the connection limit, then the connection manager.
fn other_networks(yaml: &mut Yaml) -> &mut Vec<Yaml> {
    yaml["static_resources"]["listeners"][0]["default_filter_chain"]["filters"]
        .as_sequence_mut()
        .unwrap()
}

/// The shipped default chain's connection limit.
fn refused_limit(yaml: &mut Yaml) -> &mut Yaml {
    let limit = &mut other_networks(yaml)[0];
    assert_eq!(limit["name"], "envoy.filters.network.connection_limit");
    &mut limit["typed_config"]["max_connections"]
}

/// The gateway's global connection limit, scaled down with the default chain's (16 of 64 here;
/// 100 of 10000 shipped): idle connections from a refused network, as many as the global limit,
/// hold only their chain's share, and a legitimate event is still served.
#[test]
fn an_idle_flood_from_a_refused_network_does_not_lock_the_engine_out() {
    const GLOBAL: usize = 64;
    let gw = Gateway::start(narrow_callers(loopback_config(), "127.0.0.1").edit(|yaml| {
        *refused_limit(yaml) = 16.into();
        let monitor = &mut yaml["overload_manager"]["resource_monitors"][0];
        assert_eq!(
            monitor["name"],
            "envoy.resource_monitors.global_downstream_max_connections"
        );
        monitor["typed_config"]["max_active_downstream_connections"] = GLOBAL.into();
    }));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":1}"#));
    let flood: Vec<TcpStream> = (0..GLOBAL)
        .map(|_| connect_from("127.0.0.2", gw.port))
        .collect();
    eventually("the flood refused past the default chain's limit", || {
        gw.stat("connection_limit.other_networks.limited_connections") == Some((GLOBAL - 16) as u64)
    });
    assert_eq!(
        gw.stat("connection_limit.other_networks.active_connections"),
        Some(16)
    );
    let reply = connect_from("127.0.0.1", gw.port);
    let mut reader = BufReader::new(reply.try_clone().unwrap());
    let body = event(&unique_name("Flooded"), &receiver.url("/"));
    (&reply)
        .write_all(&partial_post(&body, body.len()))
        .unwrap();
    let answer = read_reply(&mut reader).unwrap();
    assert_answer(&answer, 200, "yes", 1, r#"{"ok":1}"#);
    assert_eq!(receiver.records().len(), 1);
    drop(flood);
}

/// Past 95 % of the heap Envoy refuses new requests with the envelope (503, nothing sent, so the
/// engine may resend later). The heap is made tiny here so that the pressure is over 100 %; the
/// last action (stop accepting connections, at 98 %) is left out so the request can arrive.
#[test]
fn heap_pressure_sheds_new_requests_with_the_envelope() {
    let gw = Gateway::start(loopback_config().edit(|yaml| {
        let overload = &mut yaml["overload_manager"];
        let heap = &mut overload["resource_monitors"][1];
        assert_eq!(heap["name"], "envoy.resource_monitors.fixed_heap");
        heap["typed_config"]["max_heap_size_bytes"] = (1u64 << 20).into();
        let actions = overload["actions"].as_sequence_mut().unwrap();
        let before = actions.len();
        actions.retain(|a| a["name"] != "envoy.overload_actions.stop_accepting_connections");
        assert_eq!(actions.len(), before - 1);
    }));
    eventually("the request shedding action active", || {
        gw.stat("overload.envoy.overload_actions.stop_accepting_requests.active") == Some(1)
    });
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let reply = gw.post(&event(&unique_name("Shed"), &receiver.url("/")));
    assert_answer(&reply, 503, "no", 21111011, QUERY_ERROR);
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some("refused by Envoy: overload")
    );
    assert!(receiver.records().is_empty());
}

/// Every shipped configuration gives the plugin's `callers` the engine chain's bounds (its
/// filter chain match names the same networks), runs the same filters in the default chain, and
/// bounds connections, requests and heap.
#[test]
fn every_shipped_config_bounds_connections_requests_and_heap() {
    for path in [
        "envoy/envoy.yaml",
        "envoy/run.yaml",
        "envoy/plans.yaml",
        "envoy/fleet.yaml",
    ] {
        let mut config = EnvoyConfig::load(path);
        let yaml = &mut config.yaml;
        let listeners = yaml["static_resources"]["listeners"]
            .as_sequence()
            .unwrap()
            .clone();
        // The engine's listeners (the support listener is on loopback: tests/operations.rs).
        for listener in listeners.iter().filter(|l| l["name"] != "hookgate-support") {
            let chain = &listener["filter_chains"][0];
            let hcm = &chain["filters"][0]["typed_config"];
            let ranges: Vec<String> = chain["filter_chain_match"]["source_prefix_ranges"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|r| {
                    format!(
                        "{}/{}",
                        r["address_prefix"].as_str().unwrap(),
                        r["prefix_len"].as_u64().unwrap()
                    )
                })
                .collect();
            // After the filter that keeps the request id for the access log.
            assert_eq!(hcm["http_filters"][1]["name"], "hookgate", "{path}");
            let plugin: serde_json::Value = serde_json::from_str(
                hcm["http_filters"][1]["typed_config"]["config"]["configuration"]["value"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            let callers: Vec<String> = match plugin.get("callers") {
                Some(list) => serde_json::from_value(list.clone()).unwrap(),
                None => hookgate::caller::default_callers(),
            };
            assert_eq!(ranges, callers, "{path}");
            assert_eq!(hcm["request_headers_timeout"], "10s", "{path}");
            assert_eq!(hcm["request_timeout"], "30s", "{path}");
            assert_eq!(hcm["stream_idle_timeout"], "30s", "{path}");
            let common = &hcm["common_http_protocol_options"];
            assert_eq!(common["idle_timeout"], "300s", "{path}");
            assert_eq!(common["max_connection_duration"], "3600s", "{path}");
            // Every other network: the engine chain's filters, routes and answers (so the same
            // policy judges its callers), with a small share of connections and shorter timeouts.
            let default = &listener["default_filter_chain"]["filters"];
            assert_eq!(default[0]["typed_config"]["max_connections"], 100, "{path}");
            let other = &default[1]["typed_config"];
            for same in [
                "http_filters",
                "route_config",
                "local_reply_config",
                "access_log",
                "use_remote_address",
                "preserve_external_request_id",
                "http_protocol_options",
            ] {
                assert_eq!(other[same], hcm[same], "{path}: {same}");
            }
            assert_eq!(other["request_headers_timeout"], "2s", "{path}");
            assert_eq!(other["request_timeout"], "10s", "{path}");
            assert_eq!(other["stream_idle_timeout"], "30s", "{path}");
            let common = &other["common_http_protocol_options"];
            assert_eq!(common["idle_timeout"], "10s", "{path}");
            assert_eq!(common["max_connection_duration"], "60s", "{path}");
        }
        let monitors = yaml["overload_manager"]["resource_monitors"]
            .as_sequence()
            .unwrap();
        assert_eq!(
            monitors[1]["name"], "envoy.resource_monitors.fixed_heap",
            "{path}"
        );
        let actions: Vec<&str> = yaml["overload_manager"]["actions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        for action in [
            "envoy.overload_actions.stop_accepting_requests",
            "envoy.overload_actions.stop_accepting_connections",
        ] {
            assert!(actions.contains(&action), "{path}: {action}");
        }
    }
}
