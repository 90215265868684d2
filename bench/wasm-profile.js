// hookgate's wasm cost without Envoy: runs hookgate.wasm's real callbacks for one delivery (the
// bench's event (10 variables unless told), a verified webhook, a receiver answering {"ok":true}) under node's
// V8, against a stub proxy-wasm host that answers from memory. Prints the time per request and
// the host calls per request. Deterministic enough to compare builds; not the Envoy figure (the
// stub host is cheap, Envoy's host calls are not): `make bench` is.
//
//   node bench/wasm-profile.js hookgate.wasm [requests] [variables per event, 10]
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bench/wasm-profile.js hookgate.wasm 100000
//   node bench/wasm-profile.js --report /tmp/prof/<file>.cpuprofile   # wasm time by callback and function
'use strict';
const fs = require('fs');

if (process.argv[2] === '--report') {
  report(process.argv[3]);
} else {
  run(process.argv[2] || 'hookgate.wasm', Number(process.argv[3] || 20000), Number(process.argv[4] || 10));
}

function run(wasmPath, requests, variableCount) {
  const url = 'http://127.0.0.1:35307/hook';
  const variables = [];
  for (let i = 1; i <= variableCount; i++) {
    const n = String(i).padStart(2, '0');
    variables.push({[`variable${n}`]: `value-${n}`});
  }
  const event = Buffer.from(JSON.stringify({
    webhook: {name: 'BenchHook', url}, automation_id: '123456789', title: 'New Automation',
    execution_date: '2022-01-04 09:02:39', email: 'example@example.com', phone: '+380631234567', variables,
  }));
  const config = Buffer.from(JSON.stringify({
    destination: {allow: [{cidr: '127.0.0.1/32'}]}, limit: {verified: [{name: 'BenchHook', url}]},
  }));
  const requestHeaders = [[':authority', '127.0.0.1:10000'], [':path', '/'], [':method', 'POST'],
    [':scheme', 'http'], ['content-length', String(event.length)], ['content-type', 'application/json'],
    ['x-forwarded-proto', 'http'], ['x-request-id', 'c2a3e0f7-1111-2222-3333-444455556666']];
  const responseHeaders = [[':status', '200'], ['server', 'nginx'], ['content-type', 'application/json'],
    ['content-length', '11']];
  const responseBody = Buffer.from('{"ok":true}');
  const buffers = {0: event, 1: responseBody, 7: config}; // proxy-wasm BufferType numbers
  const maps = {0: requestHeaders, 2: responseHeaders}; // proxy-wasm MapType numbers

  let instance;
  const memory = () => new Uint8Array(instance.exports.memory.buffer);
  const view = () => new DataView(instance.exports.memory.buffer);
  const text = (ptr, size) => Buffer.from(memory().subarray(ptr, ptr + size)).toString();
  const give = (bytes, ptrPtr, sizePtr) => {
    const ptr = (instance.exports.proxy_on_memory_allocate || instance.exports.malloc)(bytes.length);
    memory().set(bytes, ptr);
    view().setUint32(ptrPtr, ptr, true);
    view().setUint32(sizePtr, bytes.length, true);
  };
  const encodeMap = (pairs) => {
    const parts = [Buffer.alloc(4 + 8 * pairs.length)];
    parts[0].writeUInt32LE(pairs.length, 0);
    pairs.forEach(([k, v], i) => {
      parts[0].writeUInt32LE(Buffer.byteLength(k), 4 + 8 * i);
      parts[0].writeUInt32LE(Buffer.byteLength(v), 8 + 8 * i);
      parts.push(Buffer.from(k), Buffer.alloc(1), Buffer.from(v), Buffer.alloc(1));
    });
    return Buffer.concat(parts);
  };
  const encodedMaps = {0: encodeMap(requestHeaders), 2: encodeMap(responseHeaders)};
  const calls = {};
  const counted = (name, f) => (...args) => { calls[name] = (calls[name] || 0) + 1; return f(...args); };
  const shared = new Map();
  let cas = 1;
  let answer = null; // the engine's answer hookgate wrote over the receiver's
  const host = {
    proxy_log: (level, ptr, size) => { if (level >= 3) console.error('log', level, text(ptr, size)); return 0; },
    proxy_get_log_level: (ptr) => { view().setUint32(ptr, 2, true); return 0; },
    proxy_get_current_time_nanoseconds: (ptr) => { view().setBigUint64(ptr, BigInt(Date.now()) * 1000000n, true); return 0; },
    proxy_set_tick_period_milliseconds: () => 0,
    proxy_get_buffer_bytes: (type, start, max, ptrPtr, sizePtr) => { give(buffers[type], ptrPtr, sizePtr); return 0; },
    proxy_set_buffer_bytes: (type, start, size, ptr, len) => {
      if (type === 1) answer = Buffer.from(memory().subarray(ptr, ptr + len));
      return 0;
    },
    proxy_get_header_map_pairs: (type, ptrPtr, sizePtr) => { give(encodedMaps[type], ptrPtr, sizePtr); return 0; },
    proxy_set_header_map_pairs: () => 0,
    proxy_replace_header_map_value: () => 0,
    proxy_get_header_map_value: (type, keyPtr, keySize, ptrPtr, sizePtr) => {
      const found = maps[type].find(([k]) => k === text(keyPtr, keySize));
      if (!found) return 1;
      give(Buffer.from(found[1]), ptrPtr, sizePtr);
      return 0;
    },
    proxy_send_local_response: () => {
      throw new Error('hookgate answered the bench delivery itself: the profile would time a refusal');
    },
    // The engine's peer address (hookgate judges the caller by it), the engine-facing root id,
    // and `via_upstream` for the answer's code_details.
    proxy_get_property: (pathPtr, pathSize, ptrPtr, sizePtr) => {
      const path = text(pathPtr, pathSize);
      const value = {'source\0address': '127.0.0.1:40000', plugin_root_id: 'hookgate'}[path] || 'via_upstream';
      give(Buffer.from(value), ptrPtr, sizePtr);
      return 0;
    },
    proxy_set_property: () => 0,
    proxy_get_shared_data: (keyPtr, keySize, ptrPtr, sizePtr, casPtr) => {
      const entry = shared.get(text(keyPtr, keySize));
      if (!entry) return 1;
      give(entry.value, ptrPtr, sizePtr);
      view().setUint32(casPtr, entry.cas, true);
      return 0;
    },
    proxy_set_shared_data: (keyPtr, keySize, valuePtr, valueSize, expected) => {
      const key = text(keyPtr, keySize);
      const entry = shared.get(key);
      if (expected && entry && entry.cas !== expected) return 8;
      shared.set(key, {value: Buffer.from(memory().subarray(valuePtr, valuePtr + valueSize)), cas: ++cas});
      return 0;
    },
    proxy_define_metric: (kind, ptr, size, idPtr) => { view().setUint32(idPtr, 7, true); return 0; },
    proxy_increment_metric: () => 0,
    proxy_record_metric: () => 0,
    proxy_continue_stream: () => 0,
  };
  const module = new WebAssembly.Module(fs.readFileSync(wasmPath));
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    imports[imp.module] = imports[imp.module] || {};
    if (imp.kind !== 'function') continue;
    const f = host[imp.name] || (() => { throw new Error(`stub host has no ${imp.name}`); });
    imports[imp.module][imp.name] = counted(imp.name, f);
  }
  instance = new WebAssembly.Instance(module, imports);
  const x = instance.exports;
  if (x._initialize) x._initialize();
  x.proxy_on_context_create(1, 0);
  x.proxy_on_vm_start(1, 0);
  if (!x.proxy_on_configure(1, config.length)) throw new Error('proxy_on_configure refused the bench configuration');
  let id = 2;
  const delivery = () => {
    x.proxy_on_context_create(id, 1);
    x.proxy_on_request_headers(id, requestHeaders.length, 0);
    x.proxy_on_request_body(id, event.length, 1);
    x.proxy_on_response_headers(id, responseHeaders.length, 0);
    x.proxy_on_response_body(id, responseBody.length, 1);
    x.proxy_on_log(id);
    x.proxy_on_done(id);
    x.proxy_on_delete(id);
    id++;
  };
  for (let i = 0; i < 5000; i++) delivery(); // V8 tiers up
  for (const k of Object.keys(calls)) delete calls[k];
  const start = process.hrtime.bigint();
  for (let i = 0; i < requests; i++) delivery();
  const us = Number(process.hrtime.bigint() - start) / 1e3 / requests;
  // What was timed must be a delivery: the envelope of a delivered webhook (status true, code 1).
  const envelope = JSON.parse(answer === null ? 'null' : answer.toString());
  if (!Array.isArray(envelope) || envelope[0]?.status !== true || envelope[0]?.code !== 1) {
    throw new Error(`not a delivery's envelope: ${answer}`);
  }
  const perRequest = Object.entries(calls).map(([k, v]) => `${k.replace(/^proxy_/, '')} ${v / requests}`);
  console.log(`${us.toFixed(2)} us per delivery (wasm and stub host); host calls per delivery: ${perRequest.join(', ')}`);
}

// Self time of wasm functions in a --cpu-prof profile, by proxy-wasm callback, and the heaviest
// wasm functions with everything they call (µs per delivery needs the run's figure: shares here).
function report(path) {
  const profile = JSON.parse(fs.readFileSync(path));
  const self = {};
  profile.samples.forEach((node, i) => { self[node] = (self[node] || 0) + (profile.timeDeltas[i] || 0); });
  const parent = {};
  for (const n of profile.nodes) for (const c of n.children || []) parent[c] = n.id;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const isWasm = (n) => n.callFrame.url.startsWith('wasm://');
  let total = 0;
  const byCallback = {};
  const inclusive = {};
  for (const n of profile.nodes) {
    const t = self[n.id] || 0;
    total += t;
    if (!t) continue;
    let callback = 'outside callbacks';
    const seen = new Set();
    for (let at = n.id; at !== undefined; at = parent[at]) {
      const frame = byId.get(at);
      const name = frame.callFrame.functionName;
      if (/^proxy_on_/.test(name)) callback = name;
      if (isWasm(n) && isWasm(frame) && !seen.has(name)) {
        seen.add(name);
        inclusive[name] = (inclusive[name] || 0) + t;
      }
    }
    const key = `${callback} (${isWasm(n) ? 'wasm' : 'stub host'})`;
    byCallback[key] = (byCallback[key] || 0) + t;
  }
  const pct = (t) => `${((100 * t) / total).toFixed(1).padStart(5)}%`;
  for (const [k, t] of Object.entries(byCallback).sort()) console.log(pct(t), k);
  console.log('--- heaviest wasm functions, with what they call');
  Object.entries(inclusive).sort((a, b) => b[1] - a[1]).slice(0, 30)
    .forEach(([name, t]) => console.log(pct(t), name.replace(/17h[0-9a-f]{16}E$/, '').slice(0, 140)));
}
