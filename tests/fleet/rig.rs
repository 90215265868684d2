//! Envoys with envoy/fleet.yaml pointed at the test's etcd, and what the tests assert of them.

use crate::etcd::Etcd;
use crate::pki::Pki;
use crate::support::{
    self, assert_delivered, assert_over_limit, event, http, unique_name, EnvoyConfig, Gateway,
    Receiver, Reply,
};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;

const QUERY_ERROR: &str = "Error during query execution";

/// envoy/fleet.yaml for the rig: loopback receivers allowed, the etcd cluster on the members'
/// loopback ports, this `limit` section. The shipped mTLS is kept with the certificate paths moved
/// to the test's when etcd runs with TLS, else replaced by plain loopback.
pub fn fleet_config(etcd: &Etcd, limit: &Value) -> EnvoyConfig {
    let limit = limit.clone();
    EnvoyConfig::load("envoy/fleet.yaml")
        .edit_plugin_configs(move |plugin| {
            assert_eq!(plugin["state"]["backend"], "etcd", "fleet.yaml uses etcd");
            plugin["destination"] = json!({"allow": [{"cidr": "127.0.0.1/32"}]});
            plugin["limit"] = limit.clone();
        })
        .edit(|yaml| {
            let cluster = etcd_cluster(yaml);
            let endpoints: Vec<Yaml> = etcd
                .members
                .iter()
                .map(|m| {
                    serde_yaml::from_str(&format!(
                        "{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}",
                        m.client
                    ))
                    .unwrap()
                })
                .collect();
            cluster["type"] = "STATIC".into();
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = Yaml::Sequence(endpoints);
            assert_eq!(
                cluster["transport_socket"]["name"], "envoy.transport_sockets.tls",
                "shipped over mTLS"
            );
            let Some(pki) = &etcd.tls else {
                cluster.as_mapping_mut().unwrap().remove("transport_socket");
                return;
            };
            let tls = &mut cluster["transport_socket"]["typed_config"]["common_tls_context"];
            for (keys, name) in [
                (["tls_certificates", "certificate_chain"], "client.crt"),
                (["tls_certificates", "private_key"], "client.key"),
                (["validation_context", "trusted_ca"], "ca.crt"),
            ] {
                let mut file = &mut tls[keys[0]];
                if file.is_sequence() {
                    file = &mut file[0];
                }
                let file = &mut file[keys[1]]["filename"];
                assert_eq!(*file, Yaml::from(format!("/etc/hookgate/etcd/{name}")));
                *file = pki.path(name).display().to_string().into();
            }
        })
}

/// The `etcd` cluster of a configuration.
fn etcd_cluster(yaml: &mut Yaml) -> &mut Yaml {
    let clusters = yaml["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap();
    clusters
        .iter_mut()
        .find(|c| c["name"] == "etcd")
        .expect("etcd cluster")
}

/// The client certificate Envoy presents to etcd replaced by `name` (.crt, .key) of the test's
/// certificates, or removed.
pub fn client_certificate(config: EnvoyConfig, pki: &Pki, name: Option<&str>) -> EnvoyConfig {
    config.edit(|yaml| {
        let tls = &mut etcd_cluster(yaml)["transport_socket"]["typed_config"]["common_tls_context"];
        match name {
            Some(name) => {
                let certificate = &mut tls["tls_certificates"][0];
                certificate["certificate_chain"]["filename"] = pki
                    .path(&format!("{name}.crt"))
                    .display()
                    .to_string()
                    .into();
                certificate["private_key"]["filename"] = pki
                    .path(&format!("{name}.key"))
                    .display()
                    .to_string()
                    .into();
            }
            None => {
                tls.as_mapping_mut().unwrap().remove("tls_certificates");
            }
        }
    })
}

pub fn fleet(etcd: &Etcd, limit: &Value) -> (Gateway, Gateway) {
    (
        Gateway::start_with(fleet_config(etcd, limit), 2, support::DECISION_LINES),
        Gateway::start_with(fleet_config(etcd, limit), 2, support::DECISION_LINES),
    )
}

/// The documented refusal when the state is unreachable: 503, 21111011, nothing delivered.
pub fn assert_unavailable(reply: &Reply) {
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
    assert_eq!(
        reply.json(),
        json!([{"status": false, "message": QUERY_ERROR, "code": 21111011}])
    );
    let detail = reply.header("x-hookgate-detail").unwrap_or_default();
    assert!(detail.contains("etcd"), "{detail}");
}

/// Trials of `per_trial` simultaneous first sends of a fresh webhook over both Envoys: exactly
/// one delivered each time, every other one 429 + 11110113.
pub fn race(a: &Gateway, b: &Gateway, receiver: &Receiver, trials: usize, per_trial: usize) {
    for trial in 0..trials {
        let name = unique_name("FleetRace");
        let path = format!("/race/{name}");
        let replies = http::post_simultaneously(
            &[a.port, b.port],
            &event(&name, &receiver.url(&path)),
            per_trial,
        );
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        let delivered: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
        assert_eq!(delivered.len(), 1, "trial {trial}: statuses {statuses:?}");
        assert_delivered(delivered[0], r#"{"ok":true}"#);
        for reply in replies.iter().filter(|r| r.status != 200) {
            // Decided in the same race as the send: the decider reads its clock once the record
            // is in hand, so the send it lost to is never in its future (docs/fleet.md).
            assert_over_limit(reply);
        }
        assert_eq!(receiver.received_on(&path), 1, "trial {trial}");
    }
}
