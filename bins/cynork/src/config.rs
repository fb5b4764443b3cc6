//! The config file (cli.md §2): location, YAML format, atomic 0600 writes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use crate::error::{CliError, CliResult};

/// Default gateway URL when none is configured.
pub const DEFAULT_GATEWAY_URL: &str = "http://localhost:12080";

/// Values read from (and written to) the config file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigFile {
    /// `gateway_url`.
    pub gateway_url: String,
    /// `token`.
    pub token: String,
    /// `refresh_token`.
    pub refresh_token: String,
    /// Other top-level keys, kept as they were when the file is rewritten.
    pub other: Mapping,
}

/// The config key of the active project (`project set`).
const ACTIVE_PROJECT: &str = "active_project";

impl ConfigFile {
    /// The active project saved by `project set` (the default `--project-id` of
    /// `task create` and `chat`), if any.
    pub fn active_project(&self) -> Option<String> {
        self.other
            .get(ACTIVE_PROJECT)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    }

    /// Saves (`Some`) or clears (`None`) the active project.
    pub fn set_active_project(&mut self, project: Option<&str>) {
        match project {
            Some(p) => {
                self.other.insert(ACTIVE_PROJECT.into(), p.into());
            }
            None => {
                self.other.remove(ACTIVE_PROJECT);
            }
        }
    }
}

/// Where the config lives: `--config`, else `$XDG_CONFIG_HOME/cynork/config.yaml`, else
/// `~/.config/cynork/config.yaml`; `None` when no home directory can be found.
pub fn resolve_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("cynork").join("config.yaml"));
    }
    std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| {
        PathBuf::from(h)
            .join(".config")
            .join("cynork")
            .join("config.yaml")
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses the file's text. An empty document means defaults.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    let doc: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let map = match doc {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        _ => return Err("top level must be a mapping".into()),
    };
    let mut cfg = ConfigFile::default();
    for (k, v) in map {
        let key = k.as_str().map(str::to_string);
        let slot = match key.as_deref() {
            Some("gateway_url") => &mut cfg.gateway_url,
            Some("token") => &mut cfg.token,
            Some("refresh_token") => &mut cfg.refresh_token,
            _ => {
                cfg.other.insert(k, v);
                continue;
            }
        };
        *slot = scalar(&v)
            .ok_or_else(|| format!("{}: must be a string", key.as_deref().unwrap_or_default()))?;
    }
    Ok(cfg)
}

/// Reads the file; a missing file gives defaults (and is not created). Invalid YAML is
/// a usage error (`load config: parse config: …`).
pub fn load(path: Option<&Path>) -> CliResult<ConfigFile> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => {
            return Err(CliError::usage(format!(
                "load config: read {}: {e}",
                path.display()
            )));
        }
    };
    parse(&text).map_err(|e| CliError::usage(format!("load config: parse config: {e}")))
}

/// A scalar as YAML: plain when unambiguous, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:+=%~@".contains(c))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && !s.contains(": ")
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

/// The file's text: the three known keys, one per line, unindented, then other keys.
pub fn render(cfg: &ConfigFile) -> String {
    let mut out = format!(
        "gateway_url: {}\ntoken: {}\nrefresh_token: {}\n",
        yaml_scalar(&cfg.gateway_url),
        yaml_scalar(&cfg.token),
        yaml_scalar(&cfg.refresh_token)
    );
    if !cfg.other.is_empty()
        && let Ok(rest) = serde_norway::to_string(&Value::Mapping(cfg.other.clone()))
    {
        out.push_str(&rest);
    }
    out
}

/// Writes the file atomically: directory `0700`, temp file `.config.yaml.*.tmp` with
/// mode `0600` in the same directory, then rename over the target.
pub fn save(path: Option<&Path>, cfg: &ConfigFile) -> CliResult {
    let path = path.ok_or_else(|| {
        CliError::general("save config: no config path (set --config, XDG_CONFIG_HOME or HOME)")
    })?;
    write_atomic(path, render(cfg).as_bytes())
        .map_err(|e| CliError::general(format!("save config: {e}")))
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.yaml".into());
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 5 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let result = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_active_project_is_kept_and_cleared() {
        let mut cfg = parse("token: t\nextra: 5\n").expect("parse");
        assert_eq!(cfg.active_project(), None);
        cfg.set_active_project(Some("3f0c0000-0000-4000-8000-000000000001"));
        let again = parse(&render(&cfg)).expect("reparse");
        assert_eq!(
            again.active_project().as_deref(),
            Some("3f0c0000-0000-4000-8000-000000000001")
        );
        let mut cleared = again;
        cleared.set_active_project(None);
        let text = render(&cleared);
        assert!(!text.contains("active_project"), "{text}");
        assert!(text.contains("extra: 5"), "other keys stay: {text}");
    }

    #[test]
    fn round_trip_keeps_known_and_unknown_keys() {
        let cfg = parse("gateway_url: http://h:1\ntoken: \"a.b.c\"\nextra: 5\nrefresh_token: ''\n")
            .expect("parse");
        assert_eq!(cfg.gateway_url, "http://h:1");
        assert_eq!(cfg.token, "a.b.c");
        assert_eq!(cfg.refresh_token, "");
        let text = render(&cfg);
        assert!(text.starts_with("gateway_url: http://h:1\ntoken: a.b.c\nrefresh_token: \"\"\n"));
        assert_eq!(parse(&text).expect("reparse"), cfg);
    }

    #[test]
    fn empty_and_invalid_documents() {
        assert_eq!(parse("").expect("empty"), ConfigFile::default());
        assert!(parse("token: [unclosed").is_err());
        assert!(parse("- a\n- b\n").is_err());
        assert!(parse("token: {a: 1}\n").is_err());
    }

    #[test]
    fn ambiguous_scalars_are_quoted() {
        for s in ["", "true", "123", "a b", "#x", "x: y"] {
            let text = render(&ConfigFile {
                token: s.into(),
                ..Default::default()
            });
            assert_eq!(parse(&text).expect("parse").token, s, "{text}");
        }
    }

    #[test]
    fn saves_atomically_with_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("sub").join("config.yaml");
        save(
            Some(&p),
            &ConfigFile {
                token: "t".into(),
                ..Default::default()
            },
        )
        .expect("save");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().expect("dir")), 0o700);
        let names: Vec<_> = fs::read_dir(p.parent().expect("dir"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.yaml")]);
    }
}
