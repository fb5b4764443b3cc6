-- cynode-sched: jobs, limits, rate buckets and cron entries (PostgreSQL).

CREATE TABLE sched_jobs (
    id               uuid        PRIMARY KEY,
    queue            text        NOT NULL,
    kind             text        NOT NULL,
    payload          jsonb       NOT NULL,
    priority         smallint    NOT NULL DEFAULT 0,
    state            text        NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'completed', 'failed', 'canceled')),
    attempt          integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     integer     NOT NULL CHECK (max_attempts >= 1),
    run_at           timestamptz NOT NULL,
    idempotency_key  text,
    concurrency_key  text,
    lease_id         uuid,
    lease_expires_at timestamptz,
    worker_id        text,
    last_error       text,
    result           jsonb,
    reason           text,
    requirements     jsonb,
    affinity_key     text,
    node_id          uuid,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    ended_at         timestamptz,
    updated_at       timestamptz NOT NULL
);

-- Claim order among runnable jobs; only queued rows are indexed, so the index stays
-- as small as the backlog.
CREATE INDEX sched_jobs_ready ON sched_jobs (queue, priority, run_at, id) WHERE state = 'queued';
-- Running jobs: lease reaper, limit counts, node loads. No lease column in the key, so
-- a lease renewal can be a HOT update.
CREATE INDEX sched_jobs_running ON sched_jobs (queue, kind) WHERE state = 'running';
CREATE UNIQUE INDEX sched_jobs_idempotency ON sched_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX sched_jobs_affinity ON sched_jobs (affinity_key, created_at)
    WHERE affinity_key IS NOT NULL AND node_id IS NOT NULL;
CREATE INDEX sched_jobs_finished ON sched_jobs (ended_at)
    WHERE state IN ('completed', 'failed', 'canceled');

CREATE TABLE sched_limits (
    scope          text    NOT NULL CHECK (scope IN ('queue', 'kind', 'key', 'each_key')),
    name           text    NOT NULL,
    max_running    integer CHECK (max_running >= 0),
    rate_max       integer CHECK (rate_max >= 1),
    rate_period_us bigint  CHECK (rate_period_us >= 1000),
    PRIMARY KEY (scope, name)
);

CREATE TABLE sched_rate_buckets (
    scope        text             NOT NULL,
    name         text             NOT NULL,
    tokens       double precision NOT NULL,
    refreshed_at timestamptz      NOT NULL,
    PRIMARY KEY (scope, name)
);

CREATE TABLE sched_cron (
    name          text        PRIMARY KEY,
    schedule      text        NOT NULL,
    time_zone     text,
    job           jsonb       NOT NULL,
    enabled       boolean     NOT NULL,
    next_run_at   timestamptz NOT NULL,
    last_fired_at timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
