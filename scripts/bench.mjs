// Benchmark: this server against the usual TypeScript MCP server on Workers and a hello-world
// worker, all on workerd on this machine (127.0.0.1 only, every run bounded in time or count).
//
//   node_modules/.bin/node scripts/bench.mjs [options]
//
//   --no-build          use the bundle as it is (default: scripts/build.sh first)
//   --bundle DIR        the server bundle (default build/); copied before use
//   --quick             one round, shorter runs (about two minutes)
//   --only LIST         targets, comma-separated: server,peer,hello
//   --scenario LIST     health, tools/list, server/discover, tools/call-jwt, tools/call-key,
//                       tools/call-ask (the server only: an upstream stand-in on 127.0.0.1 answers)
//   --profile           only the CPU profiles (no throughput, start-up or wrangler dev runs)
//   --rounds N  --duration S  --count N  --interval US  --top N   (see DEFAULTS)
//   --no-wrangler  --no-startup
//
// Targets: the server (the bundle, bindings as in wrangler.toml, D1 migrations applied, limits
// no run reaches), bench/peer (agents createMcpHandler + @modelcontextprotocol/sdk McpServer,
// HS256 JWT bearer auth, a `hash` tool) and bench/hello. Phases:
//   throughput  Miniflare, no inspector: per round and scenario, server, peer, hello in turn,
//               autocannon for a fixed duration with 2 connections; req/s, p50/p99 latency and
//               the whole workerd process's CPU per request (storage simulation included)
//   CPU         Miniflare with workerd's inspector: V8 CPU profiles of the worker's own isolate
//               while a fixed count of requests runs on 1 connection; isolate CPU per request =
//               samples other than (idle) times the sampler's period measured on a busy isolate
//               (bench/lib/profile.mjs), its split by kind of code and the top functions;
//               .cpuprofile files in test-artifacts/bench/. A check compares the profile with
//               the workerd process's CPU (/proc) for added work of a known kind.
//   wrangler    one pass under plain `wrangler dev`, req/s and latency
// "other load" is CPU used by processes this run did not start, in % of a core; before each
// measured run the bench waits (at most 15 s, 90 s in all) for it to drop below 15%.
//   size and start-up: wasm raw and gzip -9, `wrangler check startup`
// Every reply is checked (HTTP 200 and a JSON-RPC result; for tools/call, not a tool error).
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import {
  ADMIN_TOKEN, BENCH, JWT_SECRET, ROOT, WRANGLER, WRANGLER_ENV, bundlePeer, cleanup, describeTargets, freePort,
  prepare, startMiniflare, startupConfig, startWranglerDev,
} from '../bench/lib/targets.mjs';
import { analyse, openProfiler, profileWhile, samplingPeriod } from '../bench/lib/profile.mjs';
import { cpuMs, loadSnapshot, otherLoad } from '../bench/lib/proc.mjs';
import { mintKey, req2026, signJwt } from '../tests/runtime/harness.mjs';
import { startUpstreamStandIn } from '../tests/runtime/upstream_standin.mjs';

const DEFAULTS = {
  full: { rounds: 3, duration: 6, count: 3000, wranglerDuration: 4, startupRuns: 3, warmup: 1 },
  quick: { rounds: 1, duration: 3, count: 1000, wranglerDuration: 2, startupRuns: 1, warmup: 1 },
};
const TARGETS = ['server', 'peer', 'hello'];
const SCENARIOS = [
  { id: 'health', title: 'GET /health', targets: ['server', 'hello'] },
  { id: 'tools/list', title: 'tools/list, JWT', targets: ['server', 'peer'] },
  { id: 'server/discover', title: 'server/discover (2026-07-28)', targets: ['server'] },
  { id: 'tools/call-jwt', title: 'tools/call hash, JWT', targets: ['server', 'peer'] },
  { id: 'tools/call-key', title: 'tools/call hash, API key', targets: ['server'] },
  { id: 'tools/call-ask', title: 'tools/call ask, API key, streamed (local upstream stand-in, 8 tokens)', targets: ['server'] },
];

const { values: opt } = parseArgs({
  options: {
    'no-build': { type: 'boolean' },
    bundle: { type: 'string', default: 'build' },
    quick: { type: 'boolean' },
    only: { type: 'string' },
    scenario: { type: 'string' },
    profile: { type: 'boolean' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    count: { type: 'string' },
    interval: { type: 'string', default: '500' },
    top: { type: 'string', default: '12' },
    'no-wrangler': { type: 'boolean' },
    'no-startup': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help) {
  const text = readFileSync(new URL(import.meta.url), 'utf8');
  console.log(text.slice(0, text.indexOf('\nimport ')).split('\n').map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const D = { ...(opt.quick ? DEFAULTS.quick : DEFAULTS.full) };
if (opt.rounds) D.rounds = Number(opt.rounds);
if (opt.duration) D.duration = Number(opt.duration);
if (opt.count) D.count = Number(opt.count);
const INTERVAL = Number(opt.interval);
const CHECK_COUNT = 2000; // requests per CPU method check run, at 500 req/s
const TOP = Number(opt.top);
const only = opt.only ? opt.only.split(',') : TARGETS;
const scenarioIds = opt.scenario ? opt.scenario.split(',') : SCENARIOS.map((s) => s.id);
for (const t of only) if (!TARGETS.includes(t)) throw new Error(`unknown target ${t} (${TARGETS.join(', ')})`);
for (const s of scenarioIds) if (!SCENARIOS.some((x) => x.id === s)) throw new Error(`unknown scenario ${s} (${SCENARIOS.map((x) => x.id).join(', ')})`);
const scenarios = SCENARIOS.filter((s) => scenarioIds.includes(s.id))
  .map((s) => ({ ...s, targets: s.targets.filter((t) => only.includes(t)) }))
  .filter((s) => s.targets.length);
const activeTargets = TARGETS.filter((t) => scenarios.some((s) => s.targets.includes(t)));
const ARTIFACTS = join(ROOT, 'test-artifacts', 'bench');
mkdirSync(ARTIFACTS, { recursive: true });

const t0 = Date.now();
const BUSY = 0.15; // other processes' load, in cores, above which a run is flagged
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

// ---- set-up: the bench's own packages, the build, a private copy of the bundle ----

prepare(log, { build: !opt['no-build'] });
const work = mkdtempSync(join(tmpdir(), 'bench-'));
const bundleDir = join(work, 'bundle');
cpSync(resolve(ROOT, opt.bundle), bundleDir, { recursive: true });
log(`bundling bench/peer (wrangler's bundler)`);
const peerBundle = bundlePeer();
process.on('exit', () => { cleanup(peerBundle.dir); cleanup(work); }); // also when a step fails
// The upstream stand-in `ask` calls (8 tokens at once), and no result cache: each call asks.
const upstream = await startUpstreamStandIn();
const serverVars = {
  PROVIDERS: JSON.stringify([{ name: 'local', kind: 'openai', base_url: `${upstream.base}/v1`, model: 'bench', key_secret: 'LOCAL_KEY' }]),
  ASK_CACHE: 'off',
};
const targets = describeTargets({ bundleDir, peerBundle, serverVars });
// CPU profiles name the wasm's functions: they run the build's named copy of the module
// (`names/index_bg.wasm`, the same code with the name section the deployed module lacks).
const namedDir = join(work, 'bundle-named');
cpSync(bundleDir, namedDir, { recursive: true });
if (existsSync(join(bundleDir, 'names', 'index_bg.wasm'))) {
  cpSync(join(bundleDir, 'names', 'index_bg.wasm'), join(namedDir, 'index_bg.wasm'));
}
const profiled = describeTargets({ bundleDir: namedDir, peerBundle, serverVars });

// ---- helpers ----

/** Runs the load generator in its own process; resolves to its JSON result. */
function load(spec) {
  return new Promise((done, fail) => {
    execFile(process.execPath, [join(BENCH, 'lib', 'loadgen.mjs'), JSON.stringify(spec)], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`load generator failed: ${stderr || err.message}`));
      else done(JSON.parse(stdout));
    });
  });
}

const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };
const HASH_CALL = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hash', arguments: { text: 'bench' } } };

/** Credentials for one running target: an access token for its origin, an API key. */
async function credentials(targetName, origin) {
  const now = Math.floor(Date.now() / 1000);
  const jwt = signJwt({ iss: origin, aud: `${origin}/mcp`, sub: 'acct_bench', scope: 'mcp:tools mcp:usage', plan: 'pro', iat: now, exp: now + 3600 }, JWT_SECRET);
  const key = targetName === 'server' ? await mintKey(origin, ADMIN_TOKEN, { label: 'bench' }) : null;
  return { jwt, key };
}

/** The request a scenario sends to a target. */
function request(scenario, targetName, origin, cred) {
  const mcp = (body, headers = {}, check = 'jsonrpc') => ({ url: `${origin}/mcp`, method: 'POST', headers: { ...MCP_HEADERS, ...headers }, body: JSON.stringify(body), check });
  const bearer = (t) => ({ authorization: `Bearer ${t}` });
  switch (scenario) {
    case 'health':
      return targetName === 'hello' ? { url: `${origin}/`, check: 'hello' } : { url: `${origin}/health`, check: 'health' };
    case 'tools/list':
      return mcp({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, bearer(cred.jwt));
    case 'server/discover': {
      const r = req2026(1, 'server/discover');
      return mcp(r.body, r.headers);
    }
    case 'tools/call-jwt':
      return mcp(HASH_CALL, bearer(cred.jwt), 'tool');
    case 'tools/call-key':
      return mcp(HASH_CALL, bearer(cred.key), 'tool');
    case 'tools/call-ask':
      return mcp({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'ask', arguments: { question: 'bench?' } } }, bearer(cred.key), 'tool');
    default:
      throw new Error(scenario);
  }
}

// Before each measured run, a short wait (bounded per run and in all) for other processes'
// load to drop below BUSY; the machine is shared.
let waitBudgetMs = opt.quick ? 30_000 : 90_000;
let waitedMs = 0;
async function quiet() {
  const started = Date.now();
  while (waitBudgetMs > 0 && Date.now() - started < 15_000) {
    const snap = loadSnapshot();
    await new Promise((r) => setTimeout(r, 300));
    if (otherLoad(snap) < BUSY) break;
  }
  const w = Date.now() - started;
  waitBudgetMs -= w;
  if (w > 1000) {
    waitedMs += w;
    log(`waited ${(w / 1000).toFixed(0)} s for other processes' load to drop`);
  }
}

const failures = [];
function noteFailures(phase, scenario, target, r) {
  if (r.failures) failures.push(`${phase} ${scenario} ${target}: ${r.failures} failed of ${r.requests}; ${r.samples.join(' | ')}`);
}
// A profile whose samples come mostly in bursts (gaps under half the sampler's period):
// workerd's profile of the objects' isolate at times holds a burst per request, whose first
// sample still counts a whole period, so the figure comes out several times too high.
const unreliable = (a) => (a && a.burst > a.samples ? `${a.burst} samples in bursts against ${a.samples} counted` : '');
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN; };

// ---- size and start-up ----

const sizes = {};
{
  const wasm = readFileSync(join(bundleDir, 'index_bg.wasm'));
  const glue = readFileSync(join(bundleDir, 'index.js'));
  sizes.server = { wasm: wasm.length, wasmGz: gzipSync(wasm, { level: 9 }).length, js: glue.length, jsGz: gzipSync(glue, { level: 9 }).length };
  sizes.peer = { js: peerBundle.bytes.length, jsGz: gzipSync(peerBundle.bytes, { level: 9 }).length };
}

const startup = {};
if (!opt.profile && !opt['no-startup']) {
  for (const name of activeTargets) {
    const runs = [];
    for (let i = 0; i < D.startupRuns; i++) {
      const cfg = startupConfig(targets[name], { bundleDir });
      const outfile = join(ARTIFACTS, `startup-${name}.cpuprofile`);
      try {
        const out = execFileSync(WRANGLER, ['check', 'startup', '--config', cfg.path, '--outfile', outfile], { cwd: cfg.dir, env: WRANGLER_ENV, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
        const active = out.match(/Active: ([\d.]+) ms/);
        const window = out.match(/Profile window: ([\d.]+) ms/);
        const bundle = out.match(/Bundle: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/);
        runs.push({ active: Number(active[1]), window: Number(window[1]), kib: Number(bundle[1]), gzKib: Number(bundle[2]) });
      } finally {
        cleanup(cfg.dir);
      }
    }
    startup[name] = { active: median(runs.map((r) => r.active)), window: median(runs.map((r) => r.window)), kib: runs[0].kib, gzKib: runs[0].gzKib, runs: runs.length };
    log(`wrangler check startup ${name}: active ${startup[name].active} ms`);
  }
}

// ---- throughput under Miniflare, no inspector ----

const thr = {}; // `${scenario}|${target}` -> [{ rps, p50, p99, procUs }]
if (!opt.profile) {
  const inst = {};
  for (const name of activeTargets) {
    const i = await startMiniflare(targets[name]);
    inst[name] = { ...i, cred: await credentials(name, i.origin) };
    log(`Miniflare ${name} on ${i.origin} (workerd pid ${i.pids.join(',')})`);
  }
  try {
    for (const s of scenarios) {
      for (const name of s.targets) {
        const r = await load({ ...request(s.id, name, inst[name].origin, inst[name].cred), duration: D.warmup, connections: 2 });
        noteFailures('warm-up', s.id, name, r);
      }
    }
    for (let round = 1; round <= D.rounds; round++) {
      for (const s of scenarios) {
        for (const name of s.targets) {
          const { pids, origin, cred } = inst[name];
          await quiet();
          const c0 = cpuMs(pids);
          const snap = loadSnapshot();
          const r = await load({ ...request(s.id, name, origin, cred), duration: D.duration, connections: 2 });
          const procUs = ((cpuMs(pids) - c0) * 1000) / Math.max(1, r.requests);
          r.other = otherLoad(snap);
          noteFailures(`round ${round}`, s.id, name, r);
          (thr[`${s.id}|${name}`] ??= []).push({ ...r, procUs });
          log(`round ${round} ${s.id} ${name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, workerd ${procUs.toFixed(0)} µs/req, other processes ${(100 * r.other).toFixed(0)}% of a core${r.failures ? `, ${r.failures} FAILED` : ''}`);
        }
      }
    }
  } finally {
    for (const i of Object.values(inst)) await i.stop();
  }
}

// ---- CPU: profiles of the worker's isolate ----

const cpu = {}; // `${scenario}|${target}` -> analysis
let period;
let check = null;
{
  // The sampler's real period, on an isolate kept busy by long requests (an instance of its
  // own: a workerd that served such a profile can sample later ones irregularly).
  const port = await freePort();
  const c = await startMiniflare(targets.calib, { inspectorPort: port });
  try {
    await load({ url: `${c.origin}/?n=5000000`, amount: 5, connections: 1, check: 'hello' });
    const { profiles } = await profileWhile(port, ['core:user:calib'], () => load({ url: `${c.origin}/?n=5000000`, amount: 20, connections: 1, check: 'hello' }), { intervalUs: INTERVAL });
    period = samplingPeriod(profiles['core:user:calib']);
    log(`sampling period: requested ${INTERVAL} µs, measured ${period} µs`);
  } finally {
    await c.stop();
  }
}
if (!opt.profile) {
  // The method check: the same fixed request rate to hello and to a worker with extra work
  // in JavaScript; the isolate profiles' difference against the workerd processes'.
  const rows = [];
  for (const [label, target, path] of [['hello', targets.hello, '/'], ['busy', targets.calib, '/?n=100000']]) {
    const i = await startMiniflare(target, { inspectorPort: await freePort() });
    try {
      const url = `${i.origin}${path}`;
      const service = `core:user:${target.name}`;
      await load({ url, amount: 500, connections: 1, check: 'hello' });
      await quiet();
      const p0 = cpuMs(i.pids);
      const snap = loadSnapshot();
      const { result, profiles } = await profileWhile(i.inspectorPort, [service, 'core:entry'], () => load({ url, amount: CHECK_COUNT, connections: 1, rate: 500, check: 'hello' }), { intervalUs: INTERVAL });
      const proc = ((cpuMs(i.pids) - p0) * 1000) / result.requests;
      const other = otherLoad(snap);
      writeFileSync(join(ARTIFACTS, `method-check-${label}.cpuprofile`), JSON.stringify(profiles[service]));
      const own = analyse(profiles[service], { periodUs: period, requests: result.requests });
      const entry = analyse(profiles['core:entry'], { periodUs: period, requests: result.requests });
      rows.push({ label, isolate: own.isolateUs, entry: entry.isolateUs, proc, other, burst: own.burst + entry.burst, requests: result.requests });
    } finally {
      await i.stop();
    }
  }
  // What an open inspector alone costs a request that logs a line (the server's /health).
  const health = {};
  for (const open of [false, true]) {
    const i = await startMiniflare(targets.server, open ? { inspectorPort: await freePort() } : {});
    try {
      await load({ url: `${i.origin}/health`, amount: 500, connections: 1, check: 'health' });
      await quiet();
      const p0 = cpuMs(i.pids);
      const r = await load({ url: `${i.origin}/health`, amount: CHECK_COUNT, connections: 1, rate: 500, check: 'health' });
      health[open ? 'open' : 'closed'] = ((cpuMs(i.pids) - p0) * 1000) / r.requests;
    } finally {
      await i.stop();
    }
  }
  check = { rows, health };
  log('CPU method check done');
}
for (const name of activeTargets) {
  const port = await freePort();
  const i = await startMiniflare(profiled[name], { inspectorPort: port });
  const cred = await credentials(name, i.origin);
  // The server's Durable Objects run in an isolate of their own (as in production): profiled
  // apart, and reported next to the worker's.
  const objects = profiled[name].objects;
  const services = [`core:user:${name}`, ...(objects ? [`core:user:${objects}`] : [])];
  const profiler = await openProfiler(port, services, { intervalUs: INTERVAL });
  try {
    for (const s of scenarios.filter((x) => x.targets.includes(name))) {
      const req = request(s.id, name, i.origin, cred);
      noteFailures('cpu warm-up', s.id, name, await load({ ...req, amount: 300, connections: 2 }));
      await quiet();
      const p0 = cpuMs(i.pids);
      const snap = loadSnapshot();
      const { result, profiles } = await profiler.run(() => load({ ...req, amount: D.count, connections: 1 }));
      const procUs = ((cpuMs(i.pids) - p0) * 1000) / result.requests;
      const other = otherLoad(snap);
      noteFailures('cpu', s.id, name, result);
      const file = join(ARTIFACTS, `${name}-${s.id.replace(/\//g, '_')}.cpuprofile`);
      writeFileSync(file, JSON.stringify(profiles[`core:user:${name}`]));
      const a = analyse(profiles[`core:user:${name}`], { periodUs: period, requests: result.requests, top: TOP });
      const o = objects && analyse(profiles[`core:user:${objects}`], { periodUs: period, requests: result.requests, top: TOP });
      if (o) writeFileSync(file.replace('.cpuprofile', '-objects.cpuprofile'), JSON.stringify(profiles[`core:user:${objects}`]));
      cpu[`${s.id}|${name}`] = { ...a, requests: result.requests, procUs, other, file, objectsUs: o?.isolateUs, objectsTop: o?.top, objectsUnreliable: unreliable(o) };
      log(`cpu ${s.id} ${name}: isolate ${a.isolateUs.toFixed(0)} µs/req (${a.samples} samples${a.burst ? `, ${a.burst} in bursts` : ''}), other processes ${(100 * other).toFixed(0)}% of a core`);
    }
  } finally {
    await profiler.close();
    await i.stop();
  }
}

// The floor of a counted call: a JavaScript worker whose only work is one Durable Object
// call shaped as the server's (bench/object-call), profiled as the targets are; less hello's
// figure, what that call costs any worker.
let floor = null;
if (activeTargets.includes('server') && scenarios.some((s) => s.id.startsWith('tools/call'))) {
  const port = await freePort();
  const i = await startMiniflare(targets.floor, { inspectorPort: port });
  try {
    const url = `${i.origin}/`;
    noteFailures('cpu warm-up', 'object call', 'floor', await load({ url, amount: 300, connections: 2, check: 'admitted' }));
    await quiet();
    const snap = loadSnapshot();
    const { result, profiles } = await profileWhile(port, ['core:user:floor'], () => load({ url, amount: D.count, connections: 1, check: 'admitted' }), { intervalUs: INTERVAL });
    noteFailures('cpu', 'object call', 'floor', result);
    writeFileSync(join(ARTIFACTS, 'floor-object_call.cpuprofile'), JSON.stringify(profiles['core:user:floor']));
    floor = { ...analyse(profiles['core:user:floor'], { periodUs: period, requests: result.requests, top: TOP }), other: otherLoad(snap) };
    log(`cpu object call floor: isolate ${floor.isolateUs.toFixed(0)} µs/req`);
  } finally {
    await i.stop();
  }
}

// ---- one pass under plain wrangler dev ----

const wr = {};
if (!opt.profile && !opt['no-wrangler']) {
  for (const name of activeTargets) {
    const w = await startWranglerDev(targets[name]);
    const cred = await credentials(name, w.origin);
    log(`wrangler dev ${name} on ${w.origin}`);
    try {
      for (const s of scenarios.filter((x) => x.targets.includes(name))) {
        const req = request(s.id, name, w.origin, cred);
        noteFailures('wrangler warm-up', s.id, name, await load({ ...req, duration: D.warmup, connections: 2 }));
        await quiet();
        const snap = loadSnapshot();
        const r = await load({ ...req, duration: D.wranglerDuration, connections: 2 });
        r.other = otherLoad(snap);
        noteFailures('wrangler', s.id, name, r);
        wr[`${s.id}|${name}`] = r;
      }
    } finally {
      await w.stop();
    }
  }
}

// ---- report ----

const out = [];
const p = (s = '') => out.push(s);
const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '–');
function table(header, rows) {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => (i < 2 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ').trimEnd();
  p(line(header));
  p(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows) p(line(r));
}
const baseOf = (s) => (s.id === 'health' ? 'hello' : 'peer');

p(`paid-mcp-worker benchmark, ${new Date(t0).toISOString().slice(0, 16).replace('T', ' ')} UTC; Node ${process.version}, wrangler ${JSON.parse(readFileSync(join(ROOT, 'node_modules', 'wrangler', 'package.json'))).version}, miniflare ${JSON.parse(readFileSync(join(ROOT, 'node_modules', 'miniflare', 'package.json'))).version}, ${opt.profile ? 'profiles only' : opt.quick ? 'quick' : 'full'} run`);
p(`size: server wasm ${sizes.server.wasm} bytes (${sizes.server.wasmGz} gzip -9), JS glue ${sizes.server.js} (${sizes.server.jsGz}); peer bundle ${sizes.peer.js} bytes (${sizes.peer.jsGz} gzip -9)`);
if (Object.keys(startup).length) {
  p(`start-up (wrangler check startup, median of ${D.startupRuns}; active CPU of the module's evaluation): ${activeTargets.map((n) => `${n} ${f(startup[n]?.active, 1)} ms (bundle ${startup[n]?.gzKib} KiB gzip)`).join(', ')}`);
}
p();
if (!opt.profile) {
  p(`Miniflare, no inspector: ${D.rounds} round(s) of ${D.duration} s per run, 2 connections; medians over rounds. CPU: isolate = the worker's own isolate (V8 profile, 1 connection, ${D.count} requests); objects = the server's Durable Objects' isolate (as in production, apart from the worker's); workerd = the whole process (storage simulation, Miniflare's entry worker, HTTP) during the throughput runs.`);
}
const rows = [];
for (const s of scenarios) {
  for (const name of s.targets) {
    const k = `${s.id}|${name}`;
    const runs = thr[k] ?? [];
    const rps = median(runs.map((r) => r.rps));
    const base = baseOf(s);
    const bk = `${s.id}|${base}`;
    const baseRps = median((thr[bk] ?? []).map((r) => r.rps));
    const cmp = name === base || !s.targets.includes(base) ? '' : `${ratio(rps, baseRps)} / ${ratio(cpu[k]?.isolateUs, cpu[bk]?.isolateUs)}`;
    const fails = failures.filter((x) => x.includes(` ${s.id} ${name}:`)).length;
    rows.push([
      name === 'hello' ? 'GET / (hello world)' : s.title, name,
      runs.length ? `${f(rps)}${runs.length > 1 ? ` (${f(Math.min(...runs.map((r) => r.rps)))}–${f(Math.max(...runs.map((r) => r.rps)))})` : ''}` : '–',
      f(median(runs.map((r) => r.p50)), 2), f(median(runs.map((r) => r.p99)), 2),
      f(cpu[k]?.isolateUs), `${f(cpu[k]?.objectsUs)}${cpu[k]?.objectsUnreliable ? ' ?' : ''}`, f(cpu[k]?.consoleUs), f(median(runs.map((r) => r.procUs))),
      cmp ? `${cmp} vs ${base}` : '', `${f(100 * Math.max(...runs.map((r) => r.other), cpu[k]?.other ?? 0))}%`, fails ? `${fails} runs` : '0',
    ]);
  }
}
table(['scenario', 'target', 'req/s (min–max)', 'p50 ms', 'p99 ms', 'isolate µs/req', 'objects µs/req', 'of it console', 'workerd µs/req', 'req/s / isolate CPU ratio', 'other load', 'failures'], rows);
p();
if (floor) {
  const hello = cpu['health|hello']?.isolateUs;
  const call = Number.isFinite(hello) ? floor.isolateUs - hello : NaN;
  const peer = cpu['tools/call-jwt|peer']?.isolateUs;
  const server = cpu['tools/call-jwt|server']?.isolateUs;
  p(`object-call floor (bench/object-call: a JavaScript worker whose only work is one Durable Object call shaped as the server's): isolate ${f(floor.isolateUs, 1)} µs/req${floor.other > 0.15 ? ` (other processes ${f(100 * floor.other)}% of a core)` : ''}`);
  if (Number.isFinite(call)) {
    p(`  the call itself (less hello's ${f(hello, 1)}): ${f(call, 1)} µs = ${ratio(call, peer)} of the peer's tools/call; the server's tools/call (JWT) less it: ${f(server - call, 1)} µs = ${ratio(server - call, peer)} of the peer's`);
  }
  p();
}
if (Object.keys(wr).length) {
  p(`wrangler dev (one pass, ${D.wranglerDuration} s per run, 2 connections):`);
  const wrows = [];
  for (const s of scenarios) {
    for (const name of s.targets) {
      const r = wr[`${s.id}|${name}`];
      const base = baseOf(s);
      const b = wr[`${s.id}|${base}`];
      wrows.push([name === 'hello' ? 'GET / (hello world)' : s.title, name, f(r?.rps), f(r?.p50, 2), f(r?.p99, 2), name !== base && b ? `${ratio(r?.rps, b.rps)} vs ${base}` : '', r ? `${f(100 * r.other)}%` : '–']);
    }
  }
  table(['scenario', 'target', 'req/s', 'p50 ms', 'p99 ms', 'req/s ratio', 'other load'], wrows);
  p();
}
if (check) {
  const [h, b] = check.rows;
  p(`CPU method check (1 connection, 500 req/s, ${h.requests} requests; sampler period ${period} µs measured for ${INTERVAL} µs requested):`);
  for (const r of check.rows) p(`  ${r.label.padEnd(5)}  worker isolate ${f(r.isolate, 1)} µs/req, Miniflare entry isolate ${f(r.entry, 1)}, whole workerd process ${f(r.proc, 1)}${r.burst ? ` (${r.burst} sample(s) in bursts left out)` : ''}`);
  p(`  added work (${b.label} − ${h.label}): isolate profile +${f(b.isolate - h.isolate, 1)} µs/req, workerd process +${f(b.proc - h.proc, 1)} µs/req`);
  p(`  inspector open, no session (server GET /health, one log line per request): workerd process ${f(check.health.closed, 1)} → ${f(check.health.open, 1)} µs/req (console calls cost more under an inspector)`);
  const dIso = b.isolate - h.isolate;
  const dProc = b.proc - h.proc;
  if (Math.abs(dIso - dProc) > 0.25 * dProc) {
    p(`  MISMATCH: the profile and the process disagree by more than 25% (other processes ${f(100 * Math.max(h.other, b.other))}% of a core): the isolate CPU figures of this run are not reliable; rerun on a quiet machine`);
  } else {
    p(`  agreement within ${f((100 * Math.abs(dIso - dProc)) / dProc)}% (other processes ${f(100 * Math.max(h.other, b.other))}% of a core)`);
  }
  p();
}
for (const s of scenarios) {
  for (const name of s.targets) {
    const a = cpu[`${s.id}|${name}`];
    if (!a) continue;
    const pc = (x) => `${f((100 * x) / a.isolateUs)}%`;
    p(`profile ${s.id} · ${name}: isolate ${f(a.isolateUs, 1)} µs/req (${a.samples} samples over ${a.requests} requests) = wasm ${pc(a.byKind.wasm)} · JS ${pc(a.byKind.js)} · built-ins ${pc(a.byKind.builtin)} · runtime ${pc(a.byKind.runtime)} · GC ${pc(a.byKind.gc)}; console.* calls ${f(a.consoleUs, 1)} µs/req;${a.burst ? ` ${a.burst} sample(s) in bursts left out${a.burst > 0.02 * a.samples ? ' (UNRELIABLE)' : ''};` : ''} other processes ${f(100 * a.other)}% of a core; ${a.file.slice(ROOT.length + 1)}`);
    p('   µs/req     %  kind     function  (script:line:column)');
    for (const e of a.top) p(`  ${f(e.us, 1).padStart(7)}  ${pc(e.us).padStart(4)}  ${e.kind.padEnd(7)}  ${e.name}${e.where ? `  ${e.where}` : ''}`);
    if (a.objectsTop?.length) {
      p(`  the Durable Objects' isolate: ${f(a.objectsUs, 1)} µs/req${a.objectsUnreliable ? ` (UNRELIABLE: ${a.objectsUnreliable})` : ''}; its top entries:`);
      for (const e of a.objectsTop.slice(0, 6)) p(`  ${f(e.us, 1).padStart(7)}           ${e.kind.padEnd(7)}  ${e.name}${e.where ? `  ${e.where}` : ''}`);
    }
    p();
  }
}
const busyRuns = [...Object.values(thr).flat(), ...Object.values(cpu), ...Object.values(wr)].filter((r) => r.other > BUSY).length;
if (busyRuns) p(`NOTE: ${busyRuns} runs had other processes using more than ${100 * BUSY}% of a core (column "other load"); their figures are less reliable.`);
if (waitedMs) p(`waited ${f(waitedMs / 1000)} s in all for other processes' load to drop before runs`);
if (failures.length) {
  p(`FAILURES (${failures.length} runs):`);
  for (const x of failures) p(`  ${x}`);
} else {
  p('failures: none (every reply HTTP 200 with a JSON-RPC result; tool calls without tool errors)');
}
p(`run time: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
console.log(out.join('\n'));
writeFileSync(join(ARTIFACTS, 'report.txt'), `${out.join('\n')}\n`);
await upstream.close();
if (failures.length) process.exitCode = 1;
