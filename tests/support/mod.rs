//! End-to-end test support: a real Envoy with a shipped configuration, real HTTP receivers on
//! loopback, and a raw HTTP client. Every socket has a timeout; every loop is bounded.
#![allow(dead_code, unused_imports)] // each test crate uses part of the support

pub mod dns;
pub mod h2;
pub mod http;
pub mod receiver;
mod restart;

pub use http::Reply;
pub use receiver::{Behaviour, Receiver};

use serde_yaml::Value as Yaml;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound, then released for the process that will use it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The command that runs Envoy, as `scripts/envoy.sh` finds it (may be `func-e run`).
pub fn envoy_command() -> Vec<String> {
    let out = Command::new(repo().join("scripts/envoy.sh"))
        .output()
        .expect("scripts/envoy.sh");
    assert!(
        out.status.success(),
        "scripts/envoy.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Where the shipped configurations load the module from (every `envoy/*.yaml`).
pub const SHIPPED_WASM: &str = "/etc/hookgate/hookgate.wasm";

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Envoy (as `scripts/envoy.sh` finds it) on the configuration at `path`; hot restart off unless
/// `epoch` gives (base id, restart epoch).
fn envoy_process(path: &Path, concurrency: u32, epoch: Option<(u32, u32)>) -> Command {
    let mut command = envoy_command();
    let mut process = Command::new(command.remove(0));
    match epoch {
        None => process.arg("--disable-hot-restart"),
        Some((base_id, epoch)) => process
            .args(["--base-id", &base_id.to_string()])
            .args(["--restart-epoch", &epoch.to_string()])
            // The previous epoch drains for 1 s and exits after 2 s (15 min by default).
            .args(["--drain-time-s", "1", "--parent-shutdown-time-s", "2"]),
    };
    process.args(command).arg("-c").arg(path).args([
        "--concurrency",
        &concurrency.to_string(),
        "-l",
        "info",
        // The access log (Envoy's stdout) is flushed every 100 ms instead of every 10 s.
        "--file-flush-interval-msec",
        "100",
    ]);
    process
}

/// Envoy arguments that put hookgate's decision line in Envoy's own log (at debug level), for
/// tests that read decisions as they happen, with the worker thread that made them. Production
/// keeps the record in the access log only (envoy/envoy.yaml; tests/metrics.rs).
pub const DECISION_LINES: &[&str] = &["--component-log-level", "wasm:debug"];

/// A scratch directory for one test.
pub fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hookgate-{label}-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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

    /// Edits the plugin configuration (JSON) of every hookgate filter.
    /// The same with IPv6 looked up too (`dns_lookup_family: ALL` on the webhooks cluster, as
    /// docs/security.md describes).
    pub fn dual_stack(self) -> Self {
        self.edit(|yaml| {
            let clusters = yaml["static_resources"]["clusters"]
                .as_sequence_mut()
                .unwrap();
            let webhooks = clusters
                .iter_mut()
                .find(|c| c["name"] == "webhooks")
                .unwrap();
            assert_eq!(webhooks["dns_lookup_family"], "V4_ONLY");
            webhooks["dns_lookup_family"] = "ALL".into();
        })
    }

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

/// A running Envoy; stopped when dropped.
pub struct Gateway {
    child: Child,
    /// The first listener's port, and every listener's in configuration order.
    pub port: u16,
    pub ports: Vec<u16>,
    pub admin_port: u16,
    pub dir: PathBuf,
    /// (base id, epoch) of a gateway that can be hot restarted.
    hot_restart: Option<(u32, u32)>,
}

impl Gateway {
    /// Starts Envoy with the configuration (listener and admin ports replaced by free ones).
    pub fn start(config: EnvoyConfig) -> Gateway {
        Self::start_with(config, 1, &[])
    }

    /// Free ports are found by binding and releasing them, so another process of the test run
    /// can take one before Envoy binds it: then Envoy is started again on other ports (bounded).
    pub fn start_with(config: EnvoyConfig, concurrency: u32, extra_args: &[&str]) -> Gateway {
        Self::launch(config, concurrency, extra_args, None)
    }

    fn launch(
        config: EnvoyConfig,
        concurrency: u32,
        extra_args: &[&str],
        hot_restart: Option<(u32, u32)>,
    ) -> Gateway {
        for _ in 0..3 {
            let dir = scratch("envoy");
            let (path, admin_port, ports) = config.clone().materialise(&dir);
            let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
            let child = envoy_process(&path, concurrency, hot_restart)
                .args(extra_args)
                .current_dir(&dir)
                .stdout(std::fs::File::create(dir.join("access.log")).unwrap())
                .stderr(log)
                .spawn()
                .expect("start envoy");
            let port = ports.first().copied().unwrap_or(0);
            let mut gateway = Gateway {
                child,
                port,
                ports,
                admin_port,
                dir,
                hot_restart,
            };
            match gateway.wait_ready() {
                Ok(()) => return gateway,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("envoy did not start:\n{log}"),
            }
        }
        panic!("envoy found its ports taken three times");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}) during start:\n{}", self.logs()));
            }
            if let Ok(reply) = http::get(self.admin_port, "/ready") {
                if reply.status == 200 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not ready in 30 s:\n{}", self.logs()))
    }

    /// Posts an event to the gateway.
    pub fn post(&self, body: &str) -> Reply {
        self.post_with(body, &[])
    }

    pub fn post_with(&self, body: &str, headers: &[(&str, &str)]) -> Reply {
        http::post(self.port, "/", body.as_bytes(), headers).unwrap()
    }

    /// Sends raw bytes and reads one HTTP answer.
    pub fn raw(&self, request: &[u8]) -> Reply {
        http::raw(self.port, request).unwrap()
    }

    /// Envoy's own log, then its access log (stdout, flushed every 100 ms here).
    pub fn logs(&self) -> String {
        self.envoy_log() + &self.access_log()
    }

    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// A support request (`/webhook/<operation>`) about one webhook, on the support listener
    /// (the second listener of the shipped configurations).
    pub fn support(&self, token: &str, operation: &str, name: &str, url: &str) -> Reply {
        let port = *self.ports.get(1).expect("a support listener");
        let body = serde_json::json!({"name": name, "url": url}).to_string();
        let authorization = format!("Bearer {token}");
        http::post(
            port,
            &format!("/webhook/{operation}"),
            body.as_bytes(),
            &[("authorization", &authorization)],
        )
        .unwrap()
    }

    /// A counter or gauge from the admin endpoint.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let reply = http::get(self.admin_port, &format!("/stats?filter=^{name}$")).ok()?;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        text.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}: "))
                .and_then(|v| v.trim().parse().ok())
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Hot restart leaves its shared memory behind, named by base id (Envoy multiplies it by 10).
        if let Some((base_id, _)) = self.hot_restart {
            let _ = std::fs::remove_file(format!("/dev/shm/envoy_shared_memory_{}", base_id * 10));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("envoy log kept in {}", self.dir.display());
        }
    }
}

/// The production configuration with one exception: receivers on 127.0.0.1 (any port), in the
/// plugin's policy and in Envoy's upstream RBAC alike.
pub fn loopback_config() -> EnvoyConfig {
    EnvoyConfig::load("envoy/envoy.yaml")
        .plugin_config(r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"}]}}"#)
}

pub const FAILED: &str = "The request failed";
pub const NOT_JSON: &str = "Invalid response format. Expects json!";
pub const QUERY_ERROR: &str = "Error during query execution";

/// Checks the engine's answer: HTTP status, delivered header, content type, exactly the envelope.
pub fn assert_answer(reply: &Reply, status: u16, delivered: &str, code: u64, message: &str) {
    assert_eq!(
        reply.status,
        status,
        "headers {:?} body {}",
        reply.headers,
        reply.text()
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.header("x-hookgate-delivered"),
        Some(delivered),
        "{:?}",
        reply.headers
    );
    assert_eq!(
        reply.json(),
        serde_json::json!([{"status": code == 1, "message": message, "code": code}]),
        "{:?}",
        reply.headers
    );
}

pub const OVER_LIMIT: &str = "The request did not pass code verification";

/// The hourly limit's refusal: 429, 11110113, nothing delivered, Retry-After close to an hour
/// (returned).
pub fn assert_over_limit(reply: &Reply) -> u64 {
    let expected = 3590..=3600;
    assert_answer(reply, 429, "no", 11110113, OVER_LIMIT);
    let retry: u64 = reply
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .unwrap();
    assert!(
        expected.contains(&retry),
        "retry-after {retry}, expected {expected:?}"
    );
    retry
}

/// A delivery whose receiver answered `receiver_body`.
pub fn assert_delivered(reply: &Reply, receiver_body: &str) {
    assert_answer(reply, 200, "yes", 1, receiver_body);
}

/// Waits (bounded, 20 s) until `check` holds.
pub fn eventually(what: &str, check: impl FnMut() -> bool) {
    assert!(poll(check), "timed out waiting for {what}");
}

/// Whether `check` holds within 20 s, tried every 100 ms.
fn poll(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits until `read` gives `expected`, then asserts it (with `what` and the last value read
/// when it never does): hookgate's counters reach Envoy on each worker's tick, every second.
pub fn settles<T: PartialEq + std::fmt::Debug>(
    what: &str,
    mut read: impl FnMut() -> T,
    expected: T,
) {
    let mut last = read();
    poll(|| {
        last = read();
        last == expected
    });
    assert_eq!(last, expected, "{what}");
}

/// An event for `name` and `url` with the document's fields.
pub fn event(name: &str, url: &str) -> String {
    format!(
        r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"123456789","title":"New Automation","execution_date":"2022-01-04 09:02:39","email":"example@example.com","phone":"+380631234567","variables":[{{"name1":"value1"}},{{"name2":"value2"}}]}}"#
    )
}

/// A webhook name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes a file (for configs generated by a test).
pub fn write(path: &Path, text: &str) {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap();
}

/// A child process killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to its end, at most `limit`; its output.
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let dir = scratch("out");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Running(
        command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn"),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            panic!(
                "{command:?} still running after {limit:?}; output so far:\n{}\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    output
}

/// Panics unless this process is in a network namespace that has only loopback; starts the
/// namespace's DNS server.
pub fn isolated() {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["lo"],
        "end-to-end destination tests must run in a loopback-only network namespace: use scripts/test.sh"
    );
    dns::start();
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
