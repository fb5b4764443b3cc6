-- CyNodeAI schema for SQLite, version 2: system settings and their audit trail, and the
-- preference audit trail.
-- Conventions as in 0001 (TEXT uuids, INTEGER microsecond times, STRICT tables).

CREATE TABLE system_settings (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    CHECK (value IS NULL OR json_valid(value)),
    value_type TEXT    NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    updated_at INTEGER NOT NULL,
    updated_by TEXT
) STRICT;
CREATE INDEX idx_system_settings_updated_at ON system_settings (updated_at);

-- No foreign key: deleting a setting keeps its history.
CREATE TABLE system_settings_audit_log (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    key        TEXT    NOT NULL,
    old_value  TEXT    CHECK (old_value IS NULL OR json_valid(old_value)),
    new_value  TEXT    CHECK (new_value IS NULL OR json_valid(new_value)),
    changed_at INTEGER NOT NULL,
    changed_by TEXT    NOT NULL,
    reason     TEXT
) STRICT;
CREATE INDEX idx_system_settings_audit_key ON system_settings_audit_log (key);
CREATE INDEX idx_system_settings_audit_changed_at ON system_settings_audit_log (changed_at);

-- One row per preference create/update/delete. No foreign key: the history of a
-- deleted entry stays readable. Scope and key are kept beside the entry id so a key's
-- history can be read after its entry is gone.
CREATE TABLE preference_audit_log (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    entry_id   TEXT    NOT NULL CHECK (length(entry_id) = 36),
    scope_type TEXT    NOT NULL,
    scope_id   TEXT,
    key        TEXT    NOT NULL,
    old_value  TEXT    CHECK (old_value IS NULL OR json_valid(old_value)),
    new_value  TEXT    CHECK (new_value IS NULL OR json_valid(new_value)),
    changed_at INTEGER NOT NULL,
    changed_by TEXT    NOT NULL,
    reason     TEXT
) STRICT;
CREATE INDEX idx_preference_audit_entry ON preference_audit_log (entry_id);
CREATE INDEX idx_preference_audit_scope_key ON preference_audit_log (scope_type, ifnull(scope_id, ''), key);
CREATE INDEX idx_preference_audit_changed_at ON preference_audit_log (changed_at);
