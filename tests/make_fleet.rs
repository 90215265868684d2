#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! `make fleet` (scripts/fleet.sh) in a network namespace of its own, where its ports are free:
//! one event through each Envoy, the limit shared through etcd (the second Envoy answers 429 for
//! a webhook the first delivered, and the other way round), and after Ctrl-C (SIGINT to its
//! process group, as a terminal sends it) nothing it started is left running or listening.

mod support;

use std::process::Command;
use support::repo;

const SCRIPT: &str = r#"
set -m  # job control: the fleet runs in its own process group, and SIGINT is not ignored
ip link set lo up
log=$(mktemp)
scripts/fleet.sh >"$log" 2>&1 &
fleet=$!
for _ in $(seq 1 300); do
  grep -q 'hookgate fleet: ready' "$log" && break
  kill -0 $fleet 2>/dev/null || break
  sleep 0.2
done
send() {  # send PORT NAME: the HTTP status and the envelope
  curl -s -m 10 -w ' %{http_code}\n' "http://127.0.0.1:$1/" -H 'content-type: application/json' \
    -d "{\"webhook\":{\"name\":\"$2\",\"url\":\"http://127.0.0.1:18080/hooks/$2\"},\"automation_id\":\"1\"}"
}
echo "== A FromA $(send 10000 FromA)"
echo "== B FromA $(send 10001 FromA)"
echo "== B FromB $(send 10001 FromB)"
echo "== A FromB $(send 10000 FromB)"
kill -INT -$fleet
status=0; wait $fleet || status=$?
echo "== fleet exit $status"
sleep 0.5
echo "== left listening:"; ss -Htln
echo "== left running:"; ps -o pid=,stat=,args= -g $fleet | awk '$2 !~ /^Z/'
echo "== fleet output"; cat "$log"
"#;

#[test]
fn make_fleet_shares_the_limit_between_two_envoys_and_stops_everything() {
    let out = Command::new("timeout")
        .args(["240", "unshare", "-n", "bash", "-c", SCRIPT])
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!(
        "{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let delivered = r#"[{"status":true,"message":"{\"key\": \"demo-key\"}","code":1}] 200"#;
    let limited = r#"[{"status":false,"message":"The request did not pass code verification","code":11110113}] 429"#;
    for expected in [
        format!("== A FromA {delivered}"),
        format!("== B FromA {limited}"),
        format!("== B FromB {delivered}"),
        format!("== A FromB {limited}"),
        "== fleet exit 130".to_string(),
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "missing {expected:?}:\n{all}"
        );
    }
    let after = |heading: &str, next: &str| {
        stdout
            .split(heading)
            .nth(1)
            .and_then(|s| s.split(next).next())
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(after("== left listening:", "== left running:"), "", "{all}");
    assert_eq!(after("== left running:", "== fleet output"), "", "{all}");
    // The receiver got each webhook once: through the Envoy that delivered it.
    assert_eq!(
        stdout.matches("receiver | --> POST /hooks/FromA").count(),
        1,
        "{all}"
    );
    assert_eq!(
        stdout.matches("receiver | --> POST /hooks/FromB").count(),
        1,
        "{all}"
    );
}
