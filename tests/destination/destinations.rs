//! Destinations end to end: IP literals, names resolving to loopback, mixed DNS answers,
//! exceptions, https never downgraded, redirects not followed, a refused webhook's slot given back.

use crate::support::{event, isolated, unique_name, Behaviour, EnvoyConfig, Gateway, Receiver};
use crate::{assert_refused, code, except, loopback_high_limit, post, shipped_high_limit, Counter};

#[test]
fn ip_literals_are_refused_in_every_spelling() {
    isolated();
    let gw = Gateway::start(shipped_high_limit());
    let listener = Counter::start("127.0.0.1", 0);
    let p = listener.port;
    let urls = [
        format!("http://2130706433:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://127.0.0.1.:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
        format!("http://[::127.0.0.1]:{p}/"),
        format!("http://[64:ff9b::7f00:1]:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("https://%31%32%37.0.0.1:{p}/"),
        format!("http://\u{ff11}\u{ff12}\u{ff17}.0.0.1:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fe80::1]/".to_string(),
        "http://0/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://192.168.1.1/".to_string(),
        "http://100.64.0.1/".to_string(),
    ];
    for url in &urls {
        assert_refused(&post(&gw, url), url);
    }
    assert_eq!(listener.accepted(), 0, "a refused literal reached loopback");
}

#[test]
fn names_that_resolve_to_loopback_are_refused_and_never_connected() {
    isolated();
    let gw = Gateway::start(shipped_high_limit());
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let p = receiver.port;
    for url in [
        // Refused by name in hookgate.
        format!("http://localhost:{p}/"),
        format!("http://LocalHost.:{p}/"),
        format!("http://a.b.localhost:{p}/"),
        // Pass hookgate (a name), resolve to 127.0.0.1, refused by Envoy's upstream RBAC.
        format!("http://receiver.test:{p}/"),
        format!("http://loopback.dns.test:{p}/"),
        format!("http://RECEIVER.test.:{p}/"),
    ] {
        assert_refused(&post(&gw, &url), &url);
    }
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
    assert!(receiver.records().is_empty());
}

/// A name whose answer is an allowed address first and a blocked one after it: the blocked
/// address never gets a connection, whether the allowed one refuses connections or answers.
#[test]
fn mixed_dns_answers_never_reach_the_blocked_address() {
    isolated();
    // 127.0.0.2 is the allowed receiver here; 127.0.0.1 stays blocked.
    let gw = Gateway::start(except(shipped_high_limit(), "127.0.0.2", 32, None));
    // The allowed address refuses connections (nothing listens on 127.0.0.2:port).
    let blocked = Counter::start("127.0.0.1", 0);
    let mut refused = 0;
    for name in ["mixed.dns.test", "mixedrev.dns.test"] {
        for _ in 0..6 {
            let url = format!("http://{name}:{}/", blocked.port);
            let reply = post(&gw, &url);
            match reply.status {
                403 => {
                    assert_refused(&reply, &url);
                    refused += 1;
                }
                502 => assert_eq!(code(&reply), 11110111, "{url}"),
                _ => panic!("{url}: {} {}", reply.status, reply.text()),
            }
        }
    }
    assert!(refused > 0, "the blocked address was never picked");
    assert_eq!(
        blocked.accepted(),
        0,
        "the blocked address got a connection"
    );

    // The allowed address answers: delivered there, or refused; never the blocked one.
    let allowed = Receiver::start_on("127.0.0.2", Behaviour::json(200, r#"{"ok":1}"#));
    let blocked = Counter::start("127.0.0.1", allowed.port);
    let (mut delivered, mut refused) = (0, 0);
    for name in ["mixed.dns.test", "mixedrev.dns.test"] {
        for _ in 0..6 {
            let url = format!("http://{name}:{}/", allowed.port);
            let reply = post(&gw, &url);
            match reply.status {
                200 => {
                    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
                    delivered += 1;
                }
                403 => {
                    assert_refused(&reply, &url);
                    refused += 1;
                }
                _ => panic!("{url}: {} {}", reply.status, reply.text()),
            }
        }
    }
    assert!(delivered > 0 && refused > 0, "{delivered} {refused}");
    assert_eq!(allowed.records().len(), delivered);
    assert_eq!(
        blocked.accepted(),
        0,
        "the blocked address got a connection"
    );
}

/// An exception (address and port) lets exactly that through: by literal and by name.
#[test]
fn an_exception_reaches_its_receiver_and_nothing_more() {
    isolated();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let p = receiver.port;
    let gw = Gateway::start(except(shipped_high_limit(), "127.0.0.1", 32, Some(p)));
    for url in [
        format!("http://127.0.0.1:{p}/literal"),
        format!("http://receiver.test:{p}/name"),
    ] {
        let reply = post(&gw, &url);
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
        assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    }
    assert_eq!(receiver.records().len(), 2);
    // The next port, and another loopback address, stay refused.
    let other = Counter::start("127.0.0.1", 0);
    let neighbour = Counter::start("127.0.0.2", p);
    for url in [
        format!("http://127.0.0.1:{}/", other.port),
        format!("http://receiver.test:{}/", other.port),
        format!("http://127.0.0.2:{p}/"),
        format!("http://127.0.0.1:{}/", p + 1),
        format!("http://receiver.test:{}/", p + 1),
    ] {
        assert_refused(&post(&gw, &url), &url);
    }
    assert_eq!(other.accepted() + neighbour.accepted(), 0);
}

/// envoy/run.yaml: the demo receiver's exception is 127.0.0.1:18080 and not a port more.
#[test]
fn run_config_excepts_the_demo_receiver_only() {
    isolated();
    let config = EnvoyConfig::load("envoy/run.yaml");
    let gw = Gateway::start(config);
    let demo = Counter::start("127.0.0.1", 18080);
    let next = Counter::start("127.0.0.1", 18081);
    let reply = post(&gw, "http://127.0.0.1:18080/hook");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = post(&gw, "http://receiver.test:18080/hook");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(demo.requests().len(), 2);
    assert_refused(&post(&gw, "http://127.0.0.1:18081/"), "literal 18081");
    assert_refused(&post(&gw, "http://receiver.test:18081/"), "name 18081");
    assert_eq!(next.accepted(), 0);
}

/// Sub-cluster names are host:port only: the same host:port used with both schemes must never
/// make an https webhook travel in plaintext (measured downgrade with one parent per scheme).
#[test]
fn https_never_travels_in_plaintext_after_http_to_the_same_host_port() {
    isolated();
    let gw = Gateway::start(loopback_high_limit());
    // A plaintext receiver: an https webhook can only reach its HTTP parser in plaintext.
    let receiver = Counter::start("127.0.0.1", 0);
    let p = receiver.port;
    for host in ["127.0.0.1", "receiver.test"] {
        for (step, scheme) in ["https", "http", "https", "http", "https"]
            .iter()
            .enumerate()
        {
            let url = format!("{scheme}://{host}:{p}/{scheme}?step={step}");
            let reply = post(&gw, &url);
            if *scheme == "http" {
                assert_eq!(reply.status, 200, "{url}: {}", reply.text());
            } else {
                assert_ne!(
                    reply.header("x-hookgate-delivered"),
                    Some("yes"),
                    "{url}: {}",
                    reply.text()
                );
            }
        }
    }
    let plaintext = receiver.requests();
    assert_eq!(plaintext.len(), 4, "{plaintext:?}");
    assert!(
        plaintext.iter().all(|line| line.starts_with("POST /http?")),
        "an https webhook was sent in plaintext: {plaintext:?}"
    );
}

#[test]
fn redirects_are_not_followed() {
    isolated();
    let gw = Gateway::start(loopback_high_limit());
    let target = Counter::start("127.0.0.1", 80);
    let redirect = Receiver::start(Behaviour::Answer {
        status: 302,
        headers: vec![("location".into(), "http://127.0.0.1/".into())],
        body: vec![],
    });
    let reply = post(&gw, &redirect.url("/hook"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    assert_eq!(reply.header("x-hookgate-upstream-status"), Some("302"));
    assert_eq!(code(&reply), 11110111);
    assert_eq!(redirect.records().len(), 1);
    assert_eq!(target.accepted(), 0, "the redirect was followed");
}

/// A webhook refused by Envoy's destination RBAC (after hookgate counted it) gives its slot
/// back: with one send an hour, the same webhook is refused again (not 429), and the same name
/// to an allowed URL is delivered.
#[test]
fn a_refused_webhook_does_not_use_up_the_hourly_allowance() {
    isolated();
    let gw = Gateway::start(EnvoyConfig::load("envoy/envoy.yaml").plugin_config(
        r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"}]},"limit":{"unverified_per_hour":1}}"#,
    ));
    let blocked = Counter::start("127.0.0.3", 0);
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let name = unique_name("Refused");
    let refused_url = format!("http://blocked.test:{}/", blocked.port);
    for _ in 0..3 {
        assert_refused(&gw.post(&event(&name, &refused_url)), &refused_url);
    }
    assert_eq!(blocked.accepted(), 0);
    let reply = gw.post(&event(&name, &receiver.url("/ok")));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    // The allowance is live: a second delivery of that webhook in the hour is over the limit.
    let again = gw.post(&event(&name, &receiver.url("/ok")));
    assert_eq!(again.status, 429, "{}", again.text());
    assert_eq!(receiver.records().len(), 1);
}
