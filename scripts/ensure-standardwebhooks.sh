#!/usr/bin/env bash
# Prints the Python that has the Standard Webhooks reference library (PyPI `standardwebhooks`),
# installing it into .tools/standardwebhooks-venv when missing. scripts/test.sh calls it before
# entering the network namespace (nothing can be downloaded inside); tests/signing.rs verifies
# every signed delivery with it.
set -euo pipefail
STANDARDWEBHOOKS_VERSION=${STANDARDWEBHOOKS_VERSION:-1.0.0}
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.tools/standardwebhooks-venv"
if ! "$venv/bin/python" -c 'import standardwebhooks' >/dev/null 2>&1; then
  echo "installing standardwebhooks==$STANDARDWEBHOOKS_VERSION from PyPI into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "standardwebhooks==$STANDARDWEBHOOKS_VERSION" >&2
fi
echo "$venv/bin/python"
