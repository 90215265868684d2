#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Ways to run it: plain Envoy as the README writes it, func-e (through a stand-in:
//! func-e cannot be installed here), the docker-compose rig (validated, and rehearsed without
//! Docker in a private network namespace) and `make demo`.
//!
//! The tests that need Envoy's default ports or the rig's addresses run in a nested network
//! namespace of their own (`unshare -n`), or hold `DEFAULT_PORTS`; every wait is bounded.

mod support;

use serde_yaml::Value as Yaml;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::{
    event, free_port, repo, run_bounded, scratch, unique_name, Behaviour, Receiver, Running,
};

/// Held by every test of this file that binds Envoy's default ports (10000, 9901) in the
/// test namespace itself.
static DEFAULT_PORTS: Mutex<()> = Mutex::new(());

fn real_envoy() -> String {
    std::env::var("ENVOY_BIN")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| support::envoy_command().join(" "))
}

/// A PATH without any directory that holds an `envoy` or a `func-e`.
fn path_without_envoy() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|d| !d.join("envoy").exists() && !d.join("func-e").exists())
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits (at most 30 s) until the admin endpoint says ready; panics with the log otherwise.
fn wait_ready(child: &mut Running, admin_port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "envoy exited ({status}) during start:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if support::http::get(admin_port, "/ready").is_ok_and(|r| r.status == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "envoy not ready after 30 s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn envoy_sh_picks_func_e_run_when_only_func_e_is_on_path() {
    let fixtures = repo().join("tests/fixtures");
    let out = Command::new(repo().join("scripts/envoy.sh"))
        .env_remove("ENVOY_BIN")
        .env(
            "PATH",
            format!("{}:{}", fixtures.display(), path_without_envoy()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{} run", fixtures.join("func-e").display())
    );
}

/// The gateway started the way scripts/envoy.sh says when func-e is the only Envoy on PATH:
/// `func-e run -c <config> ...` (the stand-in execs the real Envoy from ENVOY_BIN), and one
/// webhook delivered through it.
#[test]
fn gateway_runs_under_func_e_run_and_delivers() {
    let fixtures = repo().join("tests/fixtures");
    let path = format!("{}:{}", fixtures.display(), path_without_envoy());
    let chosen = Command::new(repo().join("scripts/envoy.sh"))
        .env_remove("ENVOY_BIN")
        .env("PATH", &path)
        .output()
        .unwrap();
    let mut command: Vec<String> = text(&chosen.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(command.len(), 2, "expected `func-e run`, got {command:?}");
    assert!(command[0].ends_with("/func-e") && command[1] == "run");

    let dir = scratch("func-e");
    // This checkout's module, free ports for the admin endpoint and every listener.
    let (config_path, admin_port, ports) = support::loopback_config().materialise(&dir);
    let port = ports[0];
    let log = dir.join("envoy.log");

    let program = command.remove(0);
    let mut envoy = Running(
        Command::new(program)
            .args(command)
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
            .env("PATH", &path)
            .env("ENVOY_BIN", real_envoy())
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut envoy, admin_port, &log);

    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let name = unique_name("FuncE");
    let reply = support::http::post(
        port,
        "/",
        event(&name, &receiver.url("/hook")).as_bytes(),
        &[],
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    assert_eq!(
        reply.json(),
        serde_json::json!([{"status": true, "message": "{\"ok\":true}", "code": 1}])
    );
    assert_eq!(receiver.records().len(), 1);
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Plain Envoy as the README writes it, from a directory that is not the checkout: the module
/// installed at /etc/hookgate/hookgate.wasm (in a private mount namespace, over a copy-on-write
/// /etc, so the machine's /etc is untouched), `envoy -c <checkout>/envoy/envoy.yaml` on the
/// default ports 10000 and 9901.
#[test]
fn plain_envoy_as_the_readme_writes_it_from_any_directory() {
    let _ports = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("plain");
    let bin = dir.join("bin");
    let elsewhere = dir.join("elsewhere");
    for d in [
        &bin,
        &elsewhere,
        &dir.join("etc-upper"),
        &dir.join("etc-work"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::os::unix::fs::symlink(real_envoy(), bin.join("envoy")).unwrap();
    let log = dir.join("envoy.log");
    let script = format!(
        "set -e\n\
         mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc\n\
         install -D -m 0644 {repo}/hookgate.wasm {wasm}\n\
         exec envoy -c {repo}/envoy/envoy.yaml",
        d = dir.display(),
        repo = repo().display(),
        wasm = support::SHIPPED_WASM,
    );
    let mut envoy = Running(
        Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .env(
                "PATH",
                format!("{}:{}", bin.display(), path_without_envoy()),
            )
            .current_dir(&elsewhere)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut envoy, 9901, &log);

    // hookgate answers on :10000: a bad name is refused, and the production policy refuses a
    // loopback receiver (nothing reaches it).
    let bad = support::http::post(
        10000,
        "/",
        &std::fs::read(repo().join("examples/events/bad-name.json")).unwrap(),
        &[],
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(
        bad.json(),
        serde_json::json!([{"status": false, "message": "Error during query execution", "code": 21111011}])
    );
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let local = support::http::post(
        10000,
        "/",
        event(&unique_name("Plain"), &receiver.url("/")).as_bytes(),
        &[],
    )
    .unwrap();
    assert_eq!(local.status, 403, "{}", local.text());
    assert_eq!(
        local.json(),
        serde_json::json!([{"status": false, "message": "Incorrect url ip", "code": 11110114}])
    );
    assert!(receiver.records().is_empty());
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a shell script as root in a network namespace of its own (loopback only, up), from the
/// repository root, at most `limit`.
fn in_private_namespace(script: &str, limit: Duration) -> Output {
    let mut command = Command::new("unshare");
    command
        .args(["-n", "sh", "-c"])
        .arg(format!("set -e; ip link set lo up\n{script}"))
        .current_dir(repo())
        .env("ENVOY_BIN", real_envoy());
    run_bounded(command, limit)
}

/// `make demo` (scripts/demo.sh) in a namespace of its own, where its ports are free: every
/// outcome of the contract shows up with the expected HTTP status, and when it is over nothing
/// it started is left listening.
#[test]
fn make_demo_walks_through_every_outcome_and_stops_everything() {
    let out = in_private_namespace(
        "status=0; scripts/demo.sh || status=$?\n\
         echo \"== demo exit $status\"\n\
         echo \"== listening after the demo:\"; ss -Htln\n",
        Duration::from_secs(180),
    );
    let stdout = text(&out.stdout);
    let all = format!("{stdout}\n--- stderr\n{}", text(&out.stderr));
    assert!(stdout.contains("== demo exit 0"), "{all}");
    let after = stdout.split("== listening after the demo:").nth(1).unwrap();
    assert!(after.trim().is_empty(), "left listening: {after}\n{all}");
    assert!(!stdout.contains("UNEXPECTED"), "{all}");
    for expected in [
        // success, test request, spam and unsubscribe, batch
        "\"code\": 1",
        "\"request\": {",
        "\"limit\": {",
        "\"event\": \"spam\"",
        "\"event\": \"unsubscribe\"",
        // bad name, local address
        "<<< HTTP 400 Bad Request  (as expected)",
        "\"code\": 21111011",
        "<<< HTTP 403 Forbidden  (as expected)",
        "\"message\": \"Incorrect url ip\"",
        // hourly limit and verification, wrong key
        "<<< HTTP 429 Too Many Requests  (as expected)",
        "retry-after: ",
        "x-hookgate-detail: receiver answered with a wrong verification key",
        // non-JSON receiver, receiver error, receiver down, timeout
        "\"code\": 11110112",
        "x-hookgate-upstream-status: 500",
        "<<< HTTP 502 Bad Gateway  (as expected)",
        "<<< HTTP 504 Gateway Timeout  (as expected)",
        "x-hookgate-delivered: unknown",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}:\n{all}");
    }
    // The verification walk: LeadCalled3 limited while unverified, then delivered twice.
    let verify = stdout
        .split("8. verification")
        .nth(1)
        .and_then(|s| s.split("9. wrong").next())
        .unwrap();
    assert_eq!(verify.matches("(as expected)").count(), 3, "{verify}");
    assert!(verify.contains("HTTP 429"), "{verify}");
    assert_eq!(verify.matches("HTTP 200").count(), 2, "{verify}");
}

fn compose_file() -> PathBuf {
    repo().join("examples/compose/docker-compose.yaml")
}

/// The rig's file as Debian's docker-compose resolves it (there is no Docker engine here).
fn compose_config() -> Yaml {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(compose_file())
        .arg("config")
        .output()
        .expect(
            "docker-compose missing: scripts/ensure-tool.sh installs it (scripts/test.sh runs it)",
        );
    assert!(
        out.status.success(),
        "docker-compose config:\n{}",
        text(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).unwrap()
}

#[test]
fn compose_file_is_valid_and_every_mounted_file_exists() {
    let config = compose_config();
    let services = config["services"].as_mapping().unwrap();
    let mut names: Vec<&str> = services.keys().filter_map(Yaml::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["envoy", "receiver", "sender"]);
    assert_eq!(
        config["services"]["envoy"]["image"].as_str(),
        Some("envoyproxy/envoy:v1.40.0")
    );
    let mut mounts = 0;
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = volume.as_str().expect("short volume syntax");
            let source = spec.split(':').next().unwrap();
            assert!(
                Path::new(source).is_absolute() && Path::new(source).exists(),
                "{name:?} mounts {source}, which does not exist (hookgate.wasm: `make wasm`)"
            );
            mounts += 1;
        }
    }
    assert_eq!(mounts, 5);
    // The addresses the gateway's configuration names are the ones the rig gives out.
    let ip = |service: &str| {
        config["services"][service]["networks"]["rig"]["ipv4_address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let envoy_yaml = std::fs::read_to_string(repo().join("examples/compose/envoy.yaml")).unwrap();
    assert!(envoy_yaml.contains(&format!("\"cidr\": \"{}/32\"", ip("receiver"))));

    let sender = format!("{:?}", config["services"]["sender"]["command"]);
    assert!(
        sender.contains(&format!("http://{}:10000/", ip("envoy"))),
        "{sender}"
    );
    assert!(
        sender.contains(&format!("http://{}:18080", ip("receiver"))),
        "{sender}"
    );
}

#[test]
fn compose_envoy_config_passes_hookgate_check_and_envoy_accepts_it() {
    let check = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "examples/compose/envoy.yaml"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    // The container finds the module at /etc/hookgate/hookgate.wasm (mounted there); here the
    // configuration is rendered with the checkout's module instead.
    let dir = scratch("compose-validate");
    let rendered = Command::new(repo().join("scripts/render-envoy.py"))
        .arg(repo().join("examples/compose/envoy.yaml"))
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    std::fs::write(dir.join("envoy.yaml"), &rendered.stdout).unwrap();
    let mut command = Command::new(real_envoy());
    command
        .args(["--mode", "validate", "-c"])
        .arg(dir.join("envoy.yaml"))
        .args(["--disable-hot-restart", "-l", "warning"])
        .current_dir(repo());
    let out = run_bounded(command, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rig without Docker: in a namespace of its own with the rig's addresses on loopback, the
/// receiver and Envoy as the compose file runs them, then the sender's own command line (paths
/// moved from the containers' to the repository's). Every sample event gets its outcome, and the
/// exception is only the receiver's address and port.
#[test]
fn compose_rig_rehearsed_without_docker() {
    let config = compose_config();
    let sender = config["services"]["sender"]["command"][0]
        .as_str()
        .unwrap()
        .replace("python ", "python3 ")
        .replace("/examples/", "examples/");
    let receiver = config["services"]["receiver"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().replace("/examples/", "examples/"))
        .collect::<Vec<_>>()
        .join(" ")
        .replacen("python ", "python3 ", 1)
        .replace("0.0.0.0", "172.28.0.20");
    let script = format!(
        "for a in 10 20 30; do ip addr add 172.28.0.$a/32 dev lo; done\n\
         {receiver} > /dev/null 2>&1 &\n\
         r=$!\n\
         c=$(mktemp --suffix=.yaml); scripts/render-envoy.py examples/compose/envoy.yaml > \"$c\"\n\
         \"$ENVOY_BIN\" -c \"$c\" --disable-hot-restart --concurrency 1 -l warning > /dev/null 2>&1 &\n\
         e=$!\n\
         trap 'kill $r $e 2>/dev/null || true; wait; rm -f \"$c\"' EXIT\n\
         {sender}\n\
         echo '== other port on the receiver address'\n\
         python3 examples/send.py --quiet --gateway http://172.28.0.10:10000/ --url http://172.28.0.20:18081/ examples/events/automation.json\n\
         echo '== the gateway itself, on the rig network'\n\
         python3 examples/send.py --quiet --gateway http://172.28.0.10:10000/ --url http://172.28.0.10:10000/ examples/events/automation.json\n"
    );
    let out = in_private_namespace(&script, Duration::from_secs(120));
    let stdout = text(&out.stdout);
    let all = format!("{stdout}\n--- stderr\n{}", text(&out.stderr));
    assert!(out.status.success(), "{all}");
    // Each answer: the event file, the HTTP status and the envelope's code.
    let mut outcomes = Vec::new();
    for part in stdout.split(">>> POST ").skip(1) {
        let file = part
            .split(['(', ')'])
            .nth(1)
            .map(|f| f.rsplit('/').next().unwrap().to_string())
            .unwrap();
        let status = part
            .split("<<< HTTP ")
            .nth(1)
            .map(|s| s[..3].to_string())
            .unwrap_or_default();
        let code = part
            .split("\"code\": ")
            .nth(1)
            .map(|s| {
                s.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .to_string()
            })
            .unwrap_or_default();
        outcomes.push(format!("{file} {status} {code}"));
    }
    // Every sample event of this issue (other files in examples/events/ are posted too).
    for expected in [
        "automation.json 200 1",
        "bad-name.json 400 21111011",
        "batch.json 200 1",
        "local-ip.json 403 11110114",
        "loopback.json 403 11110114",
        "missing-url.json 400 21111011",
        "not-json-receiver.json 200 11110112",
        "receiver-error.json 200 11110111",
        "slow-receiver.json 504 11110111",
        "spam.json 200 1",
        "unsubscribe.json 200 1",
        "wrong-key.json 200 11110113",
    ] {
        assert!(
            outcomes.iter().any(|o| o == expected),
            "{expected}: {outcomes:#?}\n{all}"
        );
    }
    // The last two: another port on the receiver's address, and the gateway's own address.
    assert_eq!(
        outcomes[outcomes.len() - 2..],
        [
            "automation.json 403 11110114",
            "automation.json 403 11110114"
        ],
        "{all}"
    );
}

/// The demo receiver answers a client that already hung up (the gateway's route timeout after
/// the slow-receiver example) with one line, not a traceback.
#[test]
fn demo_receiver_takes_a_hang_up_without_a_traceback() {
    let port = free_port();
    let dir = scratch("receiver");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let _receiver = Running(
        Command::new("python3")
            .arg(repo().join("examples/receiver.py"))
            .args(["--port", &port.to_string()])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
    );
    support::eventually("the receiver listening", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("demo receiver on"))
    });
    let stream = support::http::connect(port).unwrap();
    let request = support::http::post_request("/slow?delay=0.3", b"{}", &[]);
    std::io::Write::write_all(&mut &stream, &request).unwrap();
    support::receiver::reset_now(&stream);
    drop(stream);
    support::eventually("the hang-up noted", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("hung up before the answer"))
    });
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(stderr, "", "the receiver's stderr");
}
