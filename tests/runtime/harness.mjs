// Starts the built worker under `wrangler dev` (workerd, local KV/D1/Durable Objects) on a
// free 127.0.0.1 port with fresh state and the D1 migrations applied, for one test file.
import { spawn, execFileSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WRANGLER = join(ROOT, 'node_modules', '.bin', 'wrangler');
const ENV = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', X_LOCAL_OBSERVABILITY: 'false', NO_COLOR: '1' };

/** A free TCP port on 127.0.0.1. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts a worker. `bundle` is `build` (what ships) or `build-conformance`.
 * `vars` become `--var NAME:VALUE`; `port` (default: a free one) and `persistTo` (default: a
 * fresh directory, removed on stop) let a restart come back as the same server; `env` is added to wrangler's (and so workerd's) environment.
 * Returns { url, origin, state, logs, stop(), kill() }.
 */
export async function startWorker({ bundle = 'build', vars = {}, env = {}, persistTo, port: wanted, args: extra = [] } = {}) {
  const state = persistTo ?? mkdtempSync(join(tmpdir(), 'mcp-worker-state-'));
  execFileSync(WRANGLER, ['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', state], {
    cwd: ROOT, env: { ...ENV, CI: 'true' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  const port = wanted ?? await freePort();
  // '--env-file /dev/null': a local .dev.vars (scripts/dev.sh makes one) is not read.
  const args = ['dev', join(bundle, 'index.js'), '--env-file', '/dev/null', '--ip', '127.0.0.1', '--port', String(port),
    '--persist-to', state, '--show-interactive-dev-session=false', '--log-level', 'log'];
  for (const [k, v] of Object.entries(vars)) args.push('--var', `${k}:${v}`);
  args.push(...extra);
  const child = spawn(WRANGLER, args, { cwd: ROOT, env: { ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const logs = [];
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`wrangler dev did not start:\n${logs.join('')}`)), 60_000);
    const onData = (buf) => {
      const s = buf.toString();
      logs.push(s);
      if (/Ready on http/.test(s)) { clearTimeout(timer); resolve(); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`wrangler dev exited ${code}:\n${logs.join('')}`)); });
  });
  await ready;
  child.removeAllListeners('exit');
  const origin = `http://127.0.0.1:${port}`;
  const stop = async ({ keepState = false } = {}) => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
      const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, 5_000);
      await exited;
      clearTimeout(timer);
    }
    if (!keepState && !persistTo) rmSync(state, { recursive: true, force: true });
  };
  // A crash: the whole process group at once, state kept.
  const kill = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    await exited;
  };
  return { url: `${origin}/mcp`, origin, port, state, logs, stop, kill };
}

/** JSON-RPC POST helper: returns { status, headers, body (parsed JSON or text) }. */
export async function post(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

export const V2026 = '2026-07-28';

/** A 2026-07-28 request body and its matching headers. */
export function req2026(id, method, params = {}, { caps = {} } = {}) {
  const body = { jsonrpc: '2.0', id, method, params: { ...params, _meta: {
    'io.modelcontextprotocol/protocolVersion': V2026,
    'io.modelcontextprotocol/clientCapabilities': caps,
    ...(params._meta ?? {}),
  } } };
  const headers = { 'mcp-protocol-version': V2026, 'mcp-method': method };
  if (method === 'tools/call' || method === 'prompts/get') headers['mcp-name'] = params.name;
  return { body, headers };
}

/** Runs SQL against the worker's local D1 (`state` from startWorker) and returns the rows. */
export function d1Query(state, sql) {
  // The worker writes the same SQLite file; a read that meets its lock is tried again.
  for (let attempt = 1; ; attempt++) {
    try {
      const out = execFileSync(WRANGLER,
        ['d1', 'execute', 'DB', '--local', '--persist-to', state, '--json', '--command', sql],
        { cwd: ROOT, env: { ...ENV, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
      return JSON.parse(out.toString())[0].results;
    } catch (e) {
      if (attempt >= 3) throw e;
      execFileSync('sleep', ['0.5']);
    }
  }
}

/** Polls `fn` (sync or async) until it returns something truthy, for up to 10 s. */
export async function eventually(fn, what) {
  for (let i = 0; i < 50; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// ---- helpers the test files share: keys, tokens, PKCE, forms ----

/** Unix seconds now. */
export const nowS = () => Math.floor(Date.now() / 1000);

/** Calls an admin route with the operator's token: { status, body }. */
export async function admin(origin, adminToken, path, body) {
  const res = await fetch(`${origin}${path}`, {
    method: body ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json() };
}

/** Mints an API key through `/admin/keys` (plan `pro` unless `mint` says otherwise). */
export async function mintKey(origin, adminToken, mint = {}) {
  const r = await admin(origin, adminToken, '/admin/keys', { plan: 'pro', label: 'runtime test', ...mint });
  if (r.status !== 201) throw new Error(`minting a key answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body.key;
}

const b64u = (b) => Buffer.from(b).toString('base64url');

/** An HS256 JWT over `claims`, signed as the worker's JWT_SECRET signs (or with `alg` forged). */
export function signJwt(claims, secret, alg = 'HS256') {
  const h = b64u(JSON.stringify({ alg, typ: 'JWT' }));
  const p = b64u(JSON.stringify(claims));
  const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}

/** A PKCE S256 pair. */
export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** A form POST (application/x-www-form-urlencoded) through `post`. */
export function postForm(url, params, headers = {}) {
  return post(url, new URLSearchParams(params).toString(), { 'content-type': 'application/x-www-form-urlencoded', ...headers });
}

/**
 * The user at the sign-in page: opens it, pastes the key, presses Allow (or `deny`).
 * Returns { status, location, html, pageHeaders } of the form's answer and the page.
 */
export async function signInWithKey(authorizationUrl, apiKey, action = 'approve') {
  const page = await fetch(authorizationUrl, { redirect: 'manual' });
  if (page.status !== 200) throw new Error(`the sign-in page answered ${page.status}: ${await page.text()}`);
  const cookie = page.headers.get('set-cookie').split(';')[0];
  const html = await page.text();
  const fields = Object.fromEntries([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)]
    .map(([, k, v]) => [k, v.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')]));
  const origin = new URL(authorizationUrl).origin;
  const res = await fetch(`${origin}/authorize`, {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin },
    body: new URLSearchParams({ ...fields, api_key: apiKey, action }).toString(),
  });
  return { status: res.status, location: res.headers.get('location'), html, pageHeaders: page.headers };
}
