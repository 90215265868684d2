//! The state across a configuration reload by listener update (also ones that change the
//! destination policy or the callers, which take effect), and a hot restart that starts it empty.

use crate::support::{
    self, assert_answer, assert_delivered, assert_over_limit, event, eventually, http, unique_name,
    Behaviour, EnvoyConfig, Gateway, Receiver, Reply,
};
use crate::{config, hookgate_filters, plugin_with, post_to, set_plugin_config};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::path::{Path, PathBuf};

/// The two `yaml` blocks of docs/security.md's listener update: the bootstrap's lines and the
/// listener file's head.
fn documented_lds() -> (Yaml, Yaml) {
    let page = std::fs::read_to_string(support::repo().join("docs/security.md")).unwrap();
    let section = &page[page.find("**A listener update**").unwrap()..];
    let mut blocks = section
        .split("```yaml\n")
        .skip(1)
        .map(|block| serde_yaml::from_str(block.split("```").next().unwrap()).unwrap());
    (blocks.next().unwrap(), blocks.next().unwrap())
}

/// The listener served from a file (LDS), so that a test can reload it as an operator would,
/// with the bootstrap and listener file that docs/security.md shows.
struct FileListener {
    path: PathBuf,
    listener: Yaml,
    port: u16,
    /// The listener file's resource type, as documented.
    kind: Yaml,
}

impl FileListener {
    /// Moves the first listener of `config` into a file watched by Envoy.
    fn split(mut config: EnvoyConfig, dir: &Path) -> (EnvoyConfig, FileListener) {
        let (bootstrap, documented) = documented_lds();
        let mut listener = config.yaml["static_resources"]["listeners"][0].clone();
        config.yaml["static_resources"]
            .as_mapping_mut()
            .unwrap()
            .remove("listeners");
        let port = support::free_port();
        listener["address"]["socket_address"]["port_value"] = port.into();
        let wasm = support::repo().join("hookgate.wasm");
        for filter in hookgate_filters(&mut listener) {
            filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] =
                Yaml::String(wasm.display().to_string());
        }
        let path = dir.join("lds.yaml");
        config.yaml["node"] = bootstrap["node"].clone();
        config.yaml["dynamic_resources"] = bootstrap["dynamic_resources"].clone();
        let source = &mut config.yaml["dynamic_resources"]["lds_config"]["path_config_source"];
        assert_eq!(source["path"], "/etc/hookgate/lds.yaml");
        source["path"] = Yaml::String(path.display().to_string());
        let resource = &documented["resources"][0];
        assert_eq!(resource["name"], listener["name"]);
        let file = FileListener {
            path,
            listener,
            port,
            kind: resource["@type"].clone(),
        };
        (config, file)
    }

    /// Writes the listener with this plugin configuration (renamed into place, as Envoy expects).
    fn write(&mut self, plugin: &Value) {
        set_plugin_config(&mut self.listener, plugin);
        self.store();
    }

    /// Starts Envoy on `bootstrap` and waits until it has served the written listener: exactly
    /// one update taken, none refused. The listener's "free" port can be taken by another test
    /// between its pick and Envoy's bind (Envoy then refuses the update, not the start): that
    /// case alone is retried, on a fresh port.
    fn serve(&mut self, bootstrap: &EnvoyConfig) -> Gateway {
        for _ in 0..5 {
            let gw = Gateway::start_with(bootstrap.clone(), 2, &[]);
            eventually("the listener file's first update", || {
                gw.stat("listener_manager.lds.update_success") == Some(1)
                    || gw.stat("listener_manager.lds.update_rejected") == Some(1)
            });
            if gw.stat("listener_manager.lds.update_rejected") == Some(0) {
                assert_eq!(gw.stat("listener_manager.lds.update_success"), Some(1));
                return gw;
            }
            assert!(
                gw.logs().contains("Address already in use"),
                "listener refused:\n{}",
                gw.logs()
            );
            drop(gw);
            self.port = support::free_port();
            self.listener["address"]["socket_address"]["port_value"] = self.port.into();
            self.store();
        }
        panic!("no free port for the listener in 5 tries");
    }

    fn store(&self) {
        let mut resource = self.listener.clone();
        resource["@type"] = self.kind.clone();
        let mut document = serde_yaml::Mapping::new();
        document.insert("resources".into(), Yaml::Sequence(vec![resource]));
        let staged = self.path.with_extension("staged");
        support::write(&staged, &serde_yaml::to_string(&document).unwrap());
        std::fs::rename(&staged, &self.path).unwrap();
    }
}

#[test]
fn configuration_reload_keeps_limit_and_verification_state() {
    let name = unique_name("Reload");
    let dir = support::scratch("lds");
    let (bootstrap, mut file) = FileListener::split(config(&json!({})), &dir);
    let limit = json!({"keys": {name.clone(): "s3cret"}});
    file.write(&plugin_with(&limit, &[]));
    let gw = file.serve(&bootstrap);
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let limited = event(&name, &receiver.url("/limited"));
    let verified = event(&name, &receiver.url("/verified"));
    assert_delivered(&post_to(file.port, &limited), "{}");
    receiver.set(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    assert_delivered(&post_to(file.port, &verified), r#"{"key":"s3cret"}"#);

    // Reload: another plugin configuration (a header marks it), same vm_id and namespace.
    file.write(&plugin_with(
        &limit,
        &[("static_headers", json!({"x-config": "2"}))],
    ));
    eventually("the reloaded listener", || {
        gw.stat("listener_manager.lds.update_success") == Some(2)
    });
    let marked = |receiver: &Receiver| {
        receiver
            .records()
            .iter()
            .any(|r| r.header("x-config") == Some("2"))
    };
    let mut sends = 0;
    eventually("a webhook sent with the new configuration", || {
        sends += 1;
        assert_delivered(&post_to(file.port, &verified), r#"{"key":"s3cret"}"#);
        marked(&receiver)
    });
    // The verification survived (every send above went through) and so did the used hour.
    assert_over_limit(&post_to(file.port, &limited));
    assert_eq!(receiver.received_on("/limited"), 1);
    assert_eq!(receiver.received_on("/verified"), 1 + sends);

    // A reload into another namespace starts from an empty table.
    file.write(&plugin_with(&json!({"namespace": "fresh"}), &[]));
    eventually("the second reload", || {
        gw.stat("listener_manager.lds.update_success") == Some(3)
    });
    eventually("the fresh namespace", || {
        let reply = post_to(file.port, &limited);
        reply.status == 200
    });
    assert_over_limit(&post_to(file.port, &limited));
    assert_eq!(receiver.received_on("/limited"), 2);

    // Another table layout in a namespace that already has one: the new configuration is
    // refused (on_configure fails) and the running one keeps serving with its state.
    file.write(&plugin_with(
        &json!({"namespace": "fresh", "max_tracked": 20}),
        &[],
    ));
    eventually("the refused reload", || {
        gw.stat("listener_manager.lds.update_rejected") == Some(1)
    });
    assert_eq!(gw.stat("listener_manager.lds.update_success"), Some(3));
    assert!(gw.logs().contains("already holds a table"));
    assert_over_limit(&post_to(file.port, &limited));
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Destination policy changed on a running gateway by a listener update (the loopback exception
/// narrowed to one receiver's port): once the new filters serve, a receiver on another port is
/// refused 403 / 11110114 and gets nothing more, and the hour a webhook used before the update
/// still counts (429) while its receiver stays allowed.
#[test]
fn a_policy_change_by_listener_update_takes_effect_and_keeps_the_limit_state() {
    let dir = support::scratch("lds-policy");
    let (bootstrap, mut file) = FileListener::split(config(&json!({})), &dir);
    file.write(&plugin_with(&json!({}), &[]));
    let gw = file.serve(&bootstrap);
    let kept = Receiver::start(Behaviour::json(200, r#"{"kept":1}"#));
    let dropped = Receiver::start(Behaviour::json(200, r#"{"dropped":1}"#));
    let limited = event(&unique_name("Kept"), &kept.url("/"));
    let refused = event(&unique_name("Dropped"), &dropped.url("/"));
    assert_delivered(&post_to(file.port, &limited), r#"{"kept":1}"#);
    assert_delivered(&post_to(file.port, &refused), r#"{"dropped":1}"#);

    let narrowed = json!({"allow": [{"cidr": "127.0.0.1/32", "port": kept.port}]});
    file.write(&plugin_with(&json!({}), &[("destination", narrowed)]));
    eventually("the listener update", || {
        gw.stat("listener_manager.lds.update_success") == Some(2)
    });
    // The old filters answer the dropped webhook 429 (its hour is used), the new ones 403.
    eventually("the new policy serving", || {
        let reply = post_to(file.port, &refused);
        if reply.status == 429 {
            assert_over_limit(&reply);
            return false;
        }
        assert_answer(&reply, 403, "no", 11110114, "Incorrect url ip");
        true
    });
    let another = post_to(
        file.port,
        &event(&unique_name("Dropped"), &dropped.url("/")),
    );
    assert_answer(&another, 403, "no", 11110114, "Incorrect url ip");
    assert_eq!(
        another.header("x-hookgate-detail"),
        Some(format!(
            "destination blocked: 127.0.0.1 is in 127.0.0.0/8 (loopback); the exception for \"127.0.0.1/32\" covers port {} only, not {}",
            kept.port, dropped.port
        ).as_str())
    );
    assert_over_limit(&post_to(file.port, &limited));
    assert_delivered(
        &post_to(file.port, &event(&unique_name("Kept"), &kept.url("/"))),
        r#"{"kept":1}"#,
    );
    assert_eq!(
        dropped.records().len(),
        1,
        "only the delivery before the update"
    );
    assert_eq!(kept.records().len(), 2);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The caller refusal's envelope for a peer at `source`.
fn assert_caller_refused(reply: &Reply, source: &str) {
    assert_answer(reply, 403, "no", 21111011, "Error during query execution");
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some(format!("caller refused: source {source} is not in the configured callers").as_str())
    );
}

/// Callers changed on a running gateway by a listener update (`callers` from 127.0.0.1 to
/// 127.0.0.2): once the new filters serve, the network refused before is served and the one no
/// longer named is refused, and the hour a webhook used before the update still counts (429).
#[test]
fn a_callers_change_by_listener_update_takes_effect_and_keeps_the_limit_state() {
    let dir = support::scratch("lds-callers");
    let (bootstrap, mut file) = FileListener::split(config(&json!({})), &dir);
    let callers = |cidr: &str| plugin_with(&json!({}), &[("callers", json!([cidr]))]);
    file.write(&callers("127.0.0.1/32"));
    let gw = file.serve(&bootstrap);
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let fresh = || event(&unique_name("Callers"), &receiver.url("/"));
    let limited = event(&unique_name("Callers"), &receiver.url("/"));
    assert_delivered(&http::post_from("127.0.0.1", file.port, &limited), "{}");
    let refused = http::post_from("127.0.0.2", file.port, &fresh());
    assert_caller_refused(&refused, "127.0.0.2");

    file.write(&callers("127.0.0.2/32"));
    eventually("the listener update", || {
        gw.stat("listener_manager.lds.update_success") == Some(2)
    });
    // New connections get the new filters; until they serve, the old ones refuse 127.0.0.2.
    eventually("the new callers served", || {
        let reply = http::post_from("127.0.0.2", file.port, &fresh());
        if reply.status == 403 {
            assert_caller_refused(&reply, "127.0.0.2");
            return false;
        }
        assert_delivered(&reply, "{}");
        true
    });
    let reply = http::post_from("127.0.0.1", file.port, &fresh());
    assert_caller_refused(&reply, "127.0.0.1");
    assert_over_limit(&http::post_from("127.0.0.2", file.port, &limited));
    assert_eq!(
        receiver.records().len(),
        2,
        "the limited webhook and one new"
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hot restart (the next epoch of Envoy on the same file takes the listener over) runs new VMs:
/// the local limit state is gone, and a webhook over its hour is delivered once more.
#[test]
fn a_hot_restart_starts_the_local_limit_state_empty() {
    let mut gw = Gateway::start_hot_restartable(config(&json!({})));
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let limited = event(&unique_name("Restart"), &receiver.url("/"));
    assert_delivered(&gw.post(&limited), "{}");
    assert_over_limit(&gw.post(&limited));
    gw.hot_restart();
    assert_delivered(&gw.post(&limited), "{}");
    assert_over_limit(&gw.post(&limited));
    assert_eq!(receiver.records().len(), 2);
}
