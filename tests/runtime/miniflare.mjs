// Starts the built worker under Miniflare's API (its own workerd, local KV/D1/Durable
// Objects, 127.0.0.1 only) next to other workers, for tests that rewire a binding, such
// as putting a faulty stand-in between the server and its Durable Objects.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
import { unstable_getMiniflareWorkerOptions, unstable_splitSqlQuery } from 'wrangler';
import { ROOT } from './harness.mjs';

/**
 * Bindings, compatibility date and Durable Object classes as wrangler reads wrangler.toml;
 * not the secrets of a local `.dev.vars` (scripts/dev.sh makes one): an empty env file
 * stands in for it, so that tests see the same configuration on every checkout.
 */
export const SERVER_OPTIONS = unstable_getMiniflareWorkerOptions(join(ROOT, 'wrangler.toml'), undefined, { envFiles: ['/dev/null'] }).workerOptions;

/** Applies the D1 migrations the way `wrangler d1 migrations apply --local` runs their SQL. */
export async function applyMigrations(mf, dir = join(ROOT, 'migrations'), workerName) {
  const db = await mf.getD1Database('DB', workerName);
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.sql')).sort()) {
    const queries = unstable_splitSqlQuery(readFileSync(join(dir, f), 'utf8'));
    await db.batch(queries.map((q) => db.prepare(q)));
  }
}

/** The server's Miniflare worker options for a bundle directory (what worker-build emits). */
export function serverWorker(bundleDir, vars = {}) {
  const { modulesRules: _rules, ...base } = SERVER_OPTIONS;
  return {
    ...base,
    name: 'server',
    rootPath: bundleDir,
    modules: [
      { type: 'ESModule', path: join(bundleDir, 'index.js') },
      { type: 'CompiledWasm', path: join(bundleDir, 'index_bg.wasm') },
    ],
    modulesRoot: bundleDir,
    bindings: { ...SERVER_OPTIONS.bindings, ...vars },
  };
}

/**
 * Starts the server (`bundle`, a directory relative to the project) with `vars`, changed by `rewire(options)`,
 * plus `workers`. Returns { origin, url, mf, logs (the workers' console lines), stop() }.
 */
export async function startServer({ bundle = 'build', vars = {}, rewire = (o) => o, workers = [] } = {}) {
  const state = mkdtempSync(join(tmpdir(), 'mcp-worker-mf-'));
  const logs = [];
  const mf = new Miniflare(convertV4MiniflareOptions({
    workers: [rewire(serverWorker(resolve(ROOT, bundle), vars)), ...workers],
    host: '127.0.0.1',
    port: 0,
    cf: false,
    resourcePersistencePath: join(state, 'v3'),
    handleStructuredLogs(log) { logs.push(`${log.level}: ${log.message}`); },
  }));
  const url = await mf.ready;
  await applyMigrations(mf, undefined, 'server');
  return {
    origin: url.origin,
    url: `${url.origin}/mcp`,
    mf,
    logs,
    async stop() {
      await mf.dispose();
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/**
 * Options for `startServer` that put tests/runtime/workers/faulty_objects.js between the
 * server and its QuotaCounter objects; `setFaults` then chooses what that stand-in does.
 */
export function faultyObjects() {
  return {
    // QUOTA reaches FaultyCounter, which reaches the real QuotaCounter as REAL; USAGE
    // reaches CountingBuffer, which reaches the real UsageBuffer as REAL_USAGE.
    rewire: (o) => ({
      ...o,
      durableObjects: {
        ...o.durableObjects,
        QUOTA: { className: 'FaultyCounter', scriptName: 'faults' },
        USAGE: { className: 'CountingBuffer', scriptName: 'faults' },
      },
      additionalUnboundDurableObjects: [SERVER_OPTIONS.durableObjects.QUOTA, SERVER_OPTIONS.durableObjects.USAGE],
    }),
    workers: [{
      name: 'faults',
      compatibilityDate: SERVER_OPTIONS.compatibilityDate,
      modules: [{ type: 'ESModule', path: join(ROOT, 'tests/runtime/workers/faulty_objects.js') }],
      modulesRoot: join(ROOT, 'tests/runtime/workers'),
      durableObjects: {
        REAL: { ...SERVER_OPTIONS.durableObjects.QUOTA, scriptName: 'server' },
        OWN: { className: 'FaultyCounter', useSQLite: true },
        REAL_USAGE: { ...SERVER_OPTIONS.durableObjects.USAGE, scriptName: 'server' },
        OWN_USAGE: { className: 'CountingBuffer', useSQLite: true },
      },
    }],
  };
}

/** Requests the stand-ins have seen so far: `seen` (counter), `appends` (usage buffers). */
export async function objectRequests(server) {
  const faults = await server.mf.getWorker('faults');
  return (await faults.fetch('http://faults/seen')).json();
}

/** Makes the faulty stand-in pass requests on (`pass`), delay them (`slow`), or `fail`/`throw`. */
export async function setFaults(server, mode, delayMs = 0) {
  const faults = await server.mf.getWorker('faults');
  const res = await faults.fetch('http://faults/mode', { method: 'POST', body: JSON.stringify({ mode, delayMs }) });
  if (res.status !== 200) throw new Error(`the faulty stand-in answered ${res.status}`);
}
