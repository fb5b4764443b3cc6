//! A fresh PostgreSQL database per test, from `CYNODE_TEST_PG_URL`.
#![allow(dead_code, missing_docs)]

use sqlx::Connection;

pub struct TestDb {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

/// Replaces the database name of a `postgres://` URL.
pub fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let cut = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{}", &base[..cut], db);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl TestDb {
    /// Creates `cynode_t_<uuid>`; `None` (test skipped) when the URL is not set.
    pub async fn create() -> Option<Self> {
        let admin_url = crate::common::service_env("CYNODE_TEST_PG_URL")?;
        Some(Self::create_on(&admin_url).await)
    }

    pub async fn create_on(admin_url: &str) -> Self {
        let name = format!("cynode_t_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to the test server");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await
            .expect("create a test database");
        c.close().await.ok();
        Self {
            url: with_db(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
        }
    }

    pub async fn exec(&self, sql: &str) {
        let mut c = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .expect("exec");
        c.close().await.ok();
    }

    pub async fn drop_db(&self) {
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut c)
            .await;
            c.close().await.ok();
        }
    }
}
