// The discovery documents over HTTP from the release bundle under workerd: the registry's
// server.json validates against the published schema, the server card is served from one
// source at both locations with its media type, open CORS and a working ETag, and the AI
// catalog points at it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { startWorker, ROOT } from './harness.mjs';

let w;
before(async () => { w = await startWorker({ vars: { PUBLIC_URL: 'https://mcp.example.com', SERVER_DESCRIPTION: 'Hashes and HMACs, paid by the call.' } }); });
after(async () => { await w?.stop(); });

test('server.json validates against the MCP Registry schema (2025-12-11)', async () => {
  const res = await fetch(`${w.origin}/server.json`);
  assert.equal(res.status, 200);
  const doc = await res.json();
  const schema = JSON.parse(readFileSync(join(ROOT, 'tests', 'schemas', 'server.schema.json'), 'utf8'));
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const validate = ajv.compile(schema);
  assert.ok(validate(doc), JSON.stringify(validate.errors));
  assert.equal(doc.$schema, schema.$id);
  assert.equal(doc.name, 'com.example.mcp/paid-mcp-worker');
  assert.equal(doc.description, 'Hashes and HMACs, paid by the call.');
  assert.equal(doc.remotes[0].url, 'https://mcp.example.com/mcp');
  // The same validator refuses what the registry would refuse.
  assert.equal(validate({ ...doc, name: 'no-namespace' }), false);
});

test('the server card: one source at both locations, its media type, open CORS, ETag and 304', async () => {
  const a = await fetch(`${w.origin}/mcp/server-card`);
  const b = await fetch(`${w.origin}/.well-known/mcp/server-card.json`);
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('content-type'), 'application/mcp-server-card+json');
  assert.equal(a.headers.get('access-control-allow-origin'), '*');
  const card = await a.json();
  assert.deepEqual(await b.json(), card);
  const registry = await fetch(`${w.origin}/server.json`).then((r) => r.json());
  for (const field of ['name', 'title', 'description', 'version', 'remotes']) assert.deepEqual(card[field], registry[field], field);
  const tools = card._meta['com.example.mcp/tools'];
  assert.deepEqual(tools.map((t) => t.name), ['whoami', 'hash', 'hmac']);
  assert.ok(tools.every((t) => typeof t['com.example.mcp/paid'] === 'boolean' && Array.isArray(t['com.example.mcp/plans'])));
  assert.deepEqual(card._meta['com.example.mcp/authorization_servers'], ['https://mcp.example.com']);
  const etag = a.headers.get('etag');
  const cached = await fetch(`${w.origin}/mcp/server-card`, { headers: { 'if-none-match': etag } });
  assert.equal(cached.status, 304);
  assert.equal(await cached.text(), '');
  const preflightless = await fetch(`${w.origin}/.well-known/ai-catalog.json`, { headers: { origin: 'https://directory.example' } });
  assert.equal(preflightless.headers.get('access-control-allow-origin'), '*');
  const catalog = await preflightless.json();
  assert.equal(catalog.entries[0].serverCard, 'https://mcp.example.com/mcp/server-card');
  assert.equal((await fetch(`${w.origin}/mcp/server-card`, { method: 'DELETE' })).status, 405);
});
