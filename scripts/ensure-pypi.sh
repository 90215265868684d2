#!/usr/bin/env bash
# scripts/ensure-pypi.sh NAME REQUIREMENT MODULE: prints the Python of .tools/NAME-venv, first
# installing REQUIREMENT (e.g. standardwebhooks==1.0.0) from PyPI into it when MODULE does not
# import. scripts/test.sh calls it before entering the network namespace (nothing can be
# downloaded inside).
set -euo pipefail
name=$1 requirement=$2 module=$3
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.tools/$name-venv"
if ! "$venv/bin/python" -c "import $module" >/dev/null 2>&1; then
  echo "installing $requirement from PyPI into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "$requirement" >&2
fi
echo "$venv/bin/python"
