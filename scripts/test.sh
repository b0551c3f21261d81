#!/usr/bin/env bash
# The whole test suite: host unit and integration tests, then the release bundle and the
# conformance bundle under wrangler dev (workerd) driven by real MCP clients. Installs what
# it needs first (scripts/setup.sh), skipping what is already there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
scripts/setup.sh

echo "== host tests (cargo test)"
cargo test --locked --all-targets
cargo test --locked --features conformance --lib mcp::fixtures

echo "== bundles"
scripts/build.sh
scripts/build.sh --conformance --no-opt

echo "== runtime tests (workerd via wrangler dev)"
exec "$NODE" --test --test-concurrency=1 --test-reporter=spec "tests/runtime/*.test.mjs"
