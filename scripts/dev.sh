#!/usr/bin/env bash
# Builds the worker and serves it locally under wrangler dev (workerd) on 127.0.0.1:8787
# (PORT overrides), with local KV, D1 (migrations applied) and the Durable Object, state in
# .wrangler/state. Needs no Cloudflare or Stripe account.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
scripts/setup.sh
[ -f .dev.vars ] || cp .dev.vars.example .dev.vars
scripts/build.sh "$@"
wrangler d1 migrations apply DB --local --persist-to .wrangler/state
exec wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" --persist-to .wrangler/state \
  --show-interactive-dev-session=false
