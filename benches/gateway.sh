#!/usr/bin/env bash
# gateway.sh - latency the user gateway adds to a chat completion, side by side with
# LiteLLM's proxy over the same mock upstream (../shared/peers/mock-openai.py), in one
# run: a fixed-rate client and the peers' sequential latency.py against the mock, the
# gateway and LiteLLM. See benches/benches/gateway.rs for what is measured.
#
#   benches/gateway.sh [-r RATE] [-n N] [-k K] [-R ROUNDS]
#
# Env: CYNODE_PEERS_DIR (default: <repo>/../shared/peers), CARGO_TARGET_DIR,
#      BENCH_SKIP_LITELLM=1, BENCH_PG_URL (or CYNODE_TEST_PG_URL: adds a PostgreSQL
#      row; `bash scripts/test.sh -- bash benches/gateway.sh` provides one).
# Run it on a quiet machine; as root it runs under `chrt -f 10` so every measured
# process is scheduled alike.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CYNODE_PEERS_DIR="${CYNODE_PEERS_DIR:-$ROOT/../shared/peers}"
while getopts "r:n:k:R:" o; do
  case "$o" in
  r) export BENCH_RATE=$OPTARG ;; n) export BENCH_N=$OPTARG ;; k) export BENCH_K=$OPTARG ;;
  R) export BENCH_ROUNDS=$OPTARG ;;
  *) echo "usage: $0 [-r RATE] [-n N] [-k K] [-R ROUNDS]" >&2; exit 2 ;;
  esac
done
# The PostgreSQL row runs when a server is known (e.g. under `scripts/test.sh --`).
if [ -z "${BENCH_PG_URL:-}" ] && [ -n "${CYNODE_TEST_PG_URL:-}" ]; then
  export BENCH_PG_URL=$CYNODE_TEST_PG_URL
fi
[ -f "$CYNODE_PEERS_DIR/latency.py" ] || { echo "gateway.sh: no peers directory at $CYNODE_PEERS_DIR" >&2; exit 2; }

echo "[gateway.sh] building the benchmark" >&2
BIN="$(cd "$ROOT" && cargo bench -q -p cynode-benches --bench gateway --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "gateway" and m.get("executable"):
        print(m["executable"])' | tail -1)"
[ -x "$BIN" ] || { echo "gateway.sh: build failed" >&2; exit 1; }
if [ "$(id -u)" = 0 ] && command -v chrt >/dev/null; then
  exec chrt -f 10 "$BIN"
fi
exec "$BIN"
