// A local stand-in for the parts of Stripe's API this server calls, on 127.0.0.1: Checkout
// Sessions, Billing Portal sessions and meter events. It records every request (form body,
// Idempotency-Key, Authorization) and plays the customer: GET /pay/<session> "pays" by
// sending checkout.session.completed and customer.subscription.created to the worker's
// webhook, signed by Stripe's own library, then redirects to the session's success_url
// the way Checkout does.
//
//   node tests/runtime/stripe_standin.mjs [--port 12111] [--webhook URL] [--secret whsec_…]
//
// starts it on its own for trying the purchase flow by hand (see the README).
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';

const stripe = new Stripe('sk_test_unused_by_the_signer');

/** `Stripe-Signature` for a payload, from Stripe's official library. */
export function signHeader(payload, secret, timestamp = Math.floor(Date.now() / 1000)) {
  return stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
}

const id = (prefix) => `${prefix}_${randomBytes(12).toString('hex')}`;

/** Decodes an application/x-www-form-urlencoded body into a flat { 'a[b][0]': v } map. */
export function parseForm(text) {
  const out = {};
  for (const [k, v] of new URLSearchParams(text)) out[k] = v;
  return out;
}

export async function startStripeStandIn({ port = 0, webhook, secret, apiKey = 'sk_test_' } = {}) {
  const requests = [];
  const sessions = new Map();
  const meterEvents = [];
  const idempotent = new Map();
  const state = { requests, sessions, meterEvents, failMeter: 0, failCheckout: 0, slowCheckout: 0, webhook, secret };

  const json = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const stripeError = (res, status, message, type = 'invalid_request_error') => json(res, status, { error: { type, message } });

  async function deliver(event) {
    const payload = JSON.stringify(event);
    const res = await fetch(state.webhook, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': signHeader(payload, state.secret) },
      body: payload,
    });
    return { status: res.status, body: await res.text() };
  }

  /** Completes a session as a successful payment would: customer, subscription, events. */
  function pay(session) {
    session.status = 'complete';
    session.payment_status = 'paid';
    session.customer ??= id('cus');
    session.subscription ??= id('sub');
    const created = Math.floor(Date.now() / 1000);
    const completed = { id: id('evt'), object: 'event', type: 'checkout.session.completed', created, livemode: false,
      data: { object: session } };
    const subscription = { id: session.subscription, object: 'subscription', customer: session.customer, status: 'active',
      items: { object: 'list', data: [{ id: id('si'), object: 'subscription_item', price: { id: session.price, object: 'price' } }] },
      metadata: session.subscription_metadata };
    const subCreated = { id: id('evt'), object: 'event', type: 'customer.subscription.created', created, livemode: false,
      data: { object: subscription } };
    return { completed, subCreated, subscription };
  }

  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString();
    const url = new URL(req.url, 'http://127.0.0.1');
    const form = parseForm(raw);
    const record = { method: req.method, path: url.pathname, form, raw,
      idempotencyKey: req.headers['idempotency-key'], authorization: req.headers.authorization,
      stripeVersion: req.headers['stripe-version'], contentType: req.headers['content-type'] };
    if (url.pathname.startsWith('/v1/')) requests.push(record);

    if (url.pathname.startsWith('/v1/') && !(req.headers.authorization ?? '').startsWith(`Bearer ${apiKey}`)) {
      return stripeError(res, 401, 'Invalid API Key provided', 'authentication_error');
    }
    if (record.idempotencyKey && idempotent.has(`${url.pathname} ${record.idempotencyKey}`)) {
      const prev = idempotent.get(`${url.pathname} ${record.idempotencyKey}`);
      return json(res, prev.status, prev.body);
    }
    // With `slowCheckout` ms set, the next session is created at once but its answer is
    // held back that long: the caller times out although Stripe did the work.
    const late = url.pathname === '/v1/checkout/sessions' ? state.slowCheckout : 0;
    const remember = (status, body) => {
      if (record.idempotencyKey) idempotent.set(`${url.pathname} ${record.idempotencyKey}`, { status, body });
      if (late > 0 && status === 200) {
        state.slowCheckout = 0;
        setTimeout(() => { if (!res.destroyed) json(res, status, body); }, late);
        return;
      }
      json(res, status, body);
    };

    if (req.method === 'POST' && url.pathname === '/v1/checkout/sessions') {
      if (state.failCheckout > 0) {
        state.failCheckout -= 1;
        return stripeError(res, 500, 'injected failure', 'api_error');
      }
      if (form.mode !== 'subscription') return stripeError(res, 400, 'mode must be subscription here');
      if (!form['line_items[0][price]']) return stripeError(res, 400, 'Missing line_items[0][price]');
      if (!form.success_url) return stripeError(res, 400, 'Missing success_url');
      const sid = id('cs_test');
      const subscriptionMetadata = {};
      const metadata = {};
      for (const [k, v] of Object.entries(form)) {
        const m = /^subscription_data\[metadata\]\[(.+)\]$/.exec(k);
        if (m) subscriptionMetadata[m[1]] = v;
        const n = /^metadata\[(.+)\]$/.exec(k);
        if (n) metadata[n[1]] = v;
      }
      const session = { id: sid, object: 'checkout.session', mode: 'subscription', status: 'open', payment_status: 'unpaid',
        url: `http://127.0.0.1:${server.address().port}/pay/${sid}`, client_reference_id: form.client_reference_id ?? null,
        customer: form.customer ?? null, subscription: null, metadata, success_url: form.success_url, cancel_url: form.cancel_url,
        price: form['line_items[0][price]'], subscription_metadata: subscriptionMetadata };
      sessions.set(sid, session);
      return remember(200, session);
    }
    if (req.method === 'POST' && url.pathname === '/v1/billing_portal/sessions') {
      if (!form.customer) return stripeError(res, 400, 'Missing customer');
      return remember(200, { id: id('bps'), object: 'billing_portal.session', customer: form.customer,
        return_url: form.return_url, url: `http://127.0.0.1:${server.address().port}/portal/${form.customer}` });
    }
    if (req.method === 'POST' && url.pathname === '/v1/billing/meter_events') {
      if (state.failMeter > 0) {
        state.failMeter -= 1;
        return stripeError(res, 500, 'injected failure', 'api_error');
      }
      if (!form.event_name || !form['payload[stripe_customer_id]']) return stripeError(res, 400, 'Missing event_name or payload');
      if (meterEvents.some((e) => e.identifier === form.identifier)) {
        return stripeError(res, 400, 'An event with this identifier already exists');
      }
      const ev = { object: 'billing.meter_event', event_name: form.event_name, identifier: form.identifier,
        payload: { stripe_customer_id: form['payload[stripe_customer_id]'], value: form['payload[value]'] },
        timestamp: Number(form.timestamp) };
      meterEvents.push(ev);
      return remember(200, ev);
    }
    if (req.method === 'GET' && url.pathname.startsWith('/pay/')) {
      const session = sessions.get(url.pathname.slice(5));
      if (!session) { res.writeHead(404); return res.end('no such session'); }
      const { completed, subCreated } = pay(session);
      const a = await deliver(completed);
      const b = await deliver(subCreated);
      if (a.status !== 200 || b.status !== 200) { res.writeHead(502); return res.end(`webhook failed: ${a.status} ${b.status}`); }
      res.writeHead(303, { location: session.success_url.replace('{CHECKOUT_SESSION_ID}', session.id) });
      return res.end();
    }
    if (req.method === 'GET' && url.pathname.startsWith('/portal/')) {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end('<h1>Billing portal (local stand-in)</h1>');
    }
    return stripeError(res, 404, `Unrecognized request URL (${req.method}: ${url.pathname})`);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  return { ...state, state, base, deliver, pay, close: () => new Promise((r) => server.close(r)) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : dflt;
  };
  const s = await startStripeStandIn({
    port: Number(arg('port', '12111')),
    webhook: arg('webhook', 'http://127.0.0.1:8787/api/stripe/webhook'),
    secret: arg('secret', 'whsec_local_standin'),
  });
  console.log(`Stripe stand-in on ${s.base}; webhooks go to ${s.webhook}. Run the worker with:
  STRIPE_API_BASE=${s.base}  STRIPE_SECRET_KEY=sk_test_local  STRIPE_WEBHOOK_SECRET=${s.secret}`);
}
