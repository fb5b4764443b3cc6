-- CyNodeAI schema for SQLite, version 1: the [core] tables of the schema contract, plus
-- the small tables their foreign keys point at (personas, sessions, runs) and vector
-- memory.
--
-- Storage conventions (the same in every table):
--   * ids are TEXT in canonical UUID form (lower-case, hyphenated, 36 characters), so
--     they read the same in the sqlite3 shell as on the wire and sort like the UUIDs;
--   * times are INTEGER microseconds since the Unix epoch (UTC): exact microsecond
--     precision, cheap comparisons, and ordering by value is ordering by time;
--   * booleans are INTEGER 0/1; JSON documents are TEXT checked with json_valid();
--   * byte strings (hashes, ciphertext, embeddings) are BLOB.
-- Tables are STRICT, so a value of the wrong type is rejected instead of stored.
-- Audit tables carry no foreign keys: an audit write must never fail because the id it
-- mentions does not exist (or no longer exists).

-- ------------------------------------------------------------------ identity

CREATE TABLE users (
    id              TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    handle          TEXT    NOT NULL UNIQUE CHECK (length(handle) BETWEEN 1 AND 64),
    email           TEXT    UNIQUE,
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    external_source TEXT,
    external_id     TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_users_is_active ON users (is_active);

CREATE TABLE projects (
    id           TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    slug         TEXT    NOT NULL UNIQUE CHECK (length(slug) > 0),
    display_name TEXT    NOT NULL,
    description  TEXT,
    is_active    INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    updated_by   TEXT
) STRICT;
CREATE INDEX idx_projects_is_active ON projects (is_active);

CREATE TABLE project_plans (
    id               TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    project_id       TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    plan_name        TEXT,
    plan_body        TEXT,
    state            TEXT    NOT NULL DEFAULT 'draft'
        CHECK (state IN ('draft', 'ready', 'active', 'suspended', 'completed', 'canceled')),
    archived         INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
    is_plan_locked   INTEGER NOT NULL DEFAULT 0 CHECK (is_plan_locked IN (0, 1)),
    plan_locked_at   INTEGER,
    plan_locked_by   TEXT    REFERENCES users (id) ON DELETE SET NULL,
    plan_approved_at INTEGER,
    plan_approved_by TEXT    REFERENCES users (id) ON DELETE SET NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    created_by       TEXT    REFERENCES users (id) ON DELETE SET NULL,
    CHECK (NOT (archived = 1 AND state = 'active'))
) STRICT;
CREATE UNIQUE INDEX uix_project_plans_one_active ON project_plans (project_id) WHERE state = 'active';
CREATE INDEX idx_project_plans_project_state ON project_plans (project_id, state);
CREATE INDEX idx_project_plans_state ON project_plans (state);
CREATE INDEX idx_project_plans_archived ON project_plans (archived);

CREATE TABLE password_credentials (
    id            TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    user_id       TEXT    NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    password_hash BLOB    NOT NULL,
    hash_alg      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE refresh_sessions (
    id                 TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    user_id            TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_hash BLOB    NOT NULL,
    refresh_token_kid  TEXT,
    is_active          INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    expires_at         INTEGER NOT NULL,
    last_used_at       INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_refresh_sessions_user_id ON refresh_sessions (user_id);
CREATE INDEX idx_refresh_sessions_active_expiry ON refresh_sessions (is_active, expires_at);
CREATE INDEX idx_refresh_sessions_token_hash ON refresh_sessions (refresh_token_hash);

-- ------------------------------------------------------------------ policy, credentials, preferences

CREATE TABLE access_control_rules (
    id               TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    subject_type     TEXT    NOT NULL
        CHECK (subject_type IN ('system', 'user', 'group', 'project', 'task', 'agent')),
    subject_id       TEXT,
    action           TEXT    NOT NULL,
    resource_type    TEXT    NOT NULL,
    resource_pattern TEXT    NOT NULL,
    effect           TEXT    NOT NULL CHECK (effect IN ('allow', 'deny')),
    priority         INTEGER NOT NULL DEFAULT 0,
    conditions       TEXT    CHECK (conditions IS NULL OR json_valid(conditions)),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    updated_by       TEXT,
    CHECK ((subject_type = 'system') = (subject_id IS NULL))
) STRICT;
CREATE INDEX idx_ac_rules_subject ON access_control_rules (subject_type, subject_id);
CREATE INDEX idx_ac_rules_action ON access_control_rules (action);
CREATE INDEX idx_ac_rules_resource_type ON access_control_rules (resource_type);
CREATE INDEX idx_ac_rules_priority ON access_control_rules (priority);

CREATE TABLE api_credentials (
    id                    TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    owner_type            TEXT    NOT NULL,
    owner_id              TEXT    NOT NULL CHECK (length(owner_id) = 36),
    provider              TEXT    NOT NULL CHECK (provider = lower(provider)),
    credential_type       TEXT    NOT NULL,
    credential_name       TEXT    NOT NULL,
    credential_ciphertext BLOB    NOT NULL CHECK (length(credential_ciphertext) > 0),
    credential_kid        TEXT,
    is_active             INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    expires_at            INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    updated_by            TEXT
) STRICT;
CREATE UNIQUE INDEX idx_api_cred_owner_provider_name
    ON api_credentials (owner_type, owner_id, provider, credential_name);
CREATE INDEX idx_api_cred_provider ON api_credentials (provider);
CREATE INDEX idx_api_cred_is_active ON api_credentials (is_active);

CREATE TABLE preference_entries (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    scope_type TEXT    NOT NULL CHECK (scope_type IN ('system', 'user', 'group', 'project', 'task')),
    scope_id   TEXT,
    key        TEXT    NOT NULL CHECK (length(key) > 0),
    value      TEXT    CHECK (value IS NULL OR json_valid(value)),
    value_type TEXT    NOT NULL
        CHECK (value_type IN ('string', 'number', 'boolean', 'object', 'array', 'null')),
    version    INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    updated_at INTEGER NOT NULL,
    updated_by TEXT,
    CHECK ((scope_type = 'system') = (scope_id IS NULL))
) STRICT;
-- A plain UNIQUE (scope_type, scope_id, key) would let system-scope keys (NULL scope_id)
-- repeat; the expression index treats NULL as one value.
CREATE UNIQUE INDEX uix_pref_scope_key ON preference_entries (scope_type, ifnull(scope_id, ''), key);
CREATE INDEX idx_pref_key ON preference_entries (key);
CREATE INDEX idx_pref_updated_at ON preference_entries (updated_at);

CREATE TABLE personas (
    id          TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    scope_type  TEXT    CHECK (scope_type IS NULL OR scope_type IN ('system', 'group', 'project', 'user')),
    scope_id    TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    created_by  TEXT    REFERENCES users (id) ON DELETE SET NULL
) STRICT;
CREATE INDEX idx_personas_scope ON personas (scope_type, scope_id);

CREATE TABLE skills (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    name       TEXT    NOT NULL DEFAULT 'Untitled skill',
    content    TEXT    NOT NULL,
    scope      TEXT    NOT NULL DEFAULT 'user' CHECK (scope IN ('user', 'group', 'project', 'global')),
    owner_id   TEXT    REFERENCES users (id) ON DELETE CASCADE,
    is_system  INTEGER NOT NULL DEFAULT 0 CHECK (is_system IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_skills_name ON skills (name);
CREATE INDEX idx_skills_scope ON skills (scope);
CREATE INDEX idx_skills_owner_id ON skills (owner_id);
CREATE INDEX idx_skills_is_system ON skills (is_system);

-- ------------------------------------------------------------------ nodes

CREATE TABLE nodes (
    id                      TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    node_slug               TEXT    NOT NULL UNIQUE CHECK (length(node_slug) > 0),
    status                  TEXT    NOT NULL DEFAULT 'registered'
        CHECK (status IN ('registered', 'active', 'inactive', 'drained')),
    capability_hash         TEXT,
    config_version          TEXT,
    worker_api_target_url   TEXT,
    worker_api_bearer_token TEXT,
    config_ack_at           INTEGER,
    config_ack_status       TEXT,
    config_ack_error        TEXT,
    last_seen_at            INTEGER,
    last_capability_at      INTEGER,
    metadata                TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_nodes_status ON nodes (status);
CREATE INDEX idx_nodes_last_seen_at ON nodes (last_seen_at);

CREATE TABLE node_capabilities (
    id                  TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    node_id             TEXT    NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    reported_at         INTEGER NOT NULL,
    capability_snapshot TEXT    NOT NULL CHECK (json_valid(capability_snapshot))
) STRICT;
CREATE INDEX idx_node_capabilities_node_reported ON node_capabilities (node_id, reported_at DESC);

-- ------------------------------------------------------------------ tasks and jobs

CREATE TABLE tasks (
    id                  TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    created_by          TEXT    REFERENCES users (id) ON DELETE SET NULL,
    project_id          TEXT    REFERENCES projects (id) ON DELETE SET NULL,
    plan_id             TEXT    REFERENCES project_plans (id) ON DELETE SET NULL,
    name                TEXT    NOT NULL CHECK (length(name) > 0),
    status              TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled', 'superseded')),
    closed              INTEGER NOT NULL DEFAULT 0
        CHECK (closed = (status IN ('completed', 'failed', 'canceled', 'superseded'))),
    prompt              TEXT,
    description         TEXT,
    acceptance_criteria TEXT    CHECK (acceptance_criteria IS NULL OR json_valid(acceptance_criteria)),
    summary             TEXT,
    metadata            TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (created_by, name)
) STRICT;
-- Listing is newest first, by creator, by project or overall.
CREATE INDEX idx_tasks_created_by_created_at ON tasks (created_by, created_at DESC, id DESC);
CREATE INDEX idx_tasks_project_created_at ON tasks (project_id, created_at DESC, id DESC);
CREATE INDEX idx_tasks_created_at ON tasks (created_at DESC, id DESC);
CREATE INDEX idx_tasks_plan_id ON tasks (plan_id);
CREATE INDEX idx_tasks_status ON tasks (status);
CREATE INDEX idx_tasks_closed ON tasks (closed);

CREATE TABLE task_dependencies (
    id                 TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    task_id            TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    depends_on_task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    UNIQUE (task_id, depends_on_task_id),
    CHECK (task_id <> depends_on_task_id)
) STRICT;
CREATE INDEX idx_task_dependencies_depends_on ON task_dependencies (depends_on_task_id);

CREATE TABLE jobs (
    id               TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    task_id          TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    persona_id       TEXT    REFERENCES personas (id) ON DELETE SET NULL,
    node_id          TEXT    REFERENCES nodes (id) ON DELETE SET NULL,
    status           TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'canceled', 'lease_expired')),
    payload          TEXT    CHECK (payload IS NULL OR json_valid(payload)),
    result           TEXT    CHECK (result IS NULL OR json_valid(result)),
    lease_id         TEXT,
    lease_expires_at INTEGER,
    started_at       INTEGER,
    ended_at         INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    CHECK ((lease_id IS NULL) = (lease_expires_at IS NULL))
) STRICT;
CREATE INDEX idx_jobs_task_id ON jobs (task_id, created_at);
CREATE INDEX idx_jobs_persona_id ON jobs (persona_id) WHERE persona_id IS NOT NULL;
CREATE INDEX idx_jobs_node_id ON jobs (node_id);
CREATE INDEX idx_jobs_status ON jobs (status, created_at);
CREATE INDEX idx_jobs_lease_id ON jobs (lease_id) WHERE lease_id IS NOT NULL;
CREATE INDEX idx_jobs_lease_expires_at ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE workflow_checkpoints (
    id           TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    task_id      TEXT    NOT NULL UNIQUE REFERENCES tasks (id) ON DELETE CASCADE,
    state        TEXT    CHECK (state IS NULL OR json_valid(state)),
    last_node_id TEXT,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_workflow_checkpoints_updated_at ON workflow_checkpoints (updated_at);

CREATE TABLE task_workflow_leases (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    task_id    TEXT    NOT NULL UNIQUE REFERENCES tasks (id) ON DELETE CASCADE,
    lease_id   TEXT    NOT NULL,
    holder_id  TEXT,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_task_workflow_leases_expires_at ON task_workflow_leases (expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE sessions (
    id                TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    parent_session_id TEXT    REFERENCES sessions (id) ON DELETE SET NULL,
    user_id           TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title             TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_sessions_user_id ON sessions (user_id);
CREATE INDEX idx_sessions_parent ON sessions (parent_session_id);

CREATE TABLE runs (
    id            TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    task_id       TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    job_id        TEXT    REFERENCES jobs (id) ON DELETE SET NULL,
    session_id    TEXT    REFERENCES sessions (id) ON DELETE SET NULL,
    parent_run_id TEXT    REFERENCES runs (id) ON DELETE SET NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled')),
    started_at    INTEGER,
    ended_at      INTEGER,
    metadata      TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_runs_task_id ON runs (task_id);
CREATE INDEX idx_runs_job_id ON runs (job_id);
CREATE INDEX idx_runs_status ON runs (status);

CREATE TABLE task_artifacts (
    id              TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    task_id         TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    run_id          TEXT    REFERENCES runs (id) ON DELETE SET NULL,
    path            TEXT    NOT NULL CHECK (length(path) BETWEEN 1 AND 2048),
    storage_ref     TEXT    NOT NULL,
    size_bytes      INTEGER,
    content_type    TEXT,
    checksum_sha256 TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (task_id, path)
) STRICT;
CREATE INDEX idx_task_artifacts_run_id ON task_artifacts (run_id);
CREATE INDEX idx_task_artifacts_created_at ON task_artifacts (created_at);

-- ------------------------------------------------------------------ chat

CREATE TABLE chat_threads (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id TEXT    REFERENCES projects (id) ON DELETE SET NULL,
    session_id TEXT    REFERENCES sessions (id) ON DELETE SET NULL,
    title      TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_chat_threads_user_updated ON chat_threads (user_id, updated_at DESC, id DESC);
CREATE INDEX idx_chat_threads_project_updated ON chat_threads (project_id, updated_at);

CREATE TABLE chat_messages (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    thread_id  TEXT    NOT NULL REFERENCES chat_threads (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content    TEXT    NOT NULL,
    metadata   TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_chat_messages_thread_created ON chat_messages (thread_id, created_at);

-- ------------------------------------------------------------------ vector memory

-- Embeddings are little-endian f32 arrays; search filters here and ranks in the
-- application (there is no vector index in plain SQLite).
CREATE TABLE vector_items (
    id                TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    project_id        TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    task_id           TEXT    REFERENCES tasks (id) ON DELETE SET NULL,
    namespace         TEXT    NOT NULL,
    sensitivity_level TEXT
        CHECK (sensitivity_level IS NULL
               OR sensitivity_level IN ('public', 'internal', 'confidential', 'restricted')),
    sensitivity_rank  INTEGER
        CHECK (sensitivity_rank IS (CASE sensitivity_level
                                        WHEN 'public' THEN 0
                                        WHEN 'internal' THEN 1
                                        WHEN 'confidential' THEN 2
                                        WHEN 'restricted' THEN 3
                                    END)),
    source_type       TEXT    NOT NULL,
    source_ref        TEXT,
    chunk_index       INTEGER NOT NULL,
    content_text      TEXT    NOT NULL,
    content_sha256    TEXT    NOT NULL,
    embedding_model   TEXT    NOT NULL,
    embedding_dim     INTEGER NOT NULL CHECK (embedding_dim BETWEEN 1 AND 2000),
    embedding         BLOB    NOT NULL CHECK (length(embedding) = 4 * embedding_dim),
    metadata          TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_vector_items_project_namespace ON vector_items (project_id, namespace);
CREATE INDEX idx_vector_items_project_source ON vector_items (project_id, source_ref);
CREATE INDEX idx_vector_items_task_id ON vector_items (task_id);
CREATE INDEX idx_vector_items_source_type ON vector_items (source_type);
CREATE INDEX idx_vector_items_content_sha256 ON vector_items (content_sha256);

-- ------------------------------------------------------------------ audit (no foreign keys)

CREATE TABLE auth_audit_log (
    id             TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    event_type     TEXT    NOT NULL,
    user_id        TEXT,
    subject_handle TEXT,
    success        INTEGER NOT NULL CHECK (success IN (0, 1)),
    ip_address     TEXT,
    user_agent     TEXT,
    reason         TEXT,
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_auth_audit_event_type ON auth_audit_log (event_type);
CREATE INDEX idx_auth_audit_user_id ON auth_audit_log (user_id);
CREATE INDEX idx_auth_audit_created_at ON auth_audit_log (created_at);

CREATE TABLE access_control_audit_log (
    id            TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    subject_type  TEXT    NOT NULL,
    subject_id    TEXT,
    action        TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    resource      TEXT    NOT NULL,
    decision      TEXT    NOT NULL,
    reason        TEXT,
    task_id       TEXT,
    user_id       TEXT,
    group_ids     TEXT    CHECK (group_ids IS NULL OR json_valid(group_ids)),
    role_names    TEXT    CHECK (role_names IS NULL OR json_valid(role_names)),
    scope_type    TEXT,
    scope_id      TEXT,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_ac_audit_created_at ON access_control_audit_log (created_at);
CREATE INDEX idx_ac_audit_task_id ON access_control_audit_log (task_id);

CREATE TABLE mcp_tool_call_audit_log (
    id           TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    created_at   INTEGER NOT NULL,
    task_id      TEXT,
    project_id   TEXT,
    run_id       TEXT,
    job_id       TEXT,
    subject_type TEXT,
    subject_id   TEXT,
    user_id      TEXT,
    group_ids    TEXT    CHECK (group_ids IS NULL OR json_valid(group_ids)),
    role_names   TEXT    CHECK (role_names IS NULL OR json_valid(role_names)),
    tool_name    TEXT    NOT NULL,
    decision     TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    duration_ms  INTEGER,
    error_type   TEXT
) STRICT;
CREATE INDEX idx_mcp_audit_created_at ON mcp_tool_call_audit_log (created_at);
CREATE INDEX idx_mcp_audit_task_id ON mcp_tool_call_audit_log (task_id);
CREATE INDEX idx_mcp_audit_project_id ON mcp_tool_call_audit_log (project_id);
CREATE INDEX idx_mcp_audit_user_id ON mcp_tool_call_audit_log (user_id);
CREATE INDEX idx_mcp_audit_tool_name ON mcp_tool_call_audit_log (tool_name);

CREATE TABLE chat_audit_log (
    id                TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    created_at        INTEGER NOT NULL,
    user_id           TEXT,
    project_id        TEXT,
    outcome           TEXT    NOT NULL,
    error_code        TEXT,
    redaction_applied INTEGER NOT NULL DEFAULT 0 CHECK (redaction_applied IN (0, 1)),
    redaction_kinds   TEXT    CHECK (redaction_kinds IS NULL OR json_valid(redaction_kinds)),
    duration_ms       INTEGER,
    request_id        TEXT
) STRICT;
CREATE INDEX idx_chat_audit_created_at ON chat_audit_log (created_at);
CREATE INDEX idx_chat_audit_user_id ON chat_audit_log (user_id);
CREATE INDEX idx_chat_audit_project_id ON chat_audit_log (project_id);
