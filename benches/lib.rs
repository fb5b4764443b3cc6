//! Benchmarks live in `benches/benches/`; run them with `cargo bench -p cynode-benches`.
//! This library holds what several of them share.

use sqlx::Connection;

/// A boxed error for benchmark plumbing.
pub type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// A throw-away PostgreSQL database for one benchmark run, created through an admin
/// URL (e.g. the test environment's `CYNODE_TEST_PG_URL`) and dropped by
/// [`ScratchDb::drop_now`].
pub struct ScratchDb {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl ScratchDb {
    /// Creates `<prefix>_<random>` on the server of `admin_url`.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<Self, BoxErr> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        admin.close().await.ok();
        Ok(Self {
            url: url_with_db(admin_url, &name)?,
            admin_url: admin_url.to_string(),
            name,
        })
    }

    /// Drops the database (sessions still connected are ended); errors are ignored.
    pub async fn drop_now(self) {
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut c)
            .await;
            c.close().await.ok();
        }
    }
}

/// `url` with its database name replaced by `db` (query parameters kept).
pub fn url_with_db(url: &str, db: &str) -> Result<String, BoxErr> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").ok_or("the PostgreSQL URL is not a URL")? + 3;
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}
