//! The data directory and the secrets dev mode generates and keeps there (each in its
//! own 0600 file, created once and reused on every later start).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::Rng;
use rand::distr::Alphanumeric;

/// The default JWT secret of the reference; refused outside dev mode.
pub const REFERENCE_DEFAULT_JWT_SECRET: &str = "change-me-in-production";

/// Shortest accepted HS256 key, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Creates `dir` (and its parents) if missing, mode 0700 for what it creates.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// A random string of `len` letters and digits (from the OS-seeded CSPRNG).
pub fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A secret kept in a file: read when present, else generated and written 0600.
#[derive(Debug)]
pub struct StoredSecret {
    /// The value.
    pub value: String,
    /// Where it is kept.
    pub path: PathBuf,
}

/// Reads the secret at `path`, or creates it with `generate()` (exclusive create, mode
/// 0600, so two processes never end up with different values).
pub fn load_or_create(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<StoredSecret> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    match read_secret(path)? {
        Some(value) => Ok(StoredSecret {
            value,
            path: path.to_path_buf(),
        }),
        None => {
            let value = generate();
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
            match file {
                Ok(mut f) => {
                    f.write_all(format!("{value}\n").as_bytes())
                        .and_then(|()| f.sync_all())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    Ok(StoredSecret {
                        value,
                        path: path.to_path_buf(),
                    })
                }
                // Someone else created it a moment ago: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let value = read_secret(path)?
                        .with_context(|| format!("{} is empty", path.display()))?;
                    Ok(StoredSecret {
                        value,
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
    }
}

/// The trimmed content of a secret file, `None` when it does not exist. Refuses a
/// file others can read, and an empty one.
pub fn read_secret(path: &Path) -> anyhow::Result<Option<String>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value = text.trim().to_string();
    if value.is_empty() {
        bail!(
            "{} is empty; delete it to have a new value generated",
            path.display()
        );
    }
    Ok(Some(value))
}

/// Checks a JWT secret given for production use.
pub fn check_jwt_secret(secret: &str) -> anyhow::Result<()> {
    if secret == REFERENCE_DEFAULT_JWT_SECRET {
        bail!(
            "JWT_SECRET is the well-known default '{REFERENCE_DEFAULT_JWT_SECRET}': anyone could sign tokens. \
             Set a random one, e.g. JWT_SECRET=$(head -c 32 /dev/urandom | base64), or use `dev`"
        );
    }
    if secret.len() < MIN_JWT_SECRET_BYTES {
        bail!(
            "JWT_SECRET is {} bytes; use at least {MIN_JWT_SECRET_BYTES} random bytes, e.g. JWT_SECRET=$(head -c 32 /dev/urandom | base64)",
            secret.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_created_once_0600_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets/jwt");
        let first = load_or_create(&path, || "one".into()).expect("create");
        assert_eq!(first.value, "one");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().expect("parent"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let second = load_or_create(&path, || "two".into()).expect("reuse");
        assert_eq!(second.value, "one");
    }

    #[test]
    fn a_world_readable_or_empty_secret_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        fs::write(&path, "x\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = read_secret(&path).expect_err("readable");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::write(&path, "  \n").expect("write");
        assert!(
            read_secret(&path)
                .expect_err("empty")
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn jwt_secret_checks() {
        assert!(check_jwt_secret(REFERENCE_DEFAULT_JWT_SECRET).is_err());
        assert!(check_jwt_secret("short").is_err());
        assert!(check_jwt_secret(&"k".repeat(32)).is_ok());
        let t = random_token(24);
        assert_eq!(t.len(), 24);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(t, random_token(24));
    }
}
