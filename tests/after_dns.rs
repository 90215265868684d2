#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_yaml::Value as Yaml;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use support::{event, unique_name, EnvoyConfig, Gateway};

fn counter(address: &str) -> (u16, Arc<AtomicU32>, Arc<AtomicU32>, Arc<AtomicU32>) {
    let listener = TcpListener::bind((address, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let n = Arc::new(AtomicU32::new(0));
    let bytes = Arc::new(AtomicU32::new(0));
    let closed = Arc::new(AtomicU32::new(0));
    let (c, b, cl) = (n.clone(), bytes.clone(), closed.clone());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            let (b, cl) = (b.clone(), cl.clone());
            std::thread::spawn(move || {
                use std::io::Read;
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => { cl.fetch_add(1, Ordering::SeqCst); break; }
                        Ok(k) => { b.fetch_add(k as u32, Ordering::SeqCst); }
                        Err(_) => break,
                    }
                }
            });
        }
    });
    (port, n, bytes, closed)
}

fn after_dns_filter(config: &mut EnvoyConfig) -> Yaml {
    let mut f = config.hookgate_filters()[0].clone();
    f["typed_config"]["config"]["root_id"] = "hookgate-after-dns".into();
    f
}

fn router_level() -> EnvoyConfig {
    let mut config = EnvoyConfig::load("envoy/envoy.yaml").plugin_config(r#"{"limit":{"unverified_per_hour":1000}}"#);
    let wasm = after_dns_filter(&mut config);
    config.edit(|yaml| {
        let filters = yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"]
            .as_sequence_mut()
            .unwrap();
        let router = filters.iter_mut().find(|f| f["name"] == "envoy.filters.http.router").unwrap();
        let up = router["typed_config"]["upstream_http_filters"].as_sequence_mut().unwrap();
        up.retain(|f| f["name"] != "envoy.filters.http.upstream_rbac");
        up.insert(0, wasm);
    })
}

fn cluster_level() -> EnvoyConfig {
    let mut config = router_level();
    let wasm = after_dns_filter(&mut config);
    config.edit(|yaml| {
        let filters = yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"]
            .as_sequence_mut()
            .unwrap();
        let router = filters.iter_mut().find(|f| f["name"] == "envoy.filters.http.router").unwrap();
        let up = router["typed_config"]["upstream_http_filters"].as_sequence_mut().unwrap();
        let codec = up[1].clone();
        up.remove(0);
        let cluster = &mut yaml["static_resources"]["clusters"][0];
        let opts = &mut cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        opts["http_filters"] = Yaml::Sequence(vec![wasm, codec]);
    })
}

fn probe(label: &str, config: EnvoyConfig) {
    let gw = Gateway::start_with(config, 1, support::DECISION_LINES);
    for scheme in ["http", "https"] {
        let (port, accepted, bytes, closed) = counter("127.0.0.1");
        let url = format!("{scheme}://receiver.test:{port}/");
        let reply = gw.post(&event(&unique_name("Probe"), &url));
        eprintln!("{label}: {url}: {} {:?} {}", reply.status, reply.header("x-hookgate-detail"), reply.text());
        std::thread::sleep(std::time::Duration::from_millis(1500));
        eprintln!("{label} {scheme}: accepted {} bytes {} closed {}", accepted.load(Ordering::SeqCst), bytes.load(Ordering::SeqCst), closed.load(Ordering::SeqCst));
    }
}

#[test]
fn probe_router_level() {
    support::dns::start();
    probe("router", router_level());
}

#[test]
fn probe_cluster_level() {
    support::dns::start();
    probe("cluster", cluster_level());
}

#[test]
fn probe_rbac() {
    support::dns::start();
    probe("rbac", EnvoyConfig::load("envoy/envoy.yaml").plugin_config(r#"{"limit":{"unverified_per_hour":1000}}"#));
}

fn rbac_bypass(with_header: bool) -> EnvoyConfig {
    let mut config = EnvoyConfig::load("envoy/envoy.yaml").plugin_config(r#"{"limit":{"unverified_per_hour":1000}}"#);
    let wasm = after_dns_filter(&mut config);
    config.edit(|yaml| {
        let hcm = &mut yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        if with_header {
            let route = &mut hcm["route_config"]["virtual_hosts"][0]["routes"][0];
            route["request_headers_to_add"] = serde_yaml::from_str("[{header: {key: x-hookgate-exception, value: '1'}}]").unwrap();
        }
        let filters = hcm["http_filters"].as_sequence_mut().unwrap();
        let router = filters.iter_mut().find(|f| f["name"] == "envoy.filters.http.router").unwrap();
        let up = router["typed_config"]["upstream_http_filters"].as_sequence_mut().unwrap();
        up[0]["typed_config"]["rules"]["policies"]["blocked-destinations"]["principals"] =
            serde_yaml::from_str("[{not_id: {header: {name: x-hookgate-exception, present_match: true}}}]").unwrap();
        up.insert(1, wasm);
    })
}

#[test]
fn probe_bypass_on() {
    support::dns::start();
    probe("bypass-on", rbac_bypass(true));
}

#[test]
fn probe_bypass_off() {
    support::dns::start();
    probe("bypass-off", rbac_bypass(false));
}
