-- API egress audit context: the job of a job-scoped caller and the decision time.
ALTER TABLE access_control_audit_log ADD COLUMN job_id TEXT CHECK (job_id IS NULL OR length(job_id) = 36);
ALTER TABLE access_control_audit_log ADD COLUMN duration_ms INTEGER;
CREATE INDEX idx_ac_audit_subject ON access_control_audit_log (subject_id);
CREATE INDEX idx_ac_rules_lookup
    ON access_control_rules (subject_type, subject_id, action, resource_type);
