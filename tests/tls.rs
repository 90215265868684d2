//! Https webhooks travel over TLS with SNI and certificate validation (system CAs in the
//! shipped configuration). A receiver with a private CA, served by examples/receiver.py.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{assert_answer, event, free_port, repo, scratch, unique_name, Gateway, FAILED};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// A private CA and a server certificate for `name` signed by it: (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hookgate test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=DNS:{name}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "cert.pem",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// examples/receiver.py over TLS; its stdout (every request it got) goes to `log`.
struct TlsReceiver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl TlsReceiver {
    fn start(dir: &Path, cert: &Path, key: &Path) -> TlsReceiver {
        let port = free_port();
        let log = dir.join("receiver.log");
        let child = Command::new("python3")
            .arg(repo().join("examples/receiver.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsReceiver { child, port, log }
    }

    /// Requests the receiver parsed (each printed as `--> POST /path`).
    fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("--> POST")
            .count()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The production configuration with loopback receivers allowed, trusting `ca` (or the system
/// CAs, as shipped, when None).
fn gateway(ca: Option<&Path>) -> Gateway {
    let ca = ca.map(|p| p.display().to_string());
    Gateway::start(support::loopback_config().edit(move |yaml| {
        if let Some(ca) = ca {
            let cluster = yaml["static_resources"]["clusters"]
                .as_sequence_mut()
                .unwrap()
                .iter_mut()
                .find(|c| c["name"] == "webhooks")
                .unwrap();
            cluster["transport_socket"]["typed_config"]["common_tls_context"]
                ["validation_context"]["trusted_ca"]["filename"] = serde_yaml::Value::String(ca);
        }
    }))
}

#[test]
fn https_is_tls_with_sni_to_a_trusted_certificate() {
    let dir = scratch("tls");
    let (ca, cert, key) = certificates(&dir, "receiver.test");
    let receiver = TlsReceiver::start(&dir, &cert, &key);
    let gw = gateway(Some(&ca));
    let url = format!("https://receiver.test:{}/hook", receiver.port);
    let reply = gw.post_with(
        &event(&unique_name("Tls"), &url),
        &[("x-hookgate-test", "true")],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let report = reply.json();
    assert_eq!(report["envelope"][0]["code"], 1, "{report}");
    assert_eq!(
        report["response"]["headers"]["x-receiver-sni"],
        "receiver.test"
    );
    assert_eq!(receiver.requests(), 1);
}

#[test]
fn an_untrusted_or_misnamed_certificate_is_never_sent() {
    let dir = scratch("tls-bad");
    let (ca, cert, key) = certificates(&dir, "receiver.test");
    let receiver = TlsReceiver::start(&dir, &cert, &key);
    // As shipped: only the system CAs are trusted, and the private CA is not one of them.
    let shipped = gateway(None);
    let url = format!("https://receiver.test:{}/hook", receiver.port);
    assert_answer(
        &shipped.post(&event(&unique_name("Untrusted"), &url)),
        502,
        "no",
        11110111,
        FAILED,
    );
    // The CA trusted, but the certificate names another host than the URL's.
    let trusting = gateway(Some(&ca));
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, other_cert, other_key) = certificates(&other, "other.test");
    let misnamed = TlsReceiver::start(&other, &other_cert, &other_key);
    let trusting_other = gateway(Some(&other_ca));
    let url = format!("https://receiver.test:{}/hook", misnamed.port);
    assert_answer(
        &trusting_other.post(&event(&unique_name("Misnamed"), &url)),
        502,
        "no",
        11110111,
        FAILED,
    );
    // And plain http to the TLS port is no TLS at all: the receiver parses nothing.
    let url = format!("http://receiver.test:{}/hook", receiver.port);
    let reply = trusting.post(&event(&unique_name("Plain"), &url));
    assert_ne!(
        reply.header("x-hookgate-delivered"),
        Some("yes"),
        "{}",
        reply.text()
    );
    assert_eq!(receiver.requests(), 0);
    assert_eq!(misnamed.requests(), 0);
}
