// An isolate keeps the API-key records it read from KV (src/adapters/keys.rs): a key's next
// requests skip the KV read, a revocation made through this isolate is refused at once, and a
// key KV did not know is read again on its next request (a miss is never kept).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mintKey } from './harness.mjs';
import { startServer } from './miniflare.mjs';

const ADMIN_TOKEN = 'key-records-admin-token';
let server;
let kv;

before(async () => {
  server = await startServer({ vars: { ADMIN_TOKEN } });
  kv = await server.mf.getKVNamespace('KV', 'server');
});

after(async () => { await server?.stop(); });

const recordName = (key) => `key:${createHash('sha256').update(key).digest('hex')}`;

const list = (key) => fetch(server.url, {
  method: 'POST',
  headers: {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25',
    authorization: `Bearer ${key}`,
  },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
});

const revoke = (key) => fetch(`${server.origin}/admin/keys/revoke`, {
  method: 'POST',
  headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
  body: JSON.stringify({ key_hash: recordName(key).slice(4) }),
});

test('a key record read once serves the next requests without KV; revoking it here refuses it at once', async () => {
  const key = await mintKey(server.origin, ADMIN_TOKEN);
  assert.equal((await list(key)).status, 200);
  const stored = await kv.get(recordName(key));
  assert.ok(stored, 'the minted key has its KV record');
  await kv.delete(recordName(key));
  assert.equal((await list(key)).status, 200, 'served from the record this isolate read');
  await kv.put(recordName(key), stored);
  assert.equal((await revoke(key)).status, 200);
  const refused = await list(key);
  assert.equal(refused.status, 401, 'the revocation reached this isolate at once');
  assert.match(refused.headers.get('www-authenticate'), /revoked/);
});

test('a key KV did not know is read again on its next request', async () => {
  const key = await mintKey(server.origin, ADMIN_TOKEN);
  const stored = await kv.get(recordName(key));
  await kv.delete(recordName(key));
  const unknown = await list(key);
  assert.equal(unknown.status, 401);
  assert.match(await unknown.text(), /unknown API key/);
  await kv.put(recordName(key), stored);
  assert.equal((await list(key)).status, 200, 'the miss was not kept');
});
