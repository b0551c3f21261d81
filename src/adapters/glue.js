// The few crossings between the runtime and the wasm module on the hot path, each done in
// one call. The `worker` crate's wrappers cross once per header, per body chunk and per
// option (and look each binding's methods up again per request); on a request of a few
// hundred microseconds those crossings cost more than the Rust they serve, and no crate
// offers them batched. Strings cross as UTF-8 once; header names and values never contain
// a newline, so newline-separated pairs are unambiguous.

// "METHOD\nORIGIN\nPATH\nQUERY\nname\nvalue\n…" (the URL parsed by the runtime's own URL,
// percent-encoded as it was: parsing it in the wasm took a URL crate and its IDNA tables);
// the query without its "?". An unparsable URL (the runtime never passes one) gives an empty
// origin, which the wasm refuses.
export function requestHead(request) {
  let url;
  try {
    url = new URL(request.url);
  } catch {
    url = { origin: "", pathname: "", search: "" };
  }
  let head = request.method + "\n" + url.origin + "\n" + url.pathname + "\n" + url.search.slice(1);
  for (const [name, value] of request.headers) head += "\n" + name + "\n" + value;
  return head;
}

// The body as bytes, or null once it exceeds `limit` bytes (the rest is not read).
export async function readBody(request, limit) {
  if (request.body === null) return new Uint8Array(0);
  // A declared length (already checked against the limit) is read in one piece.
  if (request.headers.has("content-length")) {
    const body = new Uint8Array(await request.arrayBuffer());
    return body.byteLength > limit ? null : body;
  }
  const reader = request.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}

// A response from a status, "name\nvalue\n…" headers and a body (empty: none).
export function respond(status, head, body) {
  return new Response(body.length === 0 ? null : body, { status, headers: headersOf(head) });
}

// Headers from "name\nvalue\n…".
function headersOf(head) {
  const headers = new Headers();
  if (head !== "") {
    const parts = head.split("\n");
    for (let i = 0; i + 1 < parts.length; i += 2) headers.append(parts[i], parts[i + 1]);
  }
  return headers;
}

// POSTs `body` to `path` of the Durable Object named `name`; resolves to the answer's
// text when it is a 200, rejects otherwise, and rejects once `timeoutMs` have passed. The
// request carries its deadline, so that the object can refuse what reaches it too late.
export async function callObject(namespace, name, path, body, timeoutMs) {
  const stub = namespace.getByName ? namespace.getByName(name) : namespace.get(namespace.idFromName(name));
  return callStub(stub, path, body, timeoutMs);
}

// As callObject, for the object whose id `idHex` is (one made by newObjectId); null, without
// reaching any object, when it is not an id of this namespace (ids carry a check of their
// namespace, so a made-up one is refused here).
export async function callObjectById(namespace, idHex, path, body, timeoutMs) {
  let id;
  try {
    id = namespace.idFromString(idHex);
  } catch {
    return null;
  }
  return callStub(namespace.get(id), path, body, timeoutMs);
}

// A new object id of the namespace, as 64 hex digits.
export function newObjectId(namespace) {
  return namespace.newUniqueId().toString();
}

// The time-out is the runtime's own AbortSignal.timeout: a race against a timer of the
// global setTimeout cost more than the call's fetch.
async function callStub(stub, path, body, timeoutMs) {
  let text;
  let status;
  try {
    const answer = await stub.fetch("https://object.internal/" + path, {
      method: "POST",
      headers: { "x-deadline": String(Date.now() + timeoutMs) },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    status = answer.status;
    text = await answer.text();
  } catch (e) {
    if (e && (e.name === "TimeoutError" || e.name === "AbortError")) {
      throw new Error(`object ${path} did not answer within ${timeoutMs} ms`);
    }
    throw e;
  }
  if (status !== 200) throw new Error("object answered " + status);
  return text;
}

// A KV value as text (null when absent).
export function kvText(namespace, key) {
  return namespace.get(key);
}

// An incoming object request as "path\nbody" (the path without its leading slash),
// prefixed with "1" when it arrived after the caller's deadline, else "0".
export async function objectRequest(request) {
  const url = request.url;
  const path = url.slice(url.indexOf("/", url.indexOf("//") + 2) + 1);
  const deadline = Number(request.headers.get("x-deadline"));
  const late = deadline > 0 && Date.now() > deadline ? "1" : "0";
  return late + path + "\n" + (await request.text());
}

// An object's answer: its status and text (JSON when 200); only `callObject` reads it.
export function objectAnswer(status, body) {
  return new Response(body, { status });
}

// ---- streamed replies and upstream requests (tools that call out, such as `ask`) ----

// A promise and the functions that settle it: the promise the fetch export or an object's
// event returns while its handling waits (adapters/exec.rs), and the one the fetch handler
// waits on for the response head while the handling goes on in waitUntil.
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

export function deferredPromise(d) {
  return d.promise;
}

export function resolveDeferred(d, value) {
  d.resolve(value);
}

export function rejectDeferred(d, error) {
  d.reject(error);
}

// A response whose body is written as it is made. `gone` is aborted when the client goes
// away (the body is cancelled): upstream requests made for it are aborted with it.
export function openStream(status, head) {
  const { readable, writable } = new TransformStream();
  const writer = writable.getWriter();
  const gone = new AbortController();
  writer.closed.catch(() => gone.abort());
  const response = new Response(readable, { status, headers: headersOf(head) });
  return { response, writer, gone, encoder: new TextEncoder() };
}

export function streamResponse(stream) {
  return stream.response;
}

// Queues `text`; false once the client has gone.
export function writeStream(stream, text) {
  if (stream.gone.signal.aborted) return false;
  stream.writer.write(stream.encoder.encode(text)).catch(() => stream.gone.abort());
  return true;
}

export function closeStream(stream) {
  stream.writer.close().catch(() => {});
}

export function streamGone(stream) {
  return stream.gone.signal.aborted;
}

// POSTs to an upstream; resolves with the answer's head once it arrives. Rejects with
// "cancelled" (the client of `stream` went away), "timeout" (no head within `timeoutMs`)
// or "connect: …".
export async function openUpstream(url, head, body, timeoutMs, stream) {
  const ctl = new AbortController();
  const signal = stream ? AbortSignal.any([ctl.signal, stream.gone.signal]) : ctl.signal;
  const headers = headersOf(head);
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; ctl.abort(); }, timeoutMs);
  try {
    const res = await fetch(url, { method: "POST", headers, body, signal });
    return { status: res.status, retryAfter: res.headers.get("retry-after"), reader: res.body ? res.body.getReader() : null, ctl, pending: null };
  } catch (e) {
    if (stream && stream.gone.signal.aborted) throw new Error("cancelled");
    if (timedOut) throw new Error("timeout");
    throw new Error("connect: " + (e && e.message ? e.message : String(e)));
  } finally {
    clearTimeout(timer);
  }
}

export function upstreamStatus(h) {
  return h.status;
}

export function upstreamRetryAfter(h) {
  return h.retryAfter ?? undefined;
}

// The next bytes of an upstream answer: a Uint8Array, null at the end, or "idle" when
// nothing came for `idleMs` (the read stays pending for the next call).
export async function readUpstream(h, idleMs) {
  if (!h.reader) return null;
  let timer;
  const idle = new Promise((r) => { timer = setTimeout(() => r("idle"), idleMs); });
  try {
    h.pending ??= h.reader.read();
    const got = await Promise.race([h.pending, idle]);
    if (got === "idle") return "idle";
    h.pending = null;
    return got.done ? null : got.value;
  } finally {
    clearTimeout(timer);
  }
}

export function abortUpstream(h) {
  h.ctl.abort();
  if (h.reader) h.reader.cancel().catch(() => {});
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Tool results in the Workers Cache API (the location's cache), under a synthetic URL.
const CACHE_BASE = "https://tool-cache.internal/";

export async function cacheGet(key) {
  const hit = await caches.default.match(CACHE_BASE + key);
  return hit ? hit.text() : null;
}

export async function cachePut(key, text, ttlS) {
  const headers = { "content-type": "application/json", "cache-control": "max-age=" + ttlS };
  await caches.default.put(CACHE_BASE + key, new Response(text, { headers }));
}

// Ends a stream at once (its call was cancelled): requests made for it are aborted too.
export function abortStream(stream) {
  stream.gone.abort();
  stream.writer.abort().catch(() => {});
}

// What cancels a task's run: shaped like a stream's `gone`, so that upstream requests made
// under it are aborted with it.
export function cancelHandle() {
  return { gone: new AbortController() };
}

export function cancelNow(handle) {
  handle.gone.abort();
}
