//! `robots.txt` (RFC 9309): parsing, group selection by product token, and the
//! longest-match rule with `*` and `$` patterns.

/// Parsed rules that apply to one user agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Robots {
    /// (allow, pattern) pairs of the selected group(s).
    rules: Vec<(bool, String)>,
    /// Everything is disallowed (robots.txt unreachable).
    disallow_all: bool,
}

impl Robots {
    /// Everything allowed (no robots.txt, or a 4xx answer).
    pub(crate) fn allow_all() -> Self {
        Robots::default()
    }

    /// Everything disallowed (a 5xx answer or an unreachable server, RFC 9309 §2.3.1.4).
    pub(crate) fn disallow_all() -> Self {
        Robots {
            rules: Vec::new(),
            disallow_all: true,
        }
    }

    /// Parses `body` and keeps the groups for `product` (the user agent's product token,
    /// matched case-insensitively), or the `*` groups when none names it.
    pub(crate) fn parse(body: &str, product: &str) -> Self {
        let product = product.to_ascii_lowercase();
        let mut specific: Vec<(bool, String)> = Vec::new();
        let mut star: Vec<(bool, String)> = Vec::new();
        let mut found_specific = false;
        // Agents of the group being read, and whether its rules have started.
        let mut agents: Vec<String> = Vec::new();
        let mut in_rules = false;
        for raw in body.lines() {
            let line = raw.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        agents.clear();
                        in_rules = false;
                    }
                    agents.push(value.to_ascii_lowercase());
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if value.is_empty() {
                        continue;
                    }
                    let rule = (key == "allow", value.to_string());
                    if !product.is_empty() && agents.iter().any(|a| a == &product) {
                        found_specific = true;
                        specific.push(rule);
                    } else if agents.iter().any(|a| a == "*") {
                        star.push(rule);
                    }
                }
                _ => {}
            }
        }
        Robots {
            rules: if found_specific { specific } else { star },
            disallow_all: false,
        }
    }

    /// Whether `path` (path plus query, starting with `/`) may be fetched.
    pub(crate) fn allows(&self, path: &str) -> bool {
        if path == "/robots.txt" {
            return true;
        }
        if self.disallow_all {
            return false;
        }
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if let Some(len) = match_len(pattern, path) {
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// If `pattern` matches a prefix of `path` (or all of it with `$`), the pattern's
/// length (its specificity); `*` matches any sequence.
fn match_len(pattern: &str, path: &str) -> Option<usize> {
    let (pat, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let p = pat.as_bytes();
    let s = path.as_bytes();
    // Iterative wildcard matching with backtracking to the last '*'.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if i == p.len() {
            if !anchored || j == s.len() {
                return Some(pattern.len());
            }
        } else if p[i] == b'*' {
            star = Some((i, j));
            i += 1;
            continue;
        } else if j < s.len() && p[i] == s[j] {
            i += 1;
            j += 1;
            continue;
        }
        match star {
            Some((si, sj)) if sj < s.len() => {
                star = Some((si, sj + 1));
                i = si + 1;
                j = sj + 1;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TXT: &str = "# comment\nUser-agent: *\nDisallow: /private\nAllow: /private/public$\n\n\
        User-agent: OtherBot\nDisallow: /\n\nUser-agent: cynodeai-securebrowser\nUser-agent: x\n\
        Disallow: /no-cynode\nDisallow: /*.pdf$\nAllow: /no-cynode/but-this\n";

    #[test]
    fn specific_group_wins_over_star() {
        let r = Robots::parse(TXT, "CyNodeAI-SecureBrowser");
        assert!(!r.allows("/no-cynode/x"));
        assert!(r.allows("/no-cynode/but-this/y"));
        assert!(r.allows("/private/x"), "star group must not apply");
        assert!(!r.allows("/doc/a.pdf"));
        assert!(r.allows("/doc/a.pdf?x=1"));
    }

    #[test]
    fn star_group_and_longest_match() {
        let r = Robots::parse(TXT, "SomeBot");
        assert!(!r.allows("/private/x"));
        assert!(r.allows("/private/public"));
        assert!(!r.allows("/private/public/more"));
        assert!(r.allows("/open"));
        assert!(r.allows("/robots.txt"));
        assert!(!Robots::disallow_all().allows("/x"));
        assert!(Robots::allow_all().allows("/x"));
    }

    #[test]
    fn wildcards() {
        assert_eq!(match_len("/a*b", "/axxb/c"), Some(4));
        assert_eq!(match_len("/a*b$", "/axxbc"), None);
        assert_eq!(match_len("*", "/"), Some(1));
        assert_eq!(match_len("/a", "/"), None);
    }
}
