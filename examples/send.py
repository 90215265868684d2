#!/usr/bin/env python3
"""Posts events to the gateway, the way the automation engine does, and prints each exchange
readably: the event sent, then the HTTP status, the x-hookgate-* headers and the envelope.

    examples/send.py [--gateway http://127.0.0.1:10000/] [--test] [--name NAME] [--url URL]
                     [--receiver http://HOST:PORT] [--quiet] [--expect STATUS] EVENT.json...

--test          adds `x-hookgate-test: true` (the answer is the report of what was sent)
--name / --url  replace the webhook's name / URL in the event (every element of an array)
--receiver      where the demo receiver is: webhook URLs on http://127.0.0.1:18080 are moved
                there (the docker-compose rig uses it; other URLs are left alone)
--quiet         do not print the event itself
--expect        the HTTP status expected: a different one is flagged and makes the exit status 2

Python standard library only. Exits 1 when the gateway could not be reached.
"""
import argparse
import http.client
import json
import sys
from urllib.parse import urlsplit

DEMO_RECEIVER = "http://127.0.0.1:18080"


def rewrite(event, args):
    if isinstance(event, list):
        return [rewrite(e, args) for e in event]
    if not isinstance(event, dict) or not isinstance(event.get("webhook"), dict):
        return event
    webhook = dict(event["webhook"])
    if args.name is not None:
        webhook["name"] = args.name
    if args.url is not None:
        webhook["url"] = args.url
    url = webhook.get("url")
    if args.receiver and isinstance(url, str) and url.startswith(DEMO_RECEIVER + "/"):
        webhook["url"] = args.receiver.rstrip("/") + url[len(DEMO_RECEIVER):]
    return {**event, "webhook": webhook}


def pretty(text):
    """JSON indented (a JSON message inside the envelope is shown decoded as well)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    out = json.dumps(value, indent=2, ensure_ascii=False)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        message = value[0].get("message")
        if isinstance(message, str):
            try:
                inner = json.loads(message)
                out += "\n  message, decoded: " + json.dumps(inner, ensure_ascii=False)
            except ValueError:
                pass
    return out


def send(path, args):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        body = json.dumps(rewrite(json.loads(raw), args), ensure_ascii=False).encode()
    except ValueError:
        body = raw  # not JSON: sent as it is (the gateway answers 400)
    gateway = urlsplit(args.gateway)
    headers = {"content-type": "application/json"}
    if args.test:
        headers["x-hookgate-test"] = "true"
    print(f">>> POST {args.gateway}  ({path}{', test request' if args.test else ''})")
    if not args.quiet:
        for line in pretty(body.decode("utf-8", "replace")).splitlines():
            print("    " + line)
    conn = http.client.HTTPConnection(gateway.hostname, gateway.port or 80, timeout=args.timeout)
    try:
        conn.request("POST", gateway.path or "/", body=body, headers=headers)
        reply = conn.getresponse()
        answer = reply.read()
    except OSError as e:
        print(f"<<< gateway unreachable: {e}", flush=True)
        return 1
    finally:
        conn.close()
    flag = ""
    if args.expect is not None:
        flag = "  (as expected)" if reply.status == args.expect else f"  UNEXPECTED: expected {args.expect}"
    print(f"<<< HTTP {reply.status} {reply.reason}{flag}")
    for name, value in reply.getheaders():
        if name.lower().startswith("x-hookgate-") or name.lower() == "retry-after":
            print(f"    {name.lower()}: {value}")
    for line in pretty(answer.decode("utf-8", "replace")).splitlines():
        print("    " + line)
    print(flush=True)
    return 2 if args.expect is not None and reply.status != args.expect else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", nargs="+")
    parser.add_argument("--gateway", default="http://127.0.0.1:10000/")
    parser.add_argument("--test", action="store_true")
    parser.add_argument("--name")
    parser.add_argument("--url")
    parser.add_argument("--receiver")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--expect", type=int)
    args = parser.parse_args()
    return max(send(path, args) for path in args.events)


if __name__ == "__main__":
    sys.exit(main())
