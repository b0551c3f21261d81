// Every page a person uses, in a real browser (Debian's Chromium, driven by playwright-core):
// a connector's sign-in (Allow and Deny), a visitor who subscribes from the sign-in page and
// comes back to finish signing in, the landing page's Subscribe → claim page → billing portal,
// a client identified by a client ID metadata document served over https, and the checkout
// link a paid tool hands out. The release bundle under workerd, with the local Stripe stand-in.
//
// On every page of this server that the browser shows: no console errors, no CSP violations,
// no failed requests (the page's icon included), no serious or critical axe-core violations
// (at 1280 and 375 px wide, light and dark), and screenshots of each in
// test-artifacts/screenshots/<flow>-<page>-<width>[-dark].png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startWorker, post, ROOT, mintKey as mint, pkce } from './harness.mjs';
import { startStripeStandIn } from './stripe_standin.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// Without the background-networking flags Chromium dials out (updates, sync, field trials)
// and a closed network refuses it.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = join(ROOT, 'test-artifacts', 'screenshots');
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const WIDTHS = [[1280, 800], [375, 812]];

const ADMIN = 'browser-admin-token';
const SECRET = 'whsec_browser_secret';
const PLANS = { free: { daily: 100 }, pro: { daily: 1000, price: '$9/month', stripe_price: 'price_pro' } };
const DOCUMENT_CLIENT = 'Browser Document Client';

let w; // the worker
let stripe; // the Stripe stand-in
let browser;
let callbackServer; // the OAuth clients' loopback redirect URI
let callback; // http://127.0.0.1:<port>/callback
let documents; // https server of the client ID metadata document
let documentUrl;
let pki; // temp dir with the test CA and the document server's certificate

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (scripts/setup.sh installs Debian's chromium)`);
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });

  callbackServer = createServer((req, res) => {
    if (new URL(req.url, 'http://127.0.0.1').pathname !== '/callback') { res.writeHead(204); return res.end(); }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><html lang="en"><title>Signed in</title><p>You can close this window.</p></html>');
  });
  await new Promise((r) => callbackServer.listen(0, '127.0.0.1', r));
  callback = `http://127.0.0.1:${callbackServer.address().port}/callback`;

  // The client ID metadata document, over https with a certificate from a CA made here,
  // which workerd trusts through NODE_EXTRA_CA_CERTS in wrangler's environment.
  pki = mkdtempSync(join(tmpdir(), 'browser-test-pki-'));
  const ssl = (...args) => execFileSync('openssl', args, { cwd: pki, stdio: ['ignore', 'ignore', 'pipe'] });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=paid-mcp browser test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(pki, 'server.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
    + 'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem',
    '-days', '2', '-extfile', 'server.ext');
  const served = new Map();
  documents = createHttpsServer({ key: readFileSync(join(pki, 'server.key')), cert: readFileSync(join(pki, 'server.pem')) }, (req, res) => {
    const doc = served.get(req.url);
    if (!doc) { res.writeHead(404); return res.end(); }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(doc));
  });
  await new Promise((r) => documents.listen(0, '127.0.0.1', r));
  documentUrl = `https://127.0.0.1:${documents.address().port}/oauth/client.json`;
  served.set('/oauth/client.json', { client_id: documentUrl, client_name: DOCUMENT_CLIENT, redirect_uris: [callback],
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' });

  stripe = await startStripeStandIn({ secret: SECRET });
  // Both at once; each kept as soon as it is up, so that after() stops it even if the other fails.
  const started = await Promise.allSettled([
    startWorker({
      vars: {
        ADMIN_TOKEN: ADMIN,
        JWT_SECRET: 'browser-test-jwt-secret-0123456789abcdef',
        PLANS: JSON.stringify(PLANS),
        STRIPE_API_BASE: stripe.base,
        STRIPE_SECRET_KEY: 'sk_test_browser',
        STRIPE_WEBHOOK_SECRET: SECRET,
      },
      // Miniflare adds the certificates in NODE_EXTRA_CA_CERTS to those workerd trusts for
      // outbound fetches.
      env: { NODE_EXTRA_CA_CERTS: join(pki, 'ca.pem') },
    }).then((worker) => { w = worker; }),
    // playwright-core gives each launch a fresh user-data dir.
    chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS }).then((b) => { browser = b; }),
  ]);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  stripe.state.webhook = `${w.origin}/api/stripe/webhook`;
});

after(async () => {
  await browser?.close();
  await w?.stop();
  await stripe?.close();
  callbackServer?.close();
  documents?.close();
  if (pki) rmSync(pki, { recursive: true, force: true });
});

// ---- the OAuth client's side (node fetch) ----

const mintKey = () => mint(w.origin, ADMIN, { label: 'browser test' });

async function register(name) {
  const r = await post(`${w.origin}/register`, { client_name: name, redirect_uris: [callback], grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'], token_endpoint_auth_method: 'none' });
  assert.equal(r.status, 201, r.text);
  return r.body.client_id;
}

/** A sign-in request as a connector makes it: PKCE S256, state, resource, both scopes. */
function authorization(clientId) {
  const { verifier, challenge } = pkce();
  const state = randomBytes(12).toString('base64url');
  const url = new URL(`${w.origin}/authorize`);
  for (const [k, v] of Object.entries({ response_type: 'code', client_id: clientId, redirect_uri: callback, code_challenge: challenge,
    code_challenge_method: 'S256', state, resource: `${w.origin}/mcp`, scope: 'mcp:tools mcp:usage' })) url.searchParams.set(k, v);
  return { url: url.href, clientId, verifier, state };
}

/** The code exchanged at /token, then tools/call whoami with the access token. */
async function redeem(authz, code) {
  const t = await post(`${w.origin}/token`, new URLSearchParams({ grant_type: 'authorization_code', code, client_id: authz.clientId,
    redirect_uri: callback, code_verifier: authz.verifier }).toString(), { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(t.status, 200, t.text);
  assert.equal(t.body.token_type.toLowerCase(), 'bearer');
  const r = await post(w.url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', arguments: {} } },
    { 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${t.body.access_token}` });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.result.structuredContent.kind, 'oauth');
  assert.equal(r.body.result.structuredContent.plan, 'pro');
}

// ---- the browser's side ----

/**
 * A fresh browser context for one flow, watching everything that goes wrong on this
 * server's pages: console errors, CSP violations (console "Refused to …"/"violates the
 * following Content Security Policy" and the securitypolicyviolation event), uncaught
 * exceptions, failed requests and subresources answered >= 400. Pages of other origins
 * (the Stripe stand-in, the client's callback) are not judged.
 */
async function session(t, flow) {
  const context = await browser.newContext({ viewport: { width: WIDTHS[0][0], height: WIDTHS[0][1] } });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const problems = []; // { page, what, reported }
  const ours = () => { try { return new URL(page.url()).origin === w.origin; } catch { return false; } };
  const note = (what) => { if (ours()) problems.push({ page: new URL(page.url()).pathname, what, reported: false }); };
  // The page's CSP does not apply to bindings and init scripts (they come through CDP).
  await context.exposeBinding('__reportCspViolation', (_source, v) => note(
    `CSP violation: ${v.directive} blocked ${v.blocked || '(inline)'}${v.sample ? ` (${v.sample})` : ''} at ${v.source}:${v.line}`));
  await context.addInitScript(() => document.addEventListener('securitypolicyviolation', (e) => window.__reportCspViolation({
    directive: e.effectiveDirective || e.violatedDirective, blocked: e.blockedURI, sample: e.sample, source: e.sourceFile, line: e.lineNumber })));
  page.on('console', (m) => {
    // A document's own error status is the flow's to judge ("Failed to load resource" for
    // the page itself); anything else the page loads or does is judged here.
    if (m.location()?.url === page.url() && /^Failed to load resource/.test(m.text())) return;
    if (m.type() === 'error' || /Refused to|Content Security Policy/i.test(m.text())) {
      note(`console ${m.type()}: ${m.text()}${m.location()?.url ? ` (${m.location().url})` : ''}`);
    }
  });
  page.on('pageerror', (e) => note(`uncaught exception: ${e.message}`));
  page.on('requestfailed', (r) => note(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  let lastDocument = null; // the last main-frame document response
  page.on('response', (r) => {
    const req = r.request();
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) lastDocument = r;
    else if (r.status() >= 400) note(`${req.resourceType()} ${req.method()} ${r.url()} answered ${r.status()}`);
  });
  const checked = new Set();

  const reportProblems = async (title) => {
    const fresh = problems.filter((p) => !p.reported);
    fresh.forEach((p) => { p.reported = true; });
    await t.test(title, () => {
      assert.deepEqual(fresh.map((p) => `${p.page}: ${p.what}`), [], 'console errors, CSP violations or failed requests');
    });
  };

  return {
    page,
    /** The status of the page the browser shows, and where it is. */
    where: () => `${page.url()} (HTTP ${lastDocument?.status() ?? '?'})`,
    status: () => lastDocument?.status(),
    /** Runs `action` (a click) and waits for the navigation it starts to load. */
    async follow(action) {
      const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
      await action();
      await navigated;
      await page.waitForLoadState('load');
    },
    /** The checks of one of this server's pages: icon, screenshots, axe, problems so far. */
    async check(name) {
      await page.waitForLoadState('load');
      assert.ok(ours(), `expected a page of this server, at ${this.where()}`);
      if (checked.has(name)) return reportProblems(`${flow} ${name} page (again): no console errors, CSP violations or failed requests`);
      checked.add(name);

      // The icon the browser asks for: the declared one, or /favicon.ico. (Chromium fetches
      // it outside the page, so it never shows up as one of the page's requests.)
      const icons = await page.evaluate(() => [...document.querySelectorAll('link[rel~="icon"]')].map((l) => l.href));
      for (const icon of (icons.length ? icons : [new URL('/favicon.ico', page.url()).href]).filter((u) => !u.startsWith('data:'))) {
        const r = await context.request.get(icon, { maxRedirects: 0 });
        if (r.status() >= 400) note(`icon ${icon} answered ${r.status()}`);
      }

      // Screenshots and axe-core at each width (what scrolls, and so what needs keyboard
      // access, depends on it). axe is evaluated through CDP, which the page's CSP does not
      // govern; a script tag would be refused.
      await page.evaluate(AXE);
      const grave = new Map(); // "rule (impact): help; element" → widths
      // Light and dark (the pages follow prefers-color-scheme): contrast is checked in both.
      for (const colorScheme of ['light', 'dark']) {
        await page.emulateMedia({ colorScheme });
        for (const [width, height] of WIDTHS) {
          await page.setViewportSize({ width, height });
          const suffix = colorScheme === 'dark' ? '-dark' : '';
          await page.screenshot({ path: join(SHOTS, `${flow}-${name}-${width}${suffix}.png`), fullPage: true });
          const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
          if (scroll > width) t.diagnostic(`${flow} ${name}: ${scroll} px wide at a ${width} px viewport (scrolls sideways)`);
          const { violations } = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
          for (const v of violations.filter((x) => x.impact === 'serious' || x.impact === 'critical')) {
            for (const n of v.nodes) {
              const what = `${v.id} (${v.impact}): ${v.help}; ${n.target.join(' ')}: ${n.html.slice(0, 120)}`;
              grave.set(what, [...(grave.get(what) ?? []), `${width}px ${colorScheme}`]);
            }
          }
        }
      }
      await page.emulateMedia({ colorScheme: 'light' });
      await page.setViewportSize({ width: WIDTHS[0][0], height: WIDTHS[0][1] });
      await t.test(`${flow} ${name} page: no serious or critical axe violations`, () => {
        assert.deepEqual([...grave].map(([what, widths]) => `${what} (at ${widths.join(', ')})`), []);
      });
      await reportProblems(`${flow} ${name} page: no console errors, CSP violations or failed requests`);
    },
    /** Whatever went wrong after the last page check (form submissions, late requests). */
    async finish() {
      // Let late requests (the icon of the last page) settle before judging.
      await new Promise((r) => setTimeout(r, 250));
      if (problems.some((p) => !p.reported)) await reportProblems(`${flow}: no console errors, CSP violations or failed requests after the page checks`);
      await context.close();
    },
  };
}

/** The browser is at the client's callback with a code (or error) for `state`, and iss. */
function atCallback(s, authz) {
  const url = new URL(s.page.url());
  assert.equal(`${url.origin}${url.pathname}`, callback, `expected the browser back at the client's callback; it is at ${s.where()}`);
  assert.equal(url.searchParams.get('state'), authz.state);
  assert.equal(url.searchParams.get('iss'), w.origin);
  return url.searchParams;
}

/** What a page says when it is not the one expected: its heading and first words. */
async function shown(page) {
  const text = await page.locator('body').innerText().catch(() => '');
  return text.replace(/\s+/g, ' ').slice(0, 300);
}

/** On the sign-in page: the key typed into "Your API key", then Allow. */
async function allow(s, key) {
  await s.page.getByLabel('Your API key').fill(key);
  await s.follow(() => s.page.getByRole('button', { name: 'Allow', exact: true }).click());
  if (!s.page.url().startsWith(callback)) assert.fail(`Allow did not return to the client: ${s.where()}: ${await shown(s.page)}`);
}

test('flow 1: a connector signs in with an API key in the browser (Allow), exchanges the code and calls a tool', async (t) => {
  const key = await mintKey();
  const authz = authorization(await register('Browser Connector'));
  const s = await session(t, 'connector');
  try {
    await s.page.goto(authz.url);
    assert.equal(s.status(), 200, await shown(s.page));
    await s.check('authorize');
    await allow(s, key);
    const back = atCallback(s, authz);
    assert.match(back.get('code') ?? '', /.{16,}/, `a code: ${s.page.url()}`);
    assert.equal(back.get('error'), null);
    await redeem(authz, back.get('code'));
  } finally {
    await s.finish();
  }
});

test('flow 1: Deny sends access_denied and the state back to the client', async (t) => {
  const authz = authorization(await register('Browser Connector (declined)'));
  const s = await session(t, 'connector-deny');
  try {
    await s.page.goto(authz.url);
    assert.equal(s.status(), 200, await shown(s.page));
    await s.follow(() => s.page.getByRole('button', { name: 'Deny', exact: true }).click());
    if (!s.page.url().startsWith(callback)) assert.fail(`Deny did not return to the client: ${s.where()}: ${await shown(s.page)}`);
    const back = atCallback(s, authz);
    assert.equal(back.get('error'), 'access_denied');
    assert.equal(back.get('code'), null);
  } finally {
    await s.finish();
  }
});

test('flow 2: a visitor without a key subscribes from the sign-in page, gets a key and finishes signing in', async (t) => {
  const authz = authorization(await register('Browser Connector (new subscriber)'));
  const s = await session(t, 'subscribe');
  try {
    await s.page.goto(authz.url);
    assert.equal(s.status(), 200, await shown(s.page));
    await s.check('authorize');
    const subscribe = s.page.getByRole('button', { name: /^Subscribe to pro\b/ });
    assert.equal(await subscribe.count(), 1, 'one subscribe button for the paid plan');
    // POST /api/stripe/checkout → Checkout (the stand-in "pays" and redirects) → claim page.
    await s.follow(() => subscribe.click());
    assert.equal(new URL(s.page.url()).pathname, '/api/stripe/claim', `after paying: ${s.where()}: ${await shown(s.page)}`);
    assert.equal(s.status(), 200);
    await s.check('claim');
    const key = (await s.page.locator('pre#key').innerText()).trim();
    assert.match(key, /^mcp_test_[0-9a-f]{64}$/);

    await s.follow(() => s.page.getByRole('link', { name: 'continue signing in' }).click());
    const resumed = new URL(s.page.url());
    assert.equal(`${resumed.origin}${resumed.pathname}`, `${w.origin}/authorize`);
    const params = (u) => [...new URL(u).searchParams].sort(([a], [b]) => a.localeCompare(b));
    assert.deepEqual(params(resumed), params(authz.url), 'back at the same sign-in request');
    assert.equal(s.status(), 200, await shown(s.page));
    await s.check('authorize');
    await allow(s, key);
    const back = atCallback(s, authz);
    assert.ok(back.get('code'), `a code: ${s.page.url()}`);
    await redeem(authz, back.get('code'));
  } finally {
    await s.finish();
  }
});

test('flow 3: the landing page sells a plan; the claim page shows the key and leads to the billing portal', async (t) => {
  const s = await session(t, 'purchase');
  try {
    await s.page.goto(`${w.origin}/`);
    assert.equal(s.status(), 200);
    await s.check('landing');
    const subscribe = s.page.getByRole('button', { name: /^Subscribe/ });
    assert.equal(await subscribe.count(), 1, 'one Subscribe button: one paid plan');
    await s.follow(() => subscribe.click());
    const claim = new URL(s.page.url());
    assert.equal(claim.pathname, '/api/stripe/claim', `after paying: ${s.where()}: ${await shown(s.page)}`);
    assert.equal(s.status(), 200);
    await s.check('claim');
    const key = (await s.page.locator('pre#key').innerText()).trim();
    assert.match(key, /^mcp_test_[0-9a-f]{64}$/);
    const customer = stripe.sessions.get(claim.searchParams.get('session_id'))?.customer;
    assert.ok(customer, 'the stand-in knows the session\'s customer');

    const manage = s.page.getByRole('link', { name: 'Manage subscription' });
    const links = await manage.count();
    await t.test('purchase claim page: links to "Manage subscription"', () => assert.equal(links, 1));
    // Without the link, the rest of the flow is still checked from the page it should lead to.
    if (links === 1) await s.follow(() => manage.click());
    else await s.page.goto(`${w.origin}/api/stripe/portal`);
    const form = new URL(s.page.url());
    assert.equal(`${form.origin}${form.pathname}`, `${w.origin}/api/stripe/portal`);
    assert.equal(s.status(), 200, `GET /api/stripe/portal: ${s.where()}: ${await shown(s.page)}`);
    await s.check('portal');
    const field = s.page.getByLabel('Your API key');
    assert.equal(await field.getAttribute('name'), 'api_key');
    await field.fill(key);
    await s.follow(() => s.page.getByRole('button', { name: 'Open billing portal' }).click());
    assert.equal(s.page.url(), `${stripe.base}/portal/${customer}`, `${s.where()}: ${await shown(s.page)}`);
    assert.match(await shown(s.page), /Billing portal \(local stand-in\)/);
  } finally {
    await s.finish();
  }
});

test('flow 4: a client identified by an https client ID metadata document signs in the same way', async (t) => {
  const key = await mintKey();
  const authz = authorization(documentUrl);
  const s = await session(t, 'cimd');
  try {
    await s.page.goto(authz.url);
    assert.equal(s.status(), 200, `the sign-in page for ${documentUrl}: ${s.where()}: ${await shown(s.page)}`);
    assert.match(await shown(s.page), new RegExp(DOCUMENT_CLIENT), 'the page names the client from its document');
    await s.check('authorize');
    await allow(s, key);
    const back = atCallback(s, authz);
    assert.ok(back.get('code'), `a code: ${s.page.url()}`);
    await redeem(authz, back.get('code'));
  } finally {
    await s.finish();
  }
});

test('flow 5: the checkout link a paid tool hands out: button page, payment, the key once, then the page a second visit gets', async (t) => {
  const s = await session(t, 'checkout-link');
  try {
    await s.page.goto(`${w.origin}/api/stripe/checkout?plan=pro`);
    assert.equal(s.status(), 200, await shown(s.page));
    await s.check('checkout');
    await s.follow(() => s.page.getByRole('button', { name: 'Continue to payment' }).click());
    assert.equal(new URL(s.page.url()).pathname, '/api/stripe/claim', `after paying: ${s.where()}: ${await shown(s.page)}`);
    assert.equal(s.status(), 200);
    const key = (await s.page.locator('pre#key').innerText()).trim();
    assert.match(key, /^mcp_test_[0-9a-f]{64}$/);
    await s.page.reload();
    assert.equal(s.status(), 410, await shown(s.page));
    assert.ok(!(await s.page.content()).includes(key), 'the key is shown once');
    await s.check('claim-again');
  } finally {
    await s.finish();
  }
});
