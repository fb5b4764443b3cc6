#!/usr/bin/env bash
# Start CyNodeAI on this machine: one process with the orchestrator (user gateway,
# control plane, dispatcher, API egress) on SQLite and one in-process worker that runs
# sandboxes on Podman. On Debian 12, as root:
#
#   scripts/up.sh                     install what is missing, build, start (Ctrl-C stops)
#   scripts/up.sh -- --no-demo        pass options to `cynode-orchestrator dev`
#
# It installs (only when missing) Podman, runc, uidmap, busybox-static and curl from
# apt; writes a containers.conf that selects runc and cgroupfs (crun fails on cgroup v1
# hosts); starts a Podman API socket under the data directory (unless CONTAINER_HOST
# names one already); builds the release binaries (cynode-orchestrator, cynode-worker,
# cynork); builds the sandbox image localhost/cynode-sandbox:latest from static
# busybox when it is missing (there is no registry to pull from); then runs
# `cynode-orchestrator dev`, which prints the URLs, the admin account and where its
# generated password is kept, and runs a demo task. A second run reuses all of it.
#
# Options (each also as an environment variable):
#   --data-dir DIR   CYNODE_DATA_DIR     data, generated secrets, Podman socket
#                                        (default ./cynode-data)
#   --no-install     CYNODE_UP_NO_INSTALL=1  never call apt-get
#   --no-build       CYNODE_UP_NO_BUILD=1    use the binaries as they are (no cargo)
#                    CYNODE_BIN_DIR      where the binaries are (default: the cargo
#                                        target dir's release/)
#                    CONTAINER_HOST      use this Podman/Docker API socket (unix://...)
#                    CYNODE_SANDBOX_IMAGE  use this sandbox image as it is (default:
#                                        localhost/cynode-sandbox:latest, built here)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/..
source "$ROOT/scripts/lib/common.sh"

DATA_DIR=${CYNODE_DATA_DIR:-./cynode-data}
NO_INSTALL=${CYNODE_UP_NO_INSTALL:-0}
NO_BUILD=${CYNODE_UP_NO_BUILD:-0}
PASS=()
while (($#)); do
  case "$1" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  --data-dir)
    (($# >= 2)) || die "--data-dir needs a directory"
    DATA_DIR=$2
    shift 2
    ;;
  --data-dir=*)
    DATA_DIR=${1#--data-dir=}
    shift
    ;;
  --no-install)
    NO_INSTALL=1
    shift
    ;;
  --no-build)
    NO_BUILD=1
    shift
    ;;
  --)
    shift
    PASS=("$@")
    break
    ;;
  *) die "unknown argument '$1' (see --help)" ;;
  esac
done

mkdir -p "$DATA_DIR"
chmod 700 "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
RUN_DIR=$DATA_DIR/run
mkdir -p "$RUN_DIR"
export CYNODE_DATA_DIR=$DATA_DIR

# Podman settings for everything this script and the orchestrator start.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$DATA_DIR/containers.conf}
BUILD_IMAGE=0
[ -n "${CYNODE_SANDBOX_IMAGE:-}" ] || BUILD_IMAGE=1
CYN_TEST_IMAGE=${CYNODE_SANDBOX_IMAGE:-localhost/cynode-sandbox:latest}
# shellcheck source-path=SCRIPTDIR/..
source "$ROOT/scripts/lib/podman.sh"

# ---------------------------------------------------------------- install
if [ "$NO_INSTALL" != 1 ]; then
  [ "$(id -u)" = 0 ] || die "run as root (it installs Podman with apt-get), or pass --no-install"
  setup_lock
  say "checking system packages (Podman, runc, uidmap, busybox-static, curl)"
  podman_install
  if ! command -v cc >/dev/null; then apt_install gcc libc6-dev; fi
  setup_unlock
fi
if [ ! -f "$CONTAINERS_CONF" ]; then
  podman_write_conf "$CONTAINERS_CONF"
  info "wrote $CONTAINERS_CONF (runtime runc, cgroup manager cgroupfs)"
fi

# ---------------------------------------------------------------- build
if [ -n "${CYNODE_BIN_DIR:-}" ]; then
  BIN_DIR=$CYNODE_BIN_DIR
else
  BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
if [ "$NO_BUILD" != 1 ]; then
  command -v cargo >/dev/null ||
    die "cargo not found: install Rust 1.94 or newer with rustup (https://rustup.rs), then rerun"
  say "building the release binaries (the first build takes a few minutes; later ones are quick)"
  (cd "$ROOT" && cargo build --release --locked -p cynode-orchestrator -p cynode-worker -p cynork)
fi
ORCH=$BIN_DIR/cynode-orchestrator
[ -x "$ORCH" ] || die "$ORCH not found (build it, or set CYNODE_BIN_DIR)"

# ---------------------------------------------------------------- sandbox image
if [ "$BUILD_IMAGE" = 1 ]; then
  say "checking the sandbox image $CYN_TEST_IMAGE"
  image_ensure "$RUN_DIR"
fi
export CYNODE_SANDBOX_IMAGE=$CYN_TEST_IMAGE

# ---------------------------------------------------------------- Podman socket
PODMAN_PID=
cleanup() {
  local rc=$?
  trap - EXIT
  if [ -n "$PODMAN_PID" ]; then stop_pid "$PODMAN_PID" "the Podman API service" TERM; fi
  exit "$rc"
}
trap cleanup EXIT

ping_socket() { [ "$(curl -s --max-time 2 --unix-socket "$1" http://d/_ping 2>/dev/null)" = OK ]; }

# The Podman API service in its own session, so that Ctrl-C in this terminal reaches
# the orchestrator (which then stops its sandboxes through this service) but not the
# service itself; this script stops it afterwards.
start_podman_service() {
  local sock=$RUN_DIR/podman.sock log=$RUN_DIR/podman-service.log old
  old=$(cat "$RUN_DIR/podman.pid" 2>/dev/null || true)
  if [ -n "$old" ] && grep -qF "$sock" "/proc/$old/cmdline" 2>/dev/null; then
    stop_pid "$old" "a Podman API service left by an earlier run" TERM
  fi
  rm -f "$sock"
  command -v podman >/dev/null || die "podman not found: run without --no-install, or install podman and runc"
  say "starting the Podman API service on unix://$sock"
  # From the run directory: conmon writes files such as `oom` into its working directory.
  (cd "$RUN_DIR" && exec setsid podman system service --time=0 "unix://$sock" </dev/null >"$log" 2>&1) &
  PODMAN_PID=$!
  echo "$PODMAN_PID" >"$RUN_DIR/podman.pid"
  for _ in $(seq 1 300); do
    if ping_socket "$sock"; then
      export CONTAINER_HOST=unix://$sock
      CYN_PODMAN_SOCK=$sock
      return 0
    fi
    alive "$PODMAN_PID" || break
    sleep 0.1
  done
  warn "the Podman API service did not come up; its log:"
  tail -20 "$log" >&2 || true
  exit 1
}

if [ -n "${CONTAINER_HOST:-}" ]; then
  ping_socket "${CONTAINER_HOST#unix://}" ||
    die "CONTAINER_HOST=$CONTAINER_HOST does not answer the container API"
  info "using the container API at $CONTAINER_HOST"
else
  start_podman_service
  podman_check || die "Podman does not run containers as needed here (see above)"
fi

# ---------------------------------------------------------------- run
say "starting: $ORCH dev ${PASS[*]}"
if [ -z "$PODMAN_PID" ]; then
  # Nothing to clean up afterwards: the orchestrator takes this process's place, so
  # signals reach it directly.
  exec "$ORCH" dev "${PASS[@]}"
fi
# Ctrl-C reaches the orchestrator (same process group), which stops cleanly; this
# script ignores it, waits, and then stops the Podman service (EXIT trap).
trap '' INT
trap 'kill -TERM "$ORCH_PID" 2>/dev/null || true' TERM
"$ORCH" dev "${PASS[@]}" &
ORCH_PID=$!
rc=0
while :; do
  wait "$ORCH_PID" && rc=0 || rc=$?
  # wait returns early (status > 128) when a trapped signal arrives; go on waiting.
  alive "$ORCH_PID" || break
done
exit "$rc"
