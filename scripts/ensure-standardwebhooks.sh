#!/usr/bin/env bash
# Prints the Python that has the Standard Webhooks reference library (PyPI `standardwebhooks`),
# installing it into .tools/standardwebhooks-venv when missing; tests/signing.rs verifies every
# signed delivery with it.
set -euo pipefail
exec "$(dirname "$0")/ensure-pypi.sh" standardwebhooks "standardwebhooks==${STANDARDWEBHOOKS_VERSION:-1.0.0}" standardwebhooks
