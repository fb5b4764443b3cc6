//! The test environment contract: service variables, and (feature `pg`) a fresh
//! PostgreSQL database per test. The Podman pair is [`crate::podman::podman_env`].
//!
//! | variable | meaning |
//! |---|---|
//! | `CYNODE_TEST_PG_URL` | superuser URL of a maintenance database |
//! | `CYNODE_TEST_DOCKER_HOST` | `unix://…` Podman Docker-API socket |
//! | `CYNODE_TEST_IMAGE` | the tiny local busybox test image |
//! | `CYNODE_TEST_PYTHON` | Python of the test venv |
//! | `CYNODE_REQUIRE_SERVICES` | when `1`, a test missing its service fails instead of skipping |

/// Reads a service variable of the test environment contract. Missing or blank: panics
/// when `CYNODE_REQUIRE_SERVICES=1` (the test fails loudly), else prints
/// `skipped: <name> not set` and gives `None` (the test returns early).
pub fn service_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            if std::env::var("CYNODE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!("{name} is not set, but CYNODE_REQUIRE_SERVICES=1 requires it");
            }
            eprintln!("skipped: {name} not set");
            None
        }
    }
}

/// Replaces the database name in a PostgreSQL URL, keeping any `?options`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{db}?{q}"),
        None => format!("{host}/{db}"),
    }
}

/// A fresh, empty database `cynode_t_<uuid>` of its own for one test, on the
/// `CYNODE_TEST_PG_URL` server. Drop it with [`TestDatabase::drop_db`] at the end.
#[cfg(feature = "pg")]
#[derive(Clone, Debug)]
pub struct TestDatabase {
    /// The maintenance URL it was created from.
    pub admin_url: String,
    /// The database name.
    pub name: String,
    /// URL of the database.
    pub url: String,
}

#[cfg(feature = "pg")]
impl TestDatabase {
    /// Creates a database on `CYNODE_TEST_PG_URL`; `None` when the variable is not set
    /// (see [`service_var`]).
    pub async fn create() -> Option<Self> {
        let admin_url = service_var("CYNODE_TEST_PG_URL")?;
        Some(Self::create_on(&admin_url).await)
    }

    /// Creates a database on the server of `admin_url` (panics when it cannot).
    pub async fn create_on(admin_url: &str) -> Self {
        use sqlx::Connection;
        let name = format!("cynode_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to the test PostgreSQL server");
        // The name is generated from a UUID: safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create a fresh test database");
        admin.close().await.ok();
        Self {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
        }
    }

    /// A direct connection to the database, for looking behind a store's back.
    pub async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Runs SQL (one or more statements) on the database.
    pub async fn exec(&self, sql: &str) {
        use sqlx::Connection;
        let mut c = self.connect().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .expect("run SQL on the test database");
        c.close().await.ok();
    }

    /// Drops the database, closing the connections still open to it.
    pub async fn drop_db(&self) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await?;
        admin.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_url_rewrite() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:55432/postgres", "x"),
            "postgres://postgres@127.0.0.1:55432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
