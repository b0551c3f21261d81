// A crash in the middle of a load run: the local server (wrangler dev, workerd, local KV,
// D1 and Durable Objects) is killed outright while clients are calling, then started again
// on the same state. Keys, OAuth grants, counters and usage rows must come back intact, and
// the quota must stay exact: no more calls admitted in the day than the plan allows. A task
// cut off by the crash runs again from its stored record and completes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorker, admin, d1Query, eventually, pkce, post, postForm, signInWithKey } from './harness.mjs';

const ADMIN_TOKEN = 'restart-admin-token';
const DAILY = 400;
const CLIENTS = 6;
const VARS = {
  ADMIN_TOKEN,
  JWT_SECRET: 'restart-jwt-secret-0123456789abcdef0123456789',
  PLANS: JSON.stringify({ free: { daily: 100 }, pro: { daily: DAILY } }),
};

const callHash = (url, key) => fetch(url, {
  method: 'POST',
  headers: {
    'content-type': 'application/json', accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${key}`,
  },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hash', arguments: { text: 'x' } } }),
});

async function dailyUsed(origin, key) {
  const res = await fetch(`${origin}/api/usage?period=day`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  return (await res.json()).quota.find((q) => q.period === 'day').used;
}

/** An OAuth grant made the way a connector makes it: registration, sign-in, code exchange. */
async function grant(w, key) {
  const reg = await post(`${w.origin}/register`, { client_name: 'restart', redirect_uris: ['http://127.0.0.1:9/cb'] });
  assert.equal(reg.status, 201);
  const { verifier, challenge } = pkce();
  const u = new URL(`${w.origin}/authorize`);
  for (const [k, v] of Object.entries({ response_type: 'code', client_id: reg.body.client_id, redirect_uri: 'http://127.0.0.1:9/cb',
    code_challenge: challenge, code_challenge_method: 'S256', state: 's', resource: `${w.origin}/mcp`, scope: 'mcp:tools mcp:usage' })) {
    u.searchParams.set(k, v);
  }
  const signed = await signInWithKey(u, key);
  assert.equal(signed.status, 303);
  const code = new URL(signed.location).searchParams.get('code');
  const tok = await postForm(`${w.origin}/token`, { grant_type: 'authorization_code', code, client_id: reg.body.client_id,
    redirect_uri: 'http://127.0.0.1:9/cb', code_verifier: verifier });
  assert.equal(tok.status, 200);
  return { clientId: reg.body.client_id, refresh: tok.body.refresh_token };
}

test('killed mid-load and restarted: keys, grants, counters and usage rows intact; the quota stays exact', { timeout: 240_000 }, async (t) => {
  const state = mkdtempSync(join(tmpdir(), 'mcp-worker-restart-'));
  let w = await startWorker({ vars: VARS, persistTo: state });
  try {
    const minted = await admin(w.origin, ADMIN_TOKEN, '/admin/keys', { plan: 'pro', label: 'restart' });
    assert.equal(minted.status, 201);
    const { key, account } = minted.body;
    const signedIn = await grant(w, key);

    // Load: CLIENTS loops calling as fast as they can until the server dies under them.
    let ok = 0;
    let failed = 0;
    const loops = Array.from({ length: CLIENTS }, async () => {
      for (;;) {
        try {
          const res = await callHash(w.url, key);
          await res.text();
          if (res.status === 200) ok += 1;
          else throw new Error(`answered ${res.status}`);
        } catch {
          failed += 1;
          return;
        }
      }
    });
    await eventually(() => ok >= 60, 'calls under load before the crash');
    await w.kill();
    await Promise.all(loops);
    t.diagnostic(`before the crash: ${ok} calls answered 200; ${failed} cut off`);
    assert.ok(ok < DAILY, 'the crash came before the limit');

    // The same address: tokens name it as their audience.
    w = await startWorker({ vars: VARS, persistTo: state, port: w.port });

    // The key and the grant survived.
    assert.equal((await callHash(w.url, key)).status, 200, 'the key still works');
    const refreshed = await postForm(`${w.origin}/token`, { grant_type: 'refresh_token', refresh_token: signedIn.refresh, client_id: signedIn.clientId });
    assert.equal(refreshed.status, 200, 'the refresh token still works');
    const asOauth = await callHash(w.url, refreshed.body.access_token);
    assert.equal(asOauth.status, 200, 'and its access token');

    // The counter kept every answered call (and at most the ones cut off in flight).
    const used = await dailyUsed(w.origin, key);
    t.diagnostic(`counted after the restart: ${used}`);
    assert.ok(used >= ok + 2 && used <= ok + 2 + CLIENTS, `counted ${used} for ${ok} + 2 answered`);

    // Exact from here: the rest of the day's allowance, and not one call more.
    const rest = await Promise.all(Array.from({ length: DAILY - used + 5 }, async () => {
      const res = await callHash(w.url, key);
      await res.text();
      return res.status;
    }));
    assert.equal(rest.filter((s) => s === 200).length, DAILY - used, 'the rest of the allowance is admitted');
    assert.equal(rest.filter((s) => s === 429).length, 5, 'then refused');
    assert.equal(await dailyUsed(w.origin, key), DAILY);

    // Usage rows: none lost that were stored before the crash, none written twice, and the
    // ones after it all arrive (each row's request id is its primary key).
    // The buffers flush about a second after their last append; give them a few.
    let rows;
    for (let i = 0; i < 20; i++) {
      [rows] = d1Query(state, `SELECT count(*) AS n, count(DISTINCT request_id) AS ids FROM tool_call_logs WHERE principal = 'acct:${account}' AND status = 'success'`);
      if (rows.n >= DAILY - CLIENTS) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    t.diagnostic(`usage rows: ${rows.n} for ${DAILY} counted calls`);
    assert.ok(rows.n >= DAILY - CLIENTS, `rows lost: ${rows.n} for ${DAILY} counted calls`);
    assert.ok(rows.n <= DAILY, `no more rows (${rows.n}) than counted calls`);
    assert.equal(rows.ids, rows.n, 'no row twice');
  } finally {
    await w.stop();
    rmSync(state, { recursive: true, force: true });
  }
});

test('killed while a task runs and restarted: the task runs again from its stored record and completes', { timeout: 120_000 }, async (t) => {
  const { startUpstreamStandIn } = await import('./upstream_standin.mjs');
  const up = await startUpstreamStandIn();
  const state = mkdtempSync(join(tmpdir(), 'mcp-worker-restart-task-'));
  const vars = { ...VARS, PROVIDERS: JSON.stringify([{ name: 'p1', kind: 'openai', base_url: `${up.base}/p1/v1`, model: 'm', key_secret: 'P1_KEY' }]),
    P1_KEY: 'sk-restart', ASK_CACHE: 'off', PLANS: JSON.stringify({ free: { daily: 100 }, pro: { daily: DAILY, price: '$9/month' } }) };
  let w = await startWorker({ vars, persistTo: state });
  try {
    const { key, account } = (await admin(w.origin, ADMIN_TOKEN, '/admin/keys', { plan: 'pro', label: 'restart-task' })).body;
    // The first attempt hangs in the middle of its answer; the one after the restart answers.
    up.state.behave['/p1'] = [{ kind: 'stream', tokens: ['never ', 'finished'], delayMs: 60_000 }, { kind: 'stream', tokens: ['after ', 'the ', 'crash'] }];
    const call = (method, params) => {
      const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28',
        'io.modelcontextprotocol/clientCapabilities': { extensions: { 'io.modelcontextprotocol/tasks': {} } } };
      return fetch(w.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json',
        'mcp-protocol-version': '2026-07-28', 'mcp-method': method, 'mcp-name': params.name ?? params.taskId, authorization: `Bearer ${key}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: meta } }) }).then((r) => r.json());
    };
    const created = await call('tools/call', { name: 'ask', arguments: { question: 'will you survive?' } });
    const taskId = created.result.taskId;
    assert.equal(created.result.resultType, 'task');
    await eventually(() => up.requests.filter((r) => r.prefix === '/p1').length === 1, 'the first upstream request');
    await w.kill();

    w = await startWorker({ vars, persistTo: state, port: w.port });
    const done = await eventually(async () => {
      const got = await call('tasks/get', { taskId });
      return got.result?.status === 'completed' && got.result;
    }, 'the task to complete after the restart');
    assert.equal(done.result.structuredContent.answer, 'after the crash');
    t.diagnostic(`upstream requests: ${up.requests.filter((r) => r.prefix === '/p1').length}`);
    const rows = await eventually(() => {
      const r = d1Query(state, `SELECT status FROM tool_call_logs WHERE principal = 'acct:${account}' AND tool = 'ask'`);
      return r.length && r;
    }, 'the usage row');
    assert.deepEqual(rows, [{ status: 'success' }], 'one row for the one task');
    assert.equal(await dailyUsed(w.origin, key), 1, 'counted once');
  } finally {
    await w.stop();
    await up.close();
    rmSync(state, { recursive: true, force: true });
  }
});
