//! Small parsers for configuration values: Go durations, Go listen addresses and the
//! database URL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

/// Parses a Go duration (`300s`, `15m`, `1h30m`, `250ms`, `24h`); a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if s.is_empty() {
        bail!("empty duration");
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            bail!("invalid duration '{s}' (expected e.g. 300s, 15m, 1h30m)");
        }
        let value: f64 = rest[..num_len]
            .parse()
            .with_context(|| format!("invalid duration '{s}'"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => bail!("invalid duration '{s}': unknown unit '{other}'"),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * unit)
            .with_context(|| format!("invalid duration '{s}'"))?;
    }
    Ok(total)
}

/// Parses a listen address: `:12080` (every interface), `0.0.0.0:12080`,
/// `127.0.0.1:0`, `[::1]:12080`, `localhost:12080`.
pub async fn resolve_listen(addr: &str) -> anyhow::Result<SocketAddr> {
    let a = addr.trim();
    let full = if a.starts_with(':') {
        format!("0.0.0.0{a}")
    } else {
        a.to_string()
    };
    if let Ok(sa) = full.parse::<SocketAddr>() {
        return Ok(sa);
    }
    tokio::net::lookup_host(&full)
        .await
        .with_context(|| {
            format!("invalid listen address '{addr}' (expected e.g. :12080 or 127.0.0.1:12080)")
        })?
        .next()
        .with_context(|| format!("listen address '{addr}' resolves to nothing"))
}

/// Where the orchestrator keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// PostgreSQL at this URL.
    Postgres(String),
    /// SQLite in this file.
    Sqlite(PathBuf),
}

impl Database {
    /// From `DATABASE_URL` (or its absence) and the data directory.
    pub fn from_url(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Database::Sqlite(data_dir.join("cynode.db")));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_string()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            // sqlite:///abs/path, sqlite://rel/path, sqlite:path
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path == ":memory:" {
                bail!(
                    "DATABASE_URL '{url}' names no file: the orchestrator keeps its data on disk (use sqlite:///path/to/cynode.db)"
                );
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if url.contains("://") {
            bail!(
                "DATABASE_URL '{}' is neither postgres:// nor sqlite:// (nor a file path)",
                redact_url(url)
            );
        }
        Ok(Database::Sqlite(PathBuf::from(url)))
    }

    /// A printable description with any password removed.
    pub fn describe(&self) -> String {
        match self {
            Database::Postgres(u) => format!("PostgreSQL {}", redact_url(u)),
            Database::Sqlite(p) => format!("SQLite {}", p.display()),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_duration(s).expect(s);
        assert_eq!(d("300s"), Duration::from_secs(300));
        assert_eq!(d("15m"), Duration::from_secs(900));
        assert_eq!(d("168h"), Duration::from_secs(168 * 3600));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("42"), Duration::from_secs(42));
        for bad in ["", "s", "10x", "1h-5m", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn listen_addresses() {
        let r = |s: &'static str| async move { resolve_listen(s).await.expect(s) };
        assert_eq!(r(":12080").await, "0.0.0.0:12080".parse().expect("addr"));
        assert_eq!(r("127.0.0.1:0").await, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(r("[::1]:9").await, "[::1]:9".parse().expect("addr"));
        assert!(r("localhost:12080").await.ip().is_loopback());
        assert!(resolve_listen("nonsense").await.is_err());
    }

    #[test]
    fn database_urls() {
        let dir = Path::new("/data");
        let db = |u: Option<&str>| Database::from_url(u, dir).expect("url");
        assert_eq!(db(None), Database::Sqlite("/data/cynode.db".into()));
        assert_eq!(db(Some("  ")), Database::Sqlite("/data/cynode.db".into()));
        assert_eq!(
            db(Some("postgres://u:p@h:5432/d?sslmode=disable")),
            Database::Postgres("postgres://u:p@h:5432/d?sslmode=disable".into())
        );
        assert_eq!(
            db(Some("sqlite:///var/x.db")),
            Database::Sqlite("/var/x.db".into())
        );
        assert_eq!(db(Some("sqlite:x.db")), Database::Sqlite("x.db".into()));
        assert_eq!(
            db(Some("sqlite://x.db?mode=rwc")),
            Database::Sqlite("x.db".into())
        );
        assert_eq!(db(Some("/tmp/y.db")), Database::Sqlite("/tmp/y.db".into()));
        assert!(Database::from_url(Some("sqlite::memory:"), dir).is_err());
        let e = Database::from_url(Some("mysql://u:pw@h/d"), dir).expect_err("mysql");
        assert!(!e.to_string().contains("pw"), "{e}");
        assert_eq!(
            db(Some("postgres://u:secret@h/d")).describe(),
            "PostgreSQL postgres://u:***@h/d"
        );
    }
}
