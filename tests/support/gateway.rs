//! A real Envoy for a test: started on a configuration (again on other ports when another
//! process took one first), asked over its listeners and admin endpoint, stopped when dropped.

mod restart;

use super::{http, repo, scratch, EnvoyConfig, Reply};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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

/// Envoy (as `scripts/envoy.sh` finds it) on the configuration at `path`; hot restart off unless
/// `epoch` gives (base id, restart epoch).
pub(super) fn envoy_process(path: &Path, concurrency: u32, epoch: Option<(u32, u32)>) -> Command {
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
