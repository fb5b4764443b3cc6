//! Shared by the SQL backends: driver error mapping and migration errors.

use crate::Error;

/// Maps a driver error to an error kind. The only place that reads SQLSTATE codes and
/// SQLite result codes; driver text stays in `source`. `action` says, in plain words,
/// what was attempted.
pub(crate) fn map_sqlx(action: &str, e: sqlx::Error) -> Error {
    use sqlx::error::ErrorKind;
    let unavailable = |message: String, e: sqlx::Error| Error::Unavailable {
        message,
        source: Some(Box::new(e)),
    };
    let internal = |message: String, e: sqlx::Error| Error::Internal {
        message,
        source: Some(Box::new(e)),
    };
    match &e {
        sqlx::Error::Database(d) => {
            match d.kind() {
                ErrorKind::UniqueViolation => {
                    return Error::conflict(format!(
                        "cannot {action}: a record with the same unique key already exists"
                    ));
                }
                ErrorKind::ForeignKeyViolation => {
                    return Error::invalid(format!(
                        "cannot {action}: it refers to a record that does not exist"
                    ));
                }
                ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                    return Error::invalid(format!("cannot {action}: a value is out of range"));
                }
                _ => {}
            }
            let code = d.code().map(|c| c.to_string()).unwrap_or_default();
            // PostgreSQL SQLSTATE classes that a later call may not hit: serialization
            // failure, deadlock, lock timeout, connection loss, shutdown, overload.
            let pg_retryable = matches!(code.as_str(), "40001" | "40P01" | "55P03" | "57014")
                || code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P");
            // SQLite primary result codes: BUSY (5), LOCKED (6), IOERR (10), FULL (13),
            // CANTOPEN (14), PROTOCOL (15), READONLY (8).
            let sqlite_code = code.parse::<i32>().ok().map(|c| c & 0xff);
            let sqlite_retryable = matches!(sqlite_code, Some(5 | 6 | 8 | 10 | 13 | 14 | 15));
            if pg_retryable || sqlite_retryable {
                unavailable(
                    format!("cannot {action}: the database is unavailable or busy"),
                    e,
                )
            } else {
                internal(format!("cannot {action}"), e)
            }
        }
        sqlx::Error::PoolTimedOut => unavailable(
            format!("cannot {action}: timed out waiting for a database connection"),
            e,
        ),
        sqlx::Error::PoolClosed => unavailable(format!("cannot {action}: the queue is closed"), e),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => unavailable(
            format!("cannot {action}: the database connection failed"),
            e,
        ),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => {
            internal(format!("cannot {action}: stored data could not be read"), e)
        }
        _ => internal(format!("cannot {action}"), e),
    }
}

/// `map_err` adapter for [`map_sqlx`].
pub(crate) fn db(action: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| map_sqlx(action, e)
}

/// Maps a migration failure.
pub(crate) fn map_migrate(e: sqlx::migrate::MigrateError) -> Error {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::Execute(e) | M::ExecuteMigration(e, _) => map_sqlx("apply the scheduler schema", e),
        other => Error::Internal {
            message: "the scheduler schema in the database does not match this build".into(),
            source: Some(Box::new(other)),
        },
    }
}

/// The migrations table of the scheduler (separate from `cynode-core`'s).
pub(crate) const MIGRATIONS_TABLE: &str = "_cynode_sched_migrations";

/// Refuses a schema newer than this build.
pub(crate) fn check_version(
    found: Option<i64>,
    migrator: &sqlx::migrate::Migrator,
) -> crate::Result<()> {
    let supported = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match found {
        Some(found) if found > supported => Err(Error::SchemaTooNew { found, supported }),
        _ => Ok(()),
    }
}
