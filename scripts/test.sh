#!/usr/bin/env bash
# The whole test suite: formatting and lints, host unit and integration tests, then the
# cargo-fuzz targets for a bounded time each (scripts/fuzz.sh), then the
# release bundle and the conformance bundle under wrangler dev (workerd) driven by real MCP
# clients, OAuth clients and headless Chromium. Installs what it needs first
# (scripts/setup.sh), skipping what is already there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
scripts/setup.sh

echo "== format and lints"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --target wasm32-unknown-unknown --lib -- -D warnings

echo "== host tests (cargo test; tests/layout.rs checks the module layering)"
cargo test --locked --all-targets
cargo test --locked --features conformance --lib mcp::tools::fixtures

echo "== fuzzing (every cargo-fuzz target for a bounded time, scripts/fuzz.sh)"
scripts/fuzz.sh

echo "== bundles"
scripts/build.sh
scripts/build.sh --conformance --no-opt

echo "== runtime tests (workerd via wrangler dev)"
exec "$NODE" --test --test-concurrency=1 --test-reporter=spec "tests/runtime/*.test.mjs"
