#!/usr/bin/env bash
# scripts/ensure-tool.sh COMMAND PACKAGE...: installs the Debian PACKAGEs when COMMAND is missing.
# scripts/test.sh calls it before entering the network namespace, where nothing can be downloaded.
set -euo pipefail
command=$1
shift
if command -v "$command" >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$command missing and no apt-get: install $* yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing $* from Debian (for $command)" >&2
if ! $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null
fi
command -v "$command" >/dev/null
