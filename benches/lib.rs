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

/// An environment variable parsed as `T`, or `default` when it is unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peers' scripts: `CYNODE_PEERS_DIR`, else the nearest `shared/peers` above this
/// crate that holds `latency.py`, else `<repo>/../shared/peers`.
pub fn peers_dir() -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    if let Ok(d) = std::env::var("CYNODE_PEERS_DIR") {
        return PathBuf::from(d);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    root.ancestors()
        .map(|a| a.join("shared/peers"))
        .find(|p| p.join("latency.py").is_file())
        .unwrap_or_else(|| root.join("../shared/peers"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A child process that is killed (and reaped) when this is dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `GET path` on 127.0.0.1:`port` answered 200 within `timeout`.
pub fn wait_http(port: u16, path: &str, timeout: std::time::Duration) -> bool {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            );
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/1.1 200") {
                return true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}
