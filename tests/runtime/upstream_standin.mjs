// A local stand-in for the upstream LLM providers the `ask` tool calls, on 127.0.0.1. It
// speaks OpenAI-compatible `POST <prefix>/v1/chat/completions` and Anthropic
// `POST <prefix>/v1/messages` under any path prefix, so one server can play several
// providers (base + '/p1/v1', base + '/p2/v1' → prefixes '/p1' and '/p2'; base + '/v1' → '').
// Every request is recorded with its parsed body and headers, and whether the client went
// away before the answer finished (`aborted`), so a test can prove a cancel reached upstream.
//
// What each request gets is scripted per prefix: `state.behave[prefix]` is a queue consumed
// one behaviour per request; when it is empty, `state.defaultBehaviour` ({ kind: 'stream' }):
//   { kind: 'stream', tokens, delayMs, firstDelayMs, usage }  200 SSE, tokens then usage
//   { kind: 'status', status, retryAfter, body }             an error answer, e.g. 429/500
//   { kind: 'hang' }                                         never answers
//   { kind: 'drop', afterTokens }                            streams that many, then kills the socket
//   { kind: 'slow-head', delayMs, ...stream options }        waits before the headers, then streams
//
//   node tests/runtime/upstream_standin.mjs [--port 12112]
//
// starts it on its own for trying the `ask` tool by hand.
import { createServer } from 'node:http';

const DEFAULT_TOKENS = Array.from({ length: 8 }, (_, i) => `tok${i} `);

/** Splits '/p1/v1/chat/completions' into { prefix: '/p1', api: 'openai' }; null if unknown. */
export function route(pathname) {
  for (const [suffix, api] of [['/v1/chat/completions', 'openai'], ['/v1/messages', 'anthropic']]) {
    if (pathname.endsWith(suffix)) return { prefix: pathname.slice(0, -suffix.length), api };
  }
  return null;
}

export async function startUpstreamStandIn({ port = 0 } = {}) {
  const requests = [];
  const state = {
    requests,
    behave: {},
    defaultBehaviour: { kind: 'stream' },
    /** Per-prefix { requests, aborted, finished }. */
    counts() {
      const out = {};
      for (const r of requests) {
        if (r.prefix == null) continue;
        const c = (out[r.prefix] ??= { requests: 0, aborted: 0, finished: 0 });
        c.requests += 1;
        if (r.aborted) c.aborted += 1;
        if (r.finished) c.finished += 1;
      }
      return out;
    },
  };

  const next = (prefix) => {
    const queue = state.behave[prefix];
    return (Array.isArray(queue) && queue.length > 0 ? queue.shift() : null) ?? state.defaultBehaviour;
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const hit = route(url.pathname);
    const record = { method: req.method, prefix: hit ? hit.prefix : null, path: url.pathname, api: hit?.api ?? null,
      headers: { ...req.headers }, body: null, raw: '', behaviour: null, status: null,
      startedAt: Date.now(), aborted: false, finished: false, dropped: false };
    requests.push(record);

    // `aborted`: the connection closed before the answer was complete, and not because we
    // dropped it on purpose (`dropped` marks those).
    let gone = false;
    const goneWaiters = new Set();
    res.on('finish', () => { record.finished = true; record.finishedAt = Date.now(); });
    res.on('close', () => {
      gone = true;
      if (!res.writableFinished && !record.dropped) { record.aborted = true; record.abortedAt = Date.now(); }
      for (const w of goneWaiters) w();
    });
    /** Waits ms, or less if the client goes away meanwhile; resolves to false if it did. */
    const sleep = (ms) => new Promise((resolve) => {
      if (gone) return resolve(false);
      if (!ms) return resolve(true);
      const done = (ok) => { clearTimeout(t); goneWaiters.delete(onGone); resolve(ok); };
      const onGone = () => done(false);
      const t = setTimeout(() => done(true), ms);
      goneWaiters.add(onGone);
    });
    /** Writes a chunk and waits until it reached the socket; false if the client is gone. */
    const write = (chunk) => new Promise((resolve) => {
      if (gone || res.destroyed) return resolve(false);
      res.write(chunk, (err) => resolve(!err));
    });

    const chunks = [];
    try {
      for await (const c of req) chunks.push(c);
    } catch {
      return; // client went away mid-body; `close` has recorded it
    }
    record.raw = Buffer.concat(chunks).toString();

    const plain = (status, body, headers = {}) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };

    if (!hit) return plain(404, { error: { message: `no such endpoint: ${req.method} ${url.pathname}` } });
    if (req.method !== 'POST') return plain(405, { error: { message: 'method not allowed' } }, { allow: 'POST' });
    try {
      record.body = JSON.parse(record.raw);
    } catch {
      return plain(400, { error: { message: 'body is not JSON' } });
    }

    const b = next(hit.prefix);
    record.behaviour = b;
    const kind = b.kind ?? 'stream';

    if (kind === 'status') {
      const headers = b.retryAfter != null ? { 'retry-after': String(b.retryAfter) } : {};
      return plain(b.status ?? 500, b.body ?? '{"error":{"message":"injected"}}', headers);
    }
    if (kind === 'hang') return; // answers nothing; `close` marks it aborted when the client leaves
    if (!['stream', 'drop', 'slow-head'].includes(kind)) {
      return plain(500, { error: { message: `stand-in: unknown behaviour kind ${kind}` } });
    }

    if (kind === 'slow-head' && !(await sleep(b.delayMs ?? 0))) return;
    const tokens = b.tokens ?? DEFAULT_TOKENS;
    const stopAfter = kind === 'drop' ? (b.afterTokens ?? 2) : Infinity;
    const usage = { prompt_tokens: 12, completion_tokens: tokens.length, ...(b.usage ?? {}) };
    const model = record.body?.model ?? 'standin-model';

    record.status = 200;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();

    const openai = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
    const anthropic = (obj) => `event: ${obj.type}\ndata: ${JSON.stringify(obj)}\n\n`;
    const isOpenAI = hit.api === 'openai';

    if (!isOpenAI) {
      const ok = await write(anthropic({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant',
        model, content: [], stop_reason: null, stop_sequence: null,
        usage: { input_tokens: usage.input_tokens ?? usage.prompt_tokens, output_tokens: 1 } } })
        + anthropic({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
      if (!ok) return;
    }
    if (!(await sleep(b.firstDelayMs ?? 0))) return;
    for (let i = 0; i < tokens.length; i += 1) {
      if (i >= stopAfter) break;
      if (i > 0 && !(await sleep(b.delayMs ?? 0))) return;
      const chunk = isOpenAI
        ? openai({ id: 'chatcmpl-1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: tokens[i] } }] })
        : anthropic({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: tokens[i] } });
      if (!(await write(chunk))) return;
    }
    if (kind === 'drop') {
      record.dropped = true;
      record.droppedAt = Date.now();
      res.socket?.destroy();
      return;
    }
    if (isOpenAI) {
      await write(openai({ id: 'chatcmpl-1', object: 'chat.completion.chunk', choices: [], usage })
        + 'data: [DONE]\n\n');
    } else {
      await write(anthropic({ type: 'content_block_stop', index: 0 })
        + anthropic({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null },
          usage: { output_tokens: usage.output_tokens ?? usage.completion_tokens } })
        + anthropic({ type: 'message_stop' }));
    }
    if (!gone) res.end();
  });

  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  const close = () => new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections(); // hung and keep-alive connections would otherwise hold close() open
  });
  return { base, state, requests, close };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--port');
  const s = await startUpstreamStandIn({ port: Number(i > 0 ? process.argv[i + 1] : '12112') });
  console.log(`Upstream LLM stand-in on ${s.base}
  OpenAI-compatible: ${s.base}/<prefix>/v1/chat/completions   (e.g. base URL ${s.base}/p1/v1)
  Anthropic:         ${s.base}/<prefix>/v1/messages`);
}
