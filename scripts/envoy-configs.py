#!/usr/bin/env python3
"""Writes the Envoy configurations in envoy/ from one template, so they cannot drift apart.

    scripts/envoy-configs.py          rewrite envoy/*.yaml
    scripts/envoy-configs.py --check  exit 1 if a file differs from what this script writes

The destination deny list here is the one Envoy's RBAC enforces on resolved addresses; a test
checks it equals hookgate's own default list (src/destination/ranges.rs).
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The default deny list of src/destination/ranges.rs, where each range's reason and source are
# (a test checks the two agree). Envoy cannot look inside IPv6 addresses that embed an IPv4 one,
# so those ranges are refused whole; ::/3, 4000::/2 and 8000::/1 are everything outside IPv6
# global unicast (2000::/3).
DENY_CIDRS = """
0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24
192.0.2.0/24 192.88.99.0/24 192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24
224.0.0.0/4 240.0.0.0/4 255.255.255.255/32 168.63.129.16/32
::/128 ::1/128 ::ffff:0:0/96 ::ffff:0:0:0/96 ::/96 64:ff9b::/96 64:ff9b:1::/48 100::/64 ::/3
2001::/23 2001::/32 2001:db8::/32 2002::/16 3fff::/20 4000::/2 5f00::/16 8000::/1
fc00::/7 fe80::/10 fec0::/10 ff00::/8
""".split()

# Source networks allowed to post events (Envoy's RBAC on the downstream peer address, before
# hookgate). Loopback only by default: widen it here for the engine's network, then regenerate.
CALLER_CIDRS = ["127.0.0.0/8", "::1/128"]

# hookgate's envelopes (src/envelope.rs) for the replies Envoy makes itself: 21111011 (a test
# compares it with what hookgate answers a caller with a wrong token) and 11110111.
QUERY_ERROR_ENVELOPE = '[{"status":false,"message":"Error during query execution","code":21111011}]'
REQUEST_FAILED_ENVELOPE = '[{"status":false,"message":"The request failed","code":11110111}]'

# Where every shipped configuration loads the module from: an absolute path, so Envoy may start
# in any directory. Envoy's YAML has no variables: scripts/render-envoy.py writes a copy with
# another path (make run, make demo, make fleet use this checkout's hookgate.wasm), and the
# container rigs mount the module here (docs/deploy.md).
WASM_PATH = "/etc/hookgate/hookgate.wasm"

# The request headers the local-reply mappers read are pseudo-headers of hookgate's own, which no
# caller can send (HTTP/1 has no syntax for them, HTTP/2 refuses pseudo-headers it does not define),
# so nothing a caller sends steers a mapper (tests/answers.rs). hookgate sets the first when it
# answers itself; the second is never set, so `%REQ(...)%` of it is empty (see mapper()).
REPLIED_MARKER = ":hookgate-replied"
UNSET_HEADER = ":hookgate-unset"

MATCHER = "type.googleapis.com/envoy.extensions.rbac.matchers.upstream_ip_port.v3.UpstreamIpPortMatcher"


def upstream(cidr, port=None):
    """One upstream_ip_port matcher, as a flow mapping. Envoy's port range is inclusive at both
    ends (measured: {start: 18080, end: 18081} lets 18081 through), so one port is start == end."""
    address, length = cidr.split("/")
    ports = f", upstream_port_range: {{start: {port}, end: {port}}}" if port else ""
    return (
        f'{{matcher: {{name: envoy.rbac.matchers.upstream_ip_port, typed_config: {{"@type": "{MATCHER}", '
        + f'upstream_ip: {{address_prefix: "{address}", prefix_len: {length}}}{ports}}}}}}}'
    )


def destination_permissions(exceptions, indent=24):
    """and(any deny range, not exception 1, not exception 2, ...): an exception (cidr, port) is
    carved out of the whole list and widens nothing else. Always this shape, so tests (and
    operators) add an exception by appending one `not_rule` to `and_rules.rules`."""
    pad = " " * indent
    lines = [pad + "- and_rules:", pad + "    rules:", pad + "    - or_rules:", pad + "        rules:"]
    lines += [pad + "        - " + upstream(c) for c in DENY_CIDRS]
    lines += [pad + "    - not_rule: " + upstream(cidr, port) for cidr, port in exceptions]
    return "\n".join(lines)


def caller_rbac(principals=None):
    """The caller RBAC filter: its policy `refused-callers` refuses `principals` (every source
    outside CALLER_CIDRS by default); the first local-reply mapper answers its 403."""
    if principals is None:
        principals = "principals:\n" + "\n".join([
            " " * 20 + "- not_id:",
            " " * 24 + "or_ids:",
            " " * 26 + "ids:",
            caller_principals(),
        ])
    return "\n".join([
        "          - name: envoy.filters.http.rbac",
        "            typed_config:",
        '              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC',
        "              rules:",
        "                action: DENY",
        "                policies:",
        "                  refused-callers:",
        "                    permissions: [{any: true}]",
        "                    " + principals,
    ])


def caller_list(indent, item):
    """CALLER_CIDRS as a YAML list, each CIDR written by `item` (a format of a flow mapping)."""
    lines = []
    for cidr in CALLER_CIDRS:
        address, length = cidr.split("/")
        lines.append(" " * indent + "- " + item.format(f'{{address_prefix: "{address}", prefix_len: {length}}}'))
    return "\n".join(lines)


def caller_principals(indent=26):
    return caller_list(indent, "direct_remote_ip: {}")


def mapper(comment, expression, delivered, detail, envelope, status=None):
    """One local-reply mapper: Envoy's own replies, rewritten into the documented envelope.
    `delivered` is written behind an empty request-header operator so that no YAML 1.1 reader
    (yaml-cpp in Envoy, after a re-serialisation) turns "no" into a boolean; raw_value is ignored
    by local reply mappers (measured)."""
    pad = " " * 12
    lines = [pad + "# " + line for line in comment]
    lines += [
        pad + "- filter:",
        pad + "    extension_filter:",
        pad + "      name: envoy.access_loggers.extension_filters.cel",
        pad + "      typed_config:",
        pad + '        "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter',
        pad + f"        expression: {json.dumps(expression)}",
    ]
    if status:
        lines.append(pad + f"  status_code: {status}")
    lines += [
        pad + "  headers_to_add:",
        pad + f'  - header: {{key: x-hookgate-delivered, value: "%REQ({UNSET_HEADER})%{delivered}"}}',
        pad + "    append_action: OVERWRITE_IF_EXISTS_OR_ADD",
        pad + f'  - header: {{key: x-hookgate-detail, value: "{detail}"}}',
        pad + "    append_action: OVERWRITE_IF_EXISTS_OR_ADD",
        pad + f"  body: {{inline_string: '{envelope}'}}",
        pad + "  body_format_override:",
        pad + '    text_format_source: {inline_string: "%LOCAL_REPLY_BODY%"}',
        pad + "    content_type: application/json",
    ]
    return "\n".join(lines)


# Envoy's code_details for the timeouts that cut the engine's own request (request_headers_timeout,
# request_timeout, stream_idle_timeout). hookgate's Failure::EventTimeout writes the same answer.
ENGINE_TIMEOUT_DETAILS = ["request_header_timeout", "request_overall_timeout", "stream_idle_timeout"]


def engine_timeout_mapper():
    return mapper(
        ["The engine's request cut by one of its timeouts before any receiver was picked (no",
         "upstream address): headers or body too slow, or stalled. Nothing was sent: 408, and",
         "the engine may resend. (A body hookgate was reading gets the same answer from hookgate.)"],
        f"response.code_details in {ENGINE_TIMEOUT_DETAILS!r} && !has(upstream.address)",
        "no", "event not received in time: %RESPONSE_CODE_DETAILS%", QUERY_ERROR_ENVELOPE, status=408,
    )


def local_reply_mappers():
    pad = " " * 12
    return "\n".join([
        pad + "# hookgate's own replies (it marks the engine's request before answering): left as they",
        pad + "# are, without evaluating the CEL filters below (about 7 us a reply). Replies of Envoy's",
        pad + "# after hookgate saw the request pass through hookgate, which writes the envelope. No",
        pad + "# caller can send the marker (a pseudo-header): the mappers below see every other reply.",
        pad + "- filter:",
        pad + "    header_filter:",
        pad + f'      header: {{name: "{REPLIED_MARKER}", present_match: true}}',
        mapper(
            ["A caller from a refused network (the caller RBAC before hookgate)."],
            "response.code_details == 'rbac_access_denied_matched_policy[refused-callers]'",
            "no", "caller refused: source network not allowed", QUERY_ERROR_ENVELOPE, status=403,
        ),
        engine_timeout_mapper(),
        mapper(
            ["After the receiver's headers reached hookgate, an answer cut by a reset or the route",
             "timeout is answered by Envoy directly, past every filter: unknown outcome, the",
             "webhook may have arrived."],
            "response.code_details.startsWith('upstream_reset_after_response_started') || "
            "response.code_details in ['response_timeout', 'stream_idle_timeout', 'request_overall_timeout']",
            "unknown", "no complete answer from receiver: %RESPONSE_CODE_DETAILS%", REQUEST_FAILED_ENVELOPE,
            status=504,
        ),
        mapper(
            ["Any other reply of Envoy's own (a request refused before any filter ran: malformed,",
             "headers too large, `OPTIONS *`): nothing sent. hookgate's own replies carry no",
             "code_details and are left as they are."],
            "response.code_details != ''",
            "no", "refused by Envoy: %RESPONSE_CODE_DETAILS%", QUERY_ERROR_ENVELOPE,
        ),
    ])


# hookgate's metrics (src/filter/metrics.rs) carry their labels in their names as
# `.<label>.<value>` pairs; these tag extractors make them Prometheus labels:
# wasmcustom.hookgate.outcomes.plan.free.outcome.delivered.code.1 is exported as
# hookgate_outcomes{plan="free",outcome="delivered",code="1"}. Each regex's first group is cut
# from the name, its second is the label's value.
STATS_TAGS = [
    ("plan", r"^wasmcustom\.hookgate\.\w+(\.plan\.([^.]+))"),
    ("outcome", r"^wasmcustom\.hookgate\.outcomes\.plan\.[^.]+(\.outcome\.([^.]+))"),
    ("code", r"^wasmcustom\.hookgate\.outcomes\..*(\.code\.([0-9]+))$"),
    ("class", r"^wasmcustom\.hookgate\.receiver_answers\..*(\.class\.([1-5]xx))$"),
]


def stats_config():
    lines = [
        "# Labels for hookgate's metrics on /stats/prometheus (docs/metrics.md).",
        "stats_config:",
        "  stats_tags:",
    ]
    lines += [f"  - {{tag_name: {name}, regex: {json.dumps(regex)}}}" for name, regex in STATS_TAGS]
    return "\n".join(lines)


def access_log_reasons():
    """Why, for every answer, Envoy's own refusals included (hookgate's record is empty when
    Envoy answered before hookgate read the event): Envoy's code_details, the detail header
    hookgate or a local-reply mapper wrote, the connection's peer address (never what a caller
    claims in X-Forwarded-For) and the request id. Nothing of the
    event (email, phone, variables) nor of the URL's path or query."""
    pad = " " * 18
    fields = [
        ("reason", "%RESPONSE_CODE_DETAILS%"),
        ("detail", "%RESP(x-hookgate-detail)%"),
        ("source", "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"),
        ("request_id", "%FILTER_STATE(hookgate.request_id:PLAIN)%"),
    ]
    return "\n".join(f'{pad}{name}: "{value}"' for name, value in fields)


def request_id_filter():
    """The request id (the engine's x-request-id, or the one Envoy made) kept for the access
    log before anything runs: hookgate replaces every request header once it rewrote the event,
    the id included (it never reaches the receiver)."""
    pad = " " * 10
    return "\n".join(pad + line for line in [
        "# The request id for the access log (hookgate removes the header with the others).",
        "- name: envoy.filters.http.set_filter_state",
        "  typed_config:",
        '    "@type": type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config',
        "    on_request_headers:",
        "    - object_key: hookgate.request_id",
        "      factory_key: envoy.string",
        '      format_string: {text_format_source: {inline_string: "%REQ(x-request-id)%"}}',
    ])


# The support listener (docs/support.md): loopback only, its own port.
SUPPORT_ADDRESS, SUPPORT_PORT = "127.0.0.1", 9902


def support_filter(hookgate_filter, config):
    """The engine's hookgate filter block as rendered, renamed and with the support plugin
    configuration: the same vm_id and module whatever the template says, so the same VM and the
    same limit state."""
    head, _ = hookgate_filter.split("value: |\n")
    head = head.replace("- name: hookgate\n", "- name: hookgate-support\n", 1)
    head = head.replace("    name: hookgate\n", "    name: hookgate-support\n", 1)
    return head + "value: |\n" + plugin_config(config)


def filter_block(text, name):
    """The http filter `name` in rendered text: its first line and every deeper-indented line."""
    first = f"          - name: {name}\n"
    start = text.index(first)
    lines = text[start:].splitlines(keepends=True)
    block = [lines[0]]
    for line in lines[1:]:
        if len(line) - len(line.lstrip(" ")) <= 10:
            break
        block.append(line)
    return "".join(block).rstrip("\n")


def support_listener(hookgate_filter, support):
    """The support listener: a hookgate filter with `"role": "support"` in the same vm_id as the
    engine's (so the same limit state), answering every request itself; the route behind it
    answers 404 and reaches nothing. `support` is its plugin configuration without the role."""
    config = {"role": "support", **support}
    return f"""  # Support operations (docs/support.md): look up and lift one webhook's limit, with a token
  # that names who asked. Loopback only; no token configured means every request is refused.
  - name: hookgate-support
    address: {{socket_address: {{address: {SUPPORT_ADDRESS}, port_value: {SUPPORT_PORT}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hookgate-support
          # A support request is small and quick: bounded as the engine's are.
          request_headers_timeout: 10s
          request_timeout: 30s
          common_http_protocol_options: {{idle_timeout: 300s, max_connection_duration: 3600s}}
          # One line per request: who asked (token name), what, and what changed.
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                json_format:
                  time: "%START_TIME%"
                  status: "%RESPONSE_CODE%"
                  listener: support
                  source: "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"
                  hookgate: "%FILTER_STATE(wasm.hookgate:PLAIN)%"
          route_config:
            name: support
            virtual_hosts:
            - name: support
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 404}}
          http_filters:
          # The engine's hookgate filter, copied: the same vm_id and module (the same VM, the same
          # limit state), with the support plugin configuration.
{support_filter(hookgate_filter, config)}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""



# Bounds on every engine connection and request; docs/operations.md says how to size them.
ENGINE_TIMEOUTS = """\
          # Bounds on every engine connection and request (docs/operations.md sizes them):
          # - request_headers_timeout: an engine writes its headers at once; a client that trickles
          #   them (slowloris) is answered 408 and closed. Callers are refused only once headers
          #   arrive, so this also bounds how long an unknown peer holds a connection with a request.
          # - request_timeout: the whole event, headers and body (at most max_event_bytes).
          # - stream_idle_timeout: no byte either way on one request (a stalled body). Longer than
          #   the route timeout (10 s) plus hookgate's calls to etcd, so a request waiting for its
          #   receiver is never cut by it.
          # - idle_timeout: a kept-alive connection with no request is closed after 5 minutes,
          #   longer than common client pools keep an idle connection (Go: 90 s), so the engine
          #   closes its idle connections first and never sends an event on one Envoy is closing.
          # - max_connection_duration: no connection lives longer than an hour (Envoy closes it
          #   after the request in flight), so a long-lived pool still moves to new Envoys.
          request_headers_timeout: 10s
          request_timeout: 30s
          stream_idle_timeout: 30s
          common_http_protocol_options: {idle_timeout: 300s, max_connection_duration: 3600s}"""

# Connections from other networks: at most this many at once (more are closed on accept).
REFUSED_MAX_CONNECTIONS = 100

# The heap Envoy may use before the overload actions below start (tcmalloc's count of the bytes
# Envoy allocated): 1 GiB, for an Envoy given 1.5 GiB of memory (docs/operations.md).
MAX_HEAP_BYTES = 1 << 30

OVERLOAD_MANAGER = f"""\
# What the whole Envoy may hold (docs/operations.md sizes it):
# - at most 10000 downstream connections (Envoy warns when there is no such limit); past it new
#   connections are closed on accept. Each may buffer up to 1 MiB (the listener's limit below), so
#   the worst case is far over any heap: the heap actions below are the bound on memory.
# - from 80 % of the heap, idle engine connections get ever shorter idle timeouts (1 s at 95 %);
#   at 90 % tcmalloc returns free memory to the system; at 95 % every new request is refused
#   (503, 21111011, nothing sent: the engine may resend later); at 98 % listeners stop accepting.
overload_manager:
  refresh_interval: 0.25s
  resource_monitors:
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: 10000
  - name: envoy.resource_monitors.fixed_heap
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
      max_heap_size_bytes: {MAX_HEAP_BYTES}
  actions:
  - name: envoy.overload_actions.reduce_timeouts
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      scaled: {{scaling_threshold: 0.80, saturation_threshold: 0.95}}
    typed_config:
      "@type": type.googleapis.com/envoy.config.overload.v3.ScaleTimersOverloadActionConfig
      timer_scale_factors:
      - {{timer: HTTP_DOWNSTREAM_CONNECTION_IDLE, min_timeout: 1s}}
  - name: envoy.overload_actions.shrink_heap
    triggers:
    - {{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.90}}}}
  - name: envoy.overload_actions.stop_accepting_requests
    triggers:
    - {{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.95}}}}
  - name: envoy.overload_actions.stop_accepting_connections
    triggers:
    - {{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.98}}}}
"""


def caller_ranges(indent=8):
    return caller_list(indent, "{}")


def refused_chain():
    """The listener's default chain: every source outside CALLER_CIDRS. The same answer as the
    caller RBAC gives (403, the 21111011 envelope) to a caller that sends a request, but few
    connections and short timeouts, so that peers from other networks (idle, or trickling
    headers) can never hold the connections the engine needs."""
    return f"""\
    # Every other source network: the same refusal (403 and the 21111011 envelope, from the same
    # caller RBAC policy and local-reply mappers), but at most {REFUSED_MAX_CONNECTIONS} connections at once (more are
    # closed on accept), closed after 2 s without a request or 2 s of headers.
    default_filter_chain:
      filters:
      - name: envoy.filters.network.connection_limit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit
          stat_prefix: refused_callers
          max_connections: {REFUSED_MAX_CONNECTIONS}
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: refused_callers
          codec_type: AUTO
          request_headers_timeout: 2s
          request_timeout: 5s
          common_http_protocol_options: {{idle_timeout: 2s, max_connection_duration: 10s}}
          local_reply_config:
            mappers:
{local_reply_mappers()}
          route_config:
            name: refused
            virtual_hosts:
            - name: refused
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 403}}
          http_filters:
{caller_rbac("principals: [{any: true}]")}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"""


def plugin_config(config):
    text = json.dumps(config, indent=2) if config else "{}"
    return "\n".join(" " * 20 + line for line in text.splitlines())


TEMPLATE = """{header}#
# The engine posts events to :10000. Envoy's RBAC first refuses callers from other networks; hookgate
# (wasm) validates and reshapes each event and rewrites the request towards the customer's URL;
# the dynamic forward proxy resolves the host into a sub-cluster with one host per resolved
# address; the router's upstream RBAC refuses the very host it is about to connect to when its
# address is blocked. Design, deny list and residual risks: docs/security.md.
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 9901}}}}
{overload_manager}{stats_config}
static_resources:
  listeners:
  - name: hookgate
    address: {{socket_address: {{address: 0.0.0.0, port_value: 10000}}}}
    # Bounds what Envoy buffers for one engine stream: twice the event cap (max_event_bytes,
    # 512 KiB), so the filter answers 413 before Envoy's own limit is reached. The receiver's
    # answer is moved out of Envoy's buffer chunk by chunk; the cluster's smaller limit below
    # keeps every chunk well under this one.
    per_connection_buffer_limit_bytes: 1048576
    # The engine's networks (the same list as the caller RBAC below) get this chain; every other
    # source gets the default chain at the end of this listener, whose own small connection limit
    # and short timeouts keep it from holding the connections the engine needs.
    filter_chains:
    - filter_chain_match:
        source_prefix_ranges:
{caller_ranges}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hookgate
          codec_type: AUTO
{engine_timeouts}
          # One line per engine request with hookgate's decision record (webhook name, host,
          # outcome, code; never the event's personal data, nor the URL's path or query). Envoy
          # buffers access logs and writes them off the worker threads (every
          # --file-flush-interval-msec, 10 s by default, or per 64 KiB); a line per request in
          # Envoy's own log would be a synchronous write on the worker.
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                json_format:
                  time: "%START_TIME%"
                  status: "%RESPONSE_CODE%"
                  duration_ms: "%DURATION%"
{access_log_reasons}
                  hookgate: "%FILTER_STATE(wasm.hookgate:PLAIN)%"
          # Envoy closes an HTTP/1.1 connection after any 400 local reply unless this is set:
          # hookgate's 400 refusals (bad name, bad event) come once the whole request was read, so
          # the engine's connection stays open for the next event. Malformed HTTP still closes it
          # (codec errors close the connection whatever this says: tests/core.rs).
          http_protocol_options: {{override_stream_error_on_invalid_http_message: true}}
          # A caller refused by the RBAC filter below gets hookgate's 21111011 envelope.
          local_reply_config:
            mappers:
{local_reply_mappers}
          route_config:
            name: webhooks
            virtual_hosts:
            - name: webhooks
              domains: ["*"]
              routes:
              # Only requests that hookgate rewrote carry x-hookgate-route (it removes any copy the
              # caller sent): the forward proxy is never an open proxy. Both schemes go to the one
              # forward-proxy cluster; the transport (TLS or not) is chosen per request below.
              # Retries only of what provably never reached the receiver: the connection
              # failed (refused, unreachable, connect timeout), the stream was refused
              # (REFUSED_STREAM), or it was reset before the request was sent. Never `5xx`,
              # `reset`, `gateway-error` nor a request timeout: the receiver may have acted on
              # those. Another address of the name first (previous_hosts), jittered backoff, the
              # route timeout bounds the whole; every try passes the upstream RBAC again. hookgate
              # sees only the last try's answer: the hourly slot is taken once, and
              # x-hookgate-delivered describes that answer (tests/signing.rs).
              - match: {{prefix: "/", headers: [{{name: x-hookgate-route, string_match: {{safe_regex: {{regex: "https?"}}}}}}]}}
                request_headers_to_remove: [x-hookgate-route, x-forwarded-proto]
                route:
                  cluster: webhooks
                  timeout: 10s
                  retry_policy:
                    retry_on: connect-failure,refused-stream,reset-before-request
                    num_retries: 2
                    retry_back_off: {{base_interval: 0.1s, max_interval: 1s}}
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config: {{"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}
                    host_selection_retry_max_attempts: 3
              - match: {{prefix: "/"}}
                direct_response: {{status: 403}}
          http_filters:
{request_id_filter}
          # Who may post events: the peer address of the connection (not X-Forwarded-For), before
          # hookgate reads anything. A refused caller gets 403 (hookgate turns it into the
          # 21111011 envelope) and nothing is sent.
          # Its 403 never passes through hookgate (a local reply only goes through the filters
          # before the one that sent it), so the local reply mapper above writes the envelope.
{caller_rbac}
          - name: hookgate
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: hookgate
                root_id: hookgate
                # Pausing on request headers to read the body needs this: without it Envoy never
                # calls the body callback and the request hangs.
                allow_on_headers_stop_iteration: true
                # Never fail open: if the VM cannot run, requests are refused, not passed unchecked.
                failure_policy: FAIL_CLOSED
                vm_config:
                  vm_id: hookgate
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm_path}}}}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{plugin_config}
          # The scheme hookgate chose, for the cluster's transport socket matcher: "http" selects
          # plain TCP, anything else (or nothing) the default, TLS. Shared with the upstream
          # connection and hashable, so it is part of the connection pool key: a plaintext
          # connection is never reused for an https webhook, nor the other way round. (With
          # `envoy.string`, which is not hashable, a kept-alive plaintext connection carried the
          # next https webhook: measured, see tests/destination.rs.)
          - name: envoy.filters.http.set_filter_state
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config
              on_request_headers:
              - object_key: hookgate.transport
                factory_key: envoy.hashable_string
                format_string: {{text_format_source: {{inline_string: "%REQ(x-hookgate-route)%"}}}}
                shared_with_upstream: ONCE
          # Sub-cluster mode: each host:port becomes a STRICT_DNS cluster whose hosts are the
          # resolved addresses, one host each, so no connection attempt fails over from an allowed
          # address to a blocked one (the logical-host trap). No save_upstream_address: only the
          # upstream RBAC below is the control.
          - name: envoy.filters.http.dynamic_forward_proxy
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig
              sub_cluster_config: {{cluster_init_timeout: 5s}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              # No x-envoy-* headers towards the customer.
              suppress_envoy_headers: true
              upstream_http_filters:
              # Refuses the host the load balancer picked, before any connection to it, when its
              # address is blocked. Same list as hookgate's default deny list (a test fails when
              # they drift apart); exceptions are `not_rule`s after the list.
              - name: envoy.filters.http.upstream_rbac
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
                  rules:
                    action: DENY
                    policies:
                      blocked-destinations:
                        principals: [{{any: true}}]
                        permissions:
{destination_permissions}
              - name: envoy.filters.http.upstream_codec
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
{refused_chain}
  clusters:
  # The one forward-proxy cluster. Its sub-clusters ("DFPCluster:<host>:<port>") are copies of it,
  # so every DNS and transport option is set here. One parent only: Envoy names sub-clusters by
  # host:port alone, and a second parent (say, one per scheme) would replace the other's
  # sub-cluster for the same host:port, sending https webhooks in plaintext.
  # No health checks and no preconnect: they would open connections no request (and so no
  # upstream RBAC) asked for.
  - name: webhooks
    # Three tries (the route's retry policy) of 3 s each plus backoff stay under the route's 10 s:
    # a receiver that never answers the connection (a dropped SYN) is still "never sent" (502,
    # its slot given back), not a route timeout's "unknown" (measured: 5 s gave 504 unknown).
    connect_timeout: 3s
    lb_policy: CLUSTER_PROVIDED
    # Bounds one read from a receiver (Envoy stops reading past it), so one chunk of an answer
    # can never fill the engine stream's 1 MiB by itself. At 1 MiB here, a fast receiver's
    # oversized answer sometimes arrived as one chunk over the limit and Envoy answered a bare
    # 500 response_payload_too_large (tests/core.rs, measured under load: 6 of 8 runs).
    per_connection_buffer_limit_bytes: 262144
    # IPv4 only: no IPv6 address is ever connected to (IPv6 literals and AAAA-only names fail as
    # DNS failures). See docs/security.md before changing it.
    dns_lookup_family: V4_ONLY
    cluster_type:
      name: envoy.clusters.dynamic_forward_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig
        sub_clusters_config: {{lb_policy: ROUND_ROBIN, max_sub_clusters: 1024, sub_cluster_ttl: 300s}}
    # Per sub-cluster (one per customer host:port). These are Envoy's defaults, written out so the
    # bound is visible: past it Envoy answers 503 (overflow), which hookgate reports as 502, never
    # sent (the webhook did not leave and its hourly slot is given back).
    circuit_breakers:
      thresholds:
      - {{max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3}}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        # SNI and certificate name from the webhook's host (ignored by plain TCP).
        upstream_http_protocol_options: {{auto_sni: true, auto_san_validation: true}}
        explicit_http_config: {{http_protocol_options: {{}}}}
    # The default transport is TLS; only the scheme hookgate marked "http" gets plain TCP.
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context:
            trusted_ca: {{filename: /etc/ssl/certs/ca-certificates.crt}}
    transport_socket_matches:
    # Chosen by name only (the matcher below). Its `match` names endpoint metadata that no
    # forward-proxy host ever has: an empty `match` would match every host and make plaintext
    # the transport of every webhook, https included (measured).
    - name: plaintext
      match: {{hookgate-never-matches-endpoint-metadata: true}}
      transport_socket:
        name: envoy.transport_sockets.raw_buffer
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer
    transport_socket_matcher:
      matcher_tree:
        input:
          name: envoy.matching.inputs.transport_socket_filter_state
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.matching.common_inputs.transport_socket.v3.FilterStateInput
            key: hookgate.transport
        exact_match_map:
          map:
            http:
              action:
                name: envoy.matching.action.transport_socket.name
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.matching.common_inputs.transport_socket.v3.TransportSocketNameAction
                  name: plaintext
"""

# etcd's client port for hookgate's state; `endpoints` are the members' (host, port), `tls`
# the transport socket block ("" for plain HTTP, as `make fleet` uses on loopback).
ETCD_CLUSTER = """  # etcd's client port, for hookgate's state (its v3 JSON gateway over HTTP/1.1). Every member
  # is an endpoint; hookgate retries a failed call (up to 3 times) (every write is a compare-and-swap,
  # so a retry never counts twice). Calls to etcd never go through the forward proxy or its
  # destination policy.
  - name: etcd
    connect_timeout: 1s
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: etcd
      endpoints:
      - lb_endpoints:
{endpoints}    # Active health check: is the member up and serving? `GET /version` every second, over the
    # cluster's transport and HTTP/1.1 (on etcd's port HTTP/2 is gRPC). Not `/health`: etcd 3.4's
    # /health is the cluster's health (a leader and a quorum read), so it fails on every member at
    # once during a leader election (measured: 503 on the remaining members right after the leader
    # stopped), putting the cluster in panic mode with the stopped member back in it; etcd 3.4
    # ignores /health?serializable=true. A member that cannot reach a quorum fails its calls,
    # which outlier detection below sets aside. One failed check sets a member aside, two passed
    # ones bring it back. no_traffic_interval (Envoy's interval before the cluster's first
    # connection, default 60 s) is 1 s too, so a member that stops before the first send is set
    # aside as well.
    health_checks:
    - timeout: 5s
      interval: 1s
      no_traffic_interval: 1s
      unhealthy_threshold: 1
      healthy_threshold: 2
      http_health_check: {{path: /version}}
    # Outlier detection as well: a member that refuses or drops a connection between two checks is
    # set aside at once (for 30 s, longer each time it happens again).
    outlier_detection:
      split_external_local_origin_errors: true
      consecutive_local_origin_failure: 1
      enforcing_consecutive_local_origin_failure: 100
      interval: 1s
      base_ejection_time: 30s
      max_ejection_percent: 67
{tls}"""

ETCD_MTLS = """    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificates:
          - certificate_chain: {filename: /etc/hookgate/etcd/client.crt}
            private_key: {filename: /etc/hookgate/etcd/client.key}
          validation_context:
            trusted_ca: {filename: /etc/hookgate/etcd/ca.crt}
"""


def etcd_cluster(endpoints, tls):
    lines = "".join(
        f"        - endpoint: {{address: {{socket_address: {{address: {host}, port_value: {port}}}}}}}\n"
        for host, port in endpoints
    )
    return ETCD_CLUSTER.format(endpoints=lines, tls=tls)


CONFIGS = {
    "envoy/envoy.yaml": dict(
        header="# hookgate: production-default Envoy configuration (Envoy 1.40.0).\n"
        "# Loads the module from /etc/hookgate/hookgate.wasm (docs/deploy.md):  envoy -c envoy/envoy.yaml\n"
        "# Generated by scripts/envoy-configs.py: edit the script, not this file.\n",
        plugin={},
        exceptions=[],
        support={"tokens": []},
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
        # A demo token for `make run`; never reuse it.
        support={"tokens": [{"name": "demo", "token": "demo-support-token"}]},
    ),
    # Two policies side by side in one Envoy, chosen by Envoy alone: the listener the engine posts
    # to. Both filters share one VM (vm_id hookgate); `limit.namespace` keeps their states apart.
    "envoy/plans.yaml": dict(
        header="# hookgate with two plans in one Envoy: the free plan on :10000 (one webhook an hour\n"
        "# until verified), the paid plan on :10001 (sixty). Chosen by listener; not by route, since\n"
        "# hookgate's rewrite makes Envoy pick the route again from the customer's URL.\n"
        "# Generated by scripts/envoy-configs.py: edit the script, not this file.\n",
        plugin={"limit": {"namespace": "free", "unverified_per_hour": 1}},
        exceptions=[],
        listeners=[("hookgate-paid", 10001, {"limit": {"namespace": "paid", "unverified_per_hour": 60}})],
    ),
    # A fleet of Envoys sharing one limit and one verification state in etcd (docs/fleet.md):
    # hookgate reaches a three-member etcd over mTLS through the `etcd` cluster below.
    "envoy/fleet.yaml": dict(
        header="# hookgate for a fleet of Envoys: the limit and verification state in a three-member etcd\n"
        "# (docs/fleet.md), reached over mTLS. Certificates in /etc/hookgate/etcd/ (ca.crt, client.crt,\n"
        "# client.key); members etcd-0/1/2.etcd:2379. Production otherwise.\n"
        "# Generated by scripts/envoy-configs.py: edit the script, not this file.\n",
        plugin={
            "state": {"backend": "etcd", "cluster": "etcd", "timeout_ms": 500, "prefix": "hookgate", "on_failure": "deny"},
        },
        exceptions=[],
        support={"tokens": []},
        extra_clusters=etcd_cluster([(f"etcd-{i}.etcd", 2379) for i in range(3)], ETCD_MTLS),
    ),
    # Plain Kubernetes (docs/deploy.md): production, events accepted from the pod network.
    "examples/kubernetes/plain/configmap.yaml": dict(
        header="# hookgate's Envoy configuration in Kubernetes (examples/kubernetes/plain/deployment.yaml mounts\n"
        "# it at /etc/hookgate/config). Production defaults; the engine may post from the pod network.\n",
        plugin={"max_event_bytes": 524288, "limit": {"unverified_per_hour": 1, "max_tracked": 10000}},
        exceptions=[],
        # The cluster's pod network, where the engine runs: adjust to yours.
        callers=["10.0.0.0/8", "127.0.0.0/8"],
        support={"tokens": []},
        configmap=(
            "# Generated by scripts/envoy-configs.py: edit the script, not this file.\n",
            "hookgate-envoy",
            "hookgate",
        ),
    ),
    # `make fleet` (scripts/fleet.sh): envoy/run.yaml's demo receiver and key, the state in one
    # etcd on 127.0.0.1:2379 over plain HTTP: the quickest fleet to try (envoy/fleet-local.yaml,
    # below, is the documented three-member mTLS setup on one machine).
    "envoy/fleet-run.yaml": dict(
        header="# hookgate for `make fleet`: two Envoys on one machine sharing the limit through one etcd on\n"
        "# 127.0.0.1:2379 (plain HTTP, loopback only: no mTLS), and the demo receiver's exception\n"
        "# (127.0.0.1:18080) as in envoy/run.yaml. Not for production: envoy/fleet.yaml is.\n"
        "# Generated by scripts/envoy-configs.py: edit the script, not this file.\n",
        plugin={
            "destination": {"allow": [{"cidr": "127.0.0.1/32", "port": 18080}]},
            "limit": {"keys": {"LeadCalled3": "demo-key"}},
            "state": {"backend": "etcd", "cluster": "etcd", "timeout_ms": 500, "prefix": "hookgate", "on_failure": "deny"},
        },
        exceptions=[("127.0.0.1/32", 18080)],
        extra_clusters=etcd_cluster([("127.0.0.1", 2379)], ""),
    ),
}


def fleet_local():
    """envoy/fleet.yaml made to run on one machine (docs/fleet.md, "Trying a fleet on one machine"):
    the three etcd members on 127.0.0.1 (client ports 2379, 22379, 32379), the certificates in
    fleet-local/pki/ under the directory Envoy runs in, and the demo receiver allowed as in run.yaml."""
    spec = dict(CONFIGS["envoy/fleet.yaml"])
    spec["header"] = (
        "# hookgate for a fleet on one machine (docs/fleet.md, \"Trying a fleet on one machine\"; run by\n"
        "# scripts/fleet-walkthrough.sh): envoy/fleet.yaml with the three etcd members on 127.0.0.1:2379,\n"
        "# :22379 and :32379, the certificates in fleet-local/pki/ (paths relative to the repository root,\n"
        "# where Envoy runs), and the demo receiver on 127.0.0.1:18080 allowed as in envoy/run.yaml.\n"
        "# Generated by scripts/envoy-configs.py: edit the script, not this file.\n"
    )
    spec["plugin"] = dict(CONFIGS["envoy/run.yaml"]["plugin"], state=spec["plugin"]["state"])
    spec["exceptions"] = CONFIGS["envoy/run.yaml"]["exceptions"]
    clusters = spec["extra_clusters"].replace("/etc/hookgate/etcd/", "fleet-local/pki/")
    for member, port in [(0, 2379), (1, 22379), (2, 32379)]:
        clusters = clusters.replace(
            f"address: etcd-{member}.etcd, port_value: 2379", f"address: 127.0.0.1, port_value: {port}"
        )
    spec["extra_clusters"] = clusters
    # Two Envoys run on one machine from this file: no support listener (both would bind its
    # port); envoy/fleet.yaml has one.
    spec.pop("support", None)
    return spec


CONFIGS["envoy/fleet-local.yaml"] = fleet_local()


def render(spec, plugin=None):
    """The configuration `spec` describes. Its `callers` (CIDRs allowed to post events) replace
    CALLER_CIDRS for this configuration alone: every function that writes the callers reads it."""
    global CALLER_CIDRS
    default_callers = CALLER_CIDRS
    CALLER_CIDRS = spec.get("callers", default_callers)
    try:
        return render_with_callers(spec, plugin)
    finally:
        CALLER_CIDRS = default_callers


def render_with_callers(spec, plugin):
    text = TEMPLATE.format(
        header=spec["header"],
        plugin_config=plugin_config(spec["plugin"] if plugin is None else plugin),
        caller_rbac=caller_rbac(),
        local_reply_mappers=local_reply_mappers(),
        stats_config=stats_config(),
        access_log_reasons=access_log_reasons(),
        request_id_filter=request_id_filter(),
        destination_permissions=destination_permissions(spec["exceptions"]),
        overload_manager=OVERLOAD_MANAGER,
        caller_ranges=caller_ranges(),
        engine_timeouts=ENGINE_TIMEOUTS,
        refused_chain=refused_chain(),
        wasm_path=WASM_PATH,
    )
    for name, port, other_plugin in spec.get("listeners", []):
        # The same listener with another name, port and plugin configuration.
        other = render(dict(spec, listeners=[]), other_plugin)
        block = other[other.index("  - name: hookgate\n") : other.index("  clusters:\n")]
        block = block.replace("  - name: hookgate\n", f"  - name: {name}\n", 1)
        block = block.replace("port_value: 10000}", f"port_value: {port}}}", 1)
        block = block.replace("stat_prefix: hookgate\n", f"stat_prefix: {name}\n", 1)
        at = text.index("  clusters:\n")
        text = text[:at] + block + text[at:]
    if "support" in spec:
        at = text.index("  clusters:\n")
        support = support_listener(filter_block(text, "hookgate"), spec["support"])
        text = text[:at] + support + text[at:]
    text += spec.get("extra_clusters", "")
    if "configmap" in spec:
        text = as_configmap(text, *spec["configmap"])
    return text


def as_configmap(text, header, name, namespace):
    """The configuration as a Kubernetes ConfigMap (key envoy.yaml), for `kubectl apply`."""
    body = "".join("    " + line if line.strip() else "\n" for line in text.splitlines(keepends=True))
    return (
        f"{header}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
        f"data:\n  envoy.yaml: |\n{body}"
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
