// Load generator, run as its own process: autocannon against one URL, every response checked.
// Usage: node loadgen.mjs '<json>' with { url, method, headers, body, connections,
// duration (s) | amount, rate (req/s, optional), check: "health" | "hello" | "admitted" | "jsonrpc" | "tool" }.
// Prints one JSON line: { requests, seconds, rps, p50, p99 (ms), failures, samples (the first reasons) }.
import autocannon from 'autocannon';

const spec = JSON.parse(process.argv[2]);

/** The JSON-RPC message in a reply: plain JSON, or the last `data:` event of a stream. */
function jsonrpcOf(body, contentType) {
  if (contentType?.includes('text/event-stream')) {
    const data = body.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim());
    return JSON.parse(data.at(-1));
  }
  return JSON.parse(body);
}

function checkOne(status, body, headers) {
  if (status !== 200) return `HTTP ${status}: ${body.slice(0, 200)}`;
  try {
    switch (spec.check) {
      case 'hello':
        return body === 'Hello World!' ? null : `unexpected body ${body.slice(0, 100)}`;
      case 'health':
        return JSON.parse(body).status === 'ok' ? null : `unexpected body ${body.slice(0, 100)}`;
      case 'admitted':
        return JSON.parse(body).admitted === true ? null : `unexpected body ${body.slice(0, 100)}`;
      default: {
        const m = jsonrpcOf(body, headers['content-type']);
        if (m.error || !m.result) return `not a JSON-RPC result: ${body.slice(0, 200)}`;
        if (spec.check === 'tool' && (m.result.isError || !m.result.content)) return `tool error: ${body.slice(0, 200)}`;
        return null;
      }
    }
  } catch (e) {
    return `unparsable reply (${e.message}): ${body.slice(0, 200)}`;
  }
}

const latencies = [];
let failures = 0;
const samples = [];
const opts = {
  url: spec.url,
  connections: spec.connections ?? 2,
  pipelining: 1,
  timeout: 10,
  requests: [{
    method: spec.method ?? 'GET',
    headers: spec.headers ?? {},
    body: spec.body,
    onResponse(status, body, _context, headers) {
      const why = checkOne(status, body ?? '', Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])));
      if (why) {
        failures++;
        if (samples.length < 3) samples.push(why);
      }
    },
  }],
};
if (spec.amount) opts.amount = spec.amount;
else opts.duration = spec.duration;
if (spec.rate) opts.overallRate = spec.rate;

const started = process.hrtime.bigint();
const inst = autocannon(opts);
inst.on('response', (_client, _status, _bytes, ms) => latencies.push(ms));
const result = await inst;
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] : NaN);
const requests = latencies.length;
process.stdout.write(`${JSON.stringify({
  requests,
  seconds,
  rps: requests / seconds,
  p50: pct(0.5),
  p99: pct(0.99),
  failures: failures + result.errors + result.timeouts,
  samples: result.errors || result.timeouts ? [...samples, `${result.errors} connection errors, ${result.timeouts} timeouts`] : samples,
})}\n`);
