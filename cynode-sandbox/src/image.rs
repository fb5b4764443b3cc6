//! Image references and the allowlist.

/// Splits a reference into (repository, tag-or-digest suffix including its `:`/`@`).
fn split(reference: &str) -> (&str, &str) {
    if let Some(at) = reference.find('@') {
        return (&reference[..at], &reference[at..]);
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => reference.split_at(last_slash + colon),
        None => (reference, ""),
    }
}

/// Canonical repository name: short Docker Hub names gain `docker.io/` and, for one
/// component, `library/`.
fn canonical_repo(repo: &str) -> String {
    let first = repo.split('/').next().unwrap_or("");
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    }
}

/// Canonical full reference: canonical repository plus tag (default `latest`) or digest.
pub(crate) fn canonical(reference: &str) -> String {
    let (repo, suffix) = split(reference);
    let suffix = if suffix.is_empty() { ":latest" } else { suffix };
    format!("{}{}", canonical_repo(repo), suffix)
}

/// Whether `reference` passes `allowed` (empty = everything). Entries are exact
/// references or `repo:*` for a whole repository. `always` (the default image) passes.
pub(crate) fn is_allowed(reference: &str, allowed: &[String], always: &str) -> bool {
    if allowed.is_empty() || canonical(reference) == canonical(always) {
        return true;
    }
    let want = canonical(reference);
    let (want_repo, _) = split(reference);
    let want_repo = canonical_repo(want_repo);
    allowed.iter().any(|entry| match entry.strip_suffix(":*") {
        Some(repo) => canonical_repo(repo) == want_repo,
        None => canonical(entry) == want,
    })
}

/// A syntactically plausible reference: non-empty, no whitespace or control characters.
pub(crate) fn is_plausible(reference: &str) -> bool {
    !reference.is_empty()
        && reference.len() <= 512
        && !reference.starts_with('-')
        && reference.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical("python:3.12"), "docker.io/library/python:3.12");
        assert_eq!(canonical("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(canonical("org/img"), "docker.io/org/img:latest");
        assert_eq!(
            canonical("localhost/cynode-test:latest"),
            "localhost/cynode-test:latest"
        );
        assert_eq!(canonical("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(canonical("ghcr.io/x/y@sha256:ab"), "ghcr.io/x/y@sha256:ab");
    }

    #[test]
    fn allowlist_matching() {
        let allowed = vec!["python:3.12".to_string(), "ghcr.io/org/tools:*".to_string()];
        assert!(is_allowed(
            "docker.io/library/python:3.12",
            &allowed,
            "alpine:latest"
        ));
        assert!(is_allowed("python:3.12", &allowed, "alpine:latest"));
        assert!(!is_allowed("python:3.11", &allowed, "alpine:latest"));
        assert!(!is_allowed("busybox", &allowed, "alpine:latest"));
        assert!(is_allowed(
            "ghcr.io/org/tools:v2",
            &allowed,
            "alpine:latest"
        ));
        assert!(!is_allowed(
            "ghcr.io/org/other:v2",
            &allowed,
            "alpine:latest"
        ));
        assert!(
            is_allowed("alpine", &allowed, "alpine:latest"),
            "default image always passes"
        );
        assert!(is_allowed("anything", &[], "alpine"));
    }

    #[test]
    fn plausibility() {
        assert!(is_plausible("localhost/x:1"));
        assert!(!is_plausible(""));
        assert!(!is_plausible("a b"));
        assert!(!is_plausible("--privileged"));
    }
}
