// Process CPU from /proc (Linux): the workerd processes this process started, and their
// CPU time summed over all their threads, in nanoseconds (schedstat).
import { readdirSync, readFileSync } from 'node:fs';

function stat(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const close = s.lastIndexOf(')');
  return { comm: s.slice(s.indexOf('(') + 1, close), ppid: Number(s.slice(close + 2).split(' ')[1]) };
}

/** Pids of the workerd processes descended from this process. */
export function workerdPids() {
  const parent = new Map();
  const comm = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = stat(d);
      parent.set(Number(d), s.ppid);
      comm.set(Number(d), s.comm);
    } catch { /* gone */ }
  }
  const out = [];
  for (const [pid, c] of comm) {
    if (c !== 'workerd') continue;
    for (let p = parent.get(pid); p; p = parent.get(p)) {
      if (p === process.pid) { out.push(pid); break; }
    }
  }
  return out;
}

/** CPU time of the given processes (all threads), in ms. */
export function cpuMs(pids) {
  let ns = 0;
  for (const pid of pids) {
    let tasks = [];
    try { tasks = readdirSync(`/proc/${pid}/task`); } catch { continue; }
    for (const t of tasks) {
      try { ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { /* gone */ }
    }
  }
  return ns / 1e6;
}

const TICK_MS = 10; // USER_HZ 100

function ticksOf(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]); // utime stime cutime cstime
}

/**
 * A snapshot for `otherLoad`: the whole machine's busy CPU time and that of this process and
 * everything it started (children it has reaped included).
 */
export function loadSnapshot() {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7]; // user nice system irq softirq steal
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try { parent.set(Number(d), stat(d).ppid); } catch { /* gone */ }
  }
  let own = 0;
  for (const pid of parent.keys()) {
    let p = pid;
    while (p && p !== process.pid) p = parent.get(p);
    if (p !== process.pid) continue;
    try { own += ticksOf(pid); } catch { /* gone */ }
  }
  return { at: performance.now(), busyMs: busy * TICK_MS, ownMs: own * TICK_MS };
}

/** CPU used by other processes on the machine since `snap`, in cores (1 = one core busy). */
export function otherLoad(snap) {
  const now = loadSnapshot();
  return Math.max(0, (now.busyMs - snap.busyMs) - (now.ownMs - snap.ownMs)) / (now.at - snap.at);
}
