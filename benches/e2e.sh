#!/usr/bin/env bash
# e2e.sh - end-to-end load on this machine: one `cynode-orchestrator serve` on
# PostgreSQL and two `cynode-worker` processes on the local Podman socket run N trivial
# sandbox jobs (`true`) submitted through the user gateway (POST /v1/tasks).
#
#   benches/e2e.sh [-n N] [-c SUBMITS_IN_FLIGHT] [-s SERIAL] [-w WARMUP] [-m MAX_CONCURRENCY] [-l LOG_DIR]
#
# N defaults to 1000 (also settable as N=50 in the environment for a smoke run).
# Services: the test environment contract (CYNODE_TEST_PG_URL, CYNODE_TEST_DOCKER_HOST,
# CYNODE_TEST_IMAGE), e.g. `bash scripts/test.sh -- bash benches/e2e.sh`, or export them
# yourself. Builds release binaries of the orchestrator and the worker, then runs
# `cargo bench -p cynode-benches --bench e2e` (see benches/benches/e2e.rs for what is
# measured) and prints the load average, one summary line and a small table.
# Workers run with their default SANDBOX_MAX_CONCURRENCY unless -m is given.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

N="${N:-1000}"; C=32; SERIAL=20; WARMUP=8; MAXC=""; LOGDIR=""
while getopts "n:c:s:w:m:l:" o; do
  case "$o" in
  n) N=$OPTARG ;; c) C=$OPTARG ;; s) SERIAL=$OPTARG ;; w) WARMUP=$OPTARG ;;
  m) MAXC=$OPTARG ;; l) LOGDIR=$OPTARG ;;
  *) echo "usage: $0 [-n N] [-c C] [-s SERIAL] [-w WARMUP] [-m MAX_CONCURRENCY] [-l LOG_DIR]" >&2; exit 2 ;;
  esac
done
for v in CYNODE_TEST_PG_URL CYNODE_TEST_DOCKER_HOST CYNODE_TEST_IMAGE; do
  if [ -z "${!v:-}" ]; then
    echo "e2e.sh: $v is not set; run it as 'bash scripts/test.sh -- bash benches/e2e.sh'" >&2
    exit 2
  fi
done

# Shell tasks name alpine:latest (POST /v1/tasks, input_mode commands). On a machine
# without it (no registry access), tag the test image as alpine:latest for this run
# and remove only that tag afterwards.
SOCK="${CYNODE_TEST_DOCKER_HOST#unix://}"
untag() {
  curl -s -X DELETE --unix-socket "$SOCK" "http://d/v1.41/images/docker.io/library/alpine:latest?noprune=true" >/dev/null || true
}
if ! curl -sf -o /dev/null --unix-socket "$SOCK" "http://d/v1.41/images/alpine:latest/json"; then
  echo "[e2e.sh] alpine:latest is missing: tagging $CYNODE_TEST_IMAGE as alpine:latest for this run" >&2
  curl -sf -o /dev/null -X POST --unix-socket "$SOCK" \
    "http://d/v1.41/images/$CYNODE_TEST_IMAGE/tag?repo=docker.io/library/alpine&tag=latest"
  trap untag EXIT
fi

echo "[e2e.sh] building release binaries and the benchmark" >&2
(cd "$ROOT" && cargo build -q --release -p cynode-orchestrator -p cynode-worker >&2)
(cd "$ROOT" && cargo bench -q -p cynode-benches --bench e2e --no-run >&2)
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
BIN_DIR="$(cd "$BIN_DIR" && pwd)"

ARGS=(--pg-url "$CYNODE_TEST_PG_URL" --docker-host "$CYNODE_TEST_DOCKER_HOST"
  --image "$CYNODE_TEST_IMAGE" --bin-dir "$BIN_DIR"
  -n "$N" -c "$C" --serial "$SERIAL" --warmup "$WARMUP")
[ -n "$MAXC" ] && ARGS+=(--max-concurrency "$MAXC")
[ -n "$LOGDIR" ] && ARGS+=(--log-dir "$LOGDIR")

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
(cd "$ROOT" && cargo bench -q -p cynode-benches --bench e2e -- "${ARGS[@]}")
