#!/usr/bin/env bash
# Builds the worker and serves it locally under wrangler dev (workerd) on 127.0.0.1:8787
# (PORT overrides), with local KV, D1 (migrations applied) and the Durable Object, state in
# .wrangler/state. Needs no Cloudflare or Stripe account.
#
# STRIPE_STANDIN=1 also starts the local Stripe stand-in on 127.0.0.1:12111 and points the
# worker at it, so the purchase flow (Subscribe → pay → claim page) can be tried by hand.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
scripts/setup.sh
[ -f .dev.vars ] || cp .dev.vars.example .dev.vars
scripts/build.sh "$@"
wrangler d1 migrations apply DB --local --persist-to .wrangler/state
port="${PORT:-8787}"
extra=()
if [ "${STRIPE_STANDIN:-}" = 1 ]; then
  "$NODE" tests/runtime/stripe_standin.mjs --port 12111 \
    --webhook "http://127.0.0.1:$port/api/stripe/webhook" --secret whsec_local_standin &
  standin=$!
  trap 'kill $standin 2>/dev/null || true' EXIT
  extra=(--var STRIPE_API_BASE:http://127.0.0.1:12111 --var STRIPE_SECRET_KEY:sk_test_local
         --var STRIPE_WEBHOOK_SECRET:whsec_local_standin --var STRIPE_METER_EVENT:mcp_calls)
fi
wrangler dev --ip 127.0.0.1 --port "$port" --persist-to .wrangler/state \
  --show-interactive-dev-session=false "${extra[@]}"
