#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ (libFuzzer) for a bounded time, starting from the
# committed seed corpus in fuzz/corpus/<target>, and fails if any target finds a crash, a
# panic, a broken invariant, a time-out or runs out of memory. Prints one line per target.
#
#   scripts/fuzz.sh [seconds-per-target]     default 20 (FUZZ_SECONDS)
#
# FUZZ_JOBS targets run at a time (default: the number of cores). New corpus entries go
# to a scratch directory, so fuzz/corpus stays as committed; a failing input is kept in
# fuzz/artifacts/<target>/ and printed in hex. FUZZ_SANITIZER=address builds with
# AddressSanitizer (default none: the crate forbids unsafe code, and it halves the
# throughput); FUZZ_TARGET_DIR moves the build (default fuzz/target).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

seconds=${1:-${FUZZ_SECONDS:-20}}
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [seconds-per-target]" >&2
  exit 2
fi
jobs=${FUZZ_JOBS:-$(nproc)}
fuzz=(cargo +nightly fuzz)
flags=(--sanitizer "${FUZZ_SANITIZER:-none}" --codegen-units 16
  --target-dir "${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}")

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: needs the nightly toolchain and cargo-fuzz: run scripts/setup.sh" >&2
  exit 1
fi

start=$SECONDS
mapfile -t targets < <("${fuzz[@]}" list)
echo "fuzz: building ${#targets[@]} targets ($(rustc +nightly --version))"
"${fuzz[@]}" build "${flags[@]}"
built=$((SECONDS - start))

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

run_one() {
  local t=$1
  mkdir -p "$scratch/$t"
  set +e
  "${fuzz[@]}" run "${flags[@]}" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$scratch/$t.log" 2>&1
  echo $? >"$scratch/$t.rc"
}

# One line: runs, seconds, execs/s, coverage (edges), features, corpus size.
summary() {
  local t=$1 log=$scratch/$1.log
  local done runs secs cov ft corp
  done=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
  runs=$(echo "$done" | awk '{print $2}')
  [ -n "$runs" ] || runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(echo "$done" | awk '{print $5}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  printf 'fuzz: %-17s %-6s %9s runs in %3s s (%s/s), cov %s, ft %s, corpus %s (from %s seeds)\n' \
    "$t" "$2" "${runs:-?}" "${secs:-?}" "$((${runs:-0} / (${secs:-0} > 0 ? ${secs:-0} : 1)))" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$(find "fuzz/corpus/$t" -type f | wc -l)"
}

fuzz_start=$SECONDS
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_one "$t" &
done
wait

failed=()
for t in "${targets[@]}"; do
  if [ "$(cat "$scratch/$t.rc" 2>/dev/null || echo 1)" = 0 ]; then
    summary "$t" ok
  else
    summary "$t" FAILED
    failed+=("$t")
  fi
done
for t in "${failed[@]}"; do
  log=$scratch/$t.log
  echo
  echo "== fuzz: $t failed (its log, less progress lines and backtraces):"
  grep -v -e '^\s*$' -e '^#[0-9]' -e 'MS: ' -e '^ *[0-9]*: ' -e '^ *at ' "$log" | tail -30 || true
  input=$(sed -n 's/.*Test unit written to \(\S*\).*/\1/p' "$log" | tail -1)
  if [ -n "$input" ] && [ -f "$input" ]; then
    echo "input ($input), hex: $(od -An -v -tx1 "$input" | tr -d ' \n')"
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, $jobs at a time: build ${built} s, fuzzing $((SECONDS - fuzz_start)) s, total $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
