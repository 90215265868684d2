//! Shipped Envoy configurations loaded for a test and edited: the module path made this
//! checkout's, ports made free, plugin configurations and filters changed.

use super::{envoy_process, free_port, repo, scratch};
use serde_yaml::Value as Yaml;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Where the shipped configurations load the module from (every `envoy/*.yaml`).
pub const SHIPPED_WASM: &str = "/etc/hookgate/hookgate.wasm";

/// A shipped Envoy configuration, loaded for a test: ports and the wasm path made local.
#[derive(Clone)]
pub struct EnvoyConfig {
    pub yaml: Yaml,
}

impl EnvoyConfig {
    pub fn load(relative: &str) -> EnvoyConfig {
        let text = std::fs::read_to_string(repo().join(relative)).unwrap();
        EnvoyConfig {
            yaml: serde_yaml::from_str(&text).unwrap(),
        }
    }

    /// Every hookgate filter in the configuration: the engine-facing one (`hookgate`) and the
    /// check after DNS (`hookgate-after-dns`), which share one plugin configuration.
    pub fn hookgate_filters(&mut self) -> Vec<&mut Yaml> {
        let mut found = Vec::new();
        collect(
            &mut self.yaml,
            &mut |v| {
                v.get("name")
                    .and_then(Yaml::as_str)
                    .is_some_and(|n| n == "hookgate" || n == "hookgate-after-dns")
                    && v.get("typed_config").is_some()
            },
            &mut found,
        );
        found
    }

    /// The same with IPv6 looked up too, as docs/security.md's "Looking up IPv6" shows an
    /// operator: the forward-proxy cluster's lookup family and the check after DNS.
    pub fn dual_stack(self) -> Self {
        self.ipv6_lookup_family().check_after_dns()
    }

    /// The first of the documented blocks alone: the forward-proxy cluster's `dns_lookup_family`
    /// (`V4_ONLY` as shipped) changed to the documented one.
    pub fn ipv6_lookup_family(self) -> Self {
        let (clusters, _) = documented_ipv6_lookup();
        let clusters: Yaml = serde_yaml::from_str(&clusters).unwrap();
        self.edit(|yaml| {
            for documented in clusters.as_sequence().unwrap() {
                let cluster = cluster(yaml, documented["name"].as_str().unwrap());
                assert_eq!(cluster["dns_lookup_family"], "V4_ONLY");
                cluster["dns_lookup_family"] = documented["dns_lookup_family"].clone();
            }
        })
    }

    /// The second documented block alone: the check after DNS added right after the guard of
    /// every filter chain, its YAML aliases naming the chain's hookgate VM and plugin
    /// configuration.
    pub fn check_after_dns(mut self) -> Self {
        let (_, filter) = documented_ipv6_lookup();
        for http_filters in engine_chains(&mut self.yaml) {
            let config = &http_filters
                .iter()
                .find(|f| f["typed_config"]["config"]["root_id"] == "hookgate")
                .expect("the chain's hookgate filter")["typed_config"]["config"];
            let bound = format!(
                "bound: [&hookgate-vm {}, &hookgate-policy {}]\nfilters:\n{filter}",
                serde_json::to_string(&config["vm_config"]).unwrap(),
                serde_json::to_string(&config["configuration"]).unwrap()
            );
            let added: Yaml = serde_yaml::from_str(&bound).unwrap();
            let router = http_filters
                .iter_mut()
                .find(|f| f["name"] == "envoy.filters.http.router")
                .expect("a router");
            let upstream = router["typed_config"]["upstream_http_filters"]
                .as_sequence_mut()
                .unwrap();
            let guard = upstream
                .iter()
                .position(|f| f["name"] == "envoy.filters.http.upstream_rbac")
                .expect("the guard");
            let added = added["filters"].as_sequence().unwrap();
            assert!(upstream.iter().all(|f| !added.contains(f)));
            for (at, f) in added.iter().enumerate() {
                upstream.insert(guard + 1 + at, f.clone());
            }
        }
        self
    }

    /// The configuration as a file (aliases written out), for `hookgate check`.
    pub fn text(&self) -> String {
        serde_yaml::to_string(&self.yaml).unwrap()
    }

    /// Edits the plugin configuration (JSON) of every hookgate filter.
    pub fn edit_plugin_configs(mut self, edit: impl Fn(&mut serde_json::Value)) -> Self {
        for filter in self.hookgate_filters() {
            let value = &mut filter["typed_config"]["config"]["configuration"]["value"];
            let mut json: serde_json::Value =
                serde_json::from_str(value.as_str().unwrap()).unwrap();
            edit(&mut json);
            *value = Yaml::String(json.to_string());
        }
        self
    }

    /// Replaces the plugin configuration (JSON) of every hookgate filter.
    pub fn plugin_config(mut self, json: &str) -> Self {
        for filter in self.hookgate_filters() {
            filter["typed_config"]["config"]["configuration"]["value"] = Yaml::String(json.into());
        }
        self
    }

    /// The plugin configuration of the first hookgate filter.
    pub fn plugin_config_text(&mut self) -> String {
        let filters = self.hookgate_filters();
        let first = filters.into_iter().next().expect("a hookgate filter");
        first["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Sets the timeout of every route.
    pub fn route_timeout(mut self, timeout: &str) -> Self {
        let mut routes = Vec::new();
        collect(
            &mut self.yaml,
            &mut |v| v.get("route").and_then(|r| r.get("cluster")).is_some(),
            &mut routes,
        );
        for route in routes {
            route["route"]["timeout"] = Yaml::String(timeout.into());
        }
        self
    }

    /// Writes the configuration into `dir` as Envoy will run it: the shipped module path
    /// made this checkout's module, admin and listeners on free ports. (path, admin, listeners).
    pub fn materialise(mut self, dir: &Path) -> (PathBuf, u16, Vec<u16>) {
        let wasm = repo().join("hookgate.wasm");
        assert!(
            wasm.exists(),
            "hookgate.wasm missing: run `make wasm` (make test does)"
        );
        // Every filter that loads the shipped module (the engine's and the support listener's);
        // a test's own module stays.
        let mut filenames = Vec::new();
        collect(
            &mut self.yaml,
            &mut |v| v.get("filename").and_then(Yaml::as_str) == Some(SHIPPED_WASM),
            &mut filenames,
        );
        for local in filenames {
            local["filename"] = Yaml::String(wasm.display().to_string());
        }
        let admin_port = free_port();
        self.yaml["admin"]["address"]["socket_address"]["port_value"] = admin_port.into();
        let mut ports = Vec::new();
        if let Some(listeners) = self.yaml["static_resources"]["listeners"].as_sequence_mut() {
            for listener in listeners {
                let port = free_port();
                listener["address"]["socket_address"]["port_value"] = port.into();
                // Envoy binds with SO_REUSEPORT by default: two test Envoys that drew the same
                // free port would both listen on it and take each other's requests. Without it
                // the second gets "Address already in use" and is started again on other ports.
                listener["enable_reuse_port"] = false.into();
                ports.push(port);
            }
        }
        let path = dir.join("envoy.yaml");
        std::fs::write(&path, serde_yaml::to_string(&self.yaml).unwrap()).unwrap();
        (path, admin_port, ports)
    }

    /// Runs Envoy on this configuration, expecting it to refuse to start; its log.
    pub fn refused_by_envoy(self) -> String {
        let dir = scratch("refused");
        let (path, _, _) = self.materialise(&dir);
        let mut child = envoy_process(&path, 1, None)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("envoy.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("Envoy started (still running after 30 s)");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "Envoy exited successfully");
        std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default()
    }

    /// Gives the support listener's filter one token (its plugin configuration's `tokens`).
    pub fn support_token(self, name: &str, token: &str) -> Self {
        self.edit(|yaml| {
            let mut found = Vec::new();
            collect(
                yaml,
                &mut |v| {
                    v.get("name").and_then(Yaml::as_str) == Some("hookgate-support")
                        && v.get("typed_config").is_some()
                },
                &mut found,
            );
            assert_eq!(found.len(), 1, "one support filter");
            let value = &mut found[0]["typed_config"]["config"]["configuration"]["value"];
            let mut json: serde_json::Value =
                serde_json::from_str(value.as_str().unwrap()).unwrap();
            json["tokens"] = serde_json::json!([{"name": name, "token": token}]);
            *value = Yaml::String(json.to_string());
        })
    }

    pub fn edit(mut self, f: impl FnOnce(&mut Yaml)) -> Self {
        f(&mut self.yaml);
        self
    }
}

fn collect<'a>(
    value: &'a mut Yaml,
    pick: &mut dyn FnMut(&Yaml) -> bool,
    found: &mut Vec<&'a mut Yaml>,
) {
    if pick(value) {
        found.push(value);
        return;
    }
    match value {
        Yaml::Mapping(map) => map.values_mut().for_each(|v| collect(v, pick, found)),
        Yaml::Sequence(seq) => seq.iter_mut().for_each(|v| collect(v, pick, found)),
        _ => {}
    }
}

/// The two `yaml` blocks of docs/security.md's "Looking up IPv6", as text: the cluster's lookup
/// family and the check after DNS (whose YAML aliases only a configuration can bind).
fn documented_ipv6_lookup() -> (String, String) {
    let page = std::fs::read_to_string(repo().join("docs/security.md")).unwrap();
    let section = &page[page.find("#### Looking up IPv6").unwrap()..];
    let mut blocks = section
        .split("```yaml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_string());
    (blocks.next().unwrap(), blocks.next().unwrap())
}

/// The cluster of this name in `static_resources`.
pub fn cluster<'a>(yaml: &'a mut Yaml, name: &str) -> &'a mut Yaml {
    yaml["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

/// The `http_filters` of every filter chain whose router has the guard before connecting (every
/// engine chain: listeners' `filter_chains` and `default_filter_chain`).
fn engine_chains(yaml: &mut Yaml) -> Vec<&mut Vec<Yaml>> {
    let mut found = Vec::new();
    collect(
        yaml,
        &mut |v| {
            v.get("http_filters")
                .and_then(Yaml::as_sequence)
                .is_some_and(|filters| {
                    filters.iter().any(|f| {
                        f["typed_config"]["upstream_http_filters"]
                            .as_sequence()
                            .is_some_and(|u| {
                                u.iter()
                                    .any(|g| g["name"] == "envoy.filters.http.upstream_rbac")
                            })
                    })
                })
        },
        &mut found,
    );
    found
        .into_iter()
        .map(|hcm| hcm["http_filters"].as_sequence_mut().unwrap())
        .collect()
}

/// The production configuration with one exception: receivers on 127.0.0.1 (any port), in the
/// plugin's policy and in Envoy's upstream RBAC alike.
pub fn loopback_config() -> EnvoyConfig {
    EnvoyConfig::load("envoy/envoy.yaml")
        .plugin_config(r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"}]}}"#)
}

/// The first listener's router's upstream filters.
pub fn upstream_filters(yaml: &mut Yaml) -> &mut Vec<Yaml> {
    let filters = yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_sequence_mut()
        .unwrap();
    let router = filters
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.router")
        .expect("a router");
    router["typed_config"]["upstream_http_filters"]
        .as_sequence_mut()
        .expect("router upstream_http_filters")
}

/// The upstream RBAC's rules (the guard before connecting; plumbing, see `guard_rules`).
pub fn guard_rules_of(yaml: &mut Yaml) -> &mut Yaml {
    let rbac = upstream_filters(yaml)
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.upstream_rbac")
        .expect("an upstream RBAC filter");
    &mut rbac["typed_config"]["rules"]
}
