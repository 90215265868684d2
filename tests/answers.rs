//! Answers a caller cannot alter: whatever headers the engine (or anyone who reaches the listener)
//! sends, Envoy's own refusals come back as the documented envelope with a true
//! `x-hookgate-delivered`. The local-reply mappers of the shipped configurations read only state
//! a caller cannot write: Envoy's response code details, and request pseudo-headers of hookgate's
//! own (`:hookgate-replied`, set by hookgate when it answers; `:hookgate-unset`, never set),
//! which no HTTP/1 or HTTP/2 request can carry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{
    assert_answer, event, eventually, loopback_config, unique_name, Behaviour, Gateway, Receiver,
};
use support::{Reply, QUERY_ERROR};

/// The headers a caller could send to steer a local-reply mapper of an earlier hookgate, which
/// read these request headers: its marker of hookgate's own replies, and the (always absent)
/// header whose value went in front of `no` in `x-hookgate-delivered`.
const STEERING: &[(&str, &str)] = &[("x-hookgate-replied", "1"), ("x-hookgate-unset", "yes, ")];

/// Envoy's refusal as the envelope: the status, 21111011, `no`, and the detail it names.
fn assert_refused_by_envoy(reply: &Reply, status: u16, detail: &str) {
    assert_answer(reply, status, "no", 21111011, QUERY_ERROR);
    assert_eq!(reply.header("x-hookgate-detail"), Some(detail), "{reply:?}");
}

/// A request with each steering header alone, then with both.
fn steered(request: &str) -> Vec<Vec<u8>> {
    let mut sets: Vec<Vec<(&str, &str)>> = STEERING.iter().map(|h| vec![*h]).collect();
    sets.push(STEERING.to_vec());
    sets.into_iter()
        .map(|headers| {
            let (line, rest) = request.split_once("\r\n").unwrap();
            let extra: String = headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect();
            format!("{line}\r\n{extra}{rest}").into_bytes()
        })
        .collect()
}

/// The client connects from 127.0.0.1, which the test configurations refuse in both filter
/// chains a caller can reach: the engine's, whose plugin `callers` admits only 127.0.0.2, and the
/// listener's default chain for every other network (the engine's chain matching only
/// 127.0.0.2), which runs hookgate with the same policy.
#[test]
fn a_refused_caller_gets_the_envelope_whatever_headers_it_sends() {
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let body = event(&unique_name("Steer"), &receiver.url("/"));
    let post = format!(
        "POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let by_hookgate = loopback_config().edit_plugin_configs(|json| {
        json["callers"] = serde_json::json!(["127.0.0.2/32"]);
    });
    let by_default_chain = by_hookgate.clone().edit(|yaml| {
        let chain = &mut yaml["static_resources"]["listeners"][0]["filter_chains"][0];
        chain["filter_chain_match"]["source_prefix_ranges"] =
            serde_yaml::from_str(r#"[{address_prefix: "127.0.0.2", prefix_len: 32}]"#).unwrap();
    });
    let detail = "caller refused: source 127.0.0.1 is not in the configured callers";
    for (config, chain) in [
        (by_hookgate, "hookgate"),
        (by_default_chain, "other_networks"),
    ] {
        let gw = Gateway::start(config);
        let requests = steered(&post);
        for request in &requests {
            let reply = gw.raw(request);
            assert_refused_by_envoy(&reply, 403, detail);
        }
        let answered = format!("http.{chain}.downstream_rq_4xx");
        eventually("the refusals counted in their chain", || {
            gw.stat(&answered) == Some(requests.len() as u64)
        });
    }
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
}

/// From an admitted caller: `OPTIONS *` (Envoy refuses a path that is not relative before any
/// filter) and a websocket upgrade (no upgrade is configured) with the steering headers.
#[test]
fn envoys_own_refusals_are_the_envelope_whatever_headers_the_caller_sends() {
    let gw = Gateway::start(loopback_config());
    let star = "OPTIONS * HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n";
    for request in steered(star) {
        let reply = gw.raw(&request);
        assert_refused_by_envoy(&reply, 404, "refused by Envoy: absolute_path_rejected");
    }
    let upgrade = "GET / HTTP/1.1\r\nhost: gw\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
    for request in steered(upgrade) {
        let reply = gw.raw(&request);
        assert_refused_by_envoy(&reply, 403, "refused by Envoy: upgrade_failed");
    }
    // hookgate's own answers are unchanged by the headers: a delivery, and a refusal.
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let body = event(&unique_name("Steered"), &receiver.url("/"));
    assert_answer(&gw.post_with(&body, STEERING), 200, "yes", 1, "{}");
    assert_eq!(receiver.records()[0].header("x-hookgate-replied"), None);
    assert_eq!(receiver.records()[0].header("x-hookgate-unset"), None);
    let reply = gw.post_with(&event("Bad Name", &receiver.url("/")), STEERING);
    assert_answer(&reply, 400, "no", 21111011, QUERY_ERROR);
    assert_eq!(receiver.records().len(), 1);
}

/// The pseudo-headers the mappers read cannot come from a caller: HTTP/1 has no syntax for them
/// (a codec error, answered with the envelope), HTTP/2 forbids pseudo-headers it does not define
/// (no answer: Envoy ends the stream or the connection, and nothing is sent).
#[test]
fn a_caller_cannot_send_the_pseudo_headers_the_mappers_read() {
    let gw = Gateway::start(loopback_config());
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let body = event(&unique_name("Pseudo"), &receiver.url("/"));
    for name in [":hookgate-replied", ":hookgate-unset"] {
        let request = format!(
            "POST / HTTP/1.1\r\nhost: gw\r\n{name}: 1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let reply = gw.raw(request.as_bytes());
        assert_refused_by_envoy(&reply, 400, "refused by Envoy: http1.codec_error");
        let h2 = support::h2::post(gw.port, "gw", &[(name, "1")], body.as_bytes(), None);
        assert!(h2.is_err(), "{name} over HTTP/2 was answered: {h2:?}");
    }
    // The same HTTP/2 request without them is delivered.
    let (status, _) = support::h2::post(gw.port, "gw", &[], body.as_bytes(), None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(receiver.records().len(), 1);
}

/// hookgate marks its own replies so that the first mapper ends the search (no CEL filter runs
/// for them). Shown with a mapper that would match every reply put right after it: Envoy's own
/// refusal gets that mapper's header, hookgate's refusal does not.
#[test]
fn hookgates_own_replies_stop_at_the_first_mapper() {
    let gw = Gateway::start(loopback_config().edit(|yaml| {
        let mappers = yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["local_reply_config"]["mappers"]
            .as_sequence_mut()
            .unwrap();
        let every_reply = serde_yaml::from_str(
            "{filter: {status_code_filter: {comparison: {op: GE, value: {default_value: 0, runtime_key: unset}}}}, \
             headers_to_add: [{header: {key: x-every-reply, value: mapped}}]}",
        )
        .unwrap();
        mappers.insert(1, every_reply);
    }));
    let star = gw.raw(b"OPTIONS * HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n");
    assert_eq!(star.header("x-every-reply"), Some("mapped"), "{star:?}");
    let reply = gw.post(&event("Bad Name", "http://127.0.0.1:9/"));
    assert_answer(&reply, 400, "no", 21111011, QUERY_ERROR);
    assert_eq!(reply.header("x-every-reply"), None, "{reply:?}");
}
