// A stand-in placed between the server and its real QuotaCounter objects, for fault
// tests: each request is passed on, delayed, failed or thrown as the test last asked
// through this worker's own fetch handler (POST /mode {mode, delayMs}). Another passes the
// requests for the UsageBuffer objects on and counts them (GET /seen).
let mode = { mode: 'pass', delayMs: 0 };
let seen = 0;
let appends = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The real object of namespace `ns` this stand-in stands for (the one of the same name).
const passOn = (ns, ctx, request) => ns.get(ns.idFromName(ctx.id.name)).fetch(request);

export class FaultyCounter {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }

  async fetch(request) {
    seen += 1;
    const { mode: m, delayMs } = mode;
    if (m === 'fail') return new Response('injected failure', { status: 500 });
    if (m === 'throw') throw new Error('injected exception');
    if (m === 'slow') await sleep(delayMs);
    return passOn(this.env.REAL, this.ctx, request);
  }
}

export class CountingBuffer {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }

  async fetch(request) {
    appends += 1;
    return passOn(this.env.REAL_USAGE, this.ctx, request);
  }
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === '/mode' && request.method === 'POST') {
      mode = await request.json();
      return Response.json({ ok: true });
    }
    if (url.pathname === '/seen') return Response.json({ seen, appends });
    return new Response('not found', { status: 404 });
  },
};
