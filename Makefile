# hookgate: `make run` starts the gateway with a demo receiver; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
WASM_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock

.PHONY: help wasm envoy run test lint clean

help:
	@echo "make run    - build what is missing, start Envoy + hookgate on :10000 with a demo receiver"
	@echo "make test   - every test (unit and end-to-end through a real Envoy)"
	@echo "make wasm   - build hookgate.wasm"
	@echo "make lint   - cargo fmt --check and clippy -D warnings"

hookgate.wasm: $(WASM_SOURCES)
	scripts/build-wasm.sh

wasm: hookgate.wasm

envoy:
	@scripts/envoy.sh >/dev/null && echo "envoy: $$(scripts/envoy.sh)"

run: hookgate.wasm
	scripts/run.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test: hookgate.wasm
	scripts/test.sh

clean:
	cargo clean
	rm -f hookgate.wasm
