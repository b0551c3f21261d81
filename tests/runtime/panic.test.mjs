// What one Rust panic does to the isolate, on the conformance bundle (the release code plus
// fixtures; `test_panic` panics on purpose). The release build aborts on a panic, and
// worker-build's entry shim then makes a new wasm instance for the next request; storage
// lives in Durable Objects, D1 and KV, so nothing stored is lost. Calls in flight in the
// same isolate at that moment fail; they must fail promptly, not hang.
// PANIC_BUNDLE names another bundle directory (for example one built with
// `worker-build --panic-unwind`) to compare.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mintKey } from './harness.mjs';
import { faultyObjects, setFaults, startServer } from './miniflare.mjs';

const ADMIN_TOKEN = 'panic-admin-token';
let server;

before(async () => {
  server = await startServer({
    bundle: process.env.PANIC_BUNDLE ?? 'build-conformance',
    vars: { ADMIN_TOKEN, OBJECT_TIMEOUT_MS: '5000', PLANS: JSON.stringify({ free: { daily: 100 }, pro: { daily: 100 } }) },
    ...faultyObjects(),
  });
});

after(async () => { await server?.stop(); });

const call = (key, name = 'hash') => fetch(server.url, {
  method: 'POST',
  // A call that has not finished 10 s later has hung.
  signal: AbortSignal.timeout(10_000),
  headers: {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25',
    authorization: `Bearer ${key}`,
  },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: { text: 'x' } } }),
});

async function dailyUsed(key) {
  const res = await fetch(`${server.origin}/api/usage?period=day`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  return (await res.json()).quota.find((q) => q.period === 'day').used;
}

test('after a panic the next request is served and stored state is intact', async (t) => {
  const key = await mintKey(server.origin, ADMIN_TOKEN, { plan: 'pro' });
  for (let i = 0; i < 2; i++) assert.equal((await call(key)).status, 200);
  const mark = server.logs.length;
  const panicked = await call(key, 'test_panic');
  t.diagnostic(`the panicking call answered ${panicked.status}`);
  assert.ok(panicked.status >= 500, `the panicking call fails (${panicked.status})`);
  await panicked.text();
  assert.match(server.logs.slice(mark).join('\n'), /panicked|test_panic was called/, 'the panic is logged');
  for (let i = 0; i < 3; i++) assert.equal((await call(key)).status, 200, 'served after the panic');
  assert.equal(await dailyUsed(key), 5, 'the counter kept every call');
  assert.equal((await fetch(`${server.origin}/health`)).status, 200);
});

test('calls in flight when another request panics end promptly; none hangs', async (t) => {
  const key = await mintKey(server.origin, ADMIN_TOKEN, { plan: 'pro' });
  await setFaults(server, 'slow', 800);
  const inFlight = Array.from({ length: 5 }, () => call(key).then(async (r) => { await r.text(); return r.status; }, (e) => e.name));
  await new Promise((r) => setTimeout(r, 200));
  await setFaults(server, 'pass');
  const panicked = await call(key, 'test_panic');
  await panicked.text();
  const started = Date.now();
  const outcomes = await Promise.all(inFlight);
  t.diagnostic(`in flight during the panic: ${outcomes.join(', ')} (ended ${Date.now() - started} ms after it)`);
  assert.ok(outcomes.every((o) => typeof o === 'number'), `every call got an answer: ${outcomes}`);
  assert.equal((await call(key)).status, 200, 'served afterwards');
  // Whatever the in-flight calls answered, the counter never holds more than were sent.
  const used = await dailyUsed(key);
  assert.ok(used >= outcomes.filter((o) => o === 200).length + 1 && used <= 6, `counted ${used}`);
});
