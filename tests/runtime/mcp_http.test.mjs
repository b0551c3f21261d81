// /mcp over HTTP against the release bundle under workerd: both protocol generations, and
// every malformed or hostile request answered with the right status and JSON-RPC code.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, post, req2026, V2026 } from './harness.mjs';

let w;
before(async () => { w = await startWorker({ vars: { MAX_BODY_BYTES: '65536', ANON_DAILY_LIMIT: '100000' } }); });
after(async () => { await w?.stop(); });

const init = (v = '2025-11-25') => ({ jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: v, capabilities: {}, clientInfo: { name: 't', version: '1' } } });

test('initialize negotiates each 2025 version and falls back to 2025-11-25', async () => {
  for (const [asked, got] of [['2025-11-25', '2025-11-25'], ['2025-06-18', '2025-06-18'], ['2025-03-26', '2025-03-26'], ['2024-11-05', '2025-11-25'], ['2026-07-28', '2025-11-25']]) {
    const r = await post(w.url, init(asked));
    assert.equal(r.status, 200);
    assert.equal(r.body.result.protocolVersion, got, asked);
    assert.equal(r.body.result.serverInfo.name, 'paid-mcp-worker');
    assert.equal(r.headers.get('mcp-session-id'), null, 'stateless: no session');
  }
});

test('2025 generation: initialized is 202, ping, tools/list, tools/call without resultType', async () => {
  const h = { 'mcp-protocol-version': '2025-11-25' };
  const n = await post(w.url, { jsonrpc: '2.0', method: 'notifications/initialized' }, h);
  assert.equal(n.status, 202);
  assert.equal(n.text, '');
  assert.deepEqual((await post(w.url, { jsonrpc: '2.0', id: 2, method: 'ping' }, h)).body.result, {});
  const list = await post(w.url, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, h);
  const names = list.body.result.tools.map((t) => t.name);
  assert.deepEqual(names, ['whoami', 'hash', 'hmac']);
  assert.ok(!('resultType' in list.body.result) && !('ttlMs' in list.body.result));
  for (const t of list.body.result.tools) {
    assert.equal(t.inputSchema.type, 'object');
    assert.equal(t.outputSchema.type, 'object');
    assert.equal(t.annotations.readOnlyHint, true);
  }
  const call = await post(w.url, { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'hash', arguments: { text: 'abc' } } }, h);
  assert.equal(call.body.result.isError, false);
  assert.equal(call.body.result.structuredContent.digest, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.deepEqual(JSON.parse(call.body.result.content[0].text), call.body.result.structuredContent);
  assert.ok(!('resultType' in call.body.result));
});

test('2026-07-28: server/discover, cache hints on lists, resultType on results', async () => {
  const d = req2026(1, 'server/discover');
  const disc = await post(w.url, d.body, d.headers);
  assert.equal(disc.status, 200);
  assert.deepEqual(disc.body.result.supportedVersions, ['2025-03-26', '2025-06-18', '2025-11-25', V2026]);
  assert.equal(disc.body.result.resultType, 'complete');
  assert.ok(disc.body.result.capabilities.tools);
  assert.equal(disc.body.result._meta['io.modelcontextprotocol/serverInfo'].name, 'paid-mcp-worker');
  const l = req2026(2, 'tools/list');
  const list = await post(w.url, l.body, l.headers);
  assert.equal(list.body.result.resultType, 'complete');
  assert.ok(Number.isInteger(list.body.result.ttlMs) && list.body.result.ttlMs >= 0);
  assert.ok(['public', 'private'].includes(list.body.result.cacheScope));
  const c = req2026(3, 'tools/call', { name: 'whoami', arguments: {} });
  const call = await post(w.url, c.body, c.headers);
  assert.equal(call.body.result.resultType, 'complete');
  assert.equal(call.body.result.structuredContent.kind, 'anonymous');
  assert.equal(call.body.result.structuredContent.subject, '127.0.0.1');
});

test('a bad tool argument is a tool error the model can read, not a protocol error', async () => {
  const c = req2026(1, 'tools/call', { name: 'hash', arguments: { text: 5 } });
  const r = await post(w.url, c.body, c.headers);
  assert.equal(r.status, 200);
  assert.equal(r.body.result.isError, true);
  assert.match(r.body.result.content[0].text, /invalid arguments/);
  const unknownField = await post(w.url, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'hash', arguments: { text: 'a', algo: 'md5' } } });
  assert.equal(unknownField.body.result.isError, true);
});

test('the client gets the media type it accepts', async () => {
  const body = { jsonrpc: '2.0', id: 7, method: 'tools/list' };
  const sseOnly = await post(w.url, body, { accept: 'text/event-stream' });
  assert.equal(sseOnly.status, 200);
  assert.match(sseOnly.headers.get('content-type'), /^text\/event-stream/);
  const data = sseOnly.text.split('\n').find((l) => l.startsWith('data: '));
  assert.equal(JSON.parse(data.slice(6)).id, 7);
  const jsonOnly = await post(w.url, body, { accept: 'application/json' });
  assert.match(jsonOnly.headers.get('content-type'), /^application\/json/);
  assert.equal(jsonOnly.body.id, 7);
  const none = await post(w.url, body, { accept: 'text/html' });
  assert.equal(none.status, 406);
  assert.equal(none.body.error.code, -32600);
});

// [what, request options, expected HTTP status, expected JSON-RPC code (null: no body check)]
const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hash', arguments: { text: 'x'.repeat(70_000) } } });
const BAD = [
  ['malformed JSON', { body: '{"jsonrpc":' }, 400, -32700],
  ['truncated UTF-8 garbage', { body: Buffer.from([0xff, 0xfe, 0x7b]) }, 400, -32700],
  ['a JSON number', { body: '42' }, 400, -32600],
  ['no jsonrpc member', { body: { id: 1, method: 'ping' } }, 400, -32600],
  ['null id', { body: { jsonrpc: '2.0', id: null, method: 'ping' } }, 400, -32600],
  ['array params', { body: { jsonrpc: '2.0', id: 1, method: 'ping', params: [1] } }, 400, -32600],
  ['a batch under 2025-11-25', { body: [{ jsonrpc: '2.0', id: 1, method: 'ping' }], headers: { 'mcp-protocol-version': '2025-11-25' } }, 400, -32600],
  ['an empty batch under 2025-03-26', { body: [], headers: { 'mcp-protocol-version': '2025-03-26' } }, 400, -32600],
  ['tools/call without a name', { body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} } }, 200, -32602],
  ['tools/call of an unknown tool', { body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'nope' } } }, 200, -32602],
  ['initialize without a version', { body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: {} } }, 200, -32602],
  ['a cursor never issued', { body: { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { cursor: 'abc' } } }, 200, -32602],
  ['an unknown method (2025)', { body: { jsonrpc: '2.0', id: 1, method: 'nope/nope' } }, 200, -32601],
  ['an unsupported version header', { body: { jsonrpc: '2.0', id: 1, method: 'tools/list' }, headers: { 'mcp-protocol-version': '1999-01-01' } }, 400, -32022],
  ['a foreign Origin', { body: { jsonrpc: '2.0', id: 1, method: 'ping' }, headers: { origin: 'https://evil.example' } }, 403, -32600],
  ['a text/plain body', { body: '{}', headers: { 'content-type': 'text/plain' } }, 415, -32600],
  ['a body over the limit', { body: big }, 413, null],
];

for (const [what, opts, status, code] of BAD) {
  test(`bad request: ${what} → ${status}${code ? ` / ${code}` : ''}`, async () => {
    const r = await post(w.url, opts.body, opts.headers ?? {});
    assert.equal(r.status, status, r.text);
    if (code !== null) assert.equal(r.body.error.code, code, r.text);
  });
}

// 2026-07-28 header and _meta faults: [what, mutate(body, headers), status, code]
const BAD_2026 = [
  ['no MCP-Protocol-Version header', (b, h) => { delete h['mcp-protocol-version']; }, 400, -32020],
  ['Mcp-Method disagrees', (b, h) => { h['mcp-method'] = 'tools/list'; }, 400, -32020],
  ['Mcp-Method missing', (b, h) => { delete h['mcp-method']; }, 400, -32020],
  ['Mcp-Name disagrees', (b, h) => { h['mcp-name'] = 'hash'; }, 400, -32020],
  ['Mcp-Name missing', (b, h) => { delete h['mcp-name']; }, 400, -32020],
  ['header and _meta versions disagree', (b) => { b.params._meta['io.modelcontextprotocol/protocolVersion'] = '2025-11-25'; }, 400, -32020],
  ['client capabilities missing', (b) => { delete b.params._meta['io.modelcontextprotocol/clientCapabilities']; }, 400, -32602],
  ['an unsupported version in both', (b, h) => { b.params._meta['io.modelcontextprotocol/protocolVersion'] = '2099-01-01'; h['mcp-protocol-version'] = '2099-01-01'; }, 400, -32022],
];
for (const [what, mutate, status, code] of BAD_2026) {
  test(`2026-07-28: ${what} → ${status} / ${code}, id echoed`, async () => {
    const { body, headers } = req2026(41, 'tools/call', { name: 'whoami', arguments: {} });
    mutate(body, headers);
    const r = await post(w.url, body, headers);
    assert.equal(r.status, status, r.text);
    assert.equal(r.body.error.code, code);
    assert.equal(r.body.id, 41);
    if (code === -32022) assert.ok(r.body.error.data.supported.includes(V2026) && r.body.error.data.requested === '2099-01-01');
  });
}

test('2026-07-28: removed and unknown methods are 404 / -32601', async () => {
  for (const m of ['initialize', 'ping', 'logging/setLevel', 'unknown/method']) {
    const { body, headers } = req2026(5, m);
    const r = await post(w.url, body, headers);
    assert.equal(r.status, 404, m);
    assert.equal(r.body.error.code, -32601, m);
  }
});

test('a 2025-03-26 batch is answered as a batch', async () => {
  const r = await post(w.url, [
    { jsonrpc: '2.0', id: 1, method: 'ping' },
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { jsonrpc: '2.0', id: 2, method: 'tools/list' },
  ], { 'mcp-protocol-version': '2025-03-26' });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.map((m) => m.id), [1, 2]);
});

test('GET, DELETE and PUT /mcp are 405 with Allow; other routes answer cleanly', async () => {
  for (const method of ['GET', 'DELETE', 'PUT']) {
    const r = await fetch(w.url, { method });
    assert.equal(r.status, 405, method);
    assert.match(r.headers.get('allow'), /POST/);
  }
  const health = await fetch(`${w.origin}/health`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ok' });
  const home = await fetch(`${w.origin}/`);
  assert.equal(home.status, 200);
  const html = await home.text();
  assert.match(html, /\/mcp/);
  assert.match(html, /whoami/);
  assert.equal(home.headers.get('x-frame-options') ?? home.headers.get('content-security-policy')?.includes("frame-ancestors 'none'") ? 'ok' : null, 'ok');
  assert.equal((await fetch(`${w.origin}/nope`)).status, 404);
  assert.equal((await fetch(`${w.origin}/health`, { method: 'POST' })).status, 405);
});

test('an allowed browser origin gets CORS headers and a preflight', async () => {
  const pre = await fetch(w.url, { method: 'OPTIONS', headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'POST' } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'http://localhost:6274');
  assert.match(pre.headers.get('access-control-allow-headers'), /mcp-protocol-version/);
});

test('the server survived every bad request above', async () => {
  const r = await post(w.url, init());
  assert.equal(r.status, 200);
  assert.ok(!w.logs.join('').includes('panicked'), 'no panic in the worker log');
});
