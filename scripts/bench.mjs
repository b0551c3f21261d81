// Benchmark: wasm size, throughput, latency and CPU per request of /mcp under workerd
// (wrangler dev, 127.0.0.1 only, bounded in count). Run: node scripts/bench.mjs [requests]
// after scripts/build.sh. CPU per request is the workerd processes' user+system time over
// the run divided by the request count (it includes wrangler's local proxy worker).
import { readFileSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { startWorker, post, ROOT } from '../tests/runtime/harness.mjs';

const N = Number(process.argv[2] ?? 2000);
const CONCURRENCY = 16;
const ADMIN = 'bench-admin-token';
const TICK_MS = 1000 / 100; // Linux USER_HZ

const wasm = readFileSync(join(ROOT, 'build', 'index_bg.wasm'));
console.log(`wasm: ${wasm.length} bytes, ${gzipSync(wasm, { level: 9 }).length} bytes gzip`);

function descendants(pid) {
  const kids = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) kids.push(Number(d), ...descendants(Number(d)));
    } catch { /* gone */ }
  }
  return kids;
}
function cpuTicks(pids) {
  let t = 0;
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (!readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('workerd')) continue;
      t += Number(f[11]) + Number(f[12]);
    } catch { /* gone */ }
  }
  return t;
}

const w = await startWorker({ vars: { ADMIN_TOKEN: ADMIN, ANON_DAILY_LIMIT: '100000000', PLANS: JSON.stringify({ free: { daily: 100000000, monthly: 100000000 } }) } });
const pids = descendants(process.pid);
let key = null;
const minted = await fetch(`${w.origin}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` }, body: '{"plan":"free"}' });
if (minted.status === 201) key = (await minted.json()).key;

const H = { 'mcp-protocol-version': '2025-11-25' };
const scenarios = [
  ['tools/list, anonymous', { jsonrpc: '2.0', id: 1, method: 'tools/list' }, H],
  ['tools/call hash, anonymous', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hash', arguments: { text: 'bench' } } }, H],
];
if (key) scenarios.push(['tools/call hash, API key', scenarios[1][1], { ...H, authorization: `Bearer ${key}` }]);

for (const [name, body, headers] of scenarios) {
  for (let i = 0; i < 50; i++) await post(w.url, body, headers); // warm-up
  const lat = [];
  let next = 0;
  let failed = 0;
  const t0 = cpuTicks(pids);
  const start = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < N) {
      next++;
      const s = performance.now();
      const r = await post(w.url, body, headers);
      lat.push(performance.now() - s);
      if (r.status !== 200) failed++;
    }
  }));
  const secs = (performance.now() - start) / 1000;
  const cpuMs = (cpuTicks(pids) - t0) * TICK_MS;
  lat.sort((a, b) => a - b);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))].toFixed(2);
  console.log(`${name}: ${N} requests, ${(N / secs).toFixed(0)} req/s, p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, `
    + `workerd CPU ${(cpuMs / N).toFixed(3)} ms/request${failed ? `, ${failed} non-200` : ''}`);
}
await w.stop();
