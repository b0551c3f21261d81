// The three benchmark targets (the server, the TypeScript peer, the hello-world worker):
// bundling, and starting each under Miniflare's API or under `wrangler dev`, 127.0.0.1 only.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
import { SERVER_OPTIONS, applyMigrations, serverWorker } from '../../tests/runtime/miniflare.mjs';
import { workerdPids } from './proc.mjs';

export const BENCH = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = join(BENCH, '..');
export const WRANGLER = join(ROOT, 'node_modules', '.bin', 'wrangler');
export const ADMIN_TOKEN = 'bench-admin-token';
export const JWT_SECRET = 'bench-jwt-secret-0123456789abcdef0123456789abcdef';
// The peer and hello get the server's compatibility date.
export const COMPAT_DATE = SERVER_OPTIONS.compatibilityDate;
const HUGE = 100000000;
// Vars added to wrangler.toml's for the server: limits no run can reach.
export const SERVER_VARS = {
  ADMIN_TOKEN,
  JWT_SECRET,
  ANON_DAILY_LIMIT: String(HUGE),
  PLANS: JSON.stringify({
    free: { daily: HUGE, monthly: HUGE, tools: ['*'] },
    pro: { daily: HUGE, monthly: HUGE, tools: ['*'], price: '$9/month' },
  }),
};
export const WRANGLER_ENV = {
  ...process.env,
  WRANGLER_SEND_METRICS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  X_LOCAL_OBSERVABILITY: 'false',
  NO_COLOR: '1',
  CI: 'true',
};

import { freePort } from '../../tests/runtime/harness.mjs';

export { freePort };

/** The bench's own packages (`npm ci` in bench/ when missing), then the release build unless `build` is false. */
export function prepare(log, { build = true } = {}) {
  if (!existsSync(join(BENCH, 'node_modules', '.package-lock.json'))) {
    log('npm ci in bench/');
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: BENCH, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  if (!build) return;
  log('scripts/build.sh');
  try {
    const out = execFileSync(join(ROOT, 'scripts', 'build.sh'), [], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    log(out.toString().trim().split('\n').at(-1));
  } catch (e) {
    process.stderr.write(`${e.stdout}${e.stderr}`);
    throw new Error('scripts/build.sh failed');
  }
}

/** A wrangler config in its own temporary directory (so no .wrangler/ lands in the tree). */
function tempConfig(name, config) {
  const dir = mkdtempSync(join(tmpdir(), `bench-${name}-`));
  writeFileSync(join(dir, 'wrangler.json'), JSON.stringify(config, null, 2));
  return { dir, path: join(dir, 'wrangler.json') };
}

const PEER_CONFIG = (main) => ({
  name: 'ts-peer', main, compatibility_date: COMPAT_DATE, compatibility_flags: ['nodejs_compat'],
  vars: { JWT_SECRET },
});
const HELLO_CONFIG = (main) => ({ name: 'hello', main, compatibility_date: COMPAT_DATE });

/**
 * Bundles the peer with wrangler's bundler (esbuild plus its nodejs_compat handling), as
 * `wrangler deploy` would ship it, into a temporary directory. Returns { dir, file, bytes }.
 */
export function bundlePeer() {
  const cfg = tempConfig('peer', PEER_CONFIG(join(BENCH, 'peer', 'index.ts')));
  const out = join(cfg.dir, 'out');
  execFileSync(WRANGLER, ['deploy', '--dry-run', '--config', cfg.path, '--outdir', out], {
    cwd: cfg.dir, env: WRANGLER_ENV, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const file = join(out, 'index.js');
  return { dir: cfg.dir, file, bytes: readFileSync(file) };
}

/**
 * The server under Miniflare as in production: the worker, and its Durable Objects in an
 * isolate of their own (`server-objects`, the same bundle), so that the worker's isolate
 * profile holds the worker's work alone (on `wrangler dev` the objects share its isolate).
 */
function serverWorkers(bundleDir, vars) {
  const front = serverWorker(bundleDir, vars);
  const remote = Object.fromEntries(Object.entries(front.durableObjects)
    .map(([binding, def]) => [binding, { ...def, scriptName: OBJECTS }]));
  return [{ ...front, durableObjects: remote }, { ...serverWorker(bundleDir, vars), name: OBJECTS }];
}

/** The worker that holds the server's Durable Objects under Miniflare. */
export const OBJECTS = 'server-objects';

/** Target descriptions: what each one is and how Miniflare and wrangler run it. */
export function describeTargets({ bundleDir, peerBundle, serverVars = {} }) {
  const vars = { ...SERVER_VARS, ...serverVars };
  return {
    server: {
      name: 'server',
      miniflare: serverWorkers(bundleDir, vars),
      objects: OBJECTS,
      // wrangler dev: the root wrangler.toml with the bundle as entry, as the runtime tests do.
      wrangler: { cwd: ROOT, config: join(ROOT, 'wrangler.toml'), entry: join(bundleDir, 'index.js'), vars, d1: true },
      d1Migrations: join(ROOT, 'migrations'),
    },
    peer: {
      name: 'peer',
      miniflare: {
        name: 'peer',
        compatibilityDate: COMPAT_DATE,
        compatibilityFlags: ['nodejs_compat'],
        modules: [{ type: 'ESModule', path: join(dirname(peerBundle.file), 'index.js'), contents: peerBundle.bytes }],
        modulesRoot: dirname(peerBundle.file),
        bindings: { JWT_SECRET },
      },
      wrangler: { config: PEER_CONFIG(join(BENCH, 'peer', 'index.ts')) },
    },
    hello: {
      name: 'hello',
      miniflare: {
        name: 'hello',
        compatibilityDate: COMPAT_DATE,
        modules: [{ type: 'ESModule', path: join(BENCH, 'hello', 'index.js') }],
        modulesRoot: join(BENCH, 'hello'),
      },
      wrangler: { config: HELLO_CONFIG(join(BENCH, 'hello', 'index.js')) },
    },
    // Not compared: a worker that only makes one Durable Object call shaped as the server's
    // (the floor of a counted call), its object in a worker of its own as the server's are.
    floor: {
      name: 'floor',
      miniflare: [
        {
          name: 'floor',
          compatibilityDate: COMPAT_DATE,
          modules: [{ type: 'ESModule', path: join(BENCH, 'object-call', 'index.js') }],
          modulesRoot: join(BENCH, 'object-call'),
          durableObjects: { COUNTER: { className: 'Counter', scriptName: 'floor-objects', useSQLite: true } },
        },
        {
          name: 'floor-objects',
          compatibilityDate: COMPAT_DATE,
          modules: [{ type: 'ESModule', path: join(BENCH, 'object-call', 'index.js') }],
          modulesRoot: join(BENCH, 'object-call'),
          durableObjects: { COUNTER: { className: 'Counter', useSQLite: true } },
        },
      ],
    },
    // Not compared: a worker with a known amount of work per request, for the CPU method.
    calib: {
      name: 'calib',
      miniflare: {
        name: 'calib',
        compatibilityDate: COMPAT_DATE,
        modules: [{ type: 'ESModule', path: join(BENCH, 'calibrate', 'index.js') }],
        modulesRoot: join(BENCH, 'calibrate'),
      },
    },
  };
}

/**
 * Starts one target under Miniflare (its own workerd process), state persisted to a fresh
 * temporary directory as `wrangler dev` does. `inspectorPort` opens workerd's inspector.
 * Returns { origin, pids (workerd), inspectorPort, mf, stop() }.
 */
export async function startMiniflare(target, { inspectorPort } = {}) {
  const state = mkdtempSync(join(tmpdir(), `bench-state-${target.name}-`));
  const before = new Set(workerdPids());
  const mf = new Miniflare(convertV4MiniflareOptions({
    workers: [target.miniflare].flat(),
    host: '127.0.0.1',
    port: 0,
    inspectorPort,
    cf: false,
    resourcePersistencePath: join(state, 'v3'),
    // The worker's console lines are dropped (they cost the isolate the same either way).
    handleStructuredLogs() {},
  }));
  const url = await mf.ready;
  if (target.d1Migrations) await applyMigrations(mf, target.d1Migrations);
  const pids = workerdPids().filter((p) => !before.has(p));
  return {
    origin: url.origin,
    pids,
    inspectorPort,
    mf,
    async stop() {
      await mf.dispose();
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/**
 * Starts one target under `wrangler dev` (its own bundling, proxy and workerd), the way
 * tests/runtime/harness.mjs does. Returns { origin, stop() }.
 */
export async function startWranglerDev(target) {
  const w = target.wrangler;
  let cfg = null;
  let cwd = w.cwd;
  let configPath = w.config;
  if (typeof w.config === 'object') {
    cfg = tempConfig(target.name, w.config);
    cwd = cfg.dir;
    configPath = cfg.path;
  }
  const state = mkdtempSync(join(tmpdir(), `bench-wstate-${target.name}-`));
  if (w.d1) {
    execFileSync(WRANGLER, ['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', state, '--config', configPath], {
      cwd, env: WRANGLER_ENV, stdio: ['ignore', 'ignore', 'pipe'],
    });
  }
  const port = await freePort();
  const args = ['dev', ...(w.entry ? [w.entry] : []), '--config', configPath, '--ip', '127.0.0.1', '--port', String(port),
    '--persist-to', state, '--show-interactive-dev-session=false', '--log-level', 'log', '--inspector-port', String(await freePort())];
  for (const [k, v] of Object.entries(w.vars ?? {})) args.push('--var', `${k}:${v}`);
  const child = spawn(WRANGLER, args, { cwd, env: WRANGLER_ENV, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const logs = [];
  const origin = `http://127.0.0.1:${port}`;
  const exited = new Promise((r) => child.once('exit', r));
  // The worker's log lines are read and dropped; the first ones are kept for errors.
  child.stdout.on('data', (b) => { if (logs.length < 200) logs.push(b.toString()); });
  child.stderr.on('data', (b) => { if (logs.length < 200) logs.push(b.toString()); });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
      const t = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(state, { recursive: true, force: true });
    if (cfg) rmSync(cfg.dir, { recursive: true, force: true });
  };
  // Ready when it answers.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev (${target.name}) exited:\n${logs.join('')}`);
    try {
      await fetch(`${origin}/`, { signal: AbortSignal.timeout(2000) });
      break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) { await stop(); throw new Error(`wrangler dev (${target.name}) did not start:\n${logs.join('')}`); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { origin, stop };
}

/** Removes a directory made here. */
export function cleanup(dir) {
  rmSync(dir, { recursive: true, force: true });
}

/** A temporary wrangler config for `wrangler check startup` of a target. */
export function startupConfig(target, { bundleDir }) {
  if (target.name === 'server') {
    return tempConfig('startup-server', { name: 'server', main: join(bundleDir, 'index.js'), compatibility_date: COMPAT_DATE });
  }
  return tempConfig(`startup-${target.name}`, target.wrangler.config);
}
