#!/usr/bin/env bash
# Storage benchmark: PostgreSQL + pgvector and SQLite side by side in one run.
# Starts (or reuses) PostgreSQL 18 + pgvector via ../shared/peers/pg.sh, gives the bench a
# fresh database, runs it, and stops what it started.
#   bash benches/storage.sh            # 5000 tasks, 100k x 384-dim vectors
#   CYNODE_BENCH_VECTORS=20000 bash benches/storage.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers="$root/../shared/peers"
[ -f "$peers/pg.sh" ] || { echo "storage.sh: $peers/pg.sh not found (shared/ must sit beside the repo)" >&2; exit 1; }
# shellcheck source=/dev/null
source "$peers/pg.sh" "${PG_PORT:-55432}"
pg_ensure
trap pg_cleanup EXIT
export CYNODE_BENCH_PG_URL
CYNODE_BENCH_PG_URL=$(pg_fresh_db cynode_bench_storage --vector)
cd "$root"
cargo bench -p cynode-benches --bench storage
