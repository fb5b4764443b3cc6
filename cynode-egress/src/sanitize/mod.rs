//! The deterministic sanitizer (§4.3): turns an untrusted HTML (or plain-text) page into
//! plain text that is safe to hand to a model as reference data.
//!
//! Pure and deterministic: no I/O, no clock, no randomness; identical input and rules
//! give identical output. Steps, in order:
//!
//! 1. (fetching is the [secure browser](crate::browser)'s job)
//! 2. parse and strip: `strip_elements`, comments, hidden elements (`hidden`,
//!    `aria-hidden="true"`, hiding inline styles, framework "hidden" classes, closed
//!    `<dialog>`), boilerplate (`nav`/`aside`/`footer`, page `header`, class/id hints,
//!    landmark roles); attributes such as `alt` or `title` are never output;
//! 3. extract: the longest `<article>` (or `role=article`), else the longest `<main>`
//!    (or `role=main`) — `main` wins when the article holds less than half of it — else
//!    the densest text block, else the whole text ([`ExtractMode`]);
//! 4. normalise whitespace (done while parsing);
//! 5. drop denylisted sections; 6. drop denylisted lines;
//! 8. leak filter (secrets and internal addresses);
//! 7. truncate on a character boundary with a marker.
//!
//! `SPEC-DIFF`: the leak filter runs *before* truncation (the reference lists it
//! after). Cutting first could split a secret so that its remainder no longer looks
//! like one; filtering first cannot, and the cap still holds because the cut comes last.
//!
//! The parser is a hand-written streaming tokenizer and tree builder (no DOM): one pass
//! over the input writes normalised text and records where candidate blocks start and
//! end, so extraction is a slice of that text.

mod css;
mod entities;
mod error;
mod html;
mod leak;
mod post;
mod rules;
mod sink;
mod tags;

use std::sync::Arc;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

pub use error::SanitizeError;
pub use rules::{
    EXTRA_LINE_PATTERNS, ExtractMode, ExtractionRules, REFERENCE_LINE_PATTERNS,
    REFERENCE_SECTION_MARKERS, SanitizationRules, SanitizeRules, SelectorHints,
};

/// What kind of body is being sanitized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentKind {
    /// `text/html` or `application/xhtml+xml`.
    Html,
    /// `text/plain` (no markup; normalisation and steps 5–8 only).
    PlainText,
}

impl ContentKind {
    /// Maps a `Content-Type` header value (parameters ignored) to a kind, or `None`
    /// for types the sanitizer does not handle.
    pub fn from_content_type(value: &str) -> Option<ContentKind> {
        let mime = value.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case("text/html")
            || mime.eq_ignore_ascii_case("application/xhtml+xml")
        {
            Some(ContentKind::Html)
        } else if mime.eq_ignore_ascii_case("text/plain") {
            Some(ContentKind::PlainText)
        } else {
            None
        }
    }
}

/// Which part of the page the text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Extraction {
    /// An `<article>` element.
    Article,
    /// A `<main>` element or `role=main`.
    Main,
    /// The block holding the most paragraph text.
    DensestBlock,
    /// Everything visible.
    FullText,
}

/// What the sanitizer removed, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// Elements removed by `strip_elements` (and never-rendered ones).
    pub elements: u32,
    /// Hidden elements.
    pub hidden: u32,
    /// Boilerplate containers.
    pub boilerplate: u32,
    /// HTML comments (and bogus comments such as the doctype).
    pub comments: u32,
    /// Denylisted sections.
    pub sections: u32,
    /// Lines dropped by the line denylist (including a dropped title).
    pub lines: u32,
    /// Secrets replaced by the leak filter.
    pub secrets: u32,
    /// Internal addresses and host names replaced by the leak filter.
    pub internal_addresses: u32,
}

/// A sanitized page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sanitized {
    /// The plain text, ending in the truncation marker when cut.
    pub text: String,
    /// The document title (same denylist and leak filter as the text), if any.
    pub title: Option<String>,
    /// Whether the text was cut at the character cap.
    pub truncated: bool,
    /// Where the text came from.
    pub extraction: Extraction,
    /// What was removed.
    pub removed: Removed,
}

/// Per-call options.
#[derive(Clone, Copy, Debug, Default)]
pub struct SanitizeOptions<'a> {
    /// Overrides the mode from `mode_defaults`.
    pub mode: Option<ExtractMode>,
    /// The caller's cap; the effective cap is the smaller of this and
    /// `max_output_chars`.
    pub max_chars: Option<usize>,
    /// Host the page came from, to pick its entry in `mode_defaults`.
    pub host: Option<&'a str>,
}

#[derive(Debug)]
struct Compiled {
    rules: SanitizeRules,
    html: html::HtmlRules,
    lines: Option<Regex>,
    markers: Vec<(String, Option<String>)>,
    leak: leak::LeakFilter,
}

/// A compiled rule set. Cheap to clone (shared); safe to use from many threads.
#[derive(Clone, Debug)]
pub struct Sanitizer {
    inner: Arc<Compiled>,
}

impl Sanitizer {
    /// Compiles `rules`. Fails on an invalid denylist pattern or rule value.
    pub fn new(rules: SanitizeRules) -> Result<Sanitizer, SanitizeError> {
        let ex = &rules.extraction;
        let mut strip = [false; tags::Tag::COUNT];
        let mut strip_other = Vec::new();
        for name in &ex.strip_elements {
            let lower = name.trim().to_ascii_lowercase();
            if lower.is_empty() {
                return Err(SanitizeError::InvalidRule(
                    "empty element name in strip_elements".into(),
                ));
            }
            match tags::lookup(lower.as_bytes()) {
                tags::Tag::Other => strip_other.push(lower.into_bytes().into_boxed_slice()),
                t => strip[t as usize] = true,
            }
        }
        let lower = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let html = html::HtmlRules {
            strip,
            strip_other,
            class_hints: lower(&ex.strip_selector_hints.class_contains),
            id_hints: lower(&ex.strip_selector_hints.id_contains),
            hidden_classes: lower(&ex.hidden_class_names),
            keep_hints: lower(&ex.keep_hints),
        };
        let sa = &rules.sanitization;
        for p in &sa.denylist_line_patterns {
            regex::bytes::RegexBuilder::new(p)
                .unicode(false)
                .build()
                .map_err(|source| SanitizeError::InvalidPattern {
                    pattern: p.clone(),
                    source,
                })?;
        }
        let lines = if sa.denylist_line_patterns.is_empty() {
            None
        } else {
            let joined = sa
                .denylist_line_patterns
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect::<Vec<_>>()
                .join("|");
            let re = regex::bytes::RegexBuilder::new(&joined)
                .multi_line(true)
                .unicode(false)
                .size_limit(64 << 20)
                .build()
                .map_err(|source| SanitizeError::InvalidPattern {
                    pattern: joined.clone(),
                    source,
                })?;
            Some(re)
        };
        let markers = sa
            .denylist_section_markers
            .iter()
            .filter(|m| !m.is_empty())
            .map(|m| (m.clone(), post::end_marker(m)))
            .collect();
        let leak = leak::LeakFilter::new(
            sa.redact_secrets,
            sa.redact_internal_addresses,
            sa.secret_marker.clone(),
            sa.internal_marker.clone(),
        )
        .map_err(|source| SanitizeError::InvalidPattern {
            pattern: "built-in leak filter".into(),
            source,
        })?;
        Ok(Sanitizer {
            inner: Arc::new(Compiled {
                rules,
                html,
                lines,
                markers,
                leak,
            }),
        })
    }

    /// The rules this sanitizer was built from.
    pub fn rules(&self) -> &SanitizeRules {
        &self.inner.rules
    }

    /// Sanitizes with the rules' default mode and cap.
    pub fn sanitize(&self, body: &str, kind: ContentKind) -> Sanitized {
        self.sanitize_with(body, kind, &SanitizeOptions::default())
    }

    /// Sanitizes with per-call options.
    pub fn sanitize_with(
        &self,
        body: &str,
        kind: ContentKind,
        opts: &SanitizeOptions<'_>,
    ) -> Sanitized {
        let c = &*self.inner;
        let doc = match kind {
            ContentKind::Html => html::parse(body, &c.html),
            ContentKind::PlainText => html::plain(body),
        };
        let mode = opts.mode.unwrap_or_else(|| self.mode_for(opts.host));
        let (range, extraction) = choose(&doc, mode);
        let text = doc.text[range].trim();

        let starts = post::line_starts(text);
        let (drop, sections, mut lines) =
            post::mark_lines(text, &starts, &c.markers, c.lines.as_ref());
        let kept = post::join_kept(text, &starts, &drop);

        let mut counts = leak::LeakCounts::default();
        let mut out = c.leak.apply(&kept, &mut counts).into_owned();

        let sa = &c.rules.sanitization;
        let cap = opts
            .max_chars
            .map_or(sa.max_output_chars, |m| m.min(sa.max_output_chars));
        let truncated = post::truncate(&mut out, cap, &sa.truncation_marker);

        let title = doc.title.as_deref().and_then(|t| {
            if c.lines.as_ref().is_some_and(|re| re.is_match(t.as_bytes())) {
                lines += 1;
                return None;
            }
            let t = c.leak.apply(t, &mut counts).into_owned();
            let mut t = t;
            post::truncate(&mut t, 1000, "…");
            Some(t)
        });

        Sanitized {
            text: out,
            title,
            truncated,
            extraction,
            removed: Removed {
                elements: doc.counts.elements,
                hidden: doc.counts.hidden,
                boilerplate: doc.counts.boilerplate,
                comments: doc.counts.comments,
                sections,
                lines,
                secrets: counts.secrets,
                internal_addresses: counts.internal,
            },
        }
    }

    fn mode_for(&self, host: Option<&str>) -> ExtractMode {
        let m = &self.inner.rules.extraction.mode_defaults;
        host.and_then(|h| m.get(&h.to_ascii_lowercase()))
            .or_else(|| m.get("default"))
            .copied()
            .unwrap_or_default()
    }
}

/// Share of the page's text a densest block needs in `auto` mode to count as found.
const DENSE_SHARE: f64 = 0.25;

fn choose(doc: &html::Doc, mode: ExtractMode) -> (std::ops::Range<usize>, Extraction) {
    let full = 0..doc.text.len();
    let non_empty = |r: &std::ops::Range<usize>| !doc.text[r.clone()].trim().is_empty();
    if mode == ExtractMode::FullText {
        return (full, Extraction::FullText);
    }
    let article = doc.article.clone().filter(non_empty);
    let main = doc.main.clone().filter(non_empty);
    match (article, main) {
        (Some(a), Some(m)) if a.len() * 2 < m.len() => return (m, Extraction::Main),
        (Some(a), _) => return (a, Extraction::Article),
        (None, Some(m)) => return (m, Extraction::Main),
        (None, None) => {}
    }
    if let Some((_, r)) = doc.densest.clone() {
        let whole = r.start == 0 && r.end == doc.text.len();
        let share_ok = (r.len() as f64) >= DENSE_SHARE * doc.text.len() as f64;
        if !whole && non_empty(&r) && (mode == ExtractMode::Article || share_ok) {
            return (r, Extraction::DensestBlock);
        }
    }
    (full, Extraction::FullText)
}

/// Runs the sanitizer on arbitrary bytes with several rule variants and checks the
/// invariants that must hold for any input: no panic, determinism, the cap holds,
/// no control characters in the output. Used by the fuzz target and by tests.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use std::sync::OnceLock;
    static SANITIZERS: OnceLock<Vec<Sanitizer>> = OnceLock::new();
    let list = SANITIZERS.get_or_init(|| {
        let mut small = SanitizeRules::default();
        small.sanitization.max_output_chars = 7;
        let mut bare = SanitizeRules::default();
        bare.extraction.strip_elements.clear();
        bare.extraction.strip_selector_hints = SelectorHints {
            class_contains: vec![],
            id_contains: vec![],
        };
        bare.sanitization.denylist_line_patterns.clear();
        [SanitizeRules::default(), small, bare]
            .into_iter()
            .filter_map(|r| Sanitizer::new(r).ok())
            .collect()
    });
    let text = String::from_utf8_lossy(data);
    for s in list {
        for kind in [ContentKind::Html, ContentKind::PlainText] {
            for mode in [
                ExtractMode::Auto,
                ExtractMode::Article,
                ExtractMode::FullText,
            ] {
                let opts = SanitizeOptions {
                    mode: Some(mode),
                    ..Default::default()
                };
                let a = s.sanitize_with(&text, kind, &opts);
                let b = s.sanitize_with(&text, kind, &opts);
                assert_eq!(a, b, "sanitizer output is not deterministic");
                let cap = s.rules().sanitization.max_output_chars;
                let marker = &s.rules().sanitization.truncation_marker;
                let body = if a.truncated {
                    a.text.strip_suffix(marker.as_str())
                } else {
                    Some(a.text.as_str())
                };
                let body = body.unwrap_or_else(|| panic!("truncated text lacks the marker"));
                assert!(body.chars().count() <= cap, "cap exceeded");
                assert!(
                    !a.text
                        .chars()
                        .any(|c| c != '\n' && (c.is_control() || sink::invisible(c))),
                    "control or invisible character in output"
                );
                assert!(!a.text.contains("\n\n\n"), "more than one blank line");
            }
        }
    }
}

#[cfg(test)]
mod tests;
