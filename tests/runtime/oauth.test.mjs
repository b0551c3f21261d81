// The built-in authorization server, driven the way a connector drives it: discovery from
// a 401, metadata, registration, sign-in with an API key, code exchange, calls with the
// access token, refresh and revocation. Real clients where they run headless: the official
// TypeScript SDK's OAuth client, and mcp-remote. The release bundle under workerd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { startWorker, post, postForm, ROOT, mintKey as mint, pkce, signInWithKey } from './harness.mjs';

const ADMIN = 'runtime-admin-token';
let w;
let docs; // serves client metadata documents on 127.0.0.1
const documents = new Map();
before(async () => {
  docs = createServer((req, res) => {
    const doc = documents.get(req.url);
    if (!doc) { res.writeHead(404); return res.end(); }
    if (doc.silent) return undefined; // never answers
    if (doc.redirectTo) { res.writeHead(302, { location: doc.redirectTo }); return res.end(); }
    res.writeHead(200, { 'content-type': doc.contentType ?? 'application/json' });
    const body = doc.body ?? doc;
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
  await new Promise((r) => docs.listen(0, '127.0.0.1', r));
  w = await startWorker({ vars: {
    ADMIN_TOKEN: ADMIN,
    JWT_SECRET: 'runtime-oauth-jwt-secret-0123456789abcdef',
    OAUTH_ACCESS_TTL_S: '3',
    OAUTH_CIMD_ALLOW_HTTP_LOOPBACK: 'true',
    ANON_DAILY_LIMIT: '0',
    PLANS: JSON.stringify({ free: { daily: 100 }, pro: { daily: 1000, price: '$9/month' } }),
  } });
});
after(async () => { await w?.stop(); docs?.closeAllConnections(); docs?.close(); });

const docsBase = () => `http://127.0.0.1:${docs.address().port}`;

const mintKey = (plan = 'pro', origin = w.origin) => mint(origin, ADMIN, { plan, label: 'oauth runtime' });

/** The user at the sign-in page: opens it, pastes the key, presses Allow. Returns the redirect. */
async function signIn(authorizationUrl, apiKey, action = 'approve') {
  const r = await signInWithKey(authorizationUrl, apiKey, action);
  assert.equal(r.pageHeaders.get('x-frame-options'), 'DENY');
  return r;
}

class HeadlessProvider {
  constructor(apiKey) { this.apiKey = apiKey; this.redirects = []; this._tokens = undefined; this._client = undefined; }
  get redirectUrl() { return 'http://127.0.0.1:33418/callback'; }
  get clientMetadata() {
    return { client_name: 'SDK headless connector', redirect_uris: [this.redirectUrl], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  state() { return randomBytes(8).toString('hex'); }
  clientInformation() { return this._client; }
  saveClientInformation(info) { this._client = info; }
  tokens() { return this._tokens; }
  saveTokens(t) { this._tokens = t; }
  saveCodeVerifier(v) { this._verifier = v; }
  codeVerifier() { return this._verifier; }
  async redirectToAuthorization(url) {
    this.redirects.push(url);
    const r = await signIn(url, this.apiKey);
    assert.equal(r.status, 303);
    const back = new URL(r.location);
    assert.equal(back.searchParams.get('state'), url.searchParams.get('state'));
    this.code = back.searchParams.get('code');
  }
}

async function connect(provider) {
  const client = new Client({ name: 'oauth-runtime', version: '1.0.0' });
  try {
    await client.connect(new StreamableHTTPClientTransport(new URL(w.url), { authProvider: provider }));
    return client;
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  const transport = new StreamableHTTPClientTransport(new URL(w.url), { authProvider: provider });
  await transport.finishAuth(provider.code);
  const again = new Client({ name: 'oauth-runtime', version: '1.0.0' });
  await again.connect(new StreamableHTTPClientTransport(new URL(w.url), { authProvider: provider }));
  return again;
}

test('the TypeScript SDK OAuth client discovers, registers, signs in with a key, calls, refreshes and is revoked', async () => {
  const provider = new HeadlessProvider(await mintKey('pro'));
  const client = await connect(provider);
  try {
    // Discovery started from the 401 and found this server's authorization endpoint.
    assert.equal(provider.redirects.length, 1);
    const authz = provider.redirects[0];
    assert.equal(`${authz.origin}${authz.pathname}`, `${w.origin}/authorize`);
    assert.equal(authz.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authz.searchParams.get('resource'), `${w.origin}/mcp`);
    assert.match(provider.clientInformation().client_id, /^mcpc_/);

    const who = await client.callTool({ name: 'whoami', arguments: {} });
    assert.equal(who.structuredContent.kind, 'oauth');
    assert.equal(who.structuredContent.plan, 'pro');
    const firstRefresh = provider.tokens().refresh_token;

    // The access token lives 3 s; the SDK refreshes on the 401 and retries.
    await new Promise((r) => setTimeout(r, 4000));
    const again = await client.callTool({ name: 'hash', arguments: { text: 'abc' } });
    assert.equal(again.isError, false);
    assert.notEqual(provider.tokens().refresh_token, firstRefresh, 'the refresh token was rotated');
    assert.equal(provider.redirects.length, 1, 'refreshed without asking the user again');

    // Revoked: once the access token expires, the refresh is refused and the user is asked again.
    const rv = await fetch(`${w.origin}/revoke`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: provider.tokens().refresh_token }).toString() });
    assert.equal(rv.status, 200);
    await new Promise((r) => setTimeout(r, 4000));
    await assert.rejects(client.callTool({ name: 'whoami', arguments: {} }), 'not served after revocation');
    const refused = await token({ grant_type: 'refresh_token', refresh_token: provider.tokens()?.refresh_token ?? 'x', client_id: provider.clientInformation().client_id });
    assert.equal(refused.status, 400);
  } finally {
    await client.close().catch(() => {});
  }
});

async function register(redirect = 'http://127.0.0.1:9/cb') {
  const r = await post(`${w.origin}/register`, { client_name: 'raw', redirect_uris: [redirect] });
  assert.equal(r.status, 201);
  return r.body.client_id;
}

function authorizeUrl(clientId, challenge, over = {}) {
  const u = new URL(`${w.origin}/authorize`);
  const p = { response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:9/cb', code_challenge: challenge,
    code_challenge_method: 'S256', state: 's1', resource: `${w.origin}/mcp`, scope: 'mcp:tools', ...over };
  for (const [k, v] of Object.entries(p)) if (v !== undefined) u.searchParams.set(k, v);
  return u;
}

const token = (params) => postForm(`${w.origin}/token`, params);

test('discovery: a 401 points at metadata that points at this authorization server', async () => {
  const r = await post(w.url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hash', arguments: { text: 'a' } } }, { 'mcp-protocol-version': '2025-11-25' });
  assert.equal(r.status, 401);
  const prm = /resource_metadata="([^"]+)"/.exec(r.headers.get('www-authenticate'))[1];
  const meta = await (await fetch(prm)).json();
  const as = await (await fetch(`${meta.authorization_servers[0]}/.well-known/oauth-authorization-server`)).json();
  assert.equal(as.issuer, w.origin);
  assert.deepEqual(as.code_challenge_methods_supported, ['S256']);
  assert.equal(as.client_id_metadata_document_supported, true);
  assert.equal((await fetch(`${w.origin}/.well-known/openid-configuration`)).status, 404);
});

test('abuse: wrong verifier, reused code, foreign redirect URI, mismatched resource, replayed refresh token', async () => {
  const key = await mintKey('pro');
  const clientId = await register();
  const { verifier, challenge } = pkce();
  const first = await signIn(authorizeUrl(clientId, challenge), key);
  const code = new URL(first.location).searchParams.get('code');
  const base = { grant_type: 'authorization_code', code, client_id: clientId, redirect_uri: 'http://127.0.0.1:9/cb' };
  const wrong = await token({ ...base, code_verifier: pkce().verifier });
  assert.deepEqual([wrong.status, wrong.body.error], [400, 'invalid_grant']);
  const ok = await token({ ...base, code_verifier: verifier });
  assert.equal(ok.status, 200);
  const reused = await token({ ...base, code_verifier: verifier });
  assert.deepEqual([reused.status, reused.body.error], [400, 'invalid_grant']);
  const afterReplay = await token({ grant_type: 'refresh_token', refresh_token: ok.body.refresh_token, client_id: clientId });
  assert.equal(afterReplay.status, 400, 'a replayed code revokes the tokens it issued');

  // Foreign redirect URI: shown on a page, never redirected to.
  const foreign = await fetch(authorizeUrl(clientId, challenge, { redirect_uri: 'https://evil.example/cb' }), { redirect: 'manual' });
  assert.equal(foreign.status, 400);
  assert.equal(foreign.headers.get('location'), null);
  // Mismatched resource: back to the client with invalid_target.
  const res = await fetch(authorizeUrl(clientId, challenge, { resource: 'https://other.example/mcp' }), { redirect: 'manual' });
  assert.equal(res.status, 303);
  assert.equal(new URL(res.headers.get('location')).searchParams.get('error'), 'invalid_target');
  const plain = await fetch(authorizeUrl(clientId, challenge, { code_challenge_method: 'plain' }), { redirect: 'manual' });
  assert.equal(new URL(plain.headers.get('location')).searchParams.get('error'), 'invalid_request');

  // Refresh rotation; an unknown (expired-and-purged or forged) token is refused.
  const { verifier: v2, challenge: c2 } = pkce();
  const second = await signIn(authorizeUrl(clientId, c2), key);
  const t = await token({ ...base, code: new URL(second.location).searchParams.get('code'), code_verifier: v2 });
  const r1 = t.body.refresh_token;
  const rotated = await token({ grant_type: 'refresh_token', refresh_token: r1, client_id: clientId });
  assert.equal(rotated.status, 200);
  assert.notEqual(rotated.body.refresh_token, r1);
  const foreignClient = await token({ grant_type: 'refresh_token', refresh_token: rotated.body.refresh_token, client_id: await register() });
  assert.equal(foreignClient.status, 400, 'another client cannot use it (and the family is revoked)');
  const forged = await token({ grant_type: 'refresh_token', refresh_token: `${r1.split('.')[0]}.${'0'.repeat(64)}`, client_id: clientId });
  assert.deepEqual([forged.status, forged.body.error], [400, 'invalid_grant']);
});

test('revoking the API key stops the tokens it signed in at their next refresh', async () => {
  const key = await mintKey('pro');
  const clientId = await register();
  const { verifier, challenge } = pkce();
  const s = await signIn(authorizeUrl(clientId, challenge), key);
  const t = await token({ grant_type: 'authorization_code', code: new URL(s.location).searchParams.get('code'), client_id: clientId,
    redirect_uri: 'http://127.0.0.1:9/cb', code_verifier: verifier });
  const hash = createHash('sha256').update(key).digest('hex');
  const rv = await fetch(`${w.origin}/admin/keys/revoke`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ key_hash: hash }) });
  assert.equal(rv.status, 200);
  const refreshed = await token({ grant_type: 'refresh_token', refresh_token: t.body.refresh_token, client_id: clientId });
  assert.deepEqual([refreshed.status, refreshed.body.error], [400, 'invalid_grant']);
});

test('client metadata documents: a truthful one signs in, a lying one is refused', async () => {
  const key = await mintKey('pro');
  const good = `${docsBase()}/good.json`;
  documents.set('/good.json', { client_id: good, client_name: 'Document Client', redirect_uris: ['http://127.0.0.1:9/cb'] });
  const liar = `${docsBase()}/liar.json`;
  documents.set('/liar.json', { client_id: 'https://claude.ai/oauth/client.json', client_name: 'Claude', redirect_uris: ['http://127.0.0.1:9/cb'] });
  const { verifier, challenge } = pkce();
  const s = await signIn(authorizeUrl(good, challenge), key);
  assert.match(s.html, /Document Client/);
  const t = await token({ grant_type: 'authorization_code', code: new URL(s.location).searchParams.get('code'), client_id: good,
    redirect_uri: 'http://127.0.0.1:9/cb', code_verifier: verifier });
  assert.equal(t.status, 200);
  const lie = await fetch(authorizeUrl(liar, challenge), { redirect: 'manual' });
  assert.equal(lie.status, 400);
  assert.match(await lie.text(), /another client_id/);
});

test('client metadata documents: redirects are not followed and only application/json is read', async () => {
  const { challenge } = pkce();
  const moved = `${docsBase()}/moved.json`;
  // Were the redirect followed, the document it leads to would check out.
  documents.set('/real.json', { client_id: moved, client_name: 'Moved Client', redirect_uris: ['http://127.0.0.1:9/cb'] });
  documents.set('/moved.json', { redirectTo: `${docsBase()}/real.json` });
  const r = await fetch(authorizeUrl(moved, challenge), { redirect: 'manual' });
  assert.equal(r.status, 400);
  const page = await r.text();
  assert.doesNotMatch(page, /Moved Client/);
  assert.match(page, /answered 302/);
  const html = `${docsBase()}/page.json`;
  documents.set('/page.json', { contentType: 'text/html', body: { client_id: html, client_name: 'Html Client', redirect_uris: ['http://127.0.0.1:9/cb'] } });
  const h = await fetch(authorizeUrl(html, challenge), { redirect: 'manual' });
  assert.equal(h.status, 400);
  assert.match(await h.text(), /application\/json/);
});

test('client metadata documents: a host that never answers gets a clear page after the time-out, not a hang', async (t) => {
  const { challenge } = pkce();
  const silent = `${docsBase()}/silent.json`;
  documents.set('/silent.json', { silent: true });
  const started = Date.now();
  const r = await fetch(authorizeUrl(silent, challenge), { redirect: 'manual', signal: AbortSignal.timeout(15_000) });
  const took = Date.now() - started;
  assert.equal(r.status, 400);
  assert.match(await r.text(), /could not fetch the client metadata document: no answer within 5000 ms\./);
  assert.ok(took >= 4_900 && took < 10_000, `answered after ${took} ms`);
  t.diagnostic(`answered after ${took} ms`);
});

test('mcp-remote signs in through the browser flow and proxies tool calls', async () => {
  const key = await mintKey('pro');
  const config = mkdtempSync(join(tmpdir(), 'mcp-remote-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(join(ROOT, 'node_modules', '.bin', 'mcp-remote'), [w.url, String(port), '--host', '127.0.0.1'], {
    env: { ...process.env, MCP_REMOTE_CONFIG_DIR: config, BROWSER: 'true', DISPLAY: '', PATH: `${join(ROOT, 'node_modules', '.bin')}:/usr/bin:/bin` },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  const lines = [];
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.on('data', (d) => {
    stdout += d;
    let i;
    while ((i = stdout.indexOf('\n')) >= 0) { lines.push(stdout.slice(0, i)); stdout = stdout.slice(i + 1); }
  });
  const waitFor = async (pred, what, ms = 30000) => {
    for (let t = 0; t < ms; t += 100) {
      const v = await pred();
      if (v) return v;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}; stderr:\n${stderr}`);
  };
  try {
    const url = await waitFor(() => /Please authorize this client by visiting:\s*\n(\S+)/.exec(stderr)?.[1], 'the authorization URL');
    const s = await signIn(new URL(url), key);
    assert.equal(s.status, 303);
    // Its callback server may still be starting when the URL is printed.
    const cb = await waitFor(() => fetch(s.location).catch(() => null), 'the callback server');
    assert.equal(cb.status, 200);
    const rpc = (msg) => child.stdin.write(`${JSON.stringify(msg)}\n`);
    rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'stdio-test', version: '1' } } });
    await waitFor(() => lines.some((l) => l.includes('"id":1')), 'initialize result');
    rpc({ jsonrpc: '2.0', method: 'notifications/initialized' });
    rpc({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'whoami', arguments: {} } });
    const line = await waitFor(() => lines.find((l) => l.includes('"id":2')), 'tools/call result');
    const result = JSON.parse(line).result;
    assert.equal(result.structuredContent.kind, 'oauth');
    assert.equal(result.structuredContent.plan, 'pro');
  } finally {
    child.kill('SIGTERM');
    rmSync(config, { recursive: true, force: true });
  }
});

// Claude's hosted connectors call from Anthropic's published range and start anonymous:
// a counted call from there is challenged at once, an ordinary address is served until
// its allowance ends and then challenged, and the SDK's OAuth client signs in on the
// challenge and retries the same call.
test('lazy auth: shared egress ranges and used-up allowances get the sign-in challenge, and the SDK signs in and retries', async () => {
  const lazy = await startWorker({ vars: {
    ADMIN_TOKEN: ADMIN,
    JWT_SECRET: 'runtime-lazy-jwt-secret-0123456789abcdef',
    ANON_DAILY_LIMIT: '2',
    PLANS: JSON.stringify({ free: { daily: 100 }, pro: { daily: 1000, price: '$9/month' } }),
  } });
  try {
    const call = (ip, name = 'hash', args = { text: 'a' }) => post(lazy.url,
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } },
      { 'mcp-protocol-version': '2025-11-25', 'cf-connecting-ip': ip });
    const challenged = (r, reason) => {
      assert.equal(r.status, 401, r.text);
      assert.equal(r.headers.get('www-authenticate'),
        `Bearer resource_metadata="${lazy.origin}/.well-known/oauth-protected-resource/mcp", scope="mcp:tools mcp:usage"`);
      assert.equal(r.body.error.data.reason, reason);
    };
    const claude = '160.79.104.10';
    challenged(await call(claude), 'shared_address');
    const list = await post(lazy.url, { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { 'mcp-protocol-version': '2025-11-25', 'cf-connecting-ip': claude });
    assert.equal(list.status, 200, 'discovery still answers');

    const home = '198.51.100.7';
    assert.equal((await call(home)).status, 200);
    assert.equal((await call(home)).status, 200);
    challenged(await call(home), 'anonymous_limit');
    challenged(await call('198.51.100.8', 'hmac', { key: 'k', message: 'm' }), 'plan_required');

    // The official SDK client, calling from Claude's range as a hosted connector would.
    const provider = new HeadlessProvider(await mintKey('pro', lazy.origin));
    const transport = new StreamableHTTPClientTransport(new URL(lazy.url), {
      authProvider: provider, requestInit: { headers: { 'cf-connecting-ip': claude } } });
    const client = new Client({ name: 'hosted-connector', version: '1.0.0' });
    await client.connect(transport);
    assert.equal(provider.redirects.length, 0, 'connected anonymously: no sign-in yet');
    await assert.rejects(client.callTool({ name: 'whoami', arguments: {} }), UnauthorizedError);
    assert.equal(provider.redirects.length, 1, 'the challenge started the sign-in');
    assert.equal(provider.redirects[0].searchParams.get('scope'), 'mcp:tools mcp:usage');
    await transport.finishAuth(provider.code);
    const who = await client.callTool({ name: 'whoami', arguments: {} });
    assert.equal(who.isError, false);
    assert.equal(who.structuredContent.kind, 'oauth');
    assert.equal(who.structuredContent.plan, 'pro');
    await client.close().catch(() => {});
  } finally {
    await lazy.stop();
  }
});
