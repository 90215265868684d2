//! The measuring tools stay usable. CI never runs `make bench` (numbers are not tests),
//! so this checks that its scripts still parse and that `bench/wasm-profile.js`, which times
//! hookgate's callbacks under node's V8, runs the built hookgate.wasm through a whole delivery
//! (the script itself refuses to time anything but a delivered webhook). Nothing is timed here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::{Command, Output};
use support::repo;

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn wasm_profile_runs_a_delivery_through_the_built_filter() {
    for variables in ["1", "1000"] {
        let out = run(
            "node",
            &["bench/wasm-profile.js", "hookgate.wasm", "200", variables],
        );
        let line = String::from_utf8_lossy(&out.stdout);
        // One decision record and one body in, one out, for every request.
        assert!(
            line.contains("us per delivery")
                && line.contains("set_property 1")
                && line.contains("get_buffer_bytes 2")
                && line.contains("set_buffer_bytes 2"),
            "{line}"
        );
    }
}

#[test]
fn bench_scripts_parse() {
    for script in ["bench/bench.py", "bench/fleet.py", "bench/compare.py"] {
        run(
            "python3",
            &[
                "-c",
                "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])",
                script,
            ],
        );
    }
    for script in [
        "bench/run.sh",
        "bench/netns.sh",
        "bench/limit-table.sh",
        "fuzz/run.sh",
    ] {
        run("bash", &["-n", script]);
    }
    run("node", &["--check", "bench/wasm-profile.js"]);
}
