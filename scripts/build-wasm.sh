#!/usr/bin/env bash
# Builds hookgate.wasm (wasm32-unknown-unknown, release) at the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/wasm-toolchain.sh)"
target=wasm32-unknown-unknown
if [ "$HOOKGATE_WASM_ROUTE" = rustup ]; then
  cargo build --quiet --release --lib --no-default-features --target $target
else
  # Debian's compiler keeps its own target directory, so the two routes never rebuild each other.
  export CARGO_TARGET_DIR=target/debian
  # shellcheck disable=SC2086 # HOOKGATE_BUILD_STD is two words on purpose
  "$HOOKGATE_CARGO" build --quiet --release --lib --no-default-features --target $target $HOOKGATE_BUILD_STD
fi
cp "${CARGO_TARGET_DIR:-target}/$target/release/hookgate.wasm" hookgate.wasm
echo "built hookgate.wasm ($(stat -c %s hookgate.wasm) bytes, $HOOKGATE_WASM_ROUTE toolchain)"
