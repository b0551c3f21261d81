// The official MCP conformance suite (@modelcontextprotocol/conformance) against the
// conformance bundle (release code plus the suite's test_* fixtures) under workerd:
// the stable 0.1 line, the 0.2 alpha line's 2025-11-25 and 2026-07-28 requirement sets, and
// its scenarios for the tasks extension.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { startWorker, ROOT } from './harness.mjs';

// Scenarios a stateless server cannot pass, and why (see README, "Conformance"): in the
// initialize generation, sampling and elicitation are server-to-client requests sent
// mid-call on the response stream and answered by a separate POST, which needs the two
// requests to meet in server-side state. 2026-07-28 replaces them with input-required
// results, which pass (input-required-result-*).
const NEEDS_SESSION_STATE = new Set([
  'tools-call-sampling', 'tools-call-elicitation', 'elicitation-sep1034-defaults', 'elicitation-sep1330-enums',
]);

const NODE = join(ROOT, 'node_modules', '.bin', 'node'); // Node 22: the suite needs fs.globSync
const SUITES = {
  stable: join(ROOT, 'node_modules', 'conformance-stable', 'dist', 'index.js'),
  next: join(ROOT, 'node_modules', 'conformance-next', 'dist', 'index.js'),
};

let w;
before(async () => { w = await startWorker({ bundle: 'build-conformance', vars: { ANON_DAILY_LIMIT: '100000' } }); });
after(async () => { await w?.stop(); });

function run(suite, args) {
  return new Promise((resolve) => {
    execFile(NODE, [SUITES[suite], 'server', '--url', w.url, ...args], { cwd: ROOT, maxBuffer: 64 << 20, timeout: 600_000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, out: stdout + stderr }));
  });
}

/** Parses the suite's summary: scored scenarios with their pass/fail counts. */
function summary(out) {
  const notScored = new Set();
  const tail = out.split(/Not scored for [^\n]*\n/)[1] ?? '';
  for (const m of tail.matchAll(/^\s+[✓✗] (\S+)/gm)) notScored.add(m[1]);
  const rows = [];
  const section = out.split('=== SUMMARY ===')[1] ?? '';
  for (const m of section.matchAll(/^([✓✗]) (\S+): (\d+) passed, (\d+) failed$/gm)) {
    if (!notScored.has(m[2])) rows.push({ ok: m[1] === '✓', name: m[2], passed: +m[3], failed: +m[4] });
  }
  return { rows, notScored };
}

for (const [suite, args, label] of [
  ['stable', [], 'stable 0.1.16, active suite'],
  ['stable', ['--suite', 'pending'], 'stable 0.1.16, pending suite'],
  ['next', ['--requirements', '2025-11-25'], '0.2.0-alpha.12, requirements 2025-11-25'],
  ['next', ['--requirements', '2026-07-28'], '0.2.0-alpha.12, requirements 2026-07-28'],
]) {
  test(`conformance ${label}: every scenario passes except those that need session state`, async (t) => {
    const { out } = await run(suite, args);
    const { rows, notScored } = summary(out);
    assert.ok(rows.length > 0, `no summary in the suite's output:\n${out.slice(-3000)}`);
    const unexpected = rows.filter((r) => !r.ok && !NEEDS_SESSION_STATE.has(r.name));
    const scenariosPassed = rows.filter((r) => r.ok).length;
    const checks = rows.reduce((a, r) => [a[0] + r.passed, a[1] + r.failed], [0, 0]);
    t.diagnostic(`conformance ${label}: ${scenariosPassed}/${rows.length} scored scenarios pass `
      + `(${checks[0]} checks passed, ${checks[1]} failed); not scored: ${notScored.size}`);
    assert.deepEqual(unexpected.map((r) => r.name), [], out.slice(-4000));
  });
}

const TASK_SCENARIOS = ['tasks-lifecycle', 'tasks-capability-negotiation', 'tasks-wire-fields', 'tasks-request-state-removal',
  'tasks-request-headers', 'tasks-dispatch-and-envelope', 'tasks-required-task-error', 'tasks-status-notifications',
  'tasks-mrtr-input', 'tasks-mrtr-composition'];

test('conformance 0.2.0-alpha.12, tasks extension: every check of its ten scenarios passes', async (t) => {
  const checks = [];
  for (const scenario of TASK_SCENARIOS) {
    const { out } = await run('next', ['--scenario', scenario]);
    // "[check-id   ] SUCCESS|FAILURE|WARNING description", colours stripped.
    for (const m of out.replace(/\x1b\[[0-9;]*m/g, '').matchAll(/\[([a-z0-9-]+)\s*\] (SUCCESS|FAILURE|WARNING)/g)) {
      checks.push({ scenario, id: m[1], status: m[2] });
    }
  }
  const passed = checks.filter((c) => c.status === 'SUCCESS').length;
  const failed = checks.filter((c) => c.status !== 'SUCCESS');
  t.diagnostic(`tasks extension: ${passed}/${checks.length} checks pass; not passed: ${failed.map((c) => c.id).join(', ')}`);
  assert.ok(passed >= 40, `too few checks ran: ${JSON.stringify(checks)}`);
  assert.deepEqual(failed, []);
});

test('a tool that asks the user, in the request (2026-07-28, no task): input_required, then the answer; the asking round costs nothing', async () => {
  const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': { elicitation: {} } };
  const call = async (extra) => {
    const res = await fetch(w.url, { method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'confirm_delete' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'confirm_delete', arguments: { filename: 'a.txt' }, _meta: meta, ...extra } }) });
    const text = await res.text();
    const body = text.startsWith('{') ? JSON.parse(text) : JSON.parse(text.split('\n').filter((l) => l.startsWith('data: ')).at(-1).slice(6));
    return { body, remaining: Number(/r=(\d+)/.exec(res.headers.get('ratelimit') ?? '')?.[1]) };
  };
  const asked = await call({});
  assert.equal(asked.body.result.resultType, 'input_required');
  assert.equal(asked.body.result.inputRequests.confirm.method, 'elicitation/create');
  const answered = await call({ inputResponses: { confirm: { action: 'accept', content: { confirm: true } } } });
  assert.equal(answered.body.result.resultType, 'complete');
  assert.equal(answered.body.result.content[0].text, 'Deleted a.txt');
  assert.equal(answered.remaining, asked.remaining, 'the asking round was given back; the answering call is counted');
  const bad = await call({ inputResponses: 12 });
  assert.equal(bad.body.error.code, -32602);
});
