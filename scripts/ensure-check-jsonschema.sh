#!/usr/bin/env bash
# Prints the path of check-jsonschema (PyPI), installing it into .tools/check-jsonschema-venv when
# missing; tests/deploy.rs validates the Kubernetes manifests with it against the schemas kept in
# tests/fixtures/schemas/.
set -euo pipefail
python=$("$(dirname "$0")/ensure-pypi.sh" check-jsonschema "check-jsonschema==${CHECK_JSONSCHEMA_VERSION:-0.33.3}" check_jsonschema)
echo "$(dirname "$python")/check-jsonschema"
