//! The one place where PostgreSQL and driver errors become [`Error`]s.
//!
//! Messages say what happened in plain words; the SQL, the server's message and the
//! driver error stay in `source` (for logs) or are dropped for the caller-facing kinds.

use sqlx::migrate::MigrateError;

use crate::Error;

/// SQLSTATE codes this module distinguishes.
mod code {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const EXCLUSION_VIOLATION: &str = "23P01";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub const QUERY_CANCELED: &str = "57014";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_OBJECT: &str = "42704";
}

/// Maps a driver error to an [`Error`]:
///
/// - unique violation (23505) → [`Error::Conflict`];
/// - foreign-key violation (23503) → [`Error::InvalidInput`] (a call whose contract says
///   "not found" for a missing parent uses [`missing_parent`]);
/// - check / not-null violations and data exceptions (class 22: bad text
///   representation, out-of-range numbers, NUL bytes in text) → [`Error::InvalidInput`];
/// - connection loss, pool timeouts, serialization failures (40001), deadlocks (40P01),
///   lock timeouts, operator intervention (class 57, e.g. 57P01 admin shutdown),
///   resource exhaustion (class 53) and connection exceptions (class 08) →
///   [`Error::Unavailable`], which callers may retry;
/// - a missing database (3D000) or a refused login (class 28) → [`Error::InvalidInput`]
///   (the connection settings are wrong; retrying does not help);
/// - anything else → [`Error::Internal`] with the driver error as `source`.
pub(crate) fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let constraint = db.constraint().unwrap_or_default();
            match code.as_str() {
                code::UNIQUE_VIOLATION => Error::conflict(unique_message(constraint)),
                code::FOREIGN_KEY_VIOLATION => Error::invalid(foreign_key_message(constraint)),
                code::CHECK_VIOLATION => Error::invalid(check_message(constraint)),
                code::NOT_NULL_VIOLATION => Error::invalid("a required value is missing"),
                code::EXCLUSION_VIOLATION => {
                    Error::conflict("the change conflicts with existing data")
                }
                c if c.starts_with("22") => Error::invalid(data_exception_message(c)),
                code::SERIALIZATION_FAILURE | code::DEADLOCK_DETECTED => {
                    Error::unavailable("the database aborted a concurrent transaction; retry", e)
                }
                code::LOCK_NOT_AVAILABLE => Error::unavailable("a row is locked; retry", e),
                code::QUERY_CANCELED => {
                    Error::unavailable("the database canceled the statement", e)
                }
                c if c.starts_with("57") => Error::unavailable(
                    "the database closed the connection (shutdown or restart)",
                    e,
                ),
                c if c.starts_with("53") => Error::unavailable(
                    "the database is out of resources (connections, memory or disk)",
                    e,
                ),
                c if c.starts_with("08") => Error::unavailable("the database connection failed", e),
                // Configuration problems: retrying the same call will not help.
                "3D000" => Error::invalid("the configured database does not exist"),
                c if c.starts_with("28") => Error::invalid("the database refused the login"),
                code::UNDEFINED_TABLE | code::UNDEFINED_OBJECT => Error::Internal {
                    message: "the database schema is missing objects this build needs".into(),
                    source: Some(Box::new(e)),
                },
                _ => Error::Internal {
                    message: "the database rejected a statement".into(),
                    source: Some(Box::new(e)),
                },
            }
        }
        sqlx::Error::Io(_) => Error::unavailable("the database connection failed", e),
        sqlx::Error::Tls(_) => Error::unavailable("the TLS connection to the database failed", e),
        sqlx::Error::PoolTimedOut => {
            Error::unavailable("no database connection became free in time", e)
        }
        sqlx::Error::PoolClosed => Error::unavailable("the database pool is closed", e),
        sqlx::Error::WorkerCrashed => {
            Error::unavailable("the database connection worker stopped", e)
        }
        sqlx::Error::Protocol(_) => {
            Error::unavailable("the database connection broke (protocol error)", e)
        }
        sqlx::Error::Configuration(_) => {
            Error::invalid("the database connection settings are invalid")
        }
        sqlx::Error::Migrate(m) => match m.as_ref() {
            MigrateError::Execute(_) | MigrateError::ExecuteMigration(..) => Error::Internal {
                message: "applying database migrations failed".into(),
                source: Some(Box::new(e)),
            },
            _ => Error::Internal {
                message: "the database migration history does not match this build".into(),
                source: Some(Box::new(e)),
            },
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => Error::Internal {
            message: "a stored value could not be read".into(),
            source: Some(Box::new(e)),
        },
        _ => Error::Internal {
            message: "unexpected database error".into(),
            source: Some(Box::new(e)),
        },
    }
}

/// Like [`db_err`], but a violation of the foreign key `constraint` (the parent row is
/// missing) becomes [`Error::NotFound`] for `entity`/`id`, for calls whose contract says
/// an unknown parent is "not found" rather than "invalid input".
pub(crate) fn missing_parent(
    e: sqlx::Error,
    constraint: &str,
    entity: &'static str,
    id: impl std::fmt::Display,
) -> Error {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some(code::FOREIGN_KEY_VIOLATION)
        && db.constraint() == Some(constraint)
    {
        return Error::not_found(entity, id);
    }
    db_err(e)
}

/// Maps an error from running the migrator.
pub(crate) fn migrate_err(e: MigrateError) -> Error {
    match e {
        MigrateError::Execute(inner) => db_err(inner),
        other => db_err(sqlx::Error::Migrate(Box::new(other))),
    }
}

fn unique_message(constraint: &str) -> &'static str {
    match constraint {
        "users_handle_key" => "a user with this handle already exists",
        "users_email_key" => "a user with this e-mail already exists",
        "projects_slug_key" => "a project with this slug already exists",
        "tasks_created_by_name_key" => "a task with this name already exists for this user",
        "tasks_pkey" => "a task with this id already exists",
        "jobs_pkey" => "a job with this id already exists",
        "nodes_node_slug_key" => "a node with this slug already exists",
        "uix_pref_scope_key" => "the preference already exists in this scope",
        "idx_api_cred_owner_provider_name" => {
            "a credential with this name already exists for this owner and provider"
        }
        "uix_task_artifact_path" => "an artifact with this path already exists for the task",
        "password_credentials_user_key" => "the user already has a password",
        "project_plans_one_active_idx" => "the project already has an active plan",
        _ => "a record with the same unique key already exists",
    }
}

fn foreign_key_message(constraint: &str) -> &'static str {
    match constraint {
        "tasks_created_by_fkey"
        | "password_credentials_user_fkey"
        | "refresh_sessions_user_fkey"
        | "chat_threads_user_fkey" => "the referenced user does not exist",
        "tasks_project_fkey" | "chat_threads_project_fkey" | "vector_items_project_fkey" => {
            "the referenced project does not exist"
        }
        "task_dependencies_depends_on_fkey" => "a task named as a dependency does not exist",
        "jobs_task_fkey"
        | "task_artifacts_task_fkey"
        | "task_dependencies_task_fkey"
        | "vector_items_task_fkey" => "the referenced task does not exist",
        "jobs_node_fkey" | "node_capabilities_node_fkey" => "the referenced node does not exist",
        "chat_messages_thread_fkey" => "the referenced chat thread does not exist",
        _ => "a referenced record does not exist",
    }
}

fn check_message(constraint: &str) -> &'static str {
    match constraint {
        "task_dependencies_not_self_check" => "a task cannot depend on itself",
        "preference_entries_scope_id_check" => {
            "a preference scope has an id exactly when it is not the system scope"
        }
        "vector_items_dim_range_check" | "vector_items_dim_check" => {
            "the embedding dimension must be in 1..=2000"
        }
        "api_credentials_ciphertext_check" => "credential ciphertext must not be empty",
        _ => "a value is outside the allowed range",
    }
}

fn data_exception_message(code: &str) -> &'static str {
    match code {
        // character_not_in_repertoire, untranslatable_character: NUL bytes, bad UTF-8
        "22021" | "22P05" => {
            "text contains a character the database cannot store (e.g. a NUL byte)"
        }
        "22001" => "a value is too long",
        "22003" => "a number is out of range",
        "22007" | "22008" => "a date or time is out of range",
        "22P02" => "a value has an invalid format",
        _ => "a value is invalid",
    }
}
