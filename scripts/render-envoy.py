#!/usr/bin/env python3
"""Prints a shipped Envoy configuration with the module path and ports of one run. Envoy's YAML
has no variables, so the scripts that start Envoy from a checkout (make run, make demo,
make fleet) give it a rendered copy instead of editing the shipped file.

    scripts/render-envoy.py CONFIG [--wasm PATH] [--port N] [--admin-port N] > rendered.yaml

--wasm defaults to $HOOKGATE_WASM, else this checkout's hookgate.wasm; it is made absolute and
must exist. --port moves the listener on 10000, --admin-port the admin on 9901.
"""
import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED_WASM = "filename: /etc/hookgate/hookgate.wasm}"


def replace(text, old, new, config, exactly_once):
    count = text.count(old)
    if count == 0 or (exactly_once and count != 1):
        sys.exit(f"render-envoy: {config}: expected {'one' if exactly_once else 'some'} {old!r}, found {count}")
    return text.replace(old, new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--wasm", default=os.environ.get("HOOKGATE_WASM") or str(ROOT / "hookgate.wasm"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--admin-port", type=int)
    args = parser.parse_args()
    wasm = pathlib.Path(args.wasm).resolve()
    if not wasm.is_file():
        sys.exit(f"render-envoy: {wasm}: no such module (make wasm builds it)")
    text = pathlib.Path(args.config).read_text()
    text = replace(text, SHIPPED_WASM, f"filename: {wasm}}}", args.config, exactly_once=False)
    if args.port:
        text = replace(text, "port_value: 10000}", f"port_value: {args.port}}}", args.config, exactly_once=True)
    if args.admin_port:
        text = replace(text, "port_value: 9901}", f"port_value: {args.admin_port}}}", args.config, exactly_once=True)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
