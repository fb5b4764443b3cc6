//! Helpers shared by the resource routes (skills, preferences, settings, nodes,
//! credentials, audit, projects): paging, the admin check, time formatting, the
//! decoding of JSON values sent either raw or as JSON text, and the parts the
//! versioned key/value writes (preferences, settings) have in common.

use axum::http::StatusCode;
use cynode_core::Error;
use cynode_core::model::{Timestamp, json_type_name};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::auth::AuthUser;
use super::error::ApiError;
use super::state::GatewayState;

/// Smallest, default and largest page size of the resource lists.
pub(crate) const MIN_LIMIT: usize = 1;
/// Default page size.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
pub(crate) const MAX_LIMIT: usize = 200;

/// A page request: `limit` 1..200 (default 50) and an opaque `cursor` (the decimal
/// offset of the next page, as returned in `next_cursor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) offset: usize,
    pub(crate) limit: usize,
}

impl Page {
    /// Parses `limit` and `cursor`; anything malformed is `400` `Invalid limit or cursor`.
    pub(crate) fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let bad = || ApiError::bad_request("Invalid limit or cursor");
        let limit = match limit.map(str::trim).filter(|s| !s.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (MIN_LIMIT..=MAX_LIMIT).contains(n))
                .ok_or_else(bad)?,
        };
        let offset = match cursor.map(str::trim).filter(|s| !s.is_empty()) {
            None => 0,
            Some(s) => s.parse::<usize>().map_err(|_| bad())?,
        };
        Ok(Page { offset, limit })
    }

    /// Cuts one page out of the full, ordered list; returns it and the cursor of the
    /// next page (`None` on the last page).
    pub(crate) fn apply<T>(&self, items: Vec<T>) -> (Vec<T>, Option<String>) {
        let total = items.len();
        let page: Vec<T> = items
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        let end = self.offset.saturating_add(self.limit);
        let next = (end < total).then(|| end.to_string());
        (page, next)
    }
}

/// Whether the caller holds the admin handle.
pub(crate) fn is_admin(st: &GatewayState, user: &AuthUser) -> bool {
    user.handle == st.inner.config.admin_handle
}

/// `403` `Admin required` unless the caller is the admin.
pub(crate) fn require_admin(st: &GatewayState, user: &AuthUser) -> Result<(), ApiError> {
    if is_admin(st, user) {
        Ok(())
    } else {
        Err(ApiError::forbidden("Admin required"))
    }
}

/// RFC 3339, UTC, microseconds (`2026-03-12T10:04:05.123456Z`).
pub(crate) fn fmt_time(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 time from a query parameter.
pub(crate) fn parse_time(name: &str, s: &str) -> Result<Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| ApiError::bad_request(format!("Invalid {name}: expected an RFC 3339 time")))
}

/// The JSON value types a preference or setting may declare.
pub(crate) const VALUE_TYPES: &[&str] = &["string", "number", "boolean", "object", "array", "null"];

/// Decodes a submitted `value`. Clients send either the JSON value itself
/// (`"value": 100`, `"value": "concise"`) or, as MCP clients and the reference CLI do,
/// a string holding JSON text (`"value": "100"`, `"value": "\"concise\""`).
///
/// - A string that parses as JSON is taken as JSON text and decoded, unless a
///   `value_type` is given that only the raw string matches (`"value": "42"` with
///   `"value_type": "string"` stores the string `"42"`).
/// - Anything else is taken as is.
/// - When `value_type` is given, the result must be of that type, else
///   `400` `value does not match value_type`.
pub(crate) fn decode_value(value: Value, value_type: Option<&str>) -> Result<Value, ApiError> {
    if let Some(t) = value_type
        && !VALUE_TYPES.contains(&t)
    {
        return Err(ApiError::bad_request(
            "value_type must be one of string, number, boolean, object, array, null",
        ));
    }
    let candidates: Vec<Value> = match &value {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(parsed) => vec![parsed, value.clone()],
            Err(_) => vec![value.clone()],
        },
        _ => vec![value.clone()],
    };
    match value_type {
        None => Ok(candidates.into_iter().next().unwrap_or(value)),
        Some(t) => candidates
            .into_iter()
            .find(|v| json_type_name(v) == t)
            .ok_or_else(|| ApiError::bad_request("value does not match value_type")),
    }
}

/// A trimmed, non-empty string parameter; blank counts as absent.
pub(crate) fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// `deserialize_with` for a body `value` that may be any JSON, `null` included: a
/// present field is `Some` (even `Some(null)`), a missing one stays `None` (with
/// `#[serde(default)]`).
pub(crate) fn some_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The key and the decoded value of a versioned key/value write: `400` `key required`,
/// `value required`, or what [`decode_value`] says.
pub(crate) fn key_and_value(
    key: Option<&str>,
    value: Option<Value>,
    value_type: Option<&str>,
) -> Result<(String, Value), ApiError> {
    let key = non_empty(key)
        .ok_or_else(|| ApiError::bad_request("key required"))?
        .to_string();
    let value = value.ok_or_else(|| ApiError::bad_request("value required"))?;
    let value = decode_value(value, non_empty(value_type))?;
    Ok((key, value))
}

/// An `expected_version` query parameter: absent or blank is `None`, else an `i32` or
/// `400` `invalid expected_version`.
pub(crate) fn parse_expected_version(s: Option<&str>) -> Result<Option<i32>, ApiError> {
    non_empty(s)
        .map(|s| {
            s.parse::<i32>()
                .map_err(|_| ApiError::bad_request("invalid expected_version"))
        })
        .transpose()
}

/// Maps a storage error of a versioned key/value write: `404` with `not_found`,
/// `409` `version conflict`, `400` with the store's message, else `500` with `what`.
pub(crate) fn versioned_store_error(
    not_found: &'static str,
    what: &'static str,
) -> impl FnOnce(Error) -> ApiError {
    move |e| match e {
        Error::NotFound { .. } => ApiError::not_found(not_found),
        Error::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "version conflict"),
        Error::InvalidInput(msg) => ApiError::bad_request(msg),
        e => ApiError::storage(what, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paging_parses_and_cuts() {
        assert_eq!(
            Page::parse(None, None).ok(),
            Some(Page {
                offset: 0,
                limit: 50
            })
        );
        assert_eq!(
            Page::parse(Some("200"), Some("7")).ok(),
            Some(Page {
                offset: 7,
                limit: 200
            })
        );
        for (l, c) in [
            (Some("0"), None),
            (Some("201"), None),
            (Some("x"), None),
            (None, Some("-1")),
            (None, Some("abc")),
        ] {
            assert!(Page::parse(l, c).is_err(), "{l:?} {c:?}");
        }
        let p = Page {
            offset: 2,
            limit: 2,
        };
        assert_eq!(p.apply(vec![1, 2, 3, 4, 5]), (vec![3, 4], Some("4".into())));
        assert_eq!(p.apply(vec![1, 2, 3, 4]), (vec![3, 4], None));
        assert_eq!(p.apply(vec![1]), (vec![], None));
    }

    #[test]
    fn values_are_decoded_raw_or_from_json_text() {
        let ok = |v: Value, t: Option<&str>| decode_value(v, t).expect("decodes");
        assert_eq!(ok(json!("\"concise\""), None), json!("concise"));
        assert_eq!(ok(json!("concise"), None), json!("concise"));
        assert_eq!(ok(json!("100"), None), json!(100));
        assert_eq!(ok(json!(100), None), json!(100));
        assert_eq!(ok(json!("42"), Some("string")), json!("42"));
        assert_eq!(ok(json!("\"x\""), Some("string")), json!("x"));
        assert_eq!(ok(json!("[1]"), Some("array")), json!([1]));
        assert_eq!(ok(json!({"a": 1}), Some("object")), json!({"a": 1}));
        assert_eq!(ok(json!(null), None), json!(null));
        assert!(decode_value(json!("abc"), Some("number")).is_err());
        assert!(decode_value(json!(1), Some("integer")).is_err());
    }

    #[test]
    fn versioned_writes_check_key_value_and_expected_version() {
        let detail = |r: Result<(String, Value), ApiError>| r.err().map(|e| e.detail().to_string());
        assert_eq!(
            key_and_value(Some(" k "), Some(json!("1")), None).ok(),
            Some(("k".to_string(), json!(1)))
        );
        assert_eq!(
            detail(key_and_value(Some(" "), Some(json!(1)), None)).as_deref(),
            Some("key required")
        );
        assert_eq!(
            detail(key_and_value(Some("k"), None, None)).as_deref(),
            Some("value required")
        );
        assert_eq!(
            key_and_value(Some("k"), Some(Value::Null), None).ok(),
            Some(("k".to_string(), Value::Null))
        );
        assert_eq!(parse_expected_version(None).ok(), Some(None));
        assert_eq!(parse_expected_version(Some(" ")).ok(), Some(None));
        assert_eq!(parse_expected_version(Some("3")).ok(), Some(Some(3)));
        assert_eq!(
            parse_expected_version(Some("x"))
                .err()
                .map(|e| e.detail().to_string()),
            Some("invalid expected_version".to_string())
        );
    }
}
