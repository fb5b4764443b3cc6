//! Input rules shared by every backend, so they reject the same things the same way.

use crate::{Error, Result, model::*};

/// The reserved handle of the system user.
pub(crate) const SYSTEM_HANDLE: &str = "system";

/// Handle: 1–64 chars of `[A-Za-z0-9._-]`.
pub(crate) fn handle(h: &str) -> Result<()> {
    validate_handle(h)
}

/// Non-empty text of bounded length.
pub(crate) fn text(field: &str, v: &str, max: usize) -> Result<()> {
    if v.trim().is_empty() {
        return Err(Error::invalid(format!("{field} must not be blank")));
    }
    if v.chars().count() > max {
        return Err(Error::invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

/// A task about to be created.
pub(crate) fn new_task(t: &NewTask) -> Result<()> {
    text("task name", &t.name, 255)?;
    for a in &t.artifacts {
        artifact(a)?;
    }
    Ok(())
}

/// An artifact path.
pub(crate) fn artifact(a: &NewArtifact) -> Result<()> {
    text("artifact path", &a.path, 2048)
}

/// A chunk about to be inserted.
pub(crate) fn vector_item(v: &NewVectorItem) -> Result<()> {
    text("namespace", &v.namespace, 128)?;
    text("source_type", &v.source_type, 64)?;
    text("embedding_model", &v.embedding_model, 256)?;
    if v.content_text.is_empty() {
        return Err(Error::invalid("content_text must not be empty"));
    }
    validate_embedding(&v.embedding)
}

/// A query about to run.
pub(crate) fn vector_query(q: &VectorQuery) -> Result<()> {
    if q.project_ids.is_empty() || q.namespaces.is_empty() {
        return Err(Error::invalid(
            "a vector query must name at least one project and one namespace",
        ));
    }
    if q.k == 0 || q.k > 1000 {
        return Err(Error::invalid("k must be in 1..=1000"));
    }
    validate_embedding(&q.embedding)
}

/// Page size: 0 means 50, otherwise clamped to 1..=1000.
pub(crate) fn limit(l: u32) -> u32 {
    if l == 0 { 50 } else { l.min(1000) }
}

/// Lower-cased provider id, validated.
pub(crate) fn provider(p: &str) -> Result<String> {
    text("provider", p, 64)?;
    Ok(p.to_ascii_lowercase())
}
