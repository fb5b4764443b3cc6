//! Sanitizer rules (§4.4 groups `extraction` and `sanitization`) with the reference
//! defaults. Field names follow the rules YAML (`strip_selector_hints`,
//! `sanitization.max_output_chars`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What to extract from a page (§4.3 step 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractMode {
    /// The article if one is found, else the whole text.
    #[default]
    Auto,
    /// The `article`/`main` element, else the densest text block.
    Article,
    /// All visible text of the page.
    FullText,
}

/// Class and id hints that mark boilerplate containers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectorHints {
    /// Hints matched against `class` values.
    pub class_contains: Vec<String>,
    /// Hints matched against `id` values.
    pub id_contains: Vec<String>,
}

impl Default for SelectorHints {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        SelectorHints {
            class_contains: s(&[
                "nav", "footer", "header", "sidebar", "cookie", "consent", "ad",
            ]),
            id_contains: s(&["nav", "footer", "header", "sidebar", "cookie", "consent"]),
        }
    }
}

/// The `extraction` group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractionRules {
    /// Mode per host, with `default` for all others (reference: `{default: auto}`).
    pub mode_defaults: BTreeMap<String, ExtractMode>,
    /// Elements removed with their content. `script`, `style`, `template`, `noembed`,
    /// `noframes` and head metadata are always removed (browsers never render them).
    pub strip_elements: Vec<String>,
    /// Boilerplate containers by class/id.
    ///
    /// Matching is per segment, case-insensitive: `site-header` matches `header`,
    /// `navbar` and `topnav` match `nav`, but the two-letter `ad` matches only the
    /// segments `ad` and `ads` (so `header`, `lead`, `shadow` survive). `nav`, `aside`
    /// and `footer` elements, `header` elements outside `article`/`main`, and the ARIA
    /// roles `navigation`, `banner`, `contentinfo`, `complementary`, `search` are
    /// boilerplate whatever their class.
    pub strip_selector_hints: SelectorHints,
    /// Class names that hide an element in common CSS frameworks (exact token match).
    pub hidden_class_names: Vec<String>,
    /// Class/id segments that veto boilerplate removal (`content`, `article`, ...), so a
    /// `main-content-with-sidebar` wrapper is kept.
    pub keep_hints: Vec<String>,
}

impl Default for ExtractionRules {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        ExtractionRules {
            mode_defaults: BTreeMap::from([("default".to_string(), ExtractMode::Auto)]),
            strip_elements: s(&[
                "script", "style", "noscript", "svg", "canvas", "iframe", "form", "template",
                "object", "embed", "applet", "math", "frameset", "frame", "button", "select",
                "textarea", "datalist", "audio", "video",
            ]),
            strip_selector_hints: SelectorHints::default(),
            hidden_class_names: s(&[
                "hidden",
                "hide",
                "d-none",
                "sr-only",
                "visually-hidden",
                "visuallyhidden",
                "screen-reader-text",
                "invisible",
                "is-hidden",
                "u-hidden",
            ]),
            keep_hints: s(&[
                "content", "article", "main", "post", "entry", "story", "body",
            ]),
        }
    }
}

/// The `sanitization` group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SanitizationRules {
    /// Character cap of the output (before the truncation marker).
    pub max_output_chars: usize,
    /// A line matching any of these regexes is dropped. Patterns are matched against
    /// the whole text with multi-line mode on, so `\s+` also spans a line break
    /// (an injection split over two lines drops both). Matching uses ASCII semantics
    /// (`(?i)`, `\w`, `\s`, `\b` are ASCII; a non-ASCII literal matches exactly),
    /// which keeps it fast; the text has already had invisible characters removed and
    /// Unicode spaces turned into ASCII ones.
    pub denylist_line_patterns: Vec<String>,
    /// A line starting with a marker starts a dropped section: `BEGIN X` runs to a line
    /// starting with `END X` (inclusive), any other marker to the next blank line.
    /// Case-sensitive.
    pub denylist_section_markers: Vec<String>,
    /// Appended when the text was cut.
    pub truncation_marker: String,
    /// Replace API keys, tokens, private keys and credentials with a marker.
    pub redact_secrets: bool,
    /// Replace internal addresses and host names with a marker.
    pub redact_internal_addresses: bool,
    /// Replacement for a secret.
    pub secret_marker: String,
    /// Replacement for an internal address.
    pub internal_marker: String,
}

/// The reference line patterns (§4.3 step 6).
pub const REFERENCE_LINE_PATTERNS: &[&str] = &[
    r"(?i)ignore\s+previous\s+instructions",
    r"(?i)system\s+prompt",
    r"(?i)developer\s+message",
    r"(?i)jailbreak",
    r"(?i)you\s+are\s+chatgpt",
];

/// Further default patterns for the common families of prompt injection: instructions
/// to ignore, disregard, forget or override earlier instructions or guidelines; mode
/// switches ("developer mode", "you are now ..."); text addressed to AI models or
/// assistants; requests to reveal hidden prompts; exfiltration of conversations or
/// credentials to a URL or address.
pub const EXTRA_LINE_PATTERNS: &[&str] = &[
    r"(?i)(?-u:\b)(?:ignore|disregard|forget|override|bypass|skip|drop)\s+(?:(?:all|any|the|your|my|these|those|of|every)\s+){0,3}(?:previous|prior|preceding|earlier|above|former|original|existing|initial|old|system)\s+(?:[a-z]+\s+){0,2}?(?:instructions?|prompts?|directions?|directives?|rules?|guidelines?|messages?|context|commands?|guidance|constraints?|orders?)",
    r"(?i)(?-u:\b)(?:disregard|ignore|override|bypass|forget|abandon)\s+(?:(?:all|any|of)\s+){0,2}(?:your|its|the|these|those|my)\s+(?:[a-z]+\s+){0,2}?(?:instructions?|guidelines?|rules?|programming|directives?|safety|polic(?:y|ies)|restrictions?|training|filters?|guardrails?)",
    r"(?i)(?-u:\b)forget\s+(?:everything|all|anything)\s+(?:(?:you\s+(?:were|have\s+been)\s+told)|(?:you\s+know)|above|before|prior|previously|so\s+far|earlier)",
    r"(?i)(?-u:\b)(?:you\s+are|you're|you\s+will\s+be|act)\s+now\s+(?:in\s+|an?\s+|as\s+)?(?:developer|god|admin|debug|unrestricted|unfiltered|jailbroken|dan(?-u:\b))",
    r"(?i)(?-u:\b)(?:developer|god|dan|jailbreak|unrestricted)\s+mode(?-u:\b)",
    r"(?i)(?-u:\b)(?:system|admin|security)\s+override(?-u:\b)",
    r"(?i)(?-u:\b)(?:note|message|instructions?|attention|reminder)\s+(?:to|for)\s+(?:all\s+|any\s+)?(?:ai|llms?|language\s+models?|ai\s+(?:assistants?|agents?|models?|systems?)|assistants?|chatbots?|gpt|bots?)(?-u:\b)",
    r"(?im)^[^\w\n]{0,8}(?:ai|llm|assistant|chatbot|gpt|chatgpt|claude|model)(?:[ \t]+(?:assistant|agent|model))?[ \t]*:",
    r"(?i)(?-u:\b)(?:reveal|print|output|show|repeat|leak|display|dump)\s+(?:[a-z']+\s+){0,3}?(?:system|hidden|initial|secret|original)\s+(?:prompt|instructions?|message)",
    r"(?i)(?-u:\b)new\s+instructions?\s*:",
    r"(?im)^[^\w\n]{0,8}#{2,}\s*(?:instructions?|system|prompt|response)(?-u:\b)",
    r"(?i)(?-u:\b)do\s+anything\s+now(?-u:\b)",
    r"(?i)(?-u:\b)(?:send|forward|exfiltrate|upload|post|leak|email)\s+(?:[a-z']+\s+){0,4}?(?:conversation|chat\s+history|system\s+prompt|credentials|api\s+keys?|secrets?|tokens?|passwords?|messages?)\s+(?:[a-z]+\s+){0,2}?to\s+(?:https?://|[a-z0-9._%+\-]+@)",
];

/// The reference section markers (§4.3 step 5).
pub const REFERENCE_SECTION_MARKERS: &[&str] = &[
    "BEGIN PROMPT",
    "END PROMPT",
    "INSTRUCTIONS:",
    "SYSTEM:",
    "DEVELOPER:",
];

impl Default for SanitizationRules {
    fn default() -> Self {
        SanitizationRules {
            max_output_chars: 20_000,
            denylist_line_patterns: REFERENCE_LINE_PATTERNS
                .iter()
                .chain(EXTRA_LINE_PATTERNS)
                .map(|s| s.to_string())
                .collect(),
            denylist_section_markers: REFERENCE_SECTION_MARKERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            truncation_marker: "\n[truncated]".to_string(),
            redact_secrets: true,
            redact_internal_addresses: true,
            secret_marker: "[redacted-secret]".to_string(),
            internal_marker: "[redacted-internal]".to_string(),
        }
    }
}

/// Everything the sanitizer needs: the `extraction` and `sanitization` groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SanitizeRules {
    /// Extraction rules.
    pub extraction: ExtractionRules,
    /// Text rules.
    pub sanitization: SanitizationRules,
}
