// Benchmark floor of a counted call: a worker whose only work is one Durable Object call
// shaped as the server's (src/adapters/glue.js `callObject`: `getByName`, a POST carrying
// its deadline, `AbortSignal.timeout`, the answer's text), answering with that text. Its
// isolate CPU less hello's is what such a call costs any worker, whatever language it is in.
import { DurableObject } from 'cloudflare:workers';

// About the size of a counted call's request to its counter (the count and its usage row).
const BODY = JSON.stringify({
  cost: 1,
  windows: [['day:2026-12-04', 100000000], ['month:2026-12', 100000000]],
  keep: {
    request_id: '0123456789abcdef0123456789abcdef',
    principal: 'acct_bench',
    principal_kind: 'access_token',
    method: 'tools/call',
    tool: 'hash',
    input_bytes: 96,
    output_bytes: 180,
    duration_ms: 0,
    status: 'success',
    created_at: 1796400000000,
  },
});

export class Counter extends DurableObject {
  async fetch(request) {
    const body = await request.text();
    return new Response(JSON.stringify({ admitted: true, used: [1, 1], bytes: body.length }));
  }
}

export default {
  async fetch(request, env) {
    const timeoutMs = 5000;
    const stub = env.COUNTER.getByName('acct:bench');
    const answer = await stub.fetch('https://object.internal/consume', {
      method: 'POST',
      headers: { 'x-deadline': String(Date.now() + timeoutMs) },
      body: BODY,
      signal: AbortSignal.timeout(timeoutMs),
    });
    return new Response(await answer.text(), { headers: { 'content-type': 'application/json' } });
  },
};
