#!/usr/bin/env bash
# Prints the environment (as `export` lines) that builds wasm32-unknown-unknown.
# Prefers rustup's target; where rustup cannot download it (offline machines), installs Debian's
# rustc-web + rust-web-src + lld-16 and builds std from source.
set -euo pipefail
# HOOKGATE_WASM_ROUTE=debian forces the fallback (to test it on a machine where rustup works).
if [ "${HOOKGATE_WASM_ROUTE:-}" != debian ]; then
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "export HOOKGATE_WASM_ROUTE=rustup"; exit 0
fi
if command -v rustup >/dev/null && timeout 60 rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
  echo "export HOOKGATE_WASM_ROUTE=rustup"; exit 0
fi
fi
if ! { [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust ] && command -v wasm-ld-16 >/dev/null; }; then
  echo "installing Debian's wasm toolchain (rustc-web, rust-web-src, lld-16)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends rustc-web cargo-web rust-web-src lld-16 >&2
fi
cat <<'ENV'
export HOOKGATE_WASM_ROUTE=debian
export RUSTC=/usr/bin/rustc
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-16
export HOOKGATE_CARGO=/usr/bin/cargo
export HOOKGATE_BUILD_STD="-Z build-std=std,panic_abort"
ENV
