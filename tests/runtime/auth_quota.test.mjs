// Keys, tokens, scopes, exact quotas and usage logs against the release bundle under
// workerd with real local KV, D1 and Durable Objects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, post, d1Query, eventually, admin as adminCall, signJwt, nowS } from './harness.mjs';

const ADMIN = 'runtime-admin-token';
const JWT_SECRET = 'runtime-jwt-secret-0123456789abcdef0123';
const VARS = {
  ADMIN_TOKEN: ADMIN,
  JWT_SECRET,
  ANON_DAILY_LIMIT: '4',
  PLANS: JSON.stringify({
    free: { daily: 100, monthly: 1000 },
    small: { daily: 20, monthly: 1000, price: '$1/month' },
    pro: { daily: 5000, monthly: 100000, price: '$9/month' },
  }),
};

let w;
before(async () => { w = await startWorker({ vars: VARS }); });
after(async () => { await w?.stop(); });

const H25 = { 'mcp-protocol-version': '2025-11-25' };
const callBody = (tool, args = {}, id = 1) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: args } });
const call = (tool, args, headers = {}) => post(w.url, callBody(tool, args), { ...H25, ...headers });

const admin = (path, body) => adminCall(w.origin, ADMIN, path, body);

const d1 = (sql) => d1Query(w.state, sql);

const jwt = (claims, secret = JWT_SECRET, alg = 'HS256') => signJwt(claims, secret, alg);
const now = nowS;
const b64u = (b) => Buffer.from(b).toString('base64url');
const claims = (over = {}) => ({ iss: w.origin, aud: `${w.origin}/mcp`, sub: 'acct_oauthuser', scope: 'mcp:tools mcp:usage', plan: 'pro', exp: now() + 600, iat: now(), ...over });

test('a key minted through the admin route works at /mcp and is refused after revocation', async () => {
  const minted = await admin('/admin/keys', { plan: 'pro', label: 'runtime' });
  assert.equal(minted.status, 201);
  const auth = { authorization: `Bearer ${minted.body.key}` };
  const who = await call('whoami', {}, auth);
  assert.equal(who.status, 200);
  assert.equal(who.body.result.structuredContent.kind, 'api_key');
  assert.equal(who.body.result.structuredContent.plan, 'pro');
  assert.ok(who.headers.get('ratelimit'));
  const listed = await admin(`/admin/keys?account=${minted.body.account}`);
  assert.equal(listed.body.keys[0].key_hash, minted.body.key_hash);
  assert.ok(!JSON.stringify(listed.body).includes(minted.body.key), 'listing never shows the key');
  const rows = d1(`SELECT key_hash FROM api_keys WHERE account_id = '${minted.body.account}'`);
  assert.deepEqual(rows.map((r) => r.key_hash), [minted.body.key_hash]);

  assert.equal((await admin('/admin/keys/revoke', { key_hash: minted.body.key_hash })).status, 200);
  for (const method of ['tools/call', 'tools/list']) {
    const r = method === 'tools/call' ? await call('whoami', {}, auth) : await post(w.url, { jsonrpc: '2.0', id: 2, method }, { ...H25, ...auth });
    assert.equal(r.status, 401, method);
    assert.match(r.headers.get('www-authenticate'), /error="invalid_token"/);
  }
});

test('50 concurrent calls at a remaining limit of 20 admit exactly 20 and log exactly that', async () => {
  const minted = await admin('/admin/keys', { plan: 'small' });
  const auth = { authorization: `Bearer ${minted.body.key}` };
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => post(w.url, callBody('hash', { text: String(i) }, i), { ...H25, ...auth })));
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 20);
  assert.equal(statuses.filter((s) => s === 429).length, 30);
  const refused = results.find((r) => r.status === 429);
  assert.ok(Number(refused.headers.get('retry-after')) > 0);
  assert.equal(refused.body.error.data.limit, 20);
  assert.equal(refused.body.error.data.upgrade[0].plan, 'pro');
  const principal = `acct:${minted.body.account}`;
  const counts = await eventually(() => {
    const rows = d1(`SELECT status, COUNT(*) AS n FROM tool_call_logs WHERE principal = '${principal}' GROUP BY status ORDER BY status`);
    return rows.reduce((a, r) => a + r.n, 0) === 50 ? rows : null;
  }, '50 usage rows');
  assert.deepEqual(counts, [{ status: 'rate_limited', n: 30 }, { status: 'success', n: 20 }]);

  const usage = await fetch(`${w.origin}/api/usage?period=day`, { headers: auth }).then((r) => r.json());
  assert.equal(usage.totals.calls, 50);
  assert.equal(usage.totals.success, 20);
  assert.equal(usage.quota[0].remaining, 0);
  assert.equal(usage.tools[0].tool, 'hash');
});

test('anonymous calls from one /64 share a bucket; another /64 and IPv4 do not', async () => {
  const from = (ip) => ({ 'cf-connecting-ip': ip });
  for (let i = 0; i < 4; i++) {
    const ip = `2001:db8:77:1::${i + 1}`;
    assert.equal((await call('hash', { text: 'x' }, from(ip))).status, 200, ip);
  }
  const over = await call('hash', { text: 'x' }, from('2001:db8:77:1:abcd::9'));
  // This server signs people in, so the used-up anonymous bucket is asked to (lazy auth).
  assert.equal(over.status, 401);
  assert.equal(over.body.error.data.reason, 'anonymous_limit');
  assert.match(over.headers.get('ratelimit'), /^"day";r=0;t=\d+$/);
  assert.equal((await call('hash', { text: 'x' }, from('2001:db8:77:2::1'))).status, 200);
  assert.equal((await call('hash', { text: 'x' }, from('::ffff:198.51.100.7'))).status, 200);
  const who = await call('whoami', {}, from('2001:db8:77:2::1'));
  assert.equal(who.body.result.structuredContent.subject, '2001:db8:77:2::/64');
  const list = await post(w.url, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, { ...H25, ...from('2001:db8:77:1::1') });
  assert.equal(list.status, 200, 'discovery is not counted');
});

test('bad tokens get 401 with the challenge; a missing scope gets 403', async () => {
  const metadata = `resource_metadata="${w.origin}/.well-known/oauth-protected-resource/mcp"`;
  const good = await call('hash', { text: 'x' }, { authorization: `Bearer ${jwt(claims())}` });
  assert.equal(good.status, 200);
  assert.equal((await call('whoami', {}, { authorization: `Bearer ${jwt(claims())}` })).body.result.structuredContent.kind, 'oauth');
  const cases = {
    forged: `${b64u('{"alg":"none"}')}.${b64u(JSON.stringify(claims()))}.`,
    expired: jwt(claims({ exp: now() - 3600 })),
    'wrong audience': jwt(claims({ aud: 'https://other.example/mcp' })),
    'wrong issuer': jwt(claims({ iss: 'https://other.example' })),
    'wrong signature': jwt(claims(), 'not-the-secret'),
    garbage: 'abc.def',
  };
  for (const [what, token] of Object.entries(cases)) {
    const r = await call('hash', { text: 'x' }, { authorization: `Bearer ${token}` });
    assert.equal(r.status, 401, what);
    const c = r.headers.get('www-authenticate');
    assert.ok(c.startsWith(`Bearer ${metadata}`), `${what}: ${c}`);
    assert.match(c, /error="invalid_token"/, what);
  }
  const scoped = await call('hash', { text: 'x' }, { authorization: `Bearer ${jwt(claims({ scope: 'mcp:usage' }))}` });
  assert.equal(scoped.status, 403);
  assert.match(scoped.headers.get('www-authenticate'), /error="insufficient_scope"/);
  assert.match(scoped.headers.get('www-authenticate'), /scope="mcp:tools"/);
  const prm = await fetch(`${w.origin}/.well-known/oauth-protected-resource/mcp`).then((r) => r.json());
  assert.equal(prm.resource, `${w.origin}/mcp`);
});

test('quota counters and usage logs survive a restart of the local server', async () => {
  const minted = await admin('/admin/keys', { plan: 'pro' });
  const auth = { authorization: `Bearer ${minted.body.key}` };
  for (let i = 0; i < 3; i++) assert.equal((await call('hash', { text: 'r' }, auth)).status, 200);
  const principal = `acct:${minted.body.account}`;
  await eventually(() => d1(`SELECT COUNT(*) AS n FROM tool_call_logs WHERE principal = '${principal}'`)[0].n === 3, 'three rows');
  const state = w.state;
  await w.stop({ keepState: true });
  w = await startWorker({ vars: VARS, persistTo: state });
  const who = await call('whoami', {}, auth);
  assert.equal(who.status, 200);
  assert.equal(who.body.result.structuredContent.quota[0].used, 4, 'the day counter continued from 3');
  assert.equal(d1(`SELECT COUNT(*) AS n FROM tool_call_logs WHERE principal = '${principal}'`)[0].n >= 3, true);
});

test('the admin routes refuse a wrong token and bad input without storing anything', async () => {
  const wrong = await fetch(`${w.origin}/admin/keys`, { method: 'POST', headers: { authorization: 'Bearer nope' }, body: '{"plan":"pro"}' });
  assert.equal(wrong.status, 401);
  const before = d1('SELECT COUNT(*) AS n FROM api_keys')[0].n;
  for (const body of [{ plan: 'gold' }, { plan: 'pro', scopes: ['root'] }, { plan: 'pro', expires_in_days: -1 }]) {
    assert.equal((await admin('/admin/keys', body)).status, 400, JSON.stringify(body));
  }
  assert.equal(d1('SELECT COUNT(*) AS n FROM api_keys')[0].n, before);
});
