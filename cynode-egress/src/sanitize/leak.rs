//! Step 8: the leak filter. Replaces secrets (API-key shapes, bearer tokens, JWTs,
//! private-key blocks, credentials in URLs and `key = value` assignments) and internal
//! network details (private, loopback, link-local, CGNAT and unspecified IPv4/IPv6
//! addresses; `localhost` and `.internal`/`.local`/`.lan`/`.corp`/`.intranet`/
//! `.localdomain`/`.home.arpa` host names) with markers.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use regex::{Captures, Regex};

/// Secret shapes. Each entry: pattern; the replacement keeps capture group 1 (a key
/// name or URL scheme) when the pattern has one.
const SECRETS: &[&str] = &[
    r"(?s)-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----.*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----|\z)",
    r"(?-u:\b)sk-(?:proj-|ant-|live-)?[A-Za-z0-9_\-]{20,}",
    r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}(?-u:\b)",
    r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})",
    r"(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}",
    r"(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}",
    r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    r"(?-u:\b)eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",
    r"(?i)((?-u:\b)bearer\s+)[A-Za-z0-9._~+/\-]{16,}=*",
    r"(?i)((?-u:\b)[a-z][a-z0-9+.\-]{1,15}://)[^\s/:@]{1,64}:[^\s/@]{1,128}@",
    r#"(?i)((?-u:\b)(?:api[_\-]?key|api[_\-]?secret|secret[_\-]?key|client[_\-]?secret|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|private[_\-]?key|password|passwd|aws_secret_access_key)["']?\s{0,3}[:=]\s{0,3}["']?)[A-Za-z0-9/+_.~=!@#$%^&*\-]{8,}"#,
];

/// Internal network shapes; candidates are verified before redaction.
const IPV4: &str = r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)";
const IPV6: &str = r"(?i)\[?(?:(?-u:\b)(?:f[cd][0-9a-f]{2}|fe[89ab][0-9a-f])(?::[0-9a-f]{0,4}){1,7}|(?-u:\B)::1(?-u:\b)|(?-u:\B)::(?-u:\b)(?:ffff:)?(?:127|10|192\.168|169\.254)\.[0-9.]+)(?:%[a-z0-9]+)?\]?";
const HOSTS: &str = r"(?i)(?-u:\b)(?:localhost|(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+(?:internal|local|localdomain|lan|intranet|corp|home\.arpa))(?-u:\b)";

/// Whether an IPv4 address is not a public internet address.
pub(crate) fn ipv4_internal(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
        || o[0] == 0
}

/// Whether an IPv6 address is not a public internet address.
pub(crate) fn ipv6_internal(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ipv4_internal(v4);
    }
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
}

/// Compiled leak filter.
#[derive(Debug, Clone)]
pub(crate) struct LeakFilter {
    any: Regex,
    secrets: Vec<Regex>,
    ipv4: Regex,
    ipv6: Regex,
    hosts: Regex,
    redact_secrets: bool,
    redact_internal: bool,
    secret_marker: String,
    internal_marker: String,
}

/// How many of each kind were replaced.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LeakCounts {
    pub(crate) secrets: u32,
    pub(crate) internal: u32,
}

fn compile(p: &str) -> Result<Regex, regex::Error> {
    Regex::new(p)
}

impl LeakFilter {
    pub(crate) fn new(
        redact_secrets: bool,
        redact_internal: bool,
        secret_marker: String,
        internal_marker: String,
    ) -> Result<Self, regex::Error> {
        let mut all: Vec<&str> = Vec::new();
        if redact_secrets {
            all.extend(SECRETS);
        }
        if redact_internal {
            all.extend([IPV4, IPV6, HOSTS]);
        }
        let any = if all.is_empty() {
            compile(r"[^\s\S]")?
        } else {
            compile(
                &all.iter()
                    .map(|p| format!("(?:{p})"))
                    .collect::<Vec<_>>()
                    .join("|"),
            )?
        };
        Ok(LeakFilter {
            any,
            secrets: SECRETS
                .iter()
                .map(|p| compile(p))
                .collect::<Result<_, _>>()?,
            ipv4: compile(IPV4)?,
            ipv6: compile(IPV6)?,
            hosts: compile(HOSTS)?,
            redact_secrets,
            redact_internal,
            secret_marker,
            internal_marker,
        })
    }

    /// Filters `text`; returns it unchanged (borrowed) when nothing matched.
    pub(crate) fn apply<'t>(&self, text: &'t str, counts: &mut LeakCounts) -> Cow<'t, str> {
        if !self.any.is_match(text) {
            return Cow::Borrowed(text);
        }
        let mut cur: Cow<'t, str> = Cow::Borrowed(text);
        if self.redact_secrets {
            for re in &self.secrets {
                let mut n = 0u32;
                let marker = &self.secret_marker;
                let next = re.replace_all(&cur, |c: &Captures<'_>| {
                    n += 1;
                    // A credential in a URL keeps its scheme and the '@'.
                    let at = if c[0].ends_with('@') { "@" } else { "" };
                    match c.get(1) {
                        Some(keep) => format!("{}{marker}{at}", keep.as_str()),
                        None => marker.clone(),
                    }
                });
                if n > 0 {
                    counts.secrets += n;
                    cur = Cow::Owned(next.into_owned());
                }
            }
        }
        if self.redact_internal {
            let marker = &self.internal_marker;
            let mut n = 0u32;
            let next = self.ipv4.replace_all(&cur, |c: &Captures<'_>| {
                let m = &c[0];
                match m.parse::<Ipv4Addr>() {
                    Ok(ip) if ipv4_internal(ip) => {
                        n += 1;
                        marker.clone()
                    }
                    _ => m.to_string(),
                }
            });
            if n > 0 {
                counts.internal += n;
                cur = Cow::Owned(next.into_owned());
            }
            let mut n = 0u32;
            let next = self.ipv6.replace_all(&cur, |c: &Captures<'_>| {
                let m = &c[0];
                let bare = m.trim_start_matches('[').trim_end_matches(']');
                let bare = bare.split('%').next().unwrap_or(bare);
                match bare.parse::<Ipv6Addr>() {
                    Ok(ip) if ipv6_internal(ip) => {
                        n += 1;
                        marker.clone()
                    }
                    _ => m.to_string(),
                }
            });
            if n > 0 {
                counts.internal += n;
                cur = Cow::Owned(next.into_owned());
            }
            let mut n = 0u32;
            let next = self.hosts.replace_all(&cur, |_: &Captures<'_>| {
                n += 1;
                marker.clone()
            });
            if n > 0 {
                counts.internal += n;
                cur = Cow::Owned(next.into_owned());
            }
        }
        cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> (String, LeakCounts) {
        let lf = LeakFilter::new(true, true, "[S]".into(), "[I]".into()).expect("patterns compile");
        let mut c = LeakCounts::default();
        let out = lf.apply(s, &mut c).into_owned();
        (out, c)
    }

    #[test]
    fn secrets_are_redacted() {
        let cases = [
            (
                "key sk-proj-abcdefghijklmnopqrstuvwx1234 here",
                "key [S] here",
            ),
            ("AKIAIOSFODNN7EXAMPLE", "[S]"),
            (
                "token ghp_0123456789abcdefghijABCDEFGHIJ012345",
                "token [S]",
            ),
            (
                "Authorization: Bearer abcdefghijklmnop.qrstuv",
                "Authorization: Bearer [S]",
            ),
            ("xoxb-1234567890-abcdefghij", "[S]"),
            ("api_key = \"abcd1234efgh5678\"", "api_key = \"[S]\""),
            ("password: hunter2hunter2", "password: [S]"),
            (
                "https://bob:s3cret@example.com/x",
                "https://[S]@example.com/x",
            ),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
                "[S]",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY----- after",
                "[S] after",
            ),
            ("-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXk", "[S]"),
        ];
        for (input, want) in cases {
            let (out, c) = f(input);
            assert_eq!(out, want, "input {input:?}");
            assert!(c.secrets >= 1);
        }
    }

    #[test]
    fn internal_addresses_are_redacted_public_kept() {
        let (out, c) =
            f("a 10.1.2.3 b 192.168.0.1 c 8.8.8.8 d 127.0.0.1:8080 e 169.254.169.254 f 100.64.1.1");
        assert_eq!(out, "a [I] b [I] c 8.8.8.8 d [I]:8080 e [I] f [I]");
        assert_eq!(c.internal, 5);
        let (out, _) =
            f("v6 [::1]:80 and fe80::1%eth0 and fd12:3456::7 but 2001:db8::1 and std::1");
        assert_eq!(out, "v6 [I]:80 and [I] and [I] but 2001:db8::1 and std::1");
        let (out, _) =
            f("see db.corp and metadata.google.internal and printer.local, localhost:3000");
        assert_eq!(out, "see [I] and [I] and [I], [I]:3000");
        let (out, c) = f("version 1.2.3.4 of the 999.1.1.1 spec at example.com");
        assert_eq!(out, "version 1.2.3.4 of the 999.1.1.1 spec at example.com");
        assert_eq!(c.internal, 0);
    }

    #[test]
    fn nothing_to_do_borrows() {
        let lf = LeakFilter::new(true, true, "[S]".into(), "[I]".into()).expect("patterns compile");
        let mut c = LeakCounts::default();
        assert!(matches!(
            lf.apply("plain prose here", &mut c),
            Cow::Borrowed(_)
        ));
    }
}
