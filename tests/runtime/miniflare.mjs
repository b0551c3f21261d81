// Starts the built worker under Miniflare's API (its own workerd, local KV/D1/Durable
// Objects, 127.0.0.1 only) next to other workers, for tests that rewire a binding, such
// as putting a faulty stand-in between the server and its Durable Objects.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
import { unstable_getMiniflareWorkerOptions, unstable_splitSqlQuery } from 'wrangler';
import { ROOT } from './harness.mjs';

/** Bindings, compatibility date and Durable Object classes as wrangler reads wrangler.toml. */
export const SERVER_OPTIONS = unstable_getMiniflareWorkerOptions(join(ROOT, 'wrangler.toml')).workerOptions;

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
 * Starts the server (`bundle` under the project) with `vars`, changed by `rewire(options)`,
 * plus `workers`. Returns { origin, url, mf, logs (the workers' console lines), stop() }.
 */
export async function startServer({ bundle = 'build', vars = {}, rewire = (o) => o, workers = [] } = {}) {
  const state = mkdtempSync(join(tmpdir(), 'mcp-worker-mf-'));
  const logs = [];
  const mf = new Miniflare(convertV4MiniflareOptions({
    workers: [rewire(serverWorker(join(ROOT, bundle), vars)), ...workers],
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
