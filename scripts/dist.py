#!/usr/bin/env python3
"""`make dist`: hookgate.wasm for release, its sha256, and the same module as two OCI image
layouts, written offline (no registry, no container engine):

    dist/hookgate.wasm          the module (a copy of the build)
    dist/hookgate.wasm.sha256   `sha256sum -c` format
    dist/oci/wasm               the CNCF TAG Runtime Wasm OCI artifact: config
                                application/vnd.wasm.config.v0+json, one application/wasm layer
    dist/oci/compat             the "compat" variant Istio and Envoy Gateway pull: a plain OCI
                                image whose one tar+gzip layer holds plugin.wasm

$HOOKGATE_DIST writes elsewhere than dist/. Both layouts are tagged with the crate's version (`skopeo inspect oci:dist/oci/wasm:0.1.0`) and
are byte-for-byte reproducible: no timestamps, fixed tar and gzip headers. Publish with e.g.
`skopeo copy oci:dist/oci/compat:0.1.0 docker://registry.example.com/hookgate:0.1.0`.
"""
import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIST = pathlib.Path(os.environ.get("HOOKGATE_DIST") or ROOT / "dist")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def version():
    match = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    if not match:
        sys.exit("dist: no version in Cargo.toml")
    return match.group(1)


def fresh(layout):
    if layout.exists():
        shutil.rmtree(layout)
    layout.mkdir(parents=True)
    return layout


def blob(layout, data, media_type, **extra):
    """Stores `data` under blobs/sha256/ and returns its OCI descriptor."""
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}


def canonical(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def write_layout(layout, config, layers, tag, annotations=None):
    """Completes an OCI image layout (oci-layout, index.json, blobs) holding one manifest tagged
    `tag`, whose config and layers are already among the blobs."""
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
    if annotations:
        manifest["annotations"] = annotations
    descriptor = blob(layout, canonical(manifest), OCI_MANIFEST,
                      annotations={"org.opencontainers.image.ref.name": tag})
    (layout / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_bytes(canonical({"schemaVersion": 2, "manifests": [descriptor]}))
    return descriptor["digest"]


def wasm_artifact(module, tag):
    layout = fresh(DIST / "oci" / "wasm")
    layer = blob(layout, module, "application/wasm")
    # The artifact spec names WASI targets only; a proxy-wasm module is a core module without a
    # component model, which the spec files under "wasip1".
    config = {"architecture": "wasm", "os": "wasip1", "layerDigests": [layer["digest"]]}
    config_descriptor = blob(layout, canonical(config), "application/vnd.wasm.config.v0+json")
    return write_layout(layout, config_descriptor, [layer], tag)


def compat_image(module, tag):
    layout = fresh(DIST / "oci" / "compat")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime = len(module), 0o644, 0
        tar.addfile(info, io.BytesIO(module))
    raw = tar_bytes.getvalue()
    packed = gzip.compress(raw, mtime=0)
    layer = blob(layout, packed, "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "config": {},
    }
    config_descriptor = blob(layout, canonical(config), "application/vnd.oci.image.config.v1+json")
    return write_layout(layout, config_descriptor, [layer], tag,
                        annotations={"module.wasm.image/variant": "compat"})


def main():
    source = ROOT / "hookgate.wasm"
    if not source.is_file():
        sys.exit("dist: hookgate.wasm missing (make dist builds it first)")
    module = source.read_bytes()
    DIST.mkdir(exist_ok=True)
    (DIST / "hookgate.wasm").write_bytes(module)
    digest = hashlib.sha256(module).hexdigest()
    (DIST / "hookgate.wasm.sha256").write_text(f"{digest}  hookgate.wasm\n")
    tag = version()
    wasm = wasm_artifact(module, tag)
    compat = compat_image(module, tag)
    print(f"{DIST}/hookgate.wasm  sha256:{digest} ({len(module)} bytes)")
    print(f"oci:{DIST}/oci/wasm:{tag}  manifest {wasm} (Wasm OCI artifact)")
    print(f"oci:{DIST}/oci/compat:{tag}  manifest {compat} (compat image: Istio, Envoy Gateway)")


if __name__ == "__main__":
    main()
