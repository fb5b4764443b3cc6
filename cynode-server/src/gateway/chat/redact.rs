//! Secret redaction (§7.5), applied to every chat message before it is stored or sent
//! to a model, and to every answer before it is stored or returned.
//!
//! Rules:
//! - `sk-[A-Za-z0-9\-._]{20,}` → `SECRET_REDACTED`;
//! - `(api[_-]?key|secret|password|token|bearer)\s*[:=]\s*<value>` (case-insensitive;
//!   the value is a run of non-space URL-safe or punctuation characters; an optional
//!   quote may close the keyword and open the value, so `"password": "x"` is caught
//!   too) → `<keyword>: SECRET_REDACTED`;
//! - any configured literal secret (e.g. a provider key the gateway holds) →
//!   `SECRET_REDACTED`.
//!
//! Every rule records the redaction kind `api_key`.

use std::sync::LazyLock;

use regex::Regex;

/// The replacement text.
pub const REDACTED: &str = "SECRET_REDACTED";
/// The only redaction kind recorded today.
pub const KIND_API_KEY: &str = "api_key";

#[allow(clippy::expect_used)]
static SK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"sk-[A-Za-z0-9\-._]{20,}").expect("static regex"));
#[allow(clippy::expect_used)]
static KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(api[_-]?key|secret|password|token|bearer)["']?\s*[:=]\s*["']?[A-Za-z0-9\-._~+/=!@#$%^&*?|:]+["']?"#,
    )
    .expect("static regex")
});

/// Keywords of the second rule, lower-case, for the streaming split check.
const KEYWORDS: [&str; 7] = [
    "apikey", "api_key", "api-key", "secret", "password", "token", "bearer",
];

/// Redacts secrets from text; knows extra literal secrets to remove.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    literals: Vec<String>,
}

impl Redactor {
    /// A redactor that also removes these literal values (empty or very short values are
    /// ignored: they would mangle ordinary text).
    pub fn new(literals: impl IntoIterator<Item = String>) -> Self {
        let mut literals: Vec<String> = literals
            .into_iter()
            .filter(|s| s.chars().count() >= 8)
            .collect();
        // Longest first, so a key that contains another is removed whole.
        literals.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { literals }
    }

    /// The redacted text and whether anything was replaced.
    pub fn redact(&self, text: &str) -> (String, bool) {
        let mut hit = false;
        let mut out = text.to_string();
        for lit in &self.literals {
            if out.contains(lit.as_str()) {
                out = out.replace(lit.as_str(), REDACTED);
                hit = true;
            }
        }
        if SK.is_match(&out) {
            out = SK.replace_all(&out, REDACTED).into_owned();
            hit = true;
        }
        if KEYWORD.is_match(&out) {
            out = KEYWORD
                .replace_all(&out, |c: &regex::Captures<'_>| {
                    format!("{}: {REDACTED}", &c[1])
                })
                .into_owned();
            hit = true;
        }
        (out, hit)
    }

    /// Whether a streamed text may be cut at byte `i` (a whitespace position) without
    /// splitting a possible match: no rule matches across whitespace except the keyword
    /// rule between keyword, separator and value.
    fn safe_cut(&self, text: &str, i: usize) -> bool {
        let before = text[..i]
            .trim_end()
            .trim_end_matches(['"', '\''])
            .to_ascii_lowercase();
        if before.ends_with(':') || before.ends_with('=') {
            return false;
        }
        if KEYWORDS.iter().any(|k| before.ends_with(k)) {
            return false;
        }
        // A configured literal that contains whitespace could straddle the cut.
        !self
            .literals
            .iter()
            .any(|l| l.contains(char::is_whitespace))
    }
}

/// Redacts a streamed answer incrementally: text is released only up to a point where
/// no secret can straddle the cut, so the concatenation of everything released equals
/// the redaction of the whole text.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Redactor,
    pending: String,
    released: String,
    hit: bool,
}

impl StreamRedactor {
    /// A stream redactor over these rules.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            pending: String::new(),
            released: String::new(),
            hit: false,
        }
    }

    /// Adds raw text; returns the redacted text that is safe to send now (may be
    /// empty).
    pub fn push(&mut self, raw: &str) -> String {
        self.pending.push_str(raw);
        let cut = self
            .pending
            .char_indices()
            .rev()
            .filter(|(_, c)| c.is_whitespace())
            .map(|(i, _)| i)
            .find(|&i| self.redactor.safe_cut(&self.pending, i));
        let Some(cut) = cut else {
            return String::new();
        };
        let rest = self.pending.split_off(cut);
        let head = std::mem::replace(&mut self.pending, rest);
        self.release(&head)
    }

    /// Everything still held back, redacted (call once at the end).
    pub fn finish(&mut self) -> String {
        let head = std::mem::take(&mut self.pending);
        self.release(&head)
    }

    fn release(&mut self, raw: &str) -> String {
        let (out, hit) = self.redactor.redact(raw);
        self.hit |= hit;
        self.released.push_str(&out);
        out
    }

    /// All redacted text released so far.
    pub fn released(&self) -> &str {
        &self.released
    }

    /// Whether anything was redacted.
    pub fn redacted_any(&self) -> bool {
        self.hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_rules_apply() {
        let r = Redactor::default();
        let (out, hit) = r.redact("my key is sk-abcdefghijklmnopqrstuvwxyz012 ok");
        assert!(hit);
        assert_eq!(out, "my key is SECRET_REDACTED ok");
        let (out, hit) = r.redact("password = hunter2! and API_KEY: abc.def");
        assert!(hit);
        assert_eq!(
            out,
            "password: SECRET_REDACTED and API_KEY: SECRET_REDACTED"
        );
        let (out, _) = r.redact(r#"{"token": "abc123"}"#);
        assert_eq!(out, r#"{"token: SECRET_REDACTED}"#);
        let (out, hit) = r.redact("sk-short and a password field");
        assert!(!hit);
        assert_eq!(out, "sk-short and a password field");
    }

    #[test]
    fn literals_are_removed() {
        let r = Redactor::new(["mock-bearer-key-123".to_string(), "x".into()]);
        let (out, hit) = r.redact("Bearer mock-bearer-key-123 x");
        assert!(hit);
        assert_eq!(out, "Bearer SECRET_REDACTED x");
    }

    #[test]
    fn streaming_equals_whole_text_for_every_split() {
        let text = "hello token : abc123 and sk-ABCDEFGHIJKLMNOPQRSTUVWXYZ and password=p4ss done";
        let r = Redactor::new(["literal-secret-9".to_string()]);
        let whole = r.redact(text).0;
        for step in 1..8 {
            let mut s = StreamRedactor::new(r.clone());
            let mut out = String::new();
            let chars: Vec<char> = text.chars().collect();
            for chunk in chars.chunks(step) {
                out.push_str(&s.push(&chunk.iter().collect::<String>()));
            }
            out.push_str(&s.finish());
            assert_eq!(out, whole, "step {step}");
            assert_eq!(s.released(), whole);
            assert!(s.redacted_any());
        }
    }
}
