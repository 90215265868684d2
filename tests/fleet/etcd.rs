//! etcd on loopback: a cluster of one or three members, each in its own temporary directory, and
//! the JSON gateway calls the tests read etcd's state with.

use crate::pki::Pki;
use crate::support::{free_port, http, scratch, unique_name};
use base64::Engine;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Member {
    name: String,
    pub client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of one or three members on loopback ports; every member killed when dropped.
pub struct Etcd {
    pub members: Vec<Member>,
    token: String,
    /// Client port over TLS with client-certificate auth, with these certificates.
    pub tls: Option<Pki>,
}

impl Etcd {
    pub fn start(size: usize) -> Etcd {
        Self::start_with(size, None)
    }

    /// One member whose client port takes only TLS with a client certificate signed by `pki`'s CA.
    pub fn start_tls(pki: &Pki) -> Etcd {
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

    pub fn wait_healthy(&self, i: usize) {
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

    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped member again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.start_member(i);
        self.wait_healthy(i);
    }

    /// The index of the member that is the leader, as the members themselves report it.
    pub fn leader(&self) -> Option<usize> {
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
    pub fn call(&self, i: usize, path: &str, body: &Value) -> Value {
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
    pub fn keys(&self, i: usize) -> Vec<(String, Value)> {
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
    pub fn lease_of(&self, i: usize, name: &str) -> String {
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
