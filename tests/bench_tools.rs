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
    for script in [
        "bench/bench.py",
        "bench/fleet.py",
        "bench/compare.py",
        "bench/instructions.py",
    ] {
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

/// bench/instructions.py adds up callgrind's self costs by object: a call's inclusive cost (the
/// line after `calls=`) is the callee's, counted where it ran, not again in the caller's object;
/// compressed names (`ob=(2)`) are the object first named `cob=(2) ???`.
#[test]
fn instruction_counts_are_self_costs_by_object() {
    let dump = std::env::temp_dir().join(format!("hookgate-callgrind-{}.out", std::process::id()));
    std::fs::write(
        &dump,
        "events: Ir\n\
         ob=(1) /opt/envoy/bin/envoy\nfl=(1) ???\nfn=(1) 0x1\n0 100\n\
         cob=(2) ???\ncfn=(2) 0x2\ncalls=1 0\n0 50\n+1 3\n\
         ob=(2)\nfn=(2)\n0 50\n\
         ob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6\nfn=(3) memcpy\n0 7\n",
    )
    .unwrap();
    let out = run(
        "python3",
        &[
            "-c",
            "import sys; sys.path.insert(0, 'bench'); import instructions as i\n\
             c = {}\n\
             for obj, n in i.self_cost_by_object(sys.argv[1]).items(): c[i.where(obj)] = c.get(i.where(obj), 0) + n\n\
             print(sorted(c.items()))",
            dump.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&dump).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[('Envoy', 103), ('generated code', 50), ('libc', 7)]"
    );
}
