// The `ask` tool against a local upstream stand-in (tests/runtime/upstream_standin.mjs), the
// release bundle under workerd: streaming through the official TypeScript client with
// progress, time to first byte, JSON-only clients, cancellation reaching the upstream (usage
// row `cancelled`, quota given back), retry then fallback, a hanging provider, a drop
// mid-answer, circuit breakers open and half-open, every provider failing, and the cache
// per principal, public and off.
// (The breakers and retries are per isolate; wrangler dev runs one.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startWorker, mintKey, d1Query } from './harness.mjs';
import { startUpstreamStandIn } from './upstream_standin.mjs';

const ADMIN_TOKEN = 'ask-admin-token';
const COOLDOWN_MS = 3000;
let w;
let up;
let key;

before(async () => {
  up = await startUpstreamStandIn();
  const provider = (name, extra = {}) => ({ name, kind: 'openai', base_url: `${up.base}/${name}/v1`, model: `model-${name}`, key_secret: `${name.toUpperCase()}_KEY`, ...extra });
  w = await startWorker({ vars: {
    ADMIN_TOKEN,
    PLANS: JSON.stringify({ free: { daily: 100 }, pro: { daily: 100, price: '$9/month' } }),
    PROVIDERS: JSON.stringify([provider('p1', { timeout_ms: 1500 }), provider('p2')]),
    P1_KEY: 'sk-upstream-p1',
    P2_KEY: 'sk-upstream-p2',
    ASK_TIMEOUT_MS: '20000',
    PROVIDER_COOLDOWN_MS: String(COOLDOWN_MS),
  } });
  key = await mintKey(w.origin, ADMIN_TOKEN, { plan: 'pro' });
});

after(async () => { await w?.stop(); await up?.close(); });

const HEADERS = () => ({ 'content-type': 'application/json', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${key}` });
const body = (question, meta) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call',
  params: { name: 'ask', arguments: { question }, ...(meta ? { _meta: meta } : {}) } });
const script = (prefix, ...behaviours) => { up.state.behave[prefix] = behaviours; };
const mine = (prefix, since) => up.requests.filter((r) => r.prefix === prefix && r.startedAt >= since);

/** The JSON-RPC messages of an SSE body. */
const messages = (text) => text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));

async function ask(question, accept = 'application/json, text/event-stream') {
  const res = await fetch(w.url, { method: 'POST', headers: { ...HEADERS(), accept }, body: body(question) });
  const text = await res.text();
  const last = res.headers.get('content-type')?.startsWith('text/event-stream') ? messages(text).at(-1) : JSON.parse(text);
  return { status: res.status, result: last.result, text };
}

async function dailyUsed() {
  const res = await fetch(`${w.origin}/api/usage?period=day`, { headers: { authorization: `Bearer ${key}` } });
  return (await res.json()).quota.find((q) => q.period === 'day').used;
}

test('the official client streams progress while the answer arrives, then gets the structured result', async (t) => {
  const since = Date.now();
  script('/p1', { kind: 'stream', tokens: ['The ', 'answer ', 'is ', '42.'], delayMs: 300 });
  const client = new Client({ name: 'ask-runtime', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(w.url), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  try {
    const progress = [];
    const started = Date.now();
    const result = await client.callTool({ name: 'ask', arguments: { question: 'What is the answer?', context: 'Deep Thought' } }, undefined, {
      onprogress: (p) => progress.push({ at: Date.now() - started, ...p }),
    });
    const took = Date.now() - started;
    t.diagnostic(`first progress after ${progress[0]?.at} ms, result after ${took} ms, ${progress.length} progress events`);
    assert.equal(result.isError, false);
    assert.deepEqual(result.structuredContent, { answer: 'The answer is 42.', provider: 'p1', model: 'model-p1', input_tokens: 12, output_tokens: 4 });
    assert.ok(progress.length >= 2, `progress while streaming: ${JSON.stringify(progress)}`);
    assert.ok(progress[0].at < took - 400, 'the first progress came well before the result');
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i].progress > progress[i - 1].progress, 'progress increases');
  } finally {
    await client.close();
  }
  const [sent] = mine('/p1', since);
  assert.equal(sent.headers.authorization, 'Bearer sk-upstream-p1');
  assert.equal(sent.body.model, 'model-p1');
  assert.equal(sent.body.stream, true);
  assert.match(JSON.stringify(sent.body.messages), /Deep Thought/);
});

test('the reply starts before the upstream answers (time to first byte), and JSON-only clients get the result', async (t) => {
  // The upstream answers its head at once but its first token only after 1.2 s.
  script('/p1', { kind: 'stream', firstDelayMs: 1200, delayMs: 20 });
  const started = Date.now();
  const origin = 'http://localhost:6274'; // a browser client on loopback (the Inspector's UI)
  const res = await fetch(w.url, { method: 'POST', headers: { ...HEADERS(), origin, accept: 'application/json, text/event-stream' }, body: body('slow?') });
  const head = Date.now() - started;
  assert.equal(res.headers.get('access-control-allow-origin'), origin, 'the streamed head carries CORS');
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  const reader = res.body.getReader();
  await reader.read();
  const firstByte = Date.now() - started;
  let rest = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    rest += Buffer.from(value).toString();
  }
  const total = Date.now() - started;
  t.diagnostic(`head after ${head} ms, first byte after ${firstByte} ms, done after ${total} ms`);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  assert.ok(firstByte < 1000 && total >= 1200, `first byte ${firstByte} ms before the upstream's head (1200 ms); done ${total}`);
  assert.equal(messages(rest).at(-1).result.structuredContent.answer, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ');

  const json = await ask('json only?', 'application/json');
  assert.equal(json.status, 200);
  assert.equal(json.result.structuredContent.provider, 'p1');
});

test('a client that leaves aborts the upstream request; the call is cancelled and its quota given back', async () => {
  const before = await dailyUsed();
  const since = Date.now();
  script('/p1', { kind: 'stream', delayMs: 400 });
  const ctl = new AbortController();
  const res = await fetch(w.url, { method: 'POST', headers: { ...HEADERS(), accept: 'text/event-stream' }, body: body('cancel me', { progressToken: 'c1' }), signal: ctl.signal });
  const reader = res.body.getReader();
  let seen = '';
  while (!seen.includes('notifications/progress')) seen += Buffer.from((await reader.read()).value).toString();
  ctl.abort();
  const [sent] = await eventuallyAsync(() => mine('/p1', since).filter((r) => r.aborted).length && mine('/p1', since), 'the upstream request aborted');
  assert.equal(sent.finished, false);
  const row = await eventuallyAsync(() => {
    const rows = d1Query(w.state, `SELECT status, provider FROM tool_call_logs WHERE tool = 'ask' AND created_at >= ${since}`);
    return rows.length && rows;
  }, 'the usage row');
  assert.deepEqual(row, [{ status: 'cancelled', provider: null }]);
  assert.equal(await dailyUsed(), before, 'the cancelled call was refunded');
});

test('a 2025 notifications/cancelled ends the caller\'s streamed call and aborts its upstream request; another caller\'s does not', async () => {
  const since = Date.now();
  script('/p1', { kind: 'stream', delayMs: 400 });
  const before = await dailyUsed();
  const res = await fetch(w.url, { method: 'POST', headers: { ...HEADERS(), accept: 'text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 'call-42', method: 'tools/call', params: { name: 'ask', arguments: { question: 'cancel by notification' } } }) });
  const reader = res.body.getReader();
  await reader.read(); // the stream has started
  await eventuallyAsync(() => mine('/p1', since).length, 'the upstream request');
  const cancel = (authorization) => fetch(w.url, { method: 'POST', headers: { ...HEADERS(), authorization, accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'call-42', reason: 'user stopped it' } }) });
  const other = await mintKey(w.origin, ADMIN_TOKEN, { plan: 'pro' });
  assert.equal((await cancel(`Bearer ${other}`)).status, 202);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(!mine('/p1', since)[0].aborted, 'another caller cannot cancel it');
  assert.equal((await cancel(`Bearer ${key}`)).status, 202);
  await eventuallyAsync(() => mine('/p1', since)[0].aborted, 'the upstream request aborted');
  let rest = '';
  for (;;) {
    const { done, value } = await reader.read().catch(() => ({ done: true }));
    if (done) break;
    rest += Buffer.from(value).toString();
  }
  assert.doesNotMatch(rest, /"result"/, 'no result for a cancelled request');
  const rows = await eventuallyAsync(() => {
    const r = d1Query(w.state, `SELECT status FROM tool_call_logs WHERE tool = 'ask' AND created_at >= ${since}`);
    return r.length && r;
  }, 'the usage row');
  assert.deepEqual(rows, [{ status: 'cancelled' }]);
  assert.equal(await dailyUsed(), before, 'refunded');
});

test('retryable failures are retried, then the next provider answers; a hang times out; a drop mid-answer is a tool error', async () => {
  let since = Date.now();
  script('/p1', { kind: 'status', status: 500 }, { kind: 'status', status: 429, retryAfter: '1' }, { kind: 'status', status: 503 });
  script('/p2', { kind: 'stream' });
  const started = Date.now();
  let r = await ask('fallback?');
  assert.equal(r.result.structuredContent?.provider, 'p2', `${r.text} ${JSON.stringify(mine('/p1', since).map((q) => [q.status, q.behaviour]))}`);
  assert.equal(mine('/p1', since).length, 3, 'three attempts at p1');
  assert.ok(Date.now() - started >= 1000, 'Retry-After was honoured');

  since = Date.now();
  // p1 hangs past its 1.5 s time-out once: given up (aborted) and tried again.
  script('/p1', { kind: 'hang' }, { kind: 'stream' });
  r = await ask('hang?');
  assert.equal(r.result.structuredContent.provider, 'p1');
  const tries = mine('/p1', since);
  assert.equal(tries.length, 2);
  assert.ok(tries[0].aborted && tries[1].finished, 'the hung request was aborted, the retry answered');

  since = Date.now();
  script('/p1', { kind: 'drop', afterTokens: 2 });
  r = await ask('drop?');
  assert.equal(r.status, 200);
  assert.equal(r.result.isError, true);
  assert.match(r.result.content[0].text, /p1: connection lost/);
  assert.equal(mine('/p2', since).length, 0, 'another provider does not continue a half-sent answer');
});

test('a provider failing three calls in a row is skipped, then probed again after its cool-down', async () => {
  up.state.behave = {};
  // A success first: the failures of earlier tests no longer count.
  assert.equal((await ask('fine?')).result.structuredContent.provider, 'p1');
  script('/p1', { kind: 'status', status: 400 }, { kind: 'status', status: 400 }, { kind: 'status', status: 400 });
  for (let i = 0; i < 3; i++) assert.equal((await ask(`fail ${i}`)).result.structuredContent.provider, 'p2');
  const since = Date.now();
  const r = await ask('skipped?');
  assert.equal(r.result.structuredContent.provider, 'p2');
  assert.equal(mine('/p1', since).length, 0, 'the open breaker sent nothing to p1');
  await new Promise((res) => setTimeout(res, COOLDOWN_MS + 200));
  const probe = await ask('probe?');
  assert.equal(probe.result.structuredContent.provider, 'p1', 'half-open: one probe, which succeeds and closes it');
  assert.equal(mine('/p1', since).length, 1);
});

test('every provider failing is a tool error naming each, never a 500', async () => {
  script('/p1', { kind: 'status', status: 401 });
  script('/p2', { kind: 'status', status: 403 });
  const r = await ask('nobody?');
  assert.equal(r.status, 200);
  assert.equal(r.result.isError, true);
  assert.match(r.result.content[0].text, /p1: HTTP 401.*p2: HTTP 403/);
  assert.doesNotMatch(r.text, /sk-upstream/, 'no key in the reply');
});

test('results are cached per principal: a repeat costs no quota and no upstream request; another caller misses', async () => {
  up.state.behave = {};
  const since = Date.now();
  const first = await ask('cache me?');
  const used = await dailyUsed();
  const again = await ask('cache me?');
  assert.deepEqual(again.result, first.result, 'the same result');
  assert.equal(mine('/p1', since).length, 1, 'one upstream request for the two calls');
  assert.equal(await dailyUsed(), used, 'the hit cost no quota');
  const other = await mintKey(w.origin, ADMIN_TOKEN, { plan: 'pro' });
  const res = await fetch(w.url, { method: 'POST', headers: { ...HEADERS(), authorization: `Bearer ${other}`, accept: 'application/json' }, body: body('cache me?') });
  assert.equal((await res.json()).result.structuredContent.provider, 'p1');
  assert.equal(mine('/p1', since).length, 2, 'another principal has its own entries');
  const rows = await eventuallyAsync(() => {
    const r = d1Query(w.state, `SELECT provider FROM tool_call_logs WHERE tool = 'ask' AND created_at >= ${since} ORDER BY created_at`);
    return r.length === 3 && r;
  }, 'three usage rows');
  assert.deepEqual(rows.map((r) => r.provider), ['p1', 'cache', 'p1']);
  // The tool list says how ask is cached.
  const list = await fetch(w.url, { method: 'POST', headers: { ...HEADERS(), accept: 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }) });
  const askTool = (await list.json()).result.tools.find((t) => t.name === 'ask');
  const cacheMeta = Object.entries(askTool._meta).find(([k]) => k.endsWith('/cache'))[1];
  assert.deepEqual(cacheMeta, { ttlMs: 3_600_000, scope: 'principal', hitCostsQuota: false });
});

test('ASK_CACHE=public shares entries between callers; off caches nothing', async () => {
  for (const [mode, expectUpstream] of [['public:60', 1], ['off', 2]]) {
    const w2 = await startWorker({ vars: {
      ADMIN_TOKEN,
      PLANS: JSON.stringify({ free: { daily: 100 }, pro: { daily: 100, price: '$9/month' } }),
      PROVIDERS: JSON.stringify([{ name: 'p3', kind: 'openai', base_url: `${up.base}/p3/v1`, model: 'm3', key_secret: 'P3_KEY' }]),
      ASK_CACHE: mode,
    } });
    try {
      const since = Date.now();
      for (const k of [await mintKey(w2.origin, ADMIN_TOKEN, { plan: 'pro' }), await mintKey(w2.origin, ADMIN_TOKEN, { plan: 'pro' })]) {
        const res = await fetch(w2.url, { method: 'POST', headers: { ...HEADERS(), authorization: `Bearer ${k}`, accept: 'application/json' }, body: body('shared?') });
        assert.equal((await res.json()).result.structuredContent.provider, 'p3');
      }
      assert.equal(mine('/p3', since).length, expectUpstream, mode);
    } finally {
      await w2.stop();
    }
  }
});

async function eventuallyAsync(fn, what) {
  for (let i = 0; i < 50; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}
