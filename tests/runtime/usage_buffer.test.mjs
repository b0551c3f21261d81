// Usage rows through the UsageBuffer Durable Objects: every counted call's row reaches D1
// in batches, a failing D1 keeps the rows until it is back, and a restart loses none.
// The release bundle under workerd with real local KV, D1 and Durable Objects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, post, d1Query, eventually, admin as adminCall } from './harness.mjs';

const ADMIN = 'runtime-admin-token';
const VARS = { ADMIN_TOKEN: ADMIN, PLANS: JSON.stringify({ free: { daily: 100000, monthly: 1000000 } }) };
const H25 = { 'mcp-protocol-version': '2025-11-25' };

let w;
before(async () => { w = await startWorker({ vars: VARS }); });
after(async () => { await w?.stop(); });

const d1 = (sql) => d1Query(w.state, sql);
const rows = (principal, table = 'tool_call_logs') => d1(`SELECT COUNT(*) AS n FROM ${table} WHERE principal = '${principal}'`)[0].n;
async function keyed() {
  const minted = await adminCall(w.origin, ADMIN, '/admin/keys', { plan: 'free' });
  assert.equal(minted.status, 201);
  return { auth: { authorization: `Bearer ${minted.body.key}` }, principal: `acct:${minted.body.account}`, hash: minted.body.key_hash };
}
async function calls(n, auth) {
  const body = (i) => ({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'hash', arguments: { text: `t${i}` } } });
  const res = await Promise.all(Array.from({ length: n }, (_, i) => post(w.url, body(i), { ...H25, ...auth })));
  for (const r of res) assert.equal(r.status, 200);
  for (const r of res) assert.ok(r.body.result && !r.body.result.isError, JSON.stringify(r.body));
}

test('every counted call of a burst reaches D1 once, and the key\'s last use with it', async () => {
  const { auth, principal, hash } = await keyed();
  const started = Date.now();
  await calls(120, auth);
  await eventually(() => rows(principal) === 120, '120 rows');
  assert.equal(d1(`SELECT COUNT(DISTINCT request_id) AS n FROM tool_call_logs WHERE principal = '${principal}'`)[0].n, 120);
  const used = d1(`SELECT last_used_at FROM api_keys WHERE key_hash = '${hash}'`)[0].last_used_at;
  assert.ok(used >= started, `last_used_at ${used} after the burst began (${started})`);
  const usage = await fetch(`${w.origin}/api/usage`, { headers: auth }).then((r) => r.json());
  assert.equal(usage.totals.calls, 120);
});

test('while D1 cannot take the rows, calls are served and the rows wait; they arrive once it can', async () => {
  const { auth, principal } = await keyed();
  d1('ALTER TABLE tool_call_logs RENAME TO tool_call_logs_away');
  try {
    await calls(15, auth);
    await new Promise((r) => setTimeout(r, 2500)); // past the first flush, which fails
    assert.equal(rows(principal, 'tool_call_logs_away'), 0, 'nothing was written while the table was away');
  } finally {
    d1('ALTER TABLE tool_call_logs_away RENAME TO tool_call_logs');
  }
  await eventually(async () => { await new Promise((r) => setTimeout(r, 500)); return rows(principal) === 15; }, 'the 15 rows after D1 is back');
  assert.ok(w.logs.join('').includes('usage_flush_failed'), 'the failed flush was logged');
});

test('rows still buffered when the server stops are written after it restarts', async () => {
  const { auth, principal } = await keyed();
  // D1 refuses the rows until the restart, so all 30 are still in the buffer objects then.
  d1('ALTER TABLE tool_call_logs RENAME TO tool_call_logs_away');
  let restored = false;
  try {
    await calls(30, auth);
    const state = w.state;
    await w.stop({ keepState: true });
    d1('ALTER TABLE tool_call_logs_away RENAME TO tool_call_logs');
    restored = true;
    assert.equal(rows(principal), 0, 'none was written before the stop');
    w = await startWorker({ vars: VARS, persistTo: state });
  } finally {
    if (!restored) d1('ALTER TABLE tool_call_logs_away RENAME TO tool_call_logs');
  }
  await eventually(async () => { await new Promise((r) => setTimeout(r, 500)); return rows(principal) === 30; }, 'all 30 rows after the restart');
});
