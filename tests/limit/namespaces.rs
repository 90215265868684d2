//! Filters in one vm_id share the limit state by namespace.

use crate::support::{
    assert_delivered, assert_over_limit, event, http, unique_name, Behaviour, Gateway, Receiver,
};
use crate::{config, plugin_with, post_to, set_plugin_config};
use serde_json::json;
use serde_yaml::Value as Yaml;

/// Listener name -> port, from the admin endpoint.
fn listener_ports(gw: &Gateway) -> Vec<(String, u16)> {
    let reply = http::get(gw.admin_port, "/listeners?format=json").unwrap();
    reply.json()["listener_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let port = l["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .unwrap();
            (
                l["name"].as_str().unwrap().to_string(),
                u16::try_from(port).unwrap(),
            )
        })
        .collect()
}

#[test]
fn filters_in_one_vm_id_share_state_by_namespace() {
    let name = unique_name("Ns");
    // Three listeners, one vm_id: A and C in the default namespace (C with another plugin
    // configuration: a key for the name), B in its own namespace.
    let listeners = [
        ("hookgate-a", plugin_with(&json!({}), &[])),
        (
            "hookgate-b",
            plugin_with(&json!({"namespace": "tenant-b"}), &[]),
        ),
        (
            "hookgate-c",
            plugin_with(&json!({"keys": {name.clone(): "s3cret"}}), &[]),
        ),
    ];
    let config = config(&json!({})).edit(|yaml| {
        let all = yaml["static_resources"]["listeners"]
            .as_sequence_mut()
            .unwrap();
        let template = all[0].clone();
        all.clear();
        for (listener_name, plugin) in &listeners {
            let mut listener = template.clone();
            listener["name"] = Yaml::String((*listener_name).to_string());
            set_plugin_config(&mut listener, plugin);
            all.push(listener);
        }
    });
    let gw = Gateway::start_with(config, 2, &[]);
    let ports = listener_ports(&gw);
    let port = |wanted: &str| ports.iter().find(|(n, _)| n == wanted).unwrap().1;
    let (a, b, c) = (port("hookgate-a"), port("hookgate-b"), port("hookgate-c"));
    let receiver = Receiver::start(Behaviour::json(200, "{}"));

    let body = event(&name, &receiver.url("/ns"));
    assert_delivered(&post_to(a, &body), "{}");
    assert_over_limit(&post_to(a, &body));
    // C shares A's namespace: its hour is used.
    assert_over_limit(&post_to(c, &body));
    // B has its own table.
    assert_delivered(&post_to(b, &body), "{}");
    assert_over_limit(&post_to(b, &body));
    assert_eq!(receiver.received_on("/ns"), 2);

    // Verified through C (which knows the key), the webhook is verified in A too, not in B.
    let body = event(&name, &receiver.url("/ns-key"));
    receiver.set(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    assert_delivered(&post_to(c, &body), r#"{"key":"s3cret"}"#);
    for _ in 0..3 {
        assert_delivered(&post_to(a, &body), r#"{"key":"s3cret"}"#);
    }
    assert_delivered(&post_to(b, &body), r#"{"key":"s3cret"}"#);
    assert_over_limit(&post_to(b, &body));
    assert_eq!(receiver.received_on("/ns-key"), 5);
}
