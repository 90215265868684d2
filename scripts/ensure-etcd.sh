#!/usr/bin/env bash
# Installs Debian's etcd (etcd-server 3.4: the `etcd` binary; etcd-client: `etcdctl`) when it is
# missing. tests/fleet.rs starts its own etcd members on loopback ports in temporary directories;
# nothing here starts a service. Called by scripts/test.sh before it enters the network namespace,
# where nothing can be downloaded. ETCD_BIN overrides the binary the tests use.
set -euo pipefail
if [ -n "${ETCD_BIN:-}" ] || command -v etcd >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "etcd missing and no apt-get: install etcd 3.4+ yourself, or set ETCD_BIN" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing etcd from Debian" >&2
packages="etcd-server etcd-client"
# shellcheck disable=SC2086
if ! $sudo apt-get install -y -q --no-install-recommends $packages >/dev/null; then
  $sudo apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  $sudo apt-get install -y -q --no-install-recommends $packages >/dev/null
fi
command -v etcd >/dev/null
