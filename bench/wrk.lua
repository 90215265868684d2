-- hookgate bench: one wrk thread posting one fixed body (BENCH_BODY, a file) with the headers
-- the target needs; prints one JSON line with the totals and latency percentiles at the end.
-- BENCH_HOST / BENCH_ROUTE: for plain Envoy (A), the receiver's authority and the route marker.
-- BENCH_PREFILL=<event template with %d>: every request names a new webhook (1, 2, ...) up to
-- BENCH_PREFILL_COUNT, then repeats webhook 1 (refused locally as over limit: no new entry).
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["content-type"] = "application/json"
local host = os.getenv("BENCH_HOST")
if host and host ~= "" then wrk.headers["Host"] = host end
local route = os.getenv("BENCH_ROUTE")
if route and route ~= "" then wrk.headers["x-hookgate-route"] = route end

local prefill = tonumber(os.getenv("BENCH_PREFILL_COUNT") or "")
if prefill then
  local n = 0
  request = function()
    n = n + 1
    local i = n
    if n > prefill then i = 1 end
    return wrk.format(nil, nil, nil, string.format(body, i))
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
