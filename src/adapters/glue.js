// The few crossings between the runtime and the wasm module on the hot path, each done in
// one call. The `worker` crate's wrappers cross once per header, per body chunk and per
// option (and look each binding's methods up again per request); on a request of a few
// hundred microseconds those crossings cost more than the Rust they serve, and no crate
// offers them batched. Strings cross as UTF-8 once; header names and values never contain
// a newline, so newline-separated pairs are unambiguous.

// "METHOD\nURL\nname\nvalue\n…"
export function requestHead(request) {
  let head = request.method + "\n" + request.url;
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
  const headers = new Headers();
  if (head !== "") {
    const parts = head.split("\n");
    for (let i = 0; i + 1 < parts.length; i += 2) headers.append(parts[i], parts[i + 1]);
  }
  return new Response(body.length === 0 ? null : body, { status, headers });
}

// POSTs `body` to `path` of the Durable Object named `name`; resolves to the answer's
// text when it is a 200, rejects otherwise, and rejects once `timeoutMs` have passed. The
// request carries its deadline, so that the object can refuse what reaches it too late.
export async function callObject(namespace, name, path, body, timeoutMs) {
  const stub = namespace.getByName ? namespace.getByName(name) : namespace.get(namespace.idFromName(name));
  const call = async () => {
    const answer = await stub.fetch("https://object.internal/" + path, {
      method: "POST",
      headers: { "x-deadline": String(Date.now() + timeoutMs) },
      body,
    });
    const text = await answer.text();
    if (answer.status !== 200) throw new Error("object answered " + answer.status);
    return text;
  };
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`object ${path} did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([call(), late]);
  } finally {
    clearTimeout(timer);
  }
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
