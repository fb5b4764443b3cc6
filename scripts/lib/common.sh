# shellcheck shell=bash
# Helpers shared by the scripts in scripts/ (sourced, not executed).

# Progress lines: `==> what is happening now`.
say() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
  printf '==> ERROR: %s\n' "$*" >&2
  exit 1
}

# fmt_secs N: "42s" or "3m07s".
fmt_secs() {
  local s=$1
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# alive PID: the process exists and is not a zombie (an exited child not yet reaped).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # the fields after "(comm) "
  [ -n "$stat" ] && [ "${stat%% *}" != Z ]
}

# wait_gone PID SECONDS: wait until process PID has exited; 0 if it did in time.
wait_gone() {
  local pid=$1 n=$(($2 * 10))
  while ((n > 0)); do
    alive "$pid" || return 0
    sleep 0.1
    n=$((n - 1))
  done
  ! alive "$pid"
}

# stop_pid PID NAME [SIGNAL]: send SIGNAL (default TERM) to PID, wait up to 30 s,
# then SIGKILL. Reaps the process when it is a child of this shell.
stop_pid() {
  local pid=$1 name=$2 sig=${3:-TERM}
  [ -n "$pid" ] || return 0
  alive "$pid" || return 0
  say "stopping $name (pid $pid)"
  kill "-$sig" "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 30; then
    warn "$name (pid $pid) did not exit within 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || warn "$name (pid $pid) is still running"
  fi
  # Reap it if it is our child (it has exited, so this does not block).
  wait "$pid" 2>/dev/null || true
}

# Installs (apt, pip, the test image, the venv) run under one machine-wide lock so
# that two runs at the same time do not install the same thing twice.
CYN_LOCK_FILE=${CYN_LOCK_FILE:-/tmp/cynode-test-setup.lock}
setup_lock() {
  exec 9>"$CYN_LOCK_FILE" || die "cannot open $CYN_LOCK_FILE"
  if ! flock -n 9; then
    say "waiting for another run to finish installing (lock $CYN_LOCK_FILE)"
    flock -w 1800 9 || die "gave up waiting for $CYN_LOCK_FILE"
  fi
}
# Must run before any long-lived process starts, or that process would inherit the lock.
setup_unlock() {
  flock -u 9 2>/dev/null || true
  exec 9>&-
}

# apt_install PKG...: apt-get update once per run, then install the packages.
CYN_APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  if [ "$CYN_APT_UPDATED" = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null || return 1
    CYN_APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null
}
