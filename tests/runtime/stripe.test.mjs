// Getting paid, end to end: the release bundle under workerd (real local KV, D1 and
// Durable Objects) talking to the local Stripe stand-in, with webhooks signed by Stripe's
// own library.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startWorker, post, d1Query, eventually } from './harness.mjs';
import { startStripeStandIn, signHeader } from './stripe_standin.mjs';
import { startUpstreamStandIn } from './upstream_standin.mjs';

const SECRET = 'whsec_runtime_secret';
const PLANS = {
  free: { daily: 50, monthly: 500, tools: ['whoami', 'hash'] },
  pro: { daily: 4, monthly: 100, price: '$9/month', stripe_price: 'price_pro' },
  team: { daily: 8, monthly: 1000, price: '$49/month', stripe_price: 'price_team' },
  metered: { monthly: 100000, price: '$0.01/call', stripe_price: 'price_metered', metered: true },
  tokens: { monthly: 100000, price: '$2/M tokens', stripe_price: 'price_tokens', metered: true, meter: 'tokens', daily_tokens: 30 },
};

let w;
let stripe;
let upstream;
before(async () => {
  stripe = await startStripeStandIn({ secret: SECRET });
  upstream = await startUpstreamStandIn();
  w = await startWorker({ vars: {
    PLANS: JSON.stringify(PLANS),
    STRIPE_SECRET_KEY: 'sk_test_runtime',
    STRIPE_WEBHOOK_SECRET: SECRET,
    STRIPE_API_BASE: stripe.base,
    STRIPE_METER_EVENT: 'mcp_calls',
    STRIPE_TIMEOUT_MS: '1000',
    PROVIDERS: JSON.stringify([{ name: 'up', kind: 'openai', base_url: `${upstream.base}/v1`, model: 'm', key_secret: 'UP_KEY' }]),
  } });
  stripe.state.webhook = `${w.origin}/api/stripe/webhook`;
});
after(async () => { await w?.stop(); await stripe?.close(); await upstream?.close(); });

const d1 = (sql) => d1Query(w.state, sql);
// d1() blocks the event loop (wrangler d1 execute runs synchronously); a keep-alive socket
// the worker closed meanwhile (after 5 s idle) is noticed only once the loop turns, and a
// request sent on it fails with "other side closed". The helpers below let it turn first.
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
const H25 = { 'mcp-protocol-version': '2025-11-25' };
const ARGS = { hash: { text: 'abc' }, hmac: { key: 'k', message: 'm' }, whoami: {} };
const call = async (tool, key) => {
  await settle();
  return post(w.url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool, arguments: ARGS[tool] } },
    { ...H25, ...(key ? { authorization: `Bearer ${key}` } : {}) });
};
const now = () => Math.floor(Date.now() / 1000);

async function webhook(event, { secret = SECRET, timestamp = now(), header } = {}) {
  await settle();
  const payload = JSON.stringify(event);
  const res = await fetch(`${w.origin}/api/stripe/webhook`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': header ?? signHeader(payload, secret, timestamp) },
    body: payload,
  });
  return { status: res.status, body: await res.json() };
}

async function checkout(plan) {
  await settle();
  const res = await fetch(`${w.origin}/api/stripe/checkout`, {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `plan=${plan}`,
  });
  assert.equal(res.status, 303);
  const location = res.headers.get('location');
  const session = [...stripe.sessions.values()].find((s) => s.url === location);
  assert.ok(session, 'redirected to the session Stripe created');
  return session;
}

/** Checkout, pay at the stand-in (which sends the signed events), follow its redirect. */
async function buy(plan) {
  const session = await checkout(plan);
  const paid = await fetch(session.url, { redirect: 'manual' });
  assert.equal(paid.status, 303, await paid.text());
  const claimUrl = paid.headers.get('location');
  assert.equal(claimUrl, `${w.origin}/api/stripe/claim?session_id=${session.id}`);
  const page = await fetch(claimUrl);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get('cache-control'), 'no-store');
  const html = await page.text();
  const key = /mcp_test_[0-9a-f]{64}/.exec(html)?.[0];
  assert.ok(key, 'the claim page shows the key');
  return { session, key, claimUrl, html };
}

const subEvent = (session, type, created, price, status = 'active') => ({
  id: `evt_${type}_${created}_${price}`, object: 'event', type, created, livemode: false,
  data: { object: { id: session.subscription, object: 'subscription', customer: session.customer, status,
    items: { data: [{ price: { id: price } }] }, metadata: session.subscription_metadata } },
});

test('Stripe\'s library and this server sign webhooks identically', () => {
  const payload = '{"id":"evt_x","object":"event"}';
  const t = 1795341600;
  const ours = `t=${t},v1=${createHmac('sha256', SECRET).update(`${t}.${payload}`).digest('hex')}`;
  assert.equal(signHeader(payload, SECRET, t), ours);
});

test('checkout → signed webhook → claim once → key works within the plan → plan changes → cancellation', async () => {
  const { session, key, claimUrl, html } = await buy('pro');

  // What reached Stripe.
  const sent = stripe.requests.find((r) => r.path === '/v1/checkout/sessions' && r.form.client_reference_id === session.client_reference_id);
  assert.equal(sent.form.success_url, `${w.origin}/api/stripe/claim?session_id={CHECKOUT_SESSION_ID}`);
  assert.equal(sent.form['line_items[0][price]'], 'price_pro');
  assert.equal(sent.form.mode, 'subscription');
  assert.match(sent.idempotencyKey, /^checkout_/);
  assert.equal(sent.authorization, 'Bearer sk_test_runtime');
  assert.match(html, /claude mcp add --transport http/);
  assert.match(html, /mcp-remote/);

  // Shown once: a second visit gets a page without it.
  const again = await fetch(claimUrl);
  assert.equal(again.status, 410);
  assert.ok(!(await again.text()).includes(key));
  // Stored as a hash only.
  const rows = d1(`SELECT key_hash, plan FROM api_keys WHERE label = 'checkout ${session.id}'`);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].plan, 'pro');
  assert.ok(!JSON.stringify(d1('SELECT * FROM api_keys')).includes(key));

  // The key works at /mcp, including the paid tool, within pro's daily limit of 4.
  const who = await call('whoami', key);
  assert.equal(who.body.result.structuredContent.plan, 'pro');
  assert.equal((await call('hmac', key)).body.result.isError, false);
  for (let i = 0; i < 2; i++) assert.equal((await call('hash', key)).status, 200);
  const limited = await call('hash', key);
  assert.equal(limited.status, 429);
  assert.equal(limited.body.error.data.plan, 'pro');

  // Upgraded to team (daily 8): the very next call is admitted under the new limit.
  const up = await webhook(subEvent(session, 'customer.subscription.updated', now(), 'price_team'));
  assert.equal(up.status, 200, JSON.stringify(up.body));
  const admitted = await call('hash', key);
  assert.equal(admitted.status, 200);
  assert.match(admitted.headers.get('ratelimit-policy'), /"day";q=8/);

  // Cancelled: paid tools stop; free tools follow the free plan.
  const del = await webhook(subEvent(session, 'customer.subscription.deleted', now() + 1, 'price_team', 'canceled'));
  assert.equal(del.status, 200);
  const refused = await call('hmac', key);
  assert.equal(refused.status, 200);
  assert.equal(refused.body.result.isError, true);
  assert.equal(refused.body.result.structuredContent.error, 'plan_required');
  assert.equal(refused.body.result.structuredContent.plans[0].checkout_url, `${w.origin}/api/stripe/checkout?plan=pro`);
  const free = await call('hash', key);
  assert.match(free.headers.get('ratelimit-policy'), /"day";q=50/);
  assert.equal(d1(`SELECT plan FROM accounts WHERE stripe_customer = '${session.customer}'`)[0].plan, 'free');
});

test('forged, stale, replayed and duplicated events change nothing', async () => {
  const session = await checkout('pro');
  const { completed } = stripe.pay(session);
  const keysBefore = d1('SELECT COUNT(*) AS n FROM api_keys')[0].n;
  const forged = await webhook(completed, { secret: 'whsec_attacker' });
  assert.equal(forged.status, 400);
  assert.equal(forged.body.error, 'invalid_signature');
  const stale = await webhook(completed, { timestamp: now() - 301 });
  assert.equal(stale.status, 400);
  const unsigned = await fetch(`${w.origin}/api/stripe/webhook`, { method: 'POST', body: JSON.stringify(completed) });
  assert.equal(unsigned.status, 400);
  const tampered = JSON.stringify({ ...completed, data: { object: { ...completed.data.object, metadata: { plan: 'team' } } } });
  const res = await fetch(`${w.origin}/api/stripe/webhook`, { method: 'POST', headers: { 'stripe-signature': signHeader(JSON.stringify(completed), SECRET) }, body: tampered });
  assert.equal(res.status, 400, 'a signature over another body');
  assert.equal(d1('SELECT COUNT(*) AS n FROM api_keys')[0].n, keysBefore);
  assert.equal(d1(`SELECT COUNT(*) AS n FROM stripe_events WHERE id = '${completed.id}'`)[0].n, 0);

  // The genuine delivery, then the same signed request replayed, then a fresh redelivery.
  const payload = JSON.stringify(completed);
  const header = signHeader(payload, SECRET);
  assert.equal((await webhook(completed, { header })).status, 200);
  const replay = await webhook(completed, { header });
  assert.deepEqual([replay.status, replay.body.duplicate], [200, true]);
  const redelivery = await webhook(completed);
  assert.deepEqual([redelivery.status, redelivery.body.duplicate], [200, true]);
  assert.equal(d1('SELECT COUNT(*) AS n FROM api_keys')[0].n, keysBefore + 1, 'one key for one purchase');
  assert.equal(d1(`SELECT status FROM stripe_events WHERE id = '${completed.id}'`)[0].status, 'done');

  // A secret being rolled: a header carrying signatures under the old and new secret.
  const ev = { id: 'evt_roll', object: 'event', type: 'invoice.paid', created: now(), data: { object: { subscription: 'sub_unknown' } } };
  const p = JSON.stringify(ev);
  const t = now();
  const old = signHeader(p, 'whsec_old', t);
  const cur = signHeader(p, SECRET, t).split(',')[1];
  assert.equal((await webhook(ev, { header: `${old},${cur}` })).status, 200);
  // Unknown types: acknowledged, ignored.
  const unknown = await webhook({ id: 'evt_unknown', object: 'event', type: 'charge.refunded', created: now(), data: { object: {} } });
  assert.deepEqual([unknown.status, unknown.body.ignored], [200, 'charge.refunded']);
});

test('events that arrive out of order never overwrite newer state', async () => {
  const { session, key } = await buy('pro');
  const t = now();
  assert.equal((await webhook(subEvent(session, 'customer.subscription.updated', t + 100, 'price_team'))).status, 200);
  const late = await webhook(subEvent(session, 'customer.subscription.updated', t + 50, 'price_pro'));
  assert.equal(late.status, 200);
  assert.match(late.body.ignored, /newer state/);
  // Days late: the subscription.created from before everything else.
  await webhook(subEvent(session, 'customer.subscription.created', t - 3 * 86400, 'price_pro'));
  assert.equal((await call('whoami', key)).body.result.structuredContent.plan, 'team');
  assert.equal(d1(`SELECT plan FROM subscriptions WHERE id = '${session.subscription}'`)[0].plan, 'team');
});

test('a cancellation and an update of the same second leave the subscription cancelled, whichever arrives first', async () => {
  for (const deletedFirst of [true, false]) {
    const { session, key } = await buy('pro');
    const arrival = deletedFirst ? 'deleted, then updated' : 'updated, then deleted';
    // One second, two events; the update's id sorts after the cancellation's.
    const t = now() + 5;
    const deleted = subEvent(session, 'customer.subscription.deleted', t, 'price_team', 'canceled');
    const updated = subEvent(session, 'customer.subscription.updated', t, 'price_team');
    assert.ok(updated.id > deleted.id);
    for (const ev of deletedFirst ? [deleted, updated] : [updated, deleted]) {
      const r = await webhook(ev);
      assert.equal(r.status, 200, `${arrival}: ${JSON.stringify(r.body)}`);
    }
    // D1 and the account's Durable Object agree: cancelled, on free.
    assert.equal(d1(`SELECT status FROM subscriptions WHERE id = '${session.subscription}'`)[0].status, 'canceled', arrival);
    assert.equal(d1(`SELECT plan FROM accounts WHERE stripe_customer = '${session.customer}'`)[0].plan, 'free', arrival);
    const refused = await call('hmac', key);
    assert.equal(refused.body.result.structuredContent?.error, 'plan_required', `${arrival}: ${JSON.stringify(refused.body)}`);
    const free = await call('hash', key);
    assert.equal(free.status, 200, arrival);
    assert.match(free.headers.get('ratelimit-policy'), /"day";q=50/, arrival);
    // The key's KV record too.
    assert.equal((await call('whoami', key)).body.result.structuredContent.plan, 'free', arrival);
  }
});

test('a claim page visited twice at once shows the key to exactly one visit', async () => {
  const session = await checkout('pro');
  const { completed } = stripe.pay(session);
  assert.equal((await webhook(completed)).status, 200);
  const url = `${w.origin}/api/stripe/claim?session_id=${session.id}`;
  const pages = await Promise.all([fetch(url), fetch(url), fetch(url)]);
  const bodies = await Promise.all(pages.map((p) => p.text()));
  const shown = bodies.filter((b) => /mcp_test_[0-9a-f]{64}/.test(b));
  assert.equal(shown.length, 1);
  assert.deepEqual(pages.map((p) => p.status).sort(), [200, 410, 410]);
});

test('the claim page waits for the webhook and refuses unknown or malformed sessions', async () => {
  const session = await checkout('team');
  const waiting = await fetch(`${w.origin}/api/stripe/claim?session_id=${session.id}`);
  assert.equal(waiting.status, 200);
  assert.equal(waiting.headers.get('refresh'), '3');
  assert.match(await waiting.text(), /Confirming your payment/);
  assert.equal((await fetch(`${w.origin}/api/stripe/claim?session_id=cs_test_nosuchsession`)).status, 404);
  assert.equal((await fetch(`${w.origin}/api/stripe/claim?session_id=%3Cscript%3E`)).status, 400);
  assert.equal((await fetch(`${w.origin}/api/stripe/claim`)).status, 400);
});

test('metered calls become meter events with distinct identifiers, retried after a failure', async () => {
  const { session, key } = await buy('metered');
  stripe.state.failMeter = 1; // the first report fails once and is retried
  for (let i = 0; i < 3; i++) assert.equal((await call('hash', key)).status, 200);
  const events = await eventually(() => {
    const mine = stripe.meterEvents.filter((e) => e.payload.stripe_customer_id === session.customer);
    return mine.length === 3 && mine;
  }, 'three meter events');
  assert.equal(new Set(events.map((e) => e.identifier)).size, 3);
  for (const e of events) {
    assert.equal(e.event_name, 'mcp_calls');
    assert.equal(e.payload.value, '1');
    assert.match(e.identifier, /^req_/);
  }
  // Usage rows reach D1 about a second after the calls (through the usage buffer).
  const logged = await eventually(() => {
    const rows = d1(`SELECT request_id FROM tool_call_logs WHERE principal = 'acct:${session.client_reference_id}' ORDER BY created_at`);
    return rows.length === 3 && rows;
  }, 'three usage rows');
  assert.deepEqual(new Set(logged.map((r) => r.request_id)), new Set(events.map((e) => e.identifier)), 'identifier = the call\'s request id');
  // The failed report and its retry carried the same Idempotency-Key: the event's identifier.
  const sent = stripe.requests.filter((r) => r.path === '/v1/billing/meter_events' && events.some((e) => e.identifier === r.form.identifier));
  assert.equal(sent.length, 4, 'three events, one of them sent twice');
  for (const r of sent) assert.equal(r.idempotencyKey, r.form.identifier);
});

test('a plan metered by tokens reports each call\'s tokens and stops when its token allowance is spent', async () => {
  const { session, key } = await buy('tokens');
  const ask = async (question) => {
    await settle();
    return post(w.url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'ask', arguments: { question } } },
      { ...H25, authorization: `Bearer ${key}`, accept: 'application/json' });
  };
  // Each answer: 12 input + 8 output tokens (the stand-in's default). 30 a day: the first
  // call leaves 10, the second is let through with room left and ends at 40, the third is
  // refused before it reaches the upstream.
  const before = upstream.requests.length;
  for (const q of ['one?', 'two?']) {
    const r = await ask(q);
    assert.equal(r.status, 200);
    assert.equal(r.body.result.structuredContent.output_tokens, 8);
  }
  const third = await ask('three?');
  assert.equal(third.status, 429);
  assert.match(third.body.error.message, /daily limit of 30 tokens reached for plan tokens/);
  assert.equal(third.body.error.data.unit, 'tokens');
  assert.equal(upstream.requests.length - before, 2, 'the refused call never reached the upstream');
  // A call without tokens is not limited by them, and a plan metered by tokens does not bill it.
  assert.equal((await call('hash', key)).status, 200);
  const events = await eventually(() => {
    const mine = stripe.meterEvents.filter((e) => e.payload.stripe_customer_id === session.customer);
    return mine.length === 2 && mine;
  }, 'two meter events');
  assert.deepEqual(events.map((e) => e.payload.value), ['20', '20']);
  const rows = await eventually(() => {
    const r = d1(`SELECT request_id, input_tokens, output_tokens, provider FROM tool_call_logs WHERE principal = 'acct:${session.client_reference_id}' AND tool = 'ask' AND status = 'success'`);
    return r.length === 2 && r;
  }, 'two usage rows');
  assert.deepEqual(new Set(rows.map((r) => r.request_id)), new Set(events.map((e) => e.identifier)), 'identifier = request id');
  assert.ok(rows.every((r) => r.input_tokens === 12 && r.output_tokens === 8 && r.provider === 'up'));
  const usage = await (await fetch(`${w.origin}/api/usage?period=day`, { headers: { authorization: `Bearer ${key}` } })).json();
  assert.equal(usage.totals.input_tokens + usage.totals.output_tokens, 40);
  assert.deepEqual(usage.token_quota.map((q) => [q.period, q.limit, q.used, q.remaining]), [['day', 30, 40, 0]]);
});

test('Stripe failing or timing out: checkout is retried with the same Idempotency-Key and makes one session', async () => {
  const attempts = () => stripe.requests.filter((r) => r.path === '/v1/checkout/sessions');
  // A 500, then success.
  let before = attempts().length;
  stripe.state.failCheckout = 1;
  await checkout('pro');
  let tries = attempts().slice(before);
  assert.equal(tries.length, 2);
  assert.match(tries[0].idempotencyKey, /^checkout_[0-9a-f]{32}$/);
  assert.equal(tries[1].idempotencyKey, tries[0].idempotencyKey);
  const firstKey = tries[0].idempotencyKey;

  // Stripe creates the session but answers after the time-out (1 s here): the retry gets
  // that same session back, not a second one.
  before = attempts().length;
  const sessions = stripe.sessions.size;
  stripe.state.slowCheckout = 3000;
  const started = Date.now();
  await checkout('pro');
  assert.ok(Date.now() - started < 2900, 'answered after the time-out, not after Stripe');
  tries = attempts().slice(before);
  assert.equal(tries.length, 2);
  assert.equal(tries[1].idempotencyKey, tries[0].idempotencyKey);
  assert.notEqual(tries[0].idempotencyKey, firstKey, 'each checkout has its own key');
  assert.equal(stripe.sessions.size, sessions + 1, 'one session for the two attempts');

  // Failing twice: a clear 502 page, nothing half-made.
  stripe.state.failCheckout = 2;
  await settle();
  const res = await fetch(`${w.origin}/api/stripe/checkout`, {
    method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'plan=pro',
  });
  assert.equal(res.status, 502);
  assert.match(await res.text(), /could not start checkout; try again/);
  assert.equal(stripe.state.failCheckout, 0);
});

test('the Customer Portal opens for a subscriber\'s key, and only then', async () => {
  const { session, key } = await buy('pro');
  const res = await fetch(`${w.origin}/api/stripe/portal`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  const { url } = await res.json();
  assert.equal(url, `${stripe.base}/portal/${session.customer}`);
  const sent = stripe.requests.filter((r) => r.path === '/v1/billing_portal/sessions').at(-1);
  assert.equal(sent.form.customer, session.customer);
  assert.equal((await fetch(`${w.origin}/api/stripe/portal`, { method: 'POST' })).status, 401);
  assert.equal((await fetch(`${w.origin}/api/stripe/portal`, { method: 'POST', headers: { authorization: 'Bearer mcp_test_bad' } })).status, 401);
});

test('paid tools name the plans and link to checkout; the landing page sells the plans', async () => {
  const anon = await call('hmac');
  assert.equal(anon.status, 200);
  const r = anon.body.result;
  assert.equal(r.isError, true);
  assert.deepEqual(r.structuredContent.plans.map((p) => p.plan), ['pro', 'team', 'metered', 'tokens']);
  assert.match(r.content[0].text, /\$9\/month/);
  const page = await fetch(r.structuredContent.plans[0].checkout_url);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /action="\/api\/stripe\/checkout"/);
  const landing = await (await fetch(`${w.origin}/`)).text();
  for (const plan of ['pro', 'team', 'metered', 'tokens']) assert.match(landing, new RegExp(`name="plan" value="${plan}"`));
  assert.match(landing, /30 tokens\/day, billed per token/, 'a plan metered by tokens says so');
  assert.match(landing, /100000 calls\/month, billed per call/);
  const list = await post(w.url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, H25);
  // No PUBLIC_URL here: the _meta prefix is local.<SERVER_NAME>.
  const meta = list.body.result.tools.find((t) => t.name === 'hmac')._meta;
  assert.equal(meta['local.paid-mcp-worker/paid'], true);
  assert.deepEqual(meta['local.paid-mcp-worker/plans'].map((p) => p.plan), ['pro', 'team', 'metered', 'tokens']);
});
