// The module the runtime loads: worker-build's bundle (the wasm-bindgen glue, the Durable
// Object classes) with a plain `fetch` handler as its default export.
//
// worker-build exports a WorkerEntrypoint class behind two Proxies, so every request
// constructs the class, a Proxy of the instance and a Proxy of its `fetch`. That costs
// more than hello world's whole request. The handler below calls the same function
// directly, and keeps what the Proxies did for it: a wasm trap (a panic: the release
// build aborts) marks the instance as failed, and the next request goes through the
// Proxies once, which make a new wasm instance before it runs. The Durable Object classes
// keep their Proxies (they also re-create an object made before such a reset).
import Entrypoint from './bundle.js';

export * from './bundle.js';

const handle = Entrypoint.prototype.fetch;
const init = globalThis.__worker_init_state;

function failed(error) {
  if (error instanceof WebAssembly.RuntimeError) {
    console.error('Critical', error);
    init.criticalError = true;
  }
}

// A trap in a later poll of a request's handling surfaces from a promise callback: as an
// uncaught error (the bundle listens for those) or as a rejection nobody handles.
addEventListener('unhandledrejection', (event) => failed(event.reason));

export default {
  fetch(request, env, ctx) {
    if (init.criticalError) return new Entrypoint(ctx, env).fetch(request);
    try {
      return handle.call({ env, ctx }, request);
    } catch (error) {
      failed(error);
      throw error;
    }
  },
};
