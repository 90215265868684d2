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

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests against the published schemas

fn schemas() -> PathBuf {
    repo().join("tests/fixtures/schemas")
}

/// Every document of the manifests in examples/kubernetes/, with the file it came from.
fn manifests() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for dir in ["plain", "istio", "envoy-gateway"] {
        let dir = repo().join("examples/kubernetes").join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for document in serde_yaml::Deserializer::from_str(&text) {
                let value: Value = serde::Deserialize::deserialize(document).unwrap();
                found.push((file.display().to_string(), value));
            }
        }
    }
    found
}

/// The JSON schema of one custom resource, from its CRD as published: the stored version's
/// openAPIV3Schema, made strict as `kubectl apply` is by default (an unknown field is an error
/// unless the schema preserves unknown fields), with apiVersion and kind fixed. The CEL rules
/// (x-kubernetes-validations) are not evaluated. Metadata is checked as Kubernetes' ObjectMeta.
fn crd_schema(fixture: &str, kind: &str) -> Value {
    let text = std::fs::read_to_string(schemas().join(fixture)).unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(crd["spec"]["names"]["kind"], kind, "{fixture}");
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["storage"] == true)
        .unwrap();
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    strict(&mut schema);
    let api_version = format!(
        "{}/{}",
        crd["spec"]["group"].as_str().unwrap(),
        version["name"].as_str().unwrap()
    );
    schema["properties"]["apiVersion"] = serde_json::json!({"const": api_version});
    schema["properties"]["kind"] = serde_json::json!({"const": kind});
    // The API server checks metadata as for any object: Kubernetes' ObjectMeta.
    let core: Value = serde_json::from_str(
        &std::fs::read_to_string(schemas().join("kubernetes-v1.33/configmap-v1.json")).unwrap(),
    )
    .unwrap();
    schema["$defs"] = core["$defs"].clone();
    schema["properties"]["metadata"] = serde_json::json!({
        "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "required": ["name"]
    });
    schema["required"] = serde_json::json!(["apiVersion", "kind", "metadata", "spec"]);
    schema
}

fn strict(schema: &mut Value) {
    if let Some(object) = schema.as_object_mut() {
        if object.get("nullable") == Some(&Value::Bool(true)) {
            if let Some(kind) = object.get("type").cloned() {
                object.insert("type".into(), serde_json::json!([kind, "null"]));
            }
        }
        if object.contains_key("properties")
            && !object.contains_key("additionalProperties")
            && object.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true))
        {
            object.insert("additionalProperties".into(), Value::Bool(false));
        }
        object.values_mut().for_each(strict);
    } else if let Some(items) = schema.as_array_mut() {
        items.iter_mut().for_each(strict);
    }
}

/// The schema file for a manifest document, by apiVersion and kind.
fn schema_for(document: &Value, dir: &Path) -> PathBuf {
    let key = format!("{} {}", document["apiVersion"], document["kind"]);
    let core = |file: &str| schemas().join("kubernetes-v1.33").join(file);
    let custom = |fixture: &str, kind: &str, out: &str| {
        let path = dir.join(out);
        std::fs::write(&path, crd_schema(fixture, kind).to_string()).unwrap();
        path
    };
    match key.as_str() {
        r#""apps/v1" "Deployment""# => core("deployment-apps-v1.json"),
        r#""v1" "ConfigMap""# => core("configmap-v1.json"),
        r#""v1" "Service""# => core("service-v1.json"),
        r#""extensions.istio.io/v1alpha1" "WasmPlugin""# => custom(
            "istio-1.30.3-wasmplugins.extensions.istio.io.yaml",
            "WasmPlugin",
            "wasmplugin.json",
        ),
        r#""gateway.envoyproxy.io/v1alpha1" "EnvoyExtensionPolicy""# => custom(
            "envoy-gateway-v1.9.0-envoyextensionpolicies.gateway.envoyproxy.io.yaml",
            "EnvoyExtensionPolicy",
            "envoyextensionpolicy.json",
        ),
        other => panic!("no schema kept for {other}"),
    }
}

/// check-jsonschema (PyPI, installed by scripts/ensure-check-jsonschema.sh) on one document:
/// its verdict and output.
fn check_jsonschema(schema: &Path, document: &Value, dir: &Path) -> (bool, String) {
    let program = repo().join(".tools/check-jsonschema-venv/bin/check-jsonschema");
    assert!(
        program.exists(),
        "{} missing: run scripts/ensure-check-jsonschema.sh (make test does)",
        program.display()
    );
    let instance = dir.join("instance.json");
    std::fs::write(&instance, document.to_string()).unwrap();
    let out = Command::new(program)
        .arg("--schemafile")
        .arg(schema)
        .arg(&instance)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn kubernetes_manifests_match_the_published_schemas() {
    let dir = scratch("k8s-schemas");
    let mut kinds = Vec::new();
    for (file, document) in manifests() {
        let schema = schema_for(&document, &dir);
        let (valid, output) = check_jsonschema(&schema, &document, &dir);
        assert!(valid, "{file}: {}\n{output}", document["kind"]);
        kinds.push(document["kind"].as_str().unwrap().to_string());
        // The check has teeth: a misspelt field and (for custom resources) a value outside the
        // schema's enum are refused.
        let mut misspelt = document.clone();
        misspelt["metadata"]["nmae"] = Value::String("hookgate".into());
        assert!(
            !check_jsonschema(&schema, &misspelt, &dir).0,
            "{file}: nmae accepted"
        );
        if let Some(strategy) = document["spec"].get("failStrategy") {
            assert_eq!(strategy, "FAIL_CLOSE");
            let mut wrong = document.clone();
            wrong["spec"]["failStrategy"] = Value::String("FAIL_CLOSED".into());
            assert!(
                !check_jsonschema(&schema, &wrong, &dir).0,
                "{file}: FAIL_CLOSED accepted"
            );
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "EnvoyExtensionPolicy",
            "Service",
            "WasmPlugin"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The plain Kubernetes rig fits together: the Deployment mounts the ConfigMap where its args
/// read the configuration, the image puts the module where that configuration loads it, and
/// `hookgate check` and Envoy (`--mode validate`, with this checkout's module) accept the
/// configuration.
#[test]
fn plain_kubernetes_configuration_is_accepted_by_envoy_and_fits_the_deployment() {
    let all = manifests();
    let find = |kind: &str| {
        all.iter()
            .find(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d.clone())
            .unwrap()
    };
    let (configmap, deployment) = (find("ConfigMap"), find("Deployment"));
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == configmap["metadata"]["name"])
        .expect("the ConfigMap mounted");
    let container = &pod["containers"][0];
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .unwrap();
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = format!("{}/envoy.yaml", mount["mountPath"].as_str().unwrap());
    assert!(
        args.windows(2)
            .any(|w| w == ["--config-path", config_path.as_str()]),
        "{args:?}"
    );
    let dockerfile =
        std::fs::read_to_string(repo().join("examples/kubernetes/plain/Dockerfile")).unwrap();
    assert!(dockerfile
        .lines()
        .any(|l| l == format!("COPY dist/hookgate.wasm {}", support::SHIPPED_WASM)));
    assert!(dockerfile
        .lines()
        .any(|l| l == "FROM envoyproxy/envoy:v1.40.0"));

    let dir = scratch("k8s-envoy");
    let shipped = dir.join("shipped.yaml");
    std::fs::write(&shipped, configmap["data"]["envoy.yaml"].as_str().unwrap()).unwrap();
    // hookgate's own check: the callers of the plugin and of the engine chain agree, and so on.
    run(Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("check")
        .arg(&shipped));
    let rendered = run(Command::new(repo().join("scripts/render-envoy.py")).arg(&shipped));
    assert!(rendered.contains(&format!(
        "filename: {}}}",
        repo().join("hookgate.wasm").display()
    )));
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, rendered).unwrap();
    let envoy = support::envoy_command();
    run(Command::new(&envoy[0])
        .args(&envoy[1..])
        .args(["--mode", "validate", "-l", "error", "-c"])
        .arg(&path));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The module fetched by Envoy with its sha256 pinned

/// A static file server (python's http.server) on a free loopback port; stopped when dropped.
struct FileServer {
    child: std::process::Child,
    port: u16,
}

impl FileServer {
    fn serve(dir: &Path) -> FileServer {
        let port = support::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        support::eventually("the file server listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        FileServer { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The loopback test configuration with the module fetched over HTTP (`vm_config.code.remote`)
/// and checked against `sha256`, as docs/deploy.md shows it.
fn remote_module_config(server: &FileServer, sha256: &str) -> support::EnvoyConfig {
    let code: serde_yaml::Value = serde_yaml::from_str(&format!(
        "{{remote: {{http_uri: {{uri: 'http://127.0.0.1:{}/hookgate.wasm', cluster: hookgate-module, timeout: 10s}}, sha256: {sha256}, retry_policy: {{num_retries: 3}}}}}}",
        server.port
    ))
    .unwrap();
    let cluster: serde_yaml::Value = serde_yaml::from_str(&format!(
        "{{name: hookgate-module, type: STATIC, connect_timeout: 2s, load_assignment: {{cluster_name: hookgate-module, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}}}",
        server.port
    ))
    .unwrap();
    let mut config = support::loopback_config();
    for filter in config.hookgate_filters() {
        filter["typed_config"]["config"]["vm_config"]["code"] = code.clone();
    }
    config.edit(|yaml| {
        yaml["static_resources"]["clusters"]
            .as_sequence_mut()
            .unwrap()
            .push(cluster);
    })
}

#[test]
fn remote_module_runs_with_its_sha256_and_a_wrong_sha256_refuses_every_event() {
    let dir = scratch("remote-module");
    std::fs::copy(repo().join("hookgate.wasm"), dir.join("hookgate.wasm")).unwrap();
    let server = FileServer::serve(&dir);
    let digest = sha256_hex(&dir.join("hookgate.wasm"));
    let receiver = support::Receiver::start(support::Behaviour::json(200, r#"{"ok":true}"#));

    let gateway = support::Gateway::start(remote_module_config(&server, &digest));
    let name = support::unique_name("Remote");
    let reply = gateway.post(&support::event(&name, &receiver.url("/hook")));
    support::assert_answer(&reply, 200, "yes", 1, r#"{"ok":true}"#);
    assert_eq!(receiver.records().len(), 1);
    drop(gateway);

    // One hex digit changed: Envoy starts, the module never runs, and the filter fails closed.
    let wrong = format!(
        "{}{}",
        if digest.starts_with('0') { "1" } else { "0" },
        &digest[1..]
    );
    let gateway = support::Gateway::start(remote_module_config(&server, &wrong));
    support::eventually("Envoy gives up fetching the module", || {
        gateway
            .logs()
            .contains("Retry limit exceeded for fetching data from remote data source")
    });
    let reply = gateway.post(&support::event(&name, &receiver.url("/hook")));
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!([{"status": false, "message": "Error during query execution", "code": 21111011}])
    );
    assert_eq!(
        receiver.records().len(),
        1,
        "nothing more reached the receiver"
    );
    drop(gateway);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
