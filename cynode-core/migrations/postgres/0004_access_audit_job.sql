-- API egress audit context: the job of a job-scoped caller and the decision time.
ALTER TABLE access_control_audit_log ADD COLUMN job_id uuid;
ALTER TABLE access_control_audit_log ADD COLUMN duration_ms int;
CREATE INDEX access_control_audit_log_subject_idx ON access_control_audit_log (subject_id);
CREATE INDEX access_control_rules_lookup_idx
    ON access_control_rules (subject_type, subject_id, action, resource_type);
