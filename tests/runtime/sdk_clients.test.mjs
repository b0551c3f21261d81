// The official TypeScript SDK clients against the release bundle under workerd:
// @modelcontextprotocol/sdk 1.x for the initialize generation (2025-11-25, -06-18, -03-26)
// and @modelcontextprotocol/client 2.x pinned to the stateless 2026-07-28 generation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client as Client2, StreamableHTTPClientTransport as Transport2 } from '@modelcontextprotocol/client';
import { startWorker } from './harness.mjs';

let w;
before(async () => { w = await startWorker({ vars: { ANON_DAILY_LIMIT: '100000' } }); });
after(async () => { await w?.stop(); });

// SDK 1.x always offers its newest version; rewrite initialize to offer an older one.
const offerVersion = (v) => async (url, init) => {
  if (typeof init?.body === 'string') {
    const msg = JSON.parse(init.body);
    if (msg.method === 'initialize') init = { ...init, body: JSON.stringify({ ...msg, params: { ...msg.params, protocolVersion: v } }) };
  }
  return fetch(url, init);
};

async function exerciseTools(client) {
  const { tools } = await client.listTools(); // also arms the client's outputSchema validation
  assert.deepEqual(tools.map((t) => t.name), ['whoami', 'hash', 'hmac']);
  const who = await client.callTool({ name: 'whoami', arguments: {} });
  assert.notEqual(who.isError, true);
  assert.equal(who.structuredContent.kind, 'anonymous');
  const hash = await client.callTool({ name: 'hash', arguments: { text: 'hello', algorithm: 'sha512', encoding: 'base64' } });
  assert.equal(hash.structuredContent.algorithm, 'sha512');
  assert.equal(hash.structuredContent.digest, 'm3HSJL1i83hdltRq0+o9czGb+8KJDKra4t/3JRlnPKcjI8PZm6XBHXx6zG4UuMXaDEZjR1wuXDre9G9zvN7AQw==');
  const bad = await client.callTool({ name: 'hash', arguments: {} });
  assert.equal(bad.isError, true, 'a missing argument is a tool error');
}

for (const version of ['2025-11-25', '2025-06-18', '2025-03-26']) {
  test(`SDK 1.x client connects, lists and calls tools over ${version}`, async () => {
    const transport = new StreamableHTTPClientTransport(new URL(w.url), version === '2025-11-25' ? {} : { fetch: offerVersion(version) });
    const client = new Client({ name: 'sdk-test', version: '1.0.0' });
    const errors = [];
    client.onerror = (e) => errors.push(e);
    await client.connect(transport);
    try {
      assert.equal(transport.protocolVersion, version);
      assert.equal(transport.sessionId, undefined);
      await exerciseTools(client);
      assert.deepEqual(errors, [], 'no transport errors (the optional GET stream gets a 405)');
    } finally {
      await client.close();
    }
  });
}

test('SDK 2.x client pinned to 2026-07-28 discovers, lists and calls tools without initialize', async () => {
  const client = new Client2({ name: 'sdk2-test', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
  await client.connect(new Transport2(new URL(w.url)));
  try {
    assert.equal(client.getNegotiatedProtocolVersion(), '2026-07-28');
    assert.ok(client.getDiscoverResult().supportedVersions.includes('2026-07-28'));
    await exerciseTools(client);
  } finally {
    await client.close();
  }
});

test('SDK 2.x client in auto mode settles on 2026-07-28', async () => {
  const client = new Client2({ name: 'sdk2-auto', version: '1.0.0' }, { versionNegotiation: { mode: 'auto' } });
  await client.connect(new Transport2(new URL(w.url)));
  try {
    assert.equal(client.getNegotiatedProtocolVersion(), '2026-07-28');
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name), ['whoami', 'hash', 'hmac']);
  } finally {
    await client.close();
  }
});
