-- System settings (schema contract §7.3–7.4) and their audit trail; preference audit.

CREATE TABLE system_settings (
    key        text COLLATE "C" PRIMARY KEY,
    value      jsonb,
    value_type text NOT NULL,
    version    integer NOT NULL DEFAULT 1 CONSTRAINT system_settings_version_check CHECK (version >= 1),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);
CREATE INDEX system_settings_updated_at_idx ON system_settings (updated_at);

-- No foreign key: deleting a setting keeps its history. `seq` keeps write order.
CREATE TABLE system_settings_audit_log (
    id         uuid PRIMARY KEY,
    key        text NOT NULL,
    old_value  jsonb,
    new_value  jsonb,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    reason     text,
    seq        bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX system_settings_audit_log_key_idx ON system_settings_audit_log (key, seq);
CREATE INDEX system_settings_audit_log_changed_at_idx ON system_settings_audit_log (changed_at);

-- One row per preference create/update/delete (schema contract §7.2). No foreign key:
-- the history of a deleted entry stays readable; scope and key are kept beside the
-- entry id for the same reason.
CREATE TABLE preference_audit_log (
    id         uuid PRIMARY KEY,
    entry_id   uuid NOT NULL,
    scope_type text NOT NULL,
    scope_id   uuid,
    key        text NOT NULL,
    old_value  jsonb,
    new_value  jsonb,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    reason     text,
    seq        bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX preference_audit_log_entry_idx ON preference_audit_log (entry_id);
CREATE INDEX preference_audit_log_scope_key_idx ON preference_audit_log (scope_type, scope_id, key, seq);
CREATE INDEX preference_audit_log_changed_at_idx ON preference_audit_log (changed_at);
