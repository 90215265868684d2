//! docs/fleet.md, followed step by step: the page holds scripts/fleet-walkthrough.sh verbatim,
//! which runs a three-member etcd over mTLS, two Envoys and the demo receiver on one machine (here
//! in a network namespace of its own) and checks every answer; the production steps' certificate
//! commands run as written and make every file the etcd command line names.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::Command;
use std::time::Duration;
use support::{repo, run_bounded, scratch};

fn doc() -> String {
    std::fs::read_to_string(repo().join("docs/fleet.md")).unwrap()
}

/// The first fenced `sh` block after `heading` (indented blocks of a list item included), with
/// its indentation removed.
fn block_after(doc: &str, heading: &str) -> String {
    fenced_after(doc, heading, "```sh\n")
}

/// The first block opened by `fence` after `heading`, its indentation removed.
fn fenced_after(doc: &str, heading: &str, fence: &str) -> String {
    let rest = &doc[doc
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"))..];
    let open = rest.find(fence).expect("a fenced block") + fence.len();
    let indent = rest[..open].lines().last().unwrap().len() - fence.trim_end().len();
    let body = &rest[open..];
    let end = body.find("```").unwrap();
    body[..end]
        .lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_fleet_page_holds_the_walkthrough_script_verbatim() {
    let script = std::fs::read_to_string(repo().join("scripts/fleet-walkthrough.sh")).unwrap();
    assert!(
        doc().contains(&format!("The script:\n\n```sh\n{script}```")),
        "docs/fleet.md must end its one-machine section with scripts/fleet-walkthrough.sh verbatim"
    );
}

/// Step 3's openssl commands, as written, make the CA, one certificate per member for clients and
/// peers (serverAuth and clientAuth, its name) and the client certificate; step 1 names only files
/// step 3 makes; steps 4 and 5 give the node id and etcdctl's endpoints and certificates.
#[test]
fn the_production_steps_fit_together() {
    let doc = doc();
    let dir = scratch("fleet-steps");
    let step3 = block_after(&doc, "3. **mTLS**");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &step3])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for member in ["etcd-0", "etcd-1", "etcd-2"] {
        let cert = format!("{member}.crt");
        assert_eq!(
            openssl(&["verify", "-CAfile", "ca.crt", &cert]).trim(),
            format!("{cert}: OK")
        );
        let text = openssl(&["x509", "-in", &cert, "-noout", "-text"]);
        assert!(
            text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
            "{text}"
        );
        assert!(text.contains(&format!("DNS:{member}.etcd")), "{text}");
    }
    let client = openssl(&["x509", "-in", "client.crt", "-noout", "-text"]);
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    let step1 = block_after(&doc, "1. **Three members**");
    for file in step1
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("/etc/etcd/"))
    {
        assert!(
            dir.join(file).exists(),
            "step 1 names {file}, which step 3 does not make"
        );
    }
    let step4 = block_after(&doc, "4. **Envoy**");
    assert!(
        step4.contains("envoy -c envoy/fleet.yaml --service-node"),
        "{step4}"
    );
    let step5 = block_after(&doc, "5. **Check**");
    for flag in ["--endpoints https://", "--cacert ", "--cert ", "--key "] {
        assert!(step5.contains(flag), "{step5}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The walkthrough, in a network namespace of its own (its ports are fixed): every answer as
/// expected, the keys in etcd, and nothing it started left listening.
#[test]
fn the_fleet_walkthrough_runs_on_one_machine() {
    let mut command = Command::new("unshare");
    command
        .args(["-n", "bash", "-c"])
        .arg(
            "ip link set lo up\n\
             status=0; scripts/fleet-walkthrough.sh || status=$?\n\
             echo \"== walkthrough exit $status\"\n\
             echo \"== listening after the walkthrough:\"; ss -Htln\n",
        )
        .current_dir(repo());
    let out = run_bounded(command, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!(
        "{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("== walkthrough exit 0"), "{all}");
    let after = stdout
        .split("== listening after the walkthrough:")
        .nth(1)
        .unwrap();
    assert!(after.trim().is_empty(), "left listening: {after}\n{all}");
    // The page's sample output, line for line.
    let lines: Vec<&str> = stdout.lines().collect();
    for line in fenced_after(&doc(), "shows the keys in etcd:", "```\n").lines() {
        assert!(lines.contains(&line), "the page shows {line:?}:\n{all}");
    }
    for expected in [
        "Envoy :10000 spam.json -> 200 ",
        "Envoy :10001 spam.json -> 429 ",
        "Envoy :10001 automation.json -> 200 ",
        "Envoy :10000 automation.json -> 200 ",
        "\nhookgate/default/webhook/Complaints/http://127.0.0.1:18080/hooks/spam\n",
        "\nhookgate/default/webhook/LeadCalled3/http://127.0.0.1:18080/hooks/sendpulse\n",
        "fleet walkthrough: every answer as expected",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{all}");
    }
}
