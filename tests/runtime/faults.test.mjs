// Faults under workerd: the server's QuotaCounter binding is rewired through a stand-in
// that passes requests on, delays, fails or throws, so that a slow or failing Durable
// Object, a client that leaves mid-call and a KV miss for a fresh key can be caused at will.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mintKey } from './harness.mjs';
import { faultyObjects, objectRequests, setFaults, startServer } from './miniflare.mjs';

const ADMIN_TOKEN = 'faults-admin-token';
const TIMEOUT_MS = 400;
const DAILY = 3;
let server;

before(async () => {
  server = await startServer({
    vars: {
      ADMIN_TOKEN,
      OBJECT_TIMEOUT_MS: String(TIMEOUT_MS),
      REQUEST_LOG: 'all',
      PLANS: JSON.stringify({ free: { daily: 100 }, pro: { daily: DAILY } }),
    },
    ...faultyObjects(),
  });
});

after(async () => { await server?.stop(); });

const setMode = (mode, delayMs) => setFaults(server, mode, delayMs);

const call = (key, signal) => fetch(server.url, {
  method: 'POST',
  signal,
  headers: {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25',
    ...(key ? { authorization: `Bearer ${key}` } : {}),
  },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hash', arguments: { text: 'x' } } }),
});

/** Calls counted today for the key's account, as `/api/usage` reports them. */
async function dailyUsed(key) {
  const res = await fetch(`${server.origin}/api/usage?period=day`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  return (await res.json()).quota.find((q) => q.period === 'day').used;
}

async function expect503(key, what) {
  const res = await call(key);
  const body = await res.json();
  assert.equal(res.status, 503, what);
  assert.ok(Number(res.headers.get('retry-after')) > 0, `${what}: Retry-After`);
  assert.equal(body.error.code, -32603, what);
  assert.equal(body.error.message, 'the quota store is unavailable; try again', `${what}: the cause stays in the log`);
}

test('a failing or throwing counter object fails closed with 503 and Retry-After', async () => {
  const key = await mintKey(server.origin, ADMIN_TOKEN, { plan: 'free' });
  await setMode('fail');
  await expect503(key, 'object answers 500');
  await setMode('throw');
  await expect503(key, 'object throws');
  await setMode('pass');
  assert.equal((await call(key)).status, 200, 'served again once the object recovers');
});

test('a slow counter object: 503 after the timeout, and nothing it receives late is counted', async () => {
  const key = await mintKey(server.origin, ADMIN_TOKEN, { plan: 'pro' });
  await setMode('slow', TIMEOUT_MS * 3);
  for (let i = 0; i < 2; i++) {
    const started = Date.now();
    await expect503(key, 'slow object');
    const took = Date.now() - started;
    assert.ok(took >= TIMEOUT_MS && took < TIMEOUT_MS * 3, `answered after the timeout, not after the object (${took} ms)`);
  }
  // Let the delayed requests reach the object: they arrive after their deadline.
  await new Promise((r) => setTimeout(r, TIMEOUT_MS * 3));
  await setMode('pass');
  const statuses = [];
  for (let i = 0; i < DAILY + 2; i++) statuses.push((await call(key)).status);
  assert.deepEqual(statuses, [...Array(DAILY).fill(200), 429, 429],
    'exactly the plan limit is admitted: the two refused calls cost nothing');
  assert.equal(await dailyUsed(key), DAILY);
});

test('concurrent calls against a slow object never admit more than the limit', async () => {
  const key = await mintKey(server.origin, ADMIN_TOKEN, { plan: 'pro' });
  // Half the calls meet a slow object, then it recovers while the rest are on their way.
  await setMode('slow', TIMEOUT_MS * 2);
  const first = Array.from({ length: 4 }, () => call(key));
  await new Promise((r) => setTimeout(r, 50));
  await setMode('pass');
  const rest = Array.from({ length: 6 }, () => call(key));
  const statuses = await Promise.all([...first, ...rest].map(async (p) => (await p).status));
  const admitted = statuses.filter((s) => s === 200).length;
  assert.ok(statuses.every((s) => [200, 429, 503].includes(s)), statuses.join(','));
  assert.ok(admitted <= DAILY, `admitted ${admitted} of a limit of ${DAILY}: ${statuses}`);
  assert.equal(statuses.slice(0, 4).filter((s) => s === 503).length, 4, 'the slow ones failed closed');
  await new Promise((r) => setTimeout(r, TIMEOUT_MS * 3));
  assert.equal(await dailyUsed(key), admitted, 'the counter holds exactly the admitted calls');
});

test('clients that leave mid-call leave no uncaught error in the log', async () => {
  const key = await mintKey(server.origin, ADMIN_TOKEN, { plan: 'free' });
  await setMode('slow', 300);
  const mark = server.logs.length;
  for (let i = 0; i < 5; i++) {
    const ctl = new AbortController();
    const pending = call(key, ctl.signal).catch((e) => e);
    await new Promise((r) => setTimeout(r, 80));
    ctl.abort();
    assert.equal((await pending).name, 'AbortError');
  }
  await new Promise((r) => setTimeout(r, 800));
  await setMode('pass');
  assert.equal((await call(key)).status, 200, 'the server serves on');
  const lines = server.logs.slice(mark).join('\n');
  assert.match(lines, /"status":200/, 'the log is read (REQUEST_LOG=all)');
  assert.doesNotMatch(lines, /Network connection lost|Uncaught|uncaught|panicked/i, lines);
});

test('a pure tool\'s call makes one trip to its counter; usage rows reach the buffers in batches', async () => {
  await setMode('pass');
  const key = await mintKey(server.origin, ADMIN_TOKEN, { plan: 'free' });
  const before = await objectRequests(server);
  const calls = 24;
  const res = await Promise.all(Array.from({ length: calls }, () => call(key)));
  for (const r of res) assert.equal(r.status, 200);
  const after = await objectRequests(server);
  assert.equal(after.seen - before.seen, calls, 'one counter request per call');
  // The rows went with the counts; the counter passes them on about half a second later.
  const usage = () => fetch(`${server.origin}/api/usage?period=day`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.json());
  const deadline = Date.now() + 15_000;
  let totals;
  while (Date.now() < deadline) {
    totals = (await usage()).totals;
    if (totals.calls === calls) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(totals.calls, calls, 'every call has its usage row');
  // Its row is the counter's, yet the request's log line (REQUEST_LOG=all) still names it.
  assert.match(server.logs.join('\n'), /"tool":"hash","outcome":"success"/);
  const appended = (await objectRequests(server)).appends - before.appends;
  assert.ok(appended >= 1 && appended <= calls / 4, `${appended} appends to the usage buffers for ${calls} calls`);
});

test('a key missing from KV right after minting is refused with a message that says to retry', async () => {
  const key = await mintKey(server.origin, ADMIN_TOKEN, { plan: 'free' });
  const kv = await server.mf.getKVNamespace('KV', 'server');
  const name = `key:${createHash('sha256').update(key).digest('hex')}`;
  const record = await kv.get(name);
  assert.ok(record, 'minting wrote the KV record');
  // What a location that has not seen the key yet (or cached its absence) answers.
  await kv.delete(name);
  const res = await call(key);
  const body = await res.json();
  assert.equal(res.status, 401);
  assert.match(body.error.message, /unknown API key.*less than a minute ago.*retry in a minute/);
  assert.match(res.headers.get('www-authenticate'), /error="invalid_token"/);
  await kv.put(name, record);
  assert.equal((await call(key)).status, 200, 'served once the record arrives');
});
