#!/usr/bin/env bash
# Builds the worker bundle. Usage: scripts/build.sh [--conformance] [--no-opt]
#   (default)      release bundle in build/, the one `wrangler deploy` ships
#   --conformance  adds the conformance-suite fixtures (tools test_*, resources, prompts)
#                  in build-conformance/; never deployed
#   --no-opt       skips wasm-opt (faster edit loop)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
scripts/setup.sh # installs the local wasm-bindgen, worker-build and wasm-opt when missing
out=build
features=()
opt=()
for arg in "$@"; do
  case "$arg" in
    --conformance) out=build-conformance; features=(--features conformance) ;;
    --no-opt) opt=(--no-opt) ;;
    *) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
worker-build --release "${opt[@]}" --out-dir "$out" "${features[@]}"
# The entry module (src/entry.js) around worker-build's bundle, bundled into one file again.
mv "$out/index.js" "$out/bundle.js"
cp src/entry.js "$out/entry.js"
node_modules/.bin/esbuild "$out/entry.js" --bundle --format=esm --minify \
  --log-override:duplicate-object-key=silent \
  --external:./index_bg.wasm '--external:cloudflare:*' --outfile="$out/index.js"
rm "$out/entry.js" "$out/bundle.js"
# Function names stay out of the deployed module; a named copy is kept for profiles.
"$NODE" scripts/strip-names.mjs "$out/index_bg.wasm" "$out/names/index_bg.wasm"
raw=$(stat -c %s "$out/index_bg.wasm")
gz=$(gzip -9 -c "$out/index_bg.wasm" | wc -c)
echo "build: $out/index_bg.wasm $raw bytes, $gz bytes gzip"
