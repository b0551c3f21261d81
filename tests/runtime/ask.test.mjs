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

// ---- tasks (2026-07-28, io.modelcontextprotocol/tasks) ----

const TASKS = 'io.modelcontextprotocol/tasks';
/** A 2026-07-28 request (headers mirrored from the body), declaring the tasks extension unless `plain`. */
async function rpc2026(method, params, { plain = false, auth = key, name } = {}) {
  const caps = plain ? {} : { extensions: { [TASKS]: {} } };
  const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': caps };
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${auth}`,
    'mcp-protocol-version': '2026-07-28', 'mcp-method': method };
  const n = name ?? params.name ?? params.taskId;
  if (n) headers['mcp-name'] = n;
  const res = await fetch(w.url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 7, method, params: { ...params, _meta: meta } }) });
  const text = await res.text();
  const msg = res.headers.get('content-type')?.startsWith('text/event-stream') ? messages(text).at(-1) : JSON.parse(text);
  return { status: res.status, ...msg };
}

const usageRows = (since) => d1Query(w.state, `SELECT status, provider, input_tokens, output_tokens FROM tool_call_logs WHERE tool = 'ask' AND created_at >= ${since}`);

test('an ask task outlives its request: the handle comes at once, tasks/get inlines the answer later, counted once', async (t) => {
  const since = Date.now();
  const before = await dailyUsed();
  script('/p1', { kind: 'stream', tokens: ['slow ', 'and ', 'steady ', 'answer'], firstDelayMs: 1500, delayMs: 300 });
  const started = Date.now();
  const created = await rpc2026('tools/call', { name: 'ask', arguments: { question: 'take your time' } });
  const handedOut = Date.now() - started;
  assert.equal(created.status, 200, JSON.stringify(created));
  const task = created.result;
  assert.equal(task.resultType, 'task');
  assert.match(task.taskId, /^[0-9a-f]{64}$/, 'a task id is its object\'s id');
  assert.equal(task.status, 'working');
  assert.ok(handedOut < 1500, `the handle came before the upstream's first token (${handedOut} ms)`);
  assert.equal(await dailyUsed(), before + 1, 'counted when admitted');

  // The request that made it is over; the task goes on.
  const working = await rpc2026('tasks/get', { taskId: task.taskId });
  assert.equal(working.result.status, 'working');
  assert.equal(working.result.resultType, 'complete');
  assert.equal(working.result.result, undefined);

  // Another account, a request without the extension, an unknown id.
  const other = await mintKey(w.origin, ADMIN_TOKEN, { plan: 'pro' });
  const foreign = await rpc2026('tasks/get', { taskId: task.taskId }, { auth: other });
  assert.deepEqual([foreign.status, foreign.error?.code], [400, -32602], 'another caller cannot see it');
  const undeclared = await rpc2026('tasks/get', { taskId: task.taskId }, { plain: true });
  assert.deepEqual([undeclared.status, undeclared.error?.code], [400, -32021]);
  const unknown = await rpc2026('tasks/get', { taskId: 'task_nope' });
  assert.equal(unknown.error?.code, -32602);
  // Well-formed but not made by this namespace: refused before reaching any object.
  const forged = await rpc2026('tasks/get', { taskId: 'ab'.repeat(32) });
  assert.deepEqual([forged.status, forged.error?.code], [400, -32602]);
  const mismatch = await rpc2026('tasks/get', { taskId: task.taskId }, { name: 'task_other' });
  assert.deepEqual([mismatch.status, mismatch.error?.code], [400, -32020], 'Mcp-Name must name the task');

  const done = await eventuallyAsync(async () => {
    const r = await rpc2026('tasks/get', { taskId: task.taskId });
    return r.result?.status !== 'working' && r.result;
  }, 'the task to end');
  t.diagnostic(`handle after ${handedOut} ms; completed after ${Date.now() - started} ms`);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.equal(done.result.structuredContent.answer, 'slow and steady answer');
  assert.equal(done.result.isError, false);
  const rows = await eventuallyAsync(() => { const r = usageRows(since); return r.length && r; }, 'the usage row');
  assert.deepEqual(rows, [{ status: 'success', provider: 'p1', input_tokens: 12, output_tokens: 4 }]);
  assert.equal(await dailyUsed(), before + 1, 'counted once');
});

test('tasks/cancel stops a running ask task at once: the upstream sees the abort, the task reads cancelled, the call is refunded', async () => {
  const since = Date.now();
  const before = await dailyUsed();
  script('/p1', { kind: 'stream', delayMs: 500 });
  const { result: task } = await rpc2026('tools/call', { name: 'ask', arguments: { question: 'never mind' } });
  assert.equal(task.resultType, 'task');
  await eventuallyAsync(() => mine('/p1', since).length, 'the upstream request');
  const other = await mintKey(w.origin, ADMIN_TOKEN, { plan: 'pro' });
  const foreign = await rpc2026('tasks/cancel', { taskId: task.taskId }, { auth: other });
  assert.equal(foreign.error?.code, -32602, 'another caller cannot cancel it');
  assert.ok(!mine('/p1', since)[0].aborted);

  const ack = await rpc2026('tasks/cancel', { taskId: task.taskId });
  assert.deepEqual(ack.result, { resultType: 'complete' });
  await eventuallyAsync(() => mine('/p1', since)[0].aborted, 'the upstream request aborted');
  const got = await rpc2026('tasks/get', { taskId: task.taskId });
  assert.equal(got.result.status, 'cancelled');
  assert.equal(got.result.result, undefined);
  const rows = await eventuallyAsync(() => { const r = usageRows(since); return r.length && r; }, 'the usage row');
  assert.equal(rows[0].status, 'cancelled');
  assert.equal(await dailyUsed(), before, 'refunded');
  const again = await rpc2026('tasks/cancel', { taskId: task.taskId });
  assert.deepEqual(again.result, { resultType: 'complete' }, 'cancelling an ended task is acknowledged');
});

test('without the extension ask runs in the request, and tools/list says it may run as a task', async () => {
  script('/p1', { kind: 'stream' });
  const plain = await rpc2026('tools/call', { name: 'ask', arguments: { question: 'sync please' } }, { plain: true });
  assert.equal(plain.result.resultType, 'complete');
  assert.equal(plain.result.taskId, undefined);
  assert.equal(plain.result.structuredContent.provider, 'p1');
  const list = await rpc2026('tools/list', {}, { plain: true });
  const byName = Object.fromEntries(list.result.tools.map((tool) => [tool.name, tool]));
  assert.deepEqual(byName.ask.execution, { taskSupport: 'optional' });
  assert.equal(byName.whoami.execution, undefined);
  const discover = await rpc2026('server/discover', {}, { plain: true });
  assert.deepEqual(discover.result.capabilities.extensions, { [TASKS]: {} });
});

async function eventuallyAsync(fn, what) {
  for (let i = 0; i < 50; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}
