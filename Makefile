# hookgate: `make run` starts the gateway with a demo receiver; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
WASM_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock

.PHONY: help wasm dist envoy run demo fleet test lint bench fuzz clean check

help:
	@echo "make run    - build what is missing, start Envoy + hookgate on :10000 with a demo receiver"
	@echo "make test   - every test (unit and end-to-end through a real Envoy)"
	@echo "make wasm   - build hookgate.wasm"
	@echo "make dist   - dist/: hookgate.wasm, its sha256, and OCI image layouts of it (docs/deploy.md)"
	@echo "make fleet  - etcd and two Envoys sharing one limit, with the demo receiver (docs/fleet.md)"
	@echo "make demo   - start the gateway and demo receivers, walk through every outcome, stop"
	@echo "make lint   - cargo fmt --check and clippy -D warnings"
	@echo "make check  - hookgate check on every shipped Envoy configuration (docs/operators.md)"
	@echo "make bench  - benchmark hookgate against plain Envoy and the floor (BENCHMARKS.md)"
	@echo "make fuzz   - run every fuzz target for a bounded time (RELIABILITY.md)"

hookgate.wasm: $(WASM_SOURCES)
	scripts/build-wasm.sh

wasm: hookgate.wasm

dist: hookgate.wasm
	scripts/dist.py

fleet: hookgate.wasm
	scripts/fleet.sh

envoy:
	@scripts/envoy.sh >/dev/null && echo "envoy: $$(scripts/envoy.sh)"

run: hookgate.wasm
	scripts/run.sh

demo: hookgate.wasm
	scripts/demo.sh

bench: hookgate.wasm
	bench/run.sh

fuzz:
	fuzz/run.sh

check:
	cargo run --quiet --bin hookgate -- check envoy/*.yaml

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test: hookgate.wasm
	scripts/test.sh

clean:
	cargo clean
	rm -rf hookgate.wasm dist
