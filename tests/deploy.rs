#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Deployment artefacts: `make dist` (the module, its sha256 and two OCI image layouts, read back
//! with skopeo) and the Kubernetes manifests of examples/kubernetes/, validated against the
//! projects' published schemas kept in tests/fixtures/schemas/ (no cluster: nothing is applied).

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{repo, scratch};

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    let line = run(Command::new("sha256sum").arg(path));
    line.split_whitespace().next().unwrap().to_string()
}

/// scripts/dist.py (what `make dist` runs) into `dir`.
fn dist_into(dir: &Path) -> String {
    run(Command::new(repo().join("scripts/dist.py")).env("HOOKGATE_DIST", dir))
}

fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

fn skopeo(args: &[&str]) -> String {
    run(Command::new("skopeo").args(args))
}

/// The one layer of an OCI layout's tagged image, copied out with skopeo.
fn copied_layer(layout: &Path, scratch_dir: &Path) -> (Value, PathBuf) {
    let out = scratch_dir.join(layout.file_name().unwrap());
    let reference = format!("oci:{}:{}", layout.display(), version());
    skopeo(&["copy", "-q", &reference, &format!("dir:{}", out.display())]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = out.join(digest.trim_start_matches("sha256:"));
    (manifest, blob)
}

#[test]
fn make_dist_writes_the_module_its_sha256_and_oci_layouts_skopeo_reads() {
    let dir = scratch("dist");
    let printed = dist_into(&dir);
    let module = repo().join("hookgate.wasm");
    let digest = sha256_hex(&module);
    assert_eq!(
        std::fs::read(dir.join("hookgate.wasm")).unwrap(),
        std::fs::read(&module).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("hookgate.wasm.sha256")).unwrap(),
        format!("{digest}  hookgate.wasm\n")
    );
    run(Command::new("sha256sum")
        .args(["-c", "hookgate.wasm.sha256"])
        .current_dir(&dir));
    let size = std::fs::metadata(&module).unwrap().len();

    // The Wasm OCI artifact: skopeo reads the manifest (it refuses a parsed inspect of an
    // artifact whose config is not an image config) and copies the layer out unchanged.
    let wasm = dir.join("oci/wasm");
    let raw: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:{}", wasm.display(), version()),
    ]))
    .unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(
        raw["layers"],
        serde_json::json!([{"mediaType": "application/wasm", "digest": format!("sha256:{digest}"), "size": size}])
    );
    let config: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--config",
        &format!("oci:{}:{}", wasm.display(), version()),
    ]))
    .unwrap();
    assert_eq!(
        config,
        serde_json::json!({"architecture": "wasm", "os": "wasip1", "layerDigests": [format!("sha256:{digest}")]})
    );
    let copies = scratch("dist-copies");
    let (_, layer) = copied_layer(&wasm, &copies);
    assert_eq!(sha256_hex(&layer), digest);

    // The compat image: skopeo inspects it as an image; its one tar+gzip layer holds
    // plugin.wasm, the module.
    let compat = dir.join("oci/compat");
    let inspected: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci:{}:{}", compat.display(), version()),
    ]))
    .unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
    let (manifest, layer) = copied_layer(&compat, &copies);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    assert_eq!(inspected["Digest"], printed_digest(&printed, "compat"));
    let listing = run(Command::new("tar").arg("-tzf").arg(&layer));
    assert_eq!(listing, "plugin.wasm\n");
    let unpacked = copies.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&unpacked));
    assert_eq!(sha256_hex(&unpacked.join("plugin.wasm")), digest);

    // Reproducible: a second run gives the same manifests, byte for byte.
    let again = scratch("dist-again");
    assert_eq!(
        dist_into(&again).replace(&again.display().to_string(), ""),
        printed.replace(&dir.display().to_string(), "")
    );
    for d in [dir, copies, again] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The manifest digest dist.py printed for one layout.
fn printed_digest(printed: &str, layout: &str) -> String {
    let line = printed
        .lines()
        .find(|l| l.contains(&format!("/oci/{layout}:")))
        .unwrap();
    line.split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap()
        .to_string()
}
