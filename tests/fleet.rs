//! End to end: the limit and the verification state in etcd, shared by a fleet of
//! Envoys. A real etcd (Debian's, installed by scripts/ensure-tool.sh) started on loopback ports
//! in a temporary directory, two Envoys (two workers each) with envoy/fleet.yaml, its mTLS
//! replaced by plain loopback for the rig, except in the mTLS test (certificates generated with
//! openssl). What the receiver got and what the engine got back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use base64::Engine;
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::http;
use support::{
    assert_delivered, assert_over_limit, event, eventually, free_port, scratch, unique_name,
    Behaviour, EnvoyConfig, Gateway, Receiver, Reply,
};

const QUERY_ERROR: &str = "Error during query execution";

// ---------------------------------------------------------------------------------------------
// etcd on loopback

struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of one or three members on loopback ports; every member killed when dropped.
struct Etcd {
    members: Vec<Member>,
    token: String,
    /// Client port over TLS with client-certificate auth, with these certificates.
    tls: Option<Pki>,
}

impl Etcd {
    fn start(size: usize) -> Etcd {
        Self::start_with(size, None)
    }

    /// One member whose client port takes only TLS with a client certificate signed by `pki`'s CA.
    fn start_tls(pki: &Pki) -> Etcd {
        Self::start_with(1, Some(pki.clone()))
    }

    fn start_with(size: usize, tls: Option<Pki>) -> Etcd {
        let dir = scratch("etcd");
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                dir: dir.join(format!("m{i}")),
                child: None,
            })
            .collect();
        let mut etcd = Etcd {
            members,
            token: unique_name("fleet"),
            tls,
        };
        for i in 0..size {
            etcd.start_member(i);
        }
        for i in 0..size {
            etcd.wait_healthy(i);
        }
        etcd
    }

    fn start_member(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &mut self.members[i];
        std::fs::create_dir_all(&m.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("etcd.log"))
            .unwrap();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".to_string());
        let mut command = Command::new(bin);
        if let Some(pki) = &self.tls {
            command
                .arg("--cert-file")
                .arg(pki.path("server.crt"))
                .arg("--key-file")
                .arg(pki.path("server.key"))
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(pki.path("ca.crt"));
        }
        let child = command
            .args(["--name", &m.name, "--data-dir"])
            .arg(m.dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (scripts/ensure-tool.sh installs it)");
        m.child = Some(child);
    }

    fn wait_healthy(&self, i: usize) {
        let port = self.members[i].client;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let answer = match &self.tls {
                Some(pki) => pki.get(port, "/health"),
                None => http::get(port, "/health")
                    .map(|r| r.text())
                    .unwrap_or_default(),
            };
            if answer.contains(r#""health":"true""#) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd member {i} not healthy in 30 s");
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped member again on its data directory.
    fn restart(&mut self, i: usize) {
        self.start_member(i);
        self.wait_healthy(i);
    }

    /// The index of the member that is the leader, as the members themselves report it.
    fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.child.is_some()
                && http::post(m.client, "/v3/maintenance/status", b"{}", &[])
                    .map(|r| {
                        let status = r.json();
                        status["leader"] == status["header"]["member_id"]
                    })
                    .unwrap_or(false)
        })
    }

    /// A call to member `i`'s JSON gateway, straight (not through Envoy).
    fn call(&self, i: usize, path: &str, body: &Value) -> Value {
        let port = self.members[i].client;
        let body = body.to_string();
        match &self.tls {
            Some(pki) => serde_json::from_str(&pki.post(port, path, &body)).unwrap(),
            None => http::post(port, path, body.as_bytes(), &[]).unwrap().json(),
        }
    }

    /// The key-values under the prefix, as etcd answers them.
    fn kvs(&self, i: usize) -> Vec<Value> {
        let prefix = "hookgate/";
        let end = "hookgate0"; // the prefix with its last byte + 1
        let answer = self.call(
            i,
            "/v3/kv/range",
            &json!({"key": b64(prefix), "range_end": b64(end)}),
        );
        answer["kvs"].as_array().cloned().unwrap_or_default()
    }

    /// The keys under the prefix and their values.
    fn keys(&self, i: usize) -> Vec<(String, Value)> {
        self.kvs(i)
            .iter()
            .map(|kv| {
                let key = key_text(kv);
                let value = serde_json::from_slice(&unb64(kv["value"].as_str().unwrap())).unwrap();
                (key, value)
            })
            .collect()
    }

    /// The lease of the key of the webhook named `name` ("0": none).
    fn lease_of(&self, i: usize, name: &str) -> String {
        let kv = self
            .kvs(i)
            .into_iter()
            .find(|kv| key_text(kv).contains(name))
            .unwrap_or_else(|| panic!("no key for {name}"));
        kv["lease"].as_str().unwrap_or("0").to_string()
    }
}

/// A key-value's key, as text.
fn key_text(kv: &Value) -> String {
    String::from_utf8(unb64(kv["key"].as_str().unwrap())).unwrap()
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
        if !std::thread::panicking() {
            if let Some(m) = self.members.first() {
                let _ = std::fs::remove_dir_all(m.dir.parent().unwrap());
            }
        }
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Certificates (openssl), for etcd over mTLS

/// A CA, etcd's server certificate (127.0.0.1), a client certificate for Envoy, and a client
/// certificate of another CA that etcd must refuse; generated by openssl into a temporary
/// directory.
#[derive(Clone)]
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn generate() -> Pki {
        let dir = scratch("pki");
        let pki = Pki { dir };
        pki.ca("ca", "hookgate test CA");
        pki.ca("rogue-ca", "another CA");
        // serverAuth and clientAuth: etcd's JSON gateway calls etcd's own gRPC with the server
        // certificate as its client certificate (with serverAuth alone every call through the
        // gateway fails while /version and /health pass: measured).
        pki.issue(
            "server",
            "ca",
            "etcd",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth",
        );
        pki.issue("client", "ca", "hookgate", "extendedKeyUsage=clientAuth");
        pki.issue(
            "rogue-client",
            "rogue-ca",
            "hookgate",
            "extendedKeyUsage=clientAuth",
        );
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str, cn: &str) {
        let (key, crt, subject) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN={cn}"),
        );
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    fn issue(&self, name: &str, ca: &str, cn: &str, extensions: &str) {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        support::write(&self.path(&ext), &format!("{extensions}\n"));
        let subject = format!("/CN={cn}");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ]);
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    /// `GET path` over TLS with the right client certificate; the raw answer, or "".
    fn get(&self, port: u16, path: &str) -> String {
        self.request(port, &format!("GET {path} HTTP/1.0\r\nhost: etcd\r\n\r\n"))
    }

    /// `POST path` with a JSON body over TLS with the right client certificate; the answer's body.
    fn post(&self, port: u16, path: &str, body: &str) -> String {
        let answer = self.request(
            port,
            &format!(
                "POST {path} HTTP/1.0\r\nhost: etcd\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// One HTTP/1.0 exchange over TLS with the right client certificate (openssl s_client,
    /// verifying etcd's certificate); the raw answer, or "" when there was none.
    fn request(&self, port: u16, request: &str) -> String {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error"])
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-CAfile")
            .arg(self.path("ca.crt"))
            .arg("-cert")
            .arg(self.path("client.crt"))
            .arg("-key")
            .arg(self.path("client.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let _ = std::io::Write::write_all(child.stdin.as_mut().unwrap(), request.as_bytes());
        drop(child.stdin.take());
        // Bounded: etcd answers and closes at once (HTTP/1.0); a stuck s_client is killed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Envoys with envoy/fleet.yaml

/// envoy/fleet.yaml for the rig: loopback receivers allowed, the etcd cluster on the members'
/// loopback ports, this `limit` section. The shipped mTLS is kept with the certificate paths moved
/// to the test's when etcd runs with TLS, else replaced by plain loopback.
fn fleet_config(etcd: &Etcd, limit: &Value) -> EnvoyConfig {
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
fn client_certificate(config: EnvoyConfig, pki: &Pki, name: Option<&str>) -> EnvoyConfig {
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

fn fleet(etcd: &Etcd, limit: &Value) -> (Gateway, Gateway) {
    (
        Gateway::start_with(fleet_config(etcd, limit), 2, support::DECISION_LINES),
        Gateway::start_with(fleet_config(etcd, limit), 2, support::DECISION_LINES),
    )
}

/// The documented refusal when the state is unreachable: 503, 21111011, nothing delivered.
fn assert_unavailable(reply: &Reply) {
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
fn race(a: &Gateway, b: &Gateway, receiver: &Receiver, trials: usize, per_trial: usize) {
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

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn concurrent_first_sends_over_two_envoys_deliver_exactly_one() {
    let etcd = Etcd::start(1);
    let (a, b) = fleet(&etcd, &json!({}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    race(&a, &b, &receiver, 20, 16);
    // Both Envoys decided in every trial's refusals: each logged decisions.
    for gw in [&a, &b] {
        assert!(gw.logs().contains("outcome=over_limit"), "{}", gw.logs());
    }
    // One key per webhook in etcd, with its one send.
    let keys = etcd.keys(0);
    assert_eq!(keys.len(), 20);
    for (key, value) in keys {
        assert!(
            key.starts_with("hookgate/default/webhook/FleetRace"),
            "{key}"
        );
        assert_eq!(value["verified"], false);
        assert_eq!(value["sends"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn retry_after_agrees_across_instances() {
    let etcd = Etcd::start(1);
    let (a, b) = fleet(&etcd, &json!({}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let name = unique_name("FleetRetry");
    let body = event(&name, &receiver.url("/retry"));
    assert_delivered(&a.post(&body), r#"{"ok":true}"#);
    let on_a = assert_over_limit(&a.post(&body));
    let on_b = assert_over_limit(&b.post(&body));
    assert!(on_a.abs_diff(on_b) <= 1, "A {on_a}, B {on_b}");
    // The test report of the other Envoy shows the same state.
    let reply = b.post_with(&body, &[("x-hookgate-test", "true")]);
    assert_eq!(reply.status, 429);
    let limit = &reply.json()["limit"];
    assert_eq!(limit["verified"], false);
    assert_eq!(limit["sends_in_window"], 1);
    assert_eq!(limit["allowed_per_hour"], 1);
    assert!(limit["retry_after"].as_u64().unwrap().abs_diff(on_a) <= 1);
    assert_eq!(receiver.received_on("/retry"), 1);
}

#[test]
fn key_answered_through_one_envoy_lifts_the_limit_on_the_other() {
    let etcd = Etcd::start(1);
    let name = unique_name("FleetVerify");
    let (a, b) = fleet(&etcd, &json!({"keys": {name.clone(): "s3cret"}}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    let body = event(&name, &receiver.url("/verify"));
    assert_delivered(&a.post(&body), r#"{"key":"s3cret"}"#);
    receiver.set(Behaviour::json(200, r#"{"ok":1}"#));
    for _ in 0..3 {
        assert_delivered(&b.post(&body), r#"{"ok":1}"#);
        assert_delivered(&a.post(&body), r#"{"ok":1}"#);
    }
    for reply in http::post_simultaneously(&[a.port, b.port], &body, 8) {
        assert_delivered(&reply, r#"{"ok":1}"#);
    }
    assert_eq!(receiver.received_on("/verify"), 1 + 6 + 8);
    let (_, value) = etcd
        .keys(0)
        .into_iter()
        .find(|(k, _)| k.contains(&name))
        .unwrap();
    assert_eq!(value["verified"], true);

    // A wrong key through A keeps the webhook limited on B.
    let wrong = event(&name, &receiver.url("/wrong"));
    receiver.set(Behaviour::json(200, r#"{"key":"nope"}"#));
    let reply = a.post(&wrong);
    assert_eq!(
        (reply.status, reply.json()[0]["code"].clone()),
        (200, json!(11110113))
    );
    assert_over_limit(&b.post(&wrong));
    assert_eq!(receiver.received_on("/wrong"), 1);
}

/// Support operations with the etcd backend: the support listener of either Envoy sees and lifts
/// the one state of the fleet (a reset deletes the key; a verification writes it without a
/// lease), and the audit line names who asked.
#[test]
fn support_lifts_a_webhook_in_etcd_for_every_envoy() {
    let etcd = Etcd::start(1);
    let token = "oncall-support-token-0123456789";
    let config = fleet_config(&etcd, &json!({})).support_token("oncall", token);
    let a = Gateway::start_with(config.clone(), 2, &[]);
    let b = Gateway::start_with(config, 2, &[]);
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let name = unique_name("FleetSupport");
    let url = receiver.url("/support");
    let body = event(&name, &url);
    assert_delivered(&a.post(&body), "{}");
    assert_over_limit(&b.post(&body));

    let looked = b.support(token, "state", &name, &url);
    assert_eq!(looked.status, 200, "{}", looked.text());
    assert_eq!(looked.json()["backend"], "etcd");
    let state = &looked.json()["state"];
    assert_eq!(
        (&state["verified"], &state["sends_in_window"]),
        (&json!(false), &json!(1))
    );

    let reset = a.support(token, "reset", &name, &url).json();
    assert_eq!(
        (&reset["changed"], &reset["after"]["sends_in_window"]),
        (&json!(true), &json!(0))
    );
    assert!(
        etcd.keys(0).iter().all(|(key, _)| !key.contains(&name)),
        "nothing left in the window: the key is deleted"
    );
    assert_delivered(&b.post(&body), "{}");
    assert_over_limit(&a.post(&body));

    let verified = b.support(token, "verify", &name, &url).json();
    assert_eq!(verified["changed"], true, "{verified}");
    assert_eq!(verified["after"]["verified"], true);
    assert_eq!(etcd.lease_of(0, &name), "0", "verified: no lease, it stays");
    for _ in 0..2 {
        assert_delivered(&a.post(&body), "{}");
        assert_delivered(&b.post(&body), "{}");
    }
    assert_eq!(receiver.received_on("/support"), 6);

    let wrong = a.support("not-the-oncall-token-0123", "reset", &name, &url);
    assert_eq!(wrong.status, 401);
    let line = format!(
        "support token=oncall action=verify namespace=default webhook=\"{name}\" host=\"127.0.0.1:{}\" \
         changed=true before=verified:false,sends:1,retry_after:",
        receiver.port
    );
    assert!(b.envoy_log().contains(&line), "{}", b.envoy_log());
}

#[test]
fn first_sends_share_their_workers_lease_and_a_revoked_lease_is_replaced() {
    const WORKERS: usize = 2; // fleet(): two workers per Envoy
    let etcd = Etcd::start(1);
    let (a, _b) = fleet(&etcd, &json!({}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    // Six first sends, each on its own connection (so on either worker); the distinct leases
    // their keys carry.
    let send_six = || {
        let names: Vec<String> = (0..6).map(|_| unique_name("FleetLease")).collect();
        for name in &names {
            assert_delivered(
                &a.post(&event(name, &receiver.url("/lease"))),
                r#"{"ok":true}"#,
            );
        }
        let mut leases: Vec<String> = names.iter().map(|n| etcd.lease_of(0, n)).collect();
        leases.sort();
        leases.dedup();
        assert!(
            !leases.contains(&"0".to_string()) && (1..=WORKERS).contains(&leases.len()),
            "one lease per worker at most: {leases:?}"
        );
        leases
    };
    let first = send_six();
    for lease in &first {
        // Long enough for the hour, the skew margin and the minute of reuse.
        let ttl = etcd.call(0, "/v3/lease/timetolive", &json!({"ID": lease}));
        assert_eq!(ttl["grantedTTL"], "3960", "{ttl}");
    }

    // Revoked (etcd deletes their keys with them): each worker's next first send finds its kept
    // lease gone, asks for a new one and is delivered once; the workers keep the new ones.
    for lease in &first {
        etcd.call(0, "/v3/lease/revoke", &json!({"ID": lease}));
    }
    assert!(etcd.keys(0).is_empty());
    let renewed = send_six();
    assert!(
        renewed.iter().all(|l| !first.contains(l)),
        "{renewed:?} {first:?}"
    );
    assert_eq!(receiver.received_on("/lease"), 12);
}

/// A worker that writes asks for its next lease on the tick, before the kept one stops carrying
/// writes: its first sends stay one call each (the write), with the new lease.
#[test]
fn a_writing_worker_gets_its_next_lease_on_the_tick_and_first_sends_stay_one_call() {
    let etcd = Etcd::start(1);
    // One worker: every send meets the same kept lease.
    let gw = Gateway::start_with(fleet_config(&etcd, &json!({})), 1, &[]);
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let calls = || gw.stat("cluster.etcd.upstream_rq_total").unwrap_or(0);
    let first = unique_name("FleetAhead");
    assert_delivered(
        &gw.post(&event(&first, &receiver.url("/ahead"))),
        r#"{"ok":true}"#,
    );
    assert_eq!(
        calls(),
        3,
        "a worker without a lease: read, lease grant, write"
    );
    // The tick asks 15 s before the minute of the first lease ends: a call no send made.
    let deadline = Instant::now() + Duration::from_secs(90);
    while calls() == 3 {
        assert!(Instant::now() < deadline, "no lease asked for ahead");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(calls(), 4);
    let second = unique_name("FleetAhead");
    assert_delivered(
        &gw.post(&event(&second, &receiver.url("/ahead"))),
        r#"{"ok":true}"#,
    );
    assert_eq!(calls(), 5, "a first send is one transaction");
    let (old, new) = (etcd.lease_of(0, &first), etcd.lease_of(0, &second));
    assert_ne!(
        old, new,
        "the second send carries the lease asked for ahead"
    );
    let ttl = etcd.call(0, "/v3/lease/timetolive", &json!({"ID": new}));
    assert_eq!(ttl["grantedTTL"], "3960", "{ttl}");
    assert_eq!(receiver.received_on("/ahead"), 2);
}

#[test]
fn sends_that_never_arrived_give_the_slot_back_on_every_envoy() {
    let etcd = Etcd::start(1);
    let (a, b) = fleet(&etcd, &json!({}));
    let name = unique_name("FleetGiveBack");
    // Nothing listens on this port: connection refused, 502, nothing delivered.
    let port = free_port();
    let body = event(&name, &format!("http://127.0.0.1:{port}/gone"));
    let reply = a.post(&body);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
    // The slot came back: the next send, through the other Envoy, is allowed (and fails again).
    let reply = b.post(&body);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        etcd.keys(0).iter().all(|(k, _)| !k.contains(&name)),
        "the key was deleted with its only send"
    );
}

#[test]
fn etcd_stopped_refuses_every_send_and_restarted_keeps_the_state() {
    let mut etcd = Etcd::start(1);
    let verified = unique_name("FleetKept");
    let (a, b) = fleet(&etcd, &json!({"keys": {verified.clone(): "s3cret"}}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    let limited = event(&unique_name("FleetLimited"), &receiver.url("/limited"));
    let kept = event(&verified, &receiver.url("/kept"));
    assert_delivered(&a.post(&limited), r#"{"key":"s3cret"}"#);
    assert_delivered(&a.post(&kept), r#"{"key":"s3cret"}"#);
    let before = receiver.records().len();

    etcd.stop(0);
    let fresh = event(&unique_name("FleetDown"), &receiver.url("/down"));
    for gw in [&a, &b] {
        for body in [&fresh, &limited] {
            assert_unavailable(&gw.post(body));
        }
    }
    // B never saw the verified webhook: it cannot know it without etcd.
    assert_unavailable(&b.post(&kept));
    for reply in http::post_simultaneously(&[a.port, b.port], &fresh, 8) {
        assert_unavailable(&reply);
    }
    assert_eq!(
        receiver.records().len(),
        before,
        "nothing delivered while etcd is down"
    );
    for gw in [&a, &b] {
        assert!(gw.logs().contains("outcome=limit_unavailable"));
    }

    etcd.restart(0);
    // Envoy's health check and hookgate's retries find etcd again.
    eventually("the fleet reaching etcd again", || {
        b.post(&limited).status == 429
    });
    assert_over_limit(&a.post(&limited));
    receiver.set(Behaviour::json(200, r#"{"ok":1}"#));
    assert_delivered(&b.post(&kept), r#"{"ok":1}"#);
    assert_delivered(&b.post(&fresh), r#"{"ok":1}"#);
    assert_over_limit(&a.post(&fresh));
    assert_eq!(receiver.received_on("/limited"), 1);
    assert_eq!(receiver.received_on("/down"), 1);
}

/// A webhook read as verified from etcd is cached on every Envoy that read it, not only on the one
/// whose delivery got the key: with etcd stopped it still goes through both. A verified webhook
/// that B never sent is still refused by B (it cannot know it without etcd).
#[test]
fn a_webhook_read_verified_is_cached_on_every_envoy_that_read_it() {
    let mut etcd = Etcd::start(1);
    let name = unique_name("FleetCached");
    let (a, b) = fleet(&etcd, &json!({"keys": {name.clone(): "s3cret"}}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    let read = event(&name, &receiver.url("/read"));
    let unread = event(&name, &receiver.url("/unread"));
    for body in [&read, &unread] {
        assert_delivered(&a.post(body), r#"{"key":"s3cret"}"#);
    }
    receiver.set(Behaviour::json(200, r#"{"ok":1}"#));
    assert_delivered(&b.post(&read), r#"{"ok":1}"#);

    etcd.stop(0);
    for gw in [&a, &b] {
        assert_delivered(&gw.post(&read), r#"{"ok":1}"#);
    }
    assert_unavailable(&b.post(&unread));
    assert_eq!(receiver.received_on("/read"), 4);
    assert_eq!(receiver.received_on("/unread"), 1);
}

/// How many race webhooks member `i` holds.
fn races(etcd: &Etcd, i: usize) -> usize {
    etcd.keys(i)
        .iter()
        .filter(|(k, _)| k.contains("/FleetRace"))
        .count()
}

/// The `health_flags` of the etcd member on `port`, as one Envoy's /clusters shows them.
fn member_flags(gw: &Gateway, port: u16) -> String {
    let clusters = http::get(gw.admin_port, "/clusters").unwrap().text();
    let prefix = format!("etcd::127.0.0.1:{port}::health_flags::");
    clusters
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn three_member_etcd_with_one_member_stopped_keeps_the_exact_limit() {
    let mut etcd = Etcd::start(3);
    let (a, b) = fleet(&etcd, &json!({}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    // Every member passes Envoy's health check (GET /version, every second) on both Envoys.
    for gw in [&a, &b] {
        for m in &etcd.members {
            eventually("every member healthy", || {
                member_flags(gw, m.client) == "healthy"
            });
        }
    }
    race(&a, &b, &receiver, 5, 16);
    // The leader stops (the harder case: the other two elect a new one).
    let leader = etcd.leader().expect("a leader");
    let stopped = etcd.members[leader].client;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    etcd.stop(leader);
    // The health check sets the stopped member aside by itself, with no send made; the other two
    // stay in the pool through the election.
    for gw in [&a, &b] {
        eventually("the stopped member failing its health check", || {
            member_flags(gw, stopped).contains("failed_active_hc")
        });
        for &i in &others {
            assert_eq!(member_flags(gw, etcd.members[i].client), "healthy");
        }
    }
    // Once the two have a leader again, no call ever meets the stopped member: every send is
    // decided (exactly one of each race delivered, no 503), and outlier detection, which acts
    // only on a failed call, never had to.
    for &i in &others {
        etcd.wait_healthy(i);
    }
    race(&a, &b, &receiver, 10, 16);
    for gw in [&a, &b] {
        assert!(!member_flags(gw, stopped).contains("failed_outlier_check"));
        assert!(!gw.logs().contains("outcome=limit_unavailable"));
    }
    // What was written is on the remaining members.
    for &i in &others {
        assert_eq!(races(&etcd, i), 15);
    }

    // Restarted, the member catches up and passes its checks again: back in the pool.
    etcd.restart(leader);
    for gw in [&a, &b] {
        eventually("the restarted member healthy again", || {
            member_flags(gw, stopped) == "healthy"
        });
    }
    race(&a, &b, &receiver, 5, 16);
    // Caught up: the member has every race, including those run while it was stopped.
    eventually("the restarted member caught up", || {
        races(&etcd, leader) == 20
    });
}

#[test]
fn shipped_mtls_reaches_etcd_with_client_certificate_auth_and_nothing_else_does() {
    let pki = Pki::generate();
    let etcd = Etcd::start_tls(&pki);
    let port = etcd.members[0].client;
    // etcd takes only TLS with a client certificate of its CA: plain HTTP gets no answer.
    assert!(http::get(port, "/health").map_or(true, |r| r.status != 200));
    // The shipped transport (envoy/fleet.yaml's mTLS, certificate paths moved to the test's).
    let (a, b) = fleet(&etcd, &json!({}));
    for gw in [&a, &b] {
        eventually("the member healthy over mTLS", || {
            member_flags(gw, port) == "healthy"
        });
    }
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    race(&a, &b, &receiver, 5, 16);
    assert_eq!(races(&etcd, 0), 5);
    // A webhook already sent once: limited on the Envoys that reach etcd.
    let sent = unique_name("FleetMtlsSent");
    let sent_body = event(&sent, &receiver.url("/mtls-sent"));
    assert_delivered(&a.post(&sent_body), r#"{"ok":true}"#);
    assert_over_limit(&b.post(&sent_body));

    // A client certificate of another CA, and none at all: etcd refuses the handshake, so the
    // member fails its health check, and every send is refused with the documented envelope
    // (503, 21111011), nothing delivered; the webhook sent once gets 503 too, not 429: nothing
    // was read.
    for (label, cert) in [("another CA", Some("rogue-client")), ("none", None)] {
        let config = client_certificate(fleet_config(&etcd, &json!({})), &pki, cert);
        let gw = Gateway::start_with(config, 2, support::DECISION_LINES);
        eventually("the member failing its health check", || {
            member_flags(&gw, port).contains("failed_active_hc")
        });
        let name = unique_name("FleetMtlsRefused");
        let path = format!("/mtls-refused/{name}");
        for reply in http::post_simultaneously(&[gw.port], &event(&name, &receiver.url(&path)), 8) {
            assert_unavailable(&reply);
            let detail = reply.header("x-hookgate-detail").unwrap_or_default();
            assert!(detail.contains("connection failure"), "{label}: {detail}");
        }
        assert_unavailable(&gw.post(&sent_body));
        assert_eq!(receiver.received_on(&path), 0, "{label}");
        assert!(gw.logs().contains("outcome=limit_unavailable"), "{label}");
    }
    assert_eq!(receiver.received_on("/mtls-sent"), 1);
    // Nothing the refused Envoys tried reached etcd.
    assert_eq!(etcd.keys(0).len(), 6);
}
