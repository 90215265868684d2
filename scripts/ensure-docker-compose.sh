#!/usr/bin/env bash
# Installs Debian's docker-compose (1.29) when it is missing. The tests only use it to parse and
# validate examples/compose/docker-compose.yaml (`docker-compose config`): there is no Docker
# engine on the test machines. Called by scripts/test.sh before it enters the network namespace,
# where nothing can be downloaded.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "docker-compose missing and no apt-get: install docker-compose 1.29+ yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing docker-compose from Debian" >&2
if ! $sudo apt-get install -y -q --no-install-recommends docker-compose >/dev/null; then
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends docker-compose >/dev/null
fi
command -v docker-compose >/dev/null
