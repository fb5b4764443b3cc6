//! Reading files a sandbox left in a host directory, defensively: the directory's content
//! is untrusted, so symlinks are never followed, only regular files are read, and every
//! read is bounded.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::ArtifactLimits;
use crate::error::{Error, Result};
use crate::result::{Artifact, ArtifactSet, ArtifactSkip};

/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 32;
/// Most directory entries looked at per job (files and directories), so a tree of a
/// million empty files cannot keep the worker busy.
const MAX_ENTRIES: usize = 100_000;

/// Walks `root` (a host directory) and returns its regular files, named
/// `<prefix>/<relative path>`. A missing root yields an empty set.
pub(crate) fn collect(root: &Path, prefix: &str, limits: &ArtifactLimits) -> Result<ArtifactSet> {
    let mut set = ArtifactSet::default();
    match fs::symlink_metadata(root) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => return Ok(set),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(set),
        Err(e) => return Err(Error::io(format_args!("inspect {}", root.display()), e)),
    }
    let mut state = Walk {
        limits,
        total_bytes: 0,
        entries: 0,
    };
    state.walk(root, prefix, 0, &mut set)?;
    Ok(set)
}

struct Walk<'a> {
    limits: &'a ArtifactLimits,
    total_bytes: u64,
    entries: usize,
}

impl Walk<'_> {
    fn walk(&mut self, dir: &Path, rel: &str, depth: usize, set: &mut ArtifactSet) -> Result<()> {
        if depth > MAX_DEPTH {
            set.truncated = true;
            return Ok(());
        }
        let rd =
            fs::read_dir(dir).map_err(|e| Error::io(format_args!("list {}", dir.display()), e))?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(format_args!("list {}", dir.display()), e))?;
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                set.truncated = true;
                break;
            }
            names.push(entry.file_name());
        }
        names.sort();
        for name in names {
            let Some(name_str) = name.to_str() else {
                continue; // not representable in the protocol; skipped
            };
            let path = dir.join(&name);
            let rel_path = format!("{rel}/{name_str}");
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                self.walk(&path, &rel_path, depth + 1, set)?;
            } else if ft.is_file() {
                if set.files.len() >= self.limits.max_files {
                    set.truncated = true;
                    return Ok(());
                }
                set.files.push(self.read_one(&path, rel_path, &meta));
            }
            if set.truncated && set.files.len() >= self.limits.max_files {
                return Ok(());
            }
        }
        Ok(())
    }

    fn read_one(&mut self, path: &Path, rel_path: String, meta: &fs::Metadata) -> Artifact {
        let size = meta.len();
        let fits = size <= self.limits.max_file_bytes
            && self.total_bytes.saturating_add(size) <= self.limits.max_total_bytes;
        let skipped = Artifact {
            content_type: content_type(&rel_path, None),
            path: rel_path.clone(),
            size_bytes: size,
            sha256: None,
            content: None,
            skipped: Some(ArtifactSkip::TooLarge),
        };
        if !fits {
            return skipped;
        }
        // Read at most the size seen plus one byte, from the very file that was stat-ed.
        match read_regular(path, meta, size) {
            Ok(Some(content)) => {
                self.total_bytes += content.len() as u64;
                Artifact {
                    content_type: content_type(&rel_path, Some(&content)),
                    path: rel_path,
                    size_bytes: content.len() as u64,
                    sha256: Some(hex(&Sha256::digest(&content))),
                    content: Some(content),
                    skipped: None,
                }
            }
            // The file grew or was swapped while reading: treat as too large.
            Ok(None) | Err(_) => skipped,
        }
    }
}

/// Opens `path` and checks it is still the regular file `meta` describes, then reads at
/// most `max` bytes; `Ok(None)` when the file is longer.
fn read_regular(path: &Path, meta: &fs::Metadata, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = File::open(path)?;
    let opened = file.metadata()?;
    if !opened.file_type().is_file() || opened.ino() != meta.ino() || opened.dev() != meta.dev() {
        return Err(std::io::Error::other("file changed while reading"));
    }
    let mut buf = Vec::with_capacity(max.min(1 << 20) as usize);
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        Ok(None)
    } else {
        Ok(Some(buf))
    }
}

/// Reads one regular file of at most `max` bytes; `Ok(None)` when it does not exist.
/// Symlinks and other non-regular files are refused.
pub(crate) fn read_file(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format_args!("inspect {}", path.display()), e)),
    };
    if !meta.file_type().is_file() {
        return Err(Error::io(
            format_args!("read {}", path.display()),
            std::io::Error::other("not a regular file"),
        ));
    }
    match read_regular(path, &meta, max) {
        Ok(Some(b)) => Ok(Some(b)),
        Ok(None) => Err(Error::io(
            format_args!("read {}", path.display()),
            std::io::Error::other(format!("larger than {max} bytes")),
        )),
        Err(e) => Err(Error::io(format_args!("read {}", path.display()), e)),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn content_type(path: &str, content: Option<&[u8]>) -> String {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let known = match ext.as_str() {
        "json" => Some("application/json"),
        "html" | "htm" => Some("text/html; charset=utf-8"),
        "csv" => Some("text/csv; charset=utf-8"),
        "md" => Some("text/markdown; charset=utf-8"),
        "txt" | "log" => Some("text/plain; charset=utf-8"),
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "pdf" => Some("application/pdf"),
        "gz" | "tgz" => Some("application/gzip"),
        "tar" => Some("application/x-tar"),
        "zip" => Some("application/zip"),
        _ => None,
    };
    match (known, content) {
        (Some(k), _) => k.to_string(),
        (None, Some(c)) if std::str::from_utf8(c).is_ok() => "text/plain; charset=utf-8".into(),
        _ => "application/octet-stream".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_regular_files_with_caps_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("r.txt"), "report\n").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/big.bin"), vec![0u8; 100]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("dirlink")).unwrap();

        let limits = ArtifactLimits {
            max_file_bytes: 50,
            max_total_bytes: 1000,
            max_files: 10,
        };
        let set = collect(root, "artifacts", &limits).unwrap();
        assert!(!set.truncated);
        let paths: Vec<_> = set.files.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["artifacts/r.txt", "artifacts/sub/big.bin"]);
        let r = &set.files[0];
        assert_eq!(r.size_bytes, 7);
        assert_eq!(r.content.as_deref(), Some(&b"report\n"[..]));
        // sha256("report\n"), computed independently with sha256sum.
        assert_eq!(
            r.sha256.as_deref(),
            Some("331d26d6d8f862e46ba900811be8a7a1e4dbaa229b14c99becfd5e5151490d95")
        );
        assert_eq!(set.files[1].skipped, Some(ArtifactSkip::TooLarge));
        assert!(set.files[1].content.is_none());
    }

    #[test]
    fn count_and_total_caps() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            fs::write(dir.path().join(format!("f{i}")), "0123456789").unwrap();
        }
        let limits = ArtifactLimits {
            max_file_bytes: 100,
            max_total_bytes: 25,
            max_files: 3,
        };
        let set = collect(dir.path(), "artifacts", &limits).unwrap();
        assert!(set.truncated);
        assert_eq!(set.files.len(), 3);
        assert!(set.files[0].content.is_some() && set.files[1].content.is_some());
        assert_eq!(
            set.files[2].skipped,
            Some(ArtifactSkip::TooLarge),
            "total cap reached"
        );
    }

    #[test]
    fn read_file_refuses_symlinks_and_oversize() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("result.json");
        assert_eq!(read_file(&p, 10).unwrap(), None);
        fs::write(&p, "{}").unwrap();
        assert_eq!(read_file(&p, 10).unwrap().unwrap(), b"{}");
        assert!(read_file(&p, 1).is_err());
        let l = dir.path().join("l");
        std::os::unix::fs::symlink("/etc/passwd", &l).unwrap();
        assert!(read_file(&l, 1 << 20).is_err());
    }
}
