#!/usr/bin/env bash
# queue.sh - the queue benchmark side by side with graphile-worker, on the same
# PostgreSQL server, in the same run.
#
#   benches/queue.sh [-n N] [-c CONCURRENCY] [-r RATE] [-d SECONDS] [-R REPS] [-p PGPORT]
#
# Starts (or reuses) PostgreSQL 18 with ../shared/peers/pg.sh, runs
# ../shared/peers/graphile-worker.sh (throughput of N empty jobs with C consumers, and
# enqueue->start latency at RATE jobs/s for SECONDS), then the same measurements of
# cynode-sched (`cargo bench -p cynode-benches --bench queue`) on a fresh database of
# that server, on SQLite and in memory, and prints both summaries.
# Env: CYNODE_PEERS_DIR (default: <repo>/../shared/peers), CARGO_TARGET_DIR, PG_KEEP=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${CYNODE_PEERS_DIR:-$ROOT/../shared/peers}"

N=20000; C=10; RATE=200; DUR=10; REPS=3; PORT="${PG_PORT:-55432}"
while getopts "n:c:r:d:R:p:" o; do
  case "$o" in
  n) N=$OPTARG ;; c) C=$OPTARG ;; r) RATE=$OPTARG ;; d) DUR=$OPTARG ;; R) REPS=$OPTARG ;; p) PORT=$OPTARG ;;
  *) echo "usage: $0 [-n N] [-c C] [-r RATE] [-d SECONDS] [-R REPS] [-p PGPORT]" >&2; exit 2 ;;
  esac
done
[ -f "$PEERS/pg.sh" ] || { echo "queue.sh: no peers directory at $PEERS (set CYNODE_PEERS_DIR)" >&2; exit 2; }

# shellcheck source=/dev/null
source "$PEERS/pg.sh" "$PORT"
trap pg_cleanup EXIT
pg_ensure

echo "[queue.sh] building the benchmark" >&2
(cd "$ROOT" && cargo bench -q -p cynode-benches --bench queue --no-run >&2)

echo "[queue.sh] graphile-worker" >&2
GW="$(bash "$PEERS/graphile-worker.sh" -n "$N" -c "$C" -r "$RATE" -d "$DUR" -R "$REPS" -p "$PORT" | tail -1)"

echo "[queue.sh] cynode-sched" >&2
URL="$(pg_fresh_db cynode_sched_bench)"
OURS="$(cd "$ROOT" && cargo bench -q -p cynode-benches --bench queue -- --backend all --pg-url "$URL" \
  -n "$N" -c "$C" -r "$RATE" -d "$DUR" -R "$REPS")"
pg_psql -c "DROP DATABASE IF EXISTS cynode_sched_bench WITH (FORCE)" >&2 || true

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "$GW"
echo "$OURS"
