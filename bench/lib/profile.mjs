// CPU profiles of one worker isolate through workerd's inspector (Chrome DevTools Protocol
// over WebSocket), and their analysis: isolate CPU, the split by kind of code, top entries.
import { basename } from 'node:path';

class Cdp {
  constructor(ws) {
    this.ws = ws;
    this.next = 1;
    this.waiting = new Map();
    ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(ev.data);
      const w = msg.id !== undefined && this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.error) w.reject(new Error(`${w.method}: ${msg.error.message}`));
      else w.resolve(msg.result);
    });
  }

  static async connect(url) {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.addEventListener('open', resolve, { once: true });
      ws.addEventListener('error', () => reject(new Error(`cannot open ${url}`)), { once: true });
    });
    return new Cdp(ws);
  }

  send(method, params = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  close() {
    this.ws.close();
  }
}

/**
 * One inspector session per named workerd service (Miniflare names a worker
 * `core:user:<name>`), kept open across profiles: `run(work)` profiles while `work()` runs
 * and resolves to { result, profiles: { service: profile } }; `close()` ends the sessions.
 */
export async function openProfiler(inspectorPort, services, { intervalUs = 500 } = {}) {
  const sessions = {};
  for (const s of services) {
    const cdp = await Cdp.connect(`ws://127.0.0.1:${inspectorPort}/${s}`);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: intervalUs });
    sessions[s] = cdp;
  }
  return {
    async run(work) {
      for (const cdp of Object.values(sessions)) await cdp.send('Profiler.start');
      let result;
      const profiles = {};
      try {
        result = await work();
      } finally {
        for (const [s, cdp] of Object.entries(sessions)) profiles[s] = (await cdp.send('Profiler.stop')).profile;
      }
      return { result, profiles };
    },
    async close() {
      for (const cdp of Object.values(sessions)) {
        await cdp.send('Profiler.disable');
        cdp.close();
      }
    },
  };
}

/** A single profile with its own session (see openProfiler). */
export async function profileWhile(inspectorPort, services, work, options) {
  const p = await openProfiler(inspectorPort, services, options);
  try {
    return await p.run(work);
  } finally {
    await p.close();
  }
}

// Why samples are counted rather than timed: V8 records a sample only while the isolate's
// lock is held, so the gap between two samples may span time the thread spent elsewhere
// (other isolates, the event loop, I/O). Each sample stands for one period of the sampler,
// measured on a busy isolate (`samplingPeriod`); samples in bursts (see `analyse`) do not.
//   (idle)     the isolate is locked but idle: not counted
//   (program)  native runtime work under the lock with no JavaScript frame (C++ built-ins
//              such as JSON.stringify, request and response plumbing): counted, "runtime"
//   (root)     the tree's root: not counted
const NOT_COUNTED = new Set(['(idle)', '(root)']);

/** The kind of code a profile node is: wasm, js, builtin, runtime or gc. */
export function kindOf(frame) {
  if (frame.functionName === '(garbage collector)') return 'gc';
  if (frame.functionName === '(program)') return 'runtime';
  if (frame.url.startsWith('wasm://') || /^\$?wasm-function\[/.test(frame.functionName)) return 'wasm';
  if (frame.url) return 'js';
  return 'builtin'; // functions with no script: V8 built-ins and runtime APIs (Response, fetch, digest)
}

/**
 * The sampler's actual period on a profile of a continuously busy isolate: the median gap
 * between consecutive samples (the requested interval plus the sampler thread's wake-up).
 */
export function samplingPeriod(profile) {
  const d = profile.timeDeltas.slice(1).sort((a, b) => a - b);
  return d[d.length >> 1];
}

/** Function names without the Rust hash suffix, shortened. */
function label(name) {
  const n = (name || '(anonymous)').replace(/::h[0-9a-f]{16}$/, '');
  return n.length > 90 ? `…${n.slice(-89)}` : n;
}

/**
 * Isolate CPU per request from a profile: samples (other than (idle) and (root)) times the
 * sampling period, split by kind of code, the part spent in console.* calls (which cost more
 * while an inspector is attached), and the top entries by self time aggregated by function
 * and script. Times are microseconds per request.
 */
export function analyse(profile, { periodUs, requests, top = 12 }) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Under a console.* call (wasm-bindgen's console imports, or a function named console.*).
  const consoleMemo = new Map();
  const inConsole = (id) => {
    if (id === undefined) return false;
    if (consoleMemo.has(id)) return consoleMemo.get(id);
    const name = nodes.get(id).callFrame.functionName;
    const v = /^__wbg_(log|error|warn|info|debug)_[0-9a-f]+$/.test(name) || /^console\./.test(name) || inConsole(parent.get(id));
    consoleMemo.set(id, v);
    return v;
  };
  let consoleUs = 0;
  // A sample closer than half a period to the one before is not a tick of the sampler:
  // workerd's profiles at times hold bursts of them (zero or negative gaps), which would
  // otherwise each count a whole period.
  const count = new Map();
  let burst = 0;
  const { samples: ids = [], timeDeltas = [] } = profile;
  for (let i = 0; i < ids.length; i++) {
    if (i > 0 && timeDeltas[i] < periodUs / 2) { burst++; continue; }
    count.set(ids[i], (count.get(ids[i]) ?? 0) + 1);
  }
  const perReq = (n) => (n * periodUs) / requests;
  const byKind = { wasm: 0, js: 0, builtin: 0, runtime: 0, gc: 0 };
  const skipped = {};
  const byFn = new Map();
  let samples = 0;
  for (const [id, n] of count) {
    const f = nodes.get(id).callFrame;
    if (NOT_COUNTED.has(f.functionName)) {
      skipped[f.functionName] = (skipped[f.functionName] ?? 0) + perReq(n);
      continue;
    }
    samples += n;
    if (inConsole(id)) consoleUs += perReq(n);
    const kind = kindOf(f);
    byKind[kind] += perReq(n);
    const file = f.url ? basename(f.url) : '';
    const where = kind === 'js' ? `${file}:${f.lineNumber + 1}:${f.columnNumber + 1}` : kind === 'wasm' ? 'wasm' : '';
    // Native functions are told apart by their caller (fetch to a Durable Object or to D1).
    let name = label(f.functionName);
    if (kind === 'builtin') {
      const up = nodes.get(parent.get(id))?.callFrame.functionName;
      name = `${name} ← ${!up || up === '(root)' ? 'no JS caller' : label(up)}`;
    }
    const key = `${kind}\u0000${name}\u0000${where}`;
    const e = byFn.get(key) ?? { kind, name, where, us: 0 };
    e.us += perReq(n);
    byFn.set(key, e);
  }
  const isolateUs = Object.values(byKind).reduce((a, b) => a + b, 0);
  return {
    samples,
    burst,
    isolateUs,
    consoleUs,
    byKind,
    skipped,
    top: [...byFn.values()].sort((a, b) => b.us - a.us).slice(0, top),
  };
}
