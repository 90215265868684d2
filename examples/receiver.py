#!/usr/bin/env python3
"""A demo webhook receiver (a customer's CRM) on loopback, with configurable answers.

    examples/receiver.py [--port 18080] [--status 200] [--body '{"ok":true}']
                         [--content-type application/json] [--key SECRET] [--delay 0]
                         [--tls-cert FILE --tls-key FILE]

Every request is printed (method, path, headers, body). The answer is the given status and body;
with --key, the body is {"key": SECRET} (what a receiver answers to verify a webhook). A request
can override the answer for itself with the query string: ?status=500&body=oops&delay=2
With --tls-cert/--tls-key it serves HTTPS and names the SNI it saw in `x-receiver-sni`.
"""
import argparse
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--body", default='{"ok":true}')
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--key", default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--tls-cert", default=None)
    parser.add_argument("--tls-key", default=None)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            print(f"\n--> {self.command} {self.path}", flush=True)
            for name, value in self.headers.items():
                print(f"    {name}: {value}")
            print(f"    {body.decode('utf-8', 'replace')}", flush=True)
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            answer = json.dumps({"key": args.key}) if args.key else args.body
            answer = query.get("body", answer).encode()
            time.sleep(min(float(query.get("delay", args.delay)), 60.0))
            self.send_response(int(query.get("status", args.status)))
            self.send_header("content-type", query.get("content_type", args.content_type))
            sni = getattr(self.connection, "hookgate_sni", None)
            if sni is not None:
                self.send_header("x-receiver-sni", sni)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_PUT = do_GET = do_POST

        def log_message(self, *_):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            # A client that hangs up before the answer (the gateway's route timeout, a
            # slow-receiver example) is ordinary: one line, not a traceback.
            error = sys.exc_info()[1]
            if isinstance(error, (ConnectionError, ssl.SSLError)):
                print(f"<-- client {client_address[0]}:{client_address[1]} hung up before the "
                      f"answer ({type(error).__name__})", flush=True)
                return
            super().handle_error(request, client_address)

    server = Server((args.host, args.port), Handler)
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)

        def remember_sni(sock, server_name, _context):
            sock.hookgate_sni = server_name or ""

        context.sni_callback = remember_sni
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if args.tls_cert else "http"
    print(f"demo receiver on {scheme}://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
