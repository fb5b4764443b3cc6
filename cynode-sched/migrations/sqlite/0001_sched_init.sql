-- cynode-sched: jobs, limits, rate buckets and cron entries (SQLite).
-- Ids are UUID text, times integer microseconds since the Unix epoch, JSON text.

CREATE TABLE sched_jobs (
    id               TEXT    PRIMARY KEY,
    queue            TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    state            TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'completed', 'failed', 'canceled')),
    attempt          INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at           INTEGER NOT NULL,
    idempotency_key  TEXT,
    concurrency_key  TEXT,
    lease_id         TEXT,
    lease_expires_at INTEGER,
    worker_id        TEXT,
    last_error       TEXT,
    result           TEXT,
    reason           TEXT,
    requirements     TEXT,
    affinity_key     TEXT,
    node_id          TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    ended_at         INTEGER,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX sched_jobs_ready ON sched_jobs (queue, priority, run_at, id) WHERE state = 'queued';
CREATE INDEX sched_jobs_running ON sched_jobs (queue, kind) WHERE state = 'running';
CREATE UNIQUE INDEX sched_jobs_idempotency ON sched_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX sched_jobs_affinity ON sched_jobs (affinity_key, created_at)
    WHERE affinity_key IS NOT NULL AND node_id IS NOT NULL;
CREATE INDEX sched_jobs_finished ON sched_jobs (ended_at)
    WHERE state IN ('completed', 'failed', 'canceled');

CREATE TABLE sched_limits (
    scope          TEXT    NOT NULL CHECK (scope IN ('queue', 'kind', 'key', 'each_key')),
    name           TEXT    NOT NULL,
    max_running    INTEGER CHECK (max_running >= 0),
    rate_max       INTEGER CHECK (rate_max >= 1),
    rate_period_us INTEGER CHECK (rate_period_us >= 1000),
    PRIMARY KEY (scope, name)
) STRICT;

CREATE TABLE sched_rate_buckets (
    scope        TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    tokens       REAL    NOT NULL,
    refreshed_at INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
) STRICT;

CREATE TABLE sched_cron (
    name          TEXT    PRIMARY KEY,
    schedule      TEXT    NOT NULL,
    time_zone     TEXT,
    job           TEXT    NOT NULL,
    enabled       INTEGER NOT NULL,
    next_run_at   INTEGER NOT NULL,
    last_fired_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
