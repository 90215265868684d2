#!/usr/bin/env bash
# Installs Debian's etcd (etcd-server 3.4: the `etcd` binary; etcd-client: `etcdctl`) when it is
# missing, and openssl (tests/fleet.rs generates a CA and certificates for etcd over mTLS).
# tests/fleet.rs starts its own etcd members on loopback ports in temporary directories; nothing
# here starts a service. Called by scripts/test.sh and bench/run.sh before anything enters a
# network namespace, where nothing can be downloaded. ETCD_BIN overrides the binary the tests use.
set -euo pipefail
packages=""
if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1; then packages="etcd-server etcd-client"; fi
if ! command -v openssl >/dev/null 2>&1; then packages="$packages openssl"; fi
if [ -z "$packages" ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing:$packages; no apt-get: install etcd 3.4+ and openssl yourself, or set ETCD_BIN" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing $packages from Debian" >&2
# shellcheck disable=SC2086
if ! $sudo apt-get install -y -q --no-install-recommends $packages >/dev/null; then
  $sudo apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  $sudo apt-get install -y -q --no-install-recommends $packages >/dev/null
fi
if [ -z "${ETCD_BIN:-}" ]; then command -v etcd >/dev/null; fi
command -v openssl >/dev/null
