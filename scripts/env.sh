# Sourced by the other scripts: tool locations and quiet, offline-friendly defaults.
# worker-build would download wasm-bindgen and wasm-opt from GitHub; point it at local copies.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export X_LOCAL_OBSERVABILITY=false
# Node 22 from node_modules (the conformance suite needs it); the machine's Node may be older.
NODE="$ROOT/node_modules/.bin/node"
WORKER_BUILD_VERSION=0.8.7
