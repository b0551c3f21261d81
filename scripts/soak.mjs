// Soak: a steady load on the release bundle for a fixed time (127.0.0.1 only, bounded),
// watching the worker isolate's memory and the usage log.
//
//   node_modules/.bin/node scripts/soak.mjs [--minutes 10] [--rate 100] [--slice 30] [--no-build]
//
// The server runs under Miniflare's API with workerd's inspector open (local KV, D1 and
// Durable Objects; the objects run in an isolate of their own, as in production, so the heap
// watched is the worker's). The load is counted
// `tools/call hash` calls at `--rate` requests/s on 4 connections, alternating an API key and
// an access token slice by slice. After each slice the isolate is garbage-collected through
// the inspector (a heap snapshot) and its V8 heap read (Runtime.getHeapUsage), with workerd's resident memory
// (/proc). At the end: every reply checked, the usage rows in D1 by status, and a verdict:
// the heap after GC in the last quarter of the run within 10% (or 2 MiB) of the first
// quarter's, no failed reply, no usage row other than `success`, one row per call served.
// Exits non-zero when the verdict fails.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ADMIN_TOKEN, BENCH, JWT_SECRET, ROOT, cleanup, describeTargets, freePort, prepare, startMiniflare } from '../bench/lib/targets.mjs';
import { mintKey, signJwt } from '../tests/runtime/harness.mjs';

const { values: opt } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '100' },
    slice: { type: 'string', default: '30' },
    'no-build': { type: 'boolean' },
  },
});
const minutes = Number(opt.minutes);
const rate = Number(opt.rate);
const sliceS = Number(opt.slice);
if (!(minutes > 0 && minutes <= 60 && rate > 0 && rate <= 2000 && sliceS >= 5)) {
  throw new Error('--minutes 0–60, --rate 1–2000, --slice ≥ 5');
}
const t0 = Date.now();
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

prepare(log, { build: !opt['no-build'] });
const work = mkdtempSync(join(tmpdir(), 'soak-'));
process.on('exit', () => cleanup(work));
const bundleDir = join(work, 'bundle');
cpSync(join(ROOT, 'build'), bundleDir, { recursive: true });
const target = describeTargets({ bundleDir, peerBundle: { file: join(work, 'none.js'), bytes: '' } }).server;

/** One DevTools Protocol session on the server's isolate. */
async function inspect(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/core:user:server`);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error('inspector')); });
  let next = 1;
  const waiting = new Map();
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.id && waiting.has(m.id)) { waiting.get(m.id)(m); waiting.delete(m.id); }
  };
  const send = (method, params = {}) => new Promise((ok, fail) => {
    const id = next++;
    waiting.set(id, (m) => (m.error ? fail(new Error(`${method}: ${m.error.message}`)) : ok(m.result)));
    ws.send(JSON.stringify({ id, method, params }));
  });
  return { send, close: () => ws.close() };
}

/** Resident memory of processes, in MiB. */
function rssMiB(pids) {
  let kb = 0;
  for (const pid of pids) {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) kb += Number(m[1]);
  }
  return kb / 1024;
}

function load(spec) {
  return new Promise((done, fail) => {
    execFile(process.execPath, [join(BENCH, 'lib', 'loadgen.mjs'), JSON.stringify(spec)], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`load generator failed: ${stderr || err.message}`));
      else done(JSON.parse(stdout));
    });
  });
}

const inspectorPort = await freePort();
const server = await startMiniflare(target, { inspectorPort });
let verdictOk = false;
try {
  const { origin } = server;
  const key = await mintKey(origin, ADMIN_TOKEN, { label: 'soak' });
  const now = Math.floor(Date.now() / 1000);
  const jwt = signJwt({ iss: origin, aud: `${origin}/mcp`, sub: 'acct_soak', scope: 'mcp:tools mcp:usage', plan: 'pro', iat: now, exp: now + 7200 }, JWT_SECRET);
  const cdp = await inspect(inspectorPort);
  // workerd's inspector does not answer HeapProfiler.collectGarbage; a heap snapshot runs
  // a full collection first (its chunks are read and dropped).
  await cdp.send('HeapProfiler.enable');
  const heap = async () => {
    await cdp.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    return (await cdp.send('Runtime.getHeapUsage')).usedSize / 2 ** 20;
  };
  const slices = [];
  const start = { heap: await heap(), rss: rssMiB(server.pids) };
  log(`server on ${origin}; heap after GC ${start.heap.toFixed(2)} MiB, workerd RSS ${start.rss.toFixed(0)} MiB; ${minutes} min at ${rate} req/s`);
  const deadline = Date.now() + minutes * 60_000;
  let answered = 0;
  let failures = 0;
  const failureSamples = [];
  for (let i = 0; Date.now() < deadline; i++) {
    const seconds = Math.max(1, Math.min(sliceS, Math.round((deadline - Date.now()) / 1000)));
    const bearer = i % 2 === 0 ? key : jwt;
    const r = await load({
      url: `${origin}/mcp`, method: 'POST', connections: 4, duration: seconds, rate,
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hash', arguments: { text: 'soak' } } }),
      check: 'tool',
    });
    answered += r.requests - r.failures;
    failures += r.failures;
    failureSamples.push(...r.samples.slice(0, 3 - failureSamples.length));
    const s = { at: Math.round((Date.now() - t0) / 1000), who: i % 2 === 0 ? 'key' : 'jwt', rps: r.rps, p50: r.p50, p99: r.p99, failures: r.failures, heap: await heap(), rss: rssMiB(server.pids) };
    slices.push(s);
    log(`${s.who}  ${s.rps.toFixed(0)} req/s  p50 ${s.p50.toFixed(1)} ms  p99 ${s.p99.toFixed(1)} ms  failures ${s.failures}  heap ${s.heap.toFixed(2)} MiB  RSS ${s.rss.toFixed(0)} MiB`);
  }
  cdp.close();

  // The usage buffers flush about a second after their last append.
  await new Promise((r) => setTimeout(r, 5000));
  const db = await server.mf.getD1Database('DB');
  const counts = (await db.prepare('SELECT status, count(*) AS n FROM tool_call_logs GROUP BY status').all()).results;
  const byStatus = Object.fromEntries(counts.map((r) => [r.status, r.n]));

  const quarter = Math.max(1, Math.floor(slices.length / 4));
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const early = median(slices.slice(0, quarter).map((s) => s.heap));
  const late = median(slices.slice(-quarter).map((s) => s.heap));
  const growth = late - early;
  const heapOk = growth <= Math.max(2, early * 0.1);
  // A slice's last replies (at most one per connection) arrive after the load generator
  // stops counting; the server served them and logged them.
  const rows = byStatus.success ?? 0;
  const rowsOk = Object.keys(byStatus).every((k) => k === 'success') && rows >= answered && rows <= answered + 4 * slices.length;
  verdictOk = heapOk && failures === 0 && rowsOk;

  const p = (x) => x.toFixed(2);
  console.log(`\nsoak: ${minutes} min, ${rate} req/s target, tools/call hash alternating API key and access token\n`);
  console.log('| slice end (s) | credential | req/s | p50 ms | p99 ms | failures | heap after GC (MiB) | workerd RSS (MiB) |');
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const s of slices) console.log(`| ${s.at} | ${s.who} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(1)} | ${s.p99.toFixed(1)} | ${s.failures} | ${p(s.heap)} | ${s.rss.toFixed(0)} |`);
  console.log(`\ncalls answered: ${answered}; failed replies: ${failures}${failureSamples.length ? ` (${failureSamples.join('; ')})` : ''}`);
  console.log(`usage rows by status: ${JSON.stringify(byStatus)} (${rowsOk ? 'one success row per call served' : 'MISMATCH'})`);
  console.log(`heap after GC: start ${p(start.heap)} MiB, first quarter ${p(early)}, last quarter ${p(late)} (${growth >= 0 ? '+' : ''}${p(growth)} MiB) ${heapOk ? 'no growth' : 'GROWTH'}`);
  console.log(`workerd RSS: start ${start.rss.toFixed(0)} MiB, end ${slices.at(-1).rss.toFixed(0)} MiB`);
  console.log(`verdict: ${verdictOk ? 'pass' : 'FAIL'}`);
} finally {
  await server.stop();
}
process.exitCode = verdictOk ? 0 : 1;
