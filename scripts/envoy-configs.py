#!/usr/bin/env python3
"""Writes the Envoy configurations in envoy/ from one template, so they cannot drift apart.

    scripts/envoy-configs.py          rewrite envoy/*.yaml
    scripts/envoy-configs.py --check  exit 1 if a file differs from what this script writes

The destination deny list here is the one Envoy's RBAC enforces on resolved addresses; a test
checks it equals hookgate's own DEFAULT_DENY_CIDRS (src/destination.rs).
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Envoy cannot look inside IPv6 addresses that embed an IPv4 one, so those ranges are refused whole.
DENY_CIDRS = """
0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24
192.0.2.0/24 192.88.99.0/24 192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24
224.0.0.0/4 240.0.0.0/4 255.255.255.255/32
::/128 ::1/128 fc00::/7 fe80::/10 ff00::/8 2001:db8::/32 3fff::/20 100::/64 5f00::/16 2001::/32
::ffff:0:0/96 ::/96 64:ff9b::/96 64:ff9b:1::/48 2002::/16
""".split()

MATCHER = "type.googleapis.com/envoy.extensions.rbac.matchers.upstream_ip_port.v3.UpstreamIpPortMatcher"


def upstream(cidr, port=None, indent=20):
    address, length = cidr.split("/")
    ports = f", upstream_port_range: {{start: {port}, end: {port + 1}}}" if port else ""
    return (
        " " * indent
        + f'- {{matcher: {{name: envoy.rbac.matchers.upstream_ip_port, typed_config: {{"@type": "{MATCHER}", '
        + f'upstream_ip: {{address_prefix: "{address}", prefix_len: {length}}}{ports}}}}}}}'
    )


def permissions(exceptions):
    """Deny every listed range; an exception (cidr, port) is carved out of the whole list."""
    if not exceptions:
        return "\n".join(upstream(c) for c in DENY_CIDRS)
    lines = [" " * 20 + "- and_rules:", " " * 24 + "rules:", " " * 24 + "- or_rules:", " " * 28 + "rules:"]
    lines += [upstream(c, indent=28) for c in DENY_CIDRS]
    for cidr, port in exceptions:
        lines += [" " * 24 + "- not_rule:", " " * 28 + "or_rules:", " " * 30 + "rules:", upstream(cidr, port, indent=30)]
    return "\n".join(lines)


def plugin_config(config):
    text = json.dumps(config, indent=2) if config else "{}"
    return "\n".join(" " * 20 + line for line in text.splitlines())


TEMPLATE = """{header}#
# The engine posts events to :10000. hookgate (wasm) validates and reshapes each event and rewrites
# the request towards the customer's URL; the dynamic forward proxy resolves and connects; the
# destination RBAC refuses resolved addresses that are blocked or local before any connection.
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 9901}}}}
static_resources:
  listeners:
  - name: hookgate
    address: {{socket_address: {{address: 0.0.0.0, port_value: 10000}}}}
    # Twice the filter's caps (max_event_bytes / max_response_bytes, 512 KiB): the filter answers
    # 413 or drops an oversized answer before Envoy's own limit is ever reached.
    per_connection_buffer_limit_bytes: 1048576
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hookgate
          codec_type: AUTO
          request_timeout: 30s
          route_config:
            name: webhooks
            virtual_hosts:
            - name: webhooks
              domains: ["*"]
              routes:
              # Only requests that hookgate rewrote carry x-hookgate-route (it removes any copy the
              # caller sent): the forward proxy is never an open proxy.
              - match: {{prefix: "/", headers: [{{name: x-hookgate-route, string_match: {{exact: https}}}}]}}
                request_headers_to_remove: [x-hookgate-route, x-forwarded-proto]
                route: {{cluster: webhooks_https, timeout: 10s}}
              - match: {{prefix: "/", headers: [{{name: x-hookgate-route, string_match: {{exact: http}}}}]}}
                request_headers_to_remove: [x-hookgate-route, x-forwarded-proto]
                route: {{cluster: webhooks_http, timeout: 10s}}
              - match: {{prefix: "/"}}
                direct_response: {{status: 403}}
          http_filters:
          - name: hookgate
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: hookgate
                root_id: hookgate
                # Pausing on request headers to read the body needs this (ENVOY-FACTS 1).
                allow_on_headers_stop_iteration: true
                # Never fail open: if the VM cannot run, requests are refused, not passed unchecked.
                failure_policy: FAIL_CLOSED
                vm_config:
                  vm_id: hookgate
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: hookgate.wasm}}}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{plugin_config}
          - name: envoy.filters.http.dynamic_forward_proxy
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig
              dns_cache_config: &dns_cache
                name: webhooks
                dns_lookup_family: V4_ONLY
                max_hosts: 1024
              # The destination RBAC below reads the resolved address from here.
              save_upstream_address: true
          # Refuses a resolved address that is blocked or local, before any connection to it.
          # Same list as hookgate's DEFAULT_DENY_CIDRS (a test fails when they drift apart).
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: DENY
                policies:
                  blocked-destinations:
                    principals: [{{any: true}}]
                    permissions:
{destination_permissions}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              # No x-envoy-* headers towards the customer.
              suppress_envoy_headers: true
  clusters:
  - name: webhooks_http
    connect_timeout: 5s
    lb_policy: CLUSTER_PROVIDED
    per_connection_buffer_limit_bytes: 1048576
    cluster_type:
      name: envoy.clusters.dynamic_forward_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig
        dns_cache_config: *dns_cache
  - name: webhooks_https
    connect_timeout: 5s
    lb_policy: CLUSTER_PROVIDED
    per_connection_buffer_limit_bytes: 1048576
    cluster_type:
      name: envoy.clusters.dynamic_forward_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig
        dns_cache_config: *dns_cache
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        # SNI and certificate name from the webhook's host.
        upstream_http_protocol_options: {{auto_sni: true, auto_san_validation: true}}
        explicit_http_config: {{http_protocol_options: {{}}}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context:
            trusted_ca: {{filename: /etc/ssl/certs/ca-certificates.crt}}
"""

CONFIGS = {
    "envoy/envoy.yaml": dict(
        header="# hookgate: production-default Envoy configuration (Envoy 1.40.0).\n"
        "# Run from the repository root after `make wasm`:  envoy -c envoy/envoy.yaml\n"
        "# Generated by scripts/envoy-configs.py: edit the script, not this file.\n",
        plugin={},
        exceptions=[],
    ),
    "envoy/run.yaml": dict(
        header="# hookgate for `make run`: the production configuration plus one exception, the\n"
        "# bundled demo receiver on 127.0.0.1:18080 (examples/receiver.py).\n"
        "# Generated by scripts/envoy-configs.py: edit the script, not this file.\n",
        plugin={
            "destination": {"allow": [{"cidr": "127.0.0.1/32", "port": 18080}]},
            "limit": {"keys": {"LeadCalled3": "demo-key"}},
        },
        exceptions=[("127.0.0.1/32", 18080)],
    ),
}


def render(spec):
    return TEMPLATE.format(
        header=spec["header"],
        plugin_config=plugin_config(spec["plugin"]),
        destination_permissions=permissions(spec["exceptions"]),
    )


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for path, spec in CONFIGS.items():
        text = render(spec)
        target = ROOT / path
        if check:
            if not target.exists() or target.read_text() != text:
                stale.append(path)
        else:
            target.write_text(text)
    if stale:
        print("out of date (run scripts/envoy-configs.py):", " ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
