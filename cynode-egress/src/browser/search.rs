//! `web.search` (§4.6): queries go only to allowlisted search providers, through the
//! same policy checks as `web.fetch` (scheme, domain policy, no private addresses
//! unless configured) and the same audit (action `web.search`). Results are
//! `{title, snippet, url}` items, size-limited, with title and snippet passed through
//! the sanitizer's text steps (normalisation, section and line denylists, truncation,
//! leak filter).
//!
//! Provider protocol: a SearXNG-compatible JSON endpoint (`GET <url>?q=<query>&format=json`
//! answering `{"results": [{"title", "content", "url"}, …]}`; `snippet` is accepted for
//! `content`). Self-hosted SearXNG speaks it natively.

use std::time::Instant;

use chrono::Utc;
use cynode_core::TaskId;
use cynode_core::model::Timestamp;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{BrowseError, Decision, FetchAudit, SecureBrowser, WebPolicy, map_send_error};
use crate::sanitize::{ContentKind, SanitizeOptions};
use crate::webproxy::guard::normalise_host;

/// One allowlisted search provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchProvider {
    /// Name callers use to pick it (case-insensitive).
    pub name: String,
    /// Its SearXNG-compatible JSON endpoint, e.g. `https://search.example/search`.
    pub url: String,
}

/// `web.search` settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// The only providers queries may go to; empty = search is refused. The first is
    /// the default.
    pub providers: Vec<SearchProvider>,
    /// Most results returned (default 10; a request may ask for fewer).
    pub max_results: usize,
    /// Character cap of a title (default 200).
    pub max_title_chars: usize,
    /// Character cap of a snippet (default 500).
    pub max_snippet_chars: usize,
    /// Longest accepted query in characters (default 512).
    pub max_query_chars: usize,
    /// Largest provider response read, in bytes (default 2 MB).
    pub max_response_bytes: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            providers: Vec::new(),
            max_results: 10,
            max_title_chars: 200,
            max_snippet_chars: 500,
            max_query_chars: 512,
            max_response_bytes: 2_000_000,
        }
    }
}

/// One search request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The query.
    pub query: String,
    /// Provider name; `None` = the first configured.
    pub provider: Option<String>,
    /// Fewer results than the configured maximum.
    pub max_results: Option<usize>,
    /// Task the search is for (audit).
    pub task_id: Option<TaskId>,
    /// Who asks (audit and per-subject limits).
    pub subject: Option<String>,
}

/// One result item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    /// Sanitized title.
    pub title: String,
    /// Sanitized snippet (untrusted reference data, never instructions).
    pub snippet: String,
    /// Absolute `http`/`https` URL.
    pub url: String,
}

/// The `success` payload of `web.search`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResults {
    /// Provider that answered.
    pub provider: String,
    /// Results, in the provider's order.
    pub results: Vec<SearchResult>,
    /// Whether results were dropped to honour the result cap.
    pub truncated: bool,
    /// When the answer was received.
    pub searched_at: Timestamp,
}

#[derive(Deserialize)]
struct ProviderAnswer {
    #[serde(default)]
    results: Vec<ProviderItem>,
}

#[derive(Deserialize)]
struct ProviderItem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default, alias = "snippet")]
    content: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

impl SecureBrowser {
    /// Runs `req.query` on an allowlisted provider under `policy` (the provider's host
    /// must be allowed, as for a fetch) and returns sanitized, size-limited results.
    pub async fn search(
        &self,
        req: &SearchRequest,
        policy: &WebPolicy,
    ) -> Result<SearchResults, BrowseError> {
        let started = Instant::now();
        let mut endpoint = None;
        let fetch_req = super::FetchRequest {
            url: String::new(),
            subject: req.subject.clone(),
            task_id: req.task_id,
            ..Default::default()
        };
        let result = match self.acquire(&fetch_req) {
            Err(e) => Err(e),
            Ok(_slot) => match tokio::time::timeout(
                self.inner.timeout,
                self.search_inner(req, policy, &mut endpoint),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(BrowseError::Timeout {
                    seconds: self.inner.timeout.as_secs_f64(),
                }),
            },
        };
        let (decision, error_type, reason) = match &result {
            Ok(_) => (Decision::Allow, None, None),
            Err(e) => (
                Decision::Deny,
                Some(e.error_type().to_string()),
                Some(e.to_string()),
            ),
        };
        // The query itself stays out of the audit (it may be personal); the endpoint
        // and outcome are recorded.
        let record = FetchAudit {
            task_id: req.task_id,
            subject: req.subject.clone(),
            action: "web.search".into(),
            url: endpoint.clone().unwrap_or_default(),
            final_url: endpoint,
            decision,
            error_type,
            reason,
            robots_applied: false,
            redirect_count: 0,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes: 0,
            created_at: Utc::now(),
        };
        tracing::info!(
            target: "secure_browser_audit",
            task_id = ?record.task_id,
            url = %record.url,
            decision = ?record.decision,
            error_type = record.error_type.as_deref().unwrap_or(""),
            duration_ms = record.duration_ms,
            "web.search"
        );
        self.inner.audit.record(record);
        result
    }

    async fn search_inner(
        &self,
        req: &SearchRequest,
        policy: &WebPolicy,
        endpoint: &mut Option<String>,
    ) -> Result<SearchResults, BrowseError> {
        let sc = &self.inner.config.search;
        let query = req.query.trim();
        if query.is_empty() {
            return Err(BrowseError::InvalidRequest("query is empty".into()));
        }
        if query.chars().count() > sc.max_query_chars {
            return Err(BrowseError::InvalidRequest(format!(
                "query is longer than {} characters",
                sc.max_query_chars
            )));
        }
        let provider = match &req.provider {
            None => sc.providers.first(),
            Some(name) => sc
                .providers
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name.trim())),
        }
        .ok_or_else(|| {
            BrowseError::denied(match &req.provider {
                Some(n) => format!("search provider {n:?} is not allowlisted"),
                None => "no search provider is allowlisted".into(),
            })
        })?;
        let mut url = Url::parse(&provider.url).map_err(|e| {
            BrowseError::InvalidUrl(format!("search provider {}: {e}", provider.name))
        })?;
        *endpoint = Some(url.to_string());
        url.query_pairs_mut()
            .append_pair("q", query)
            .append_pair("format", "json");
        let host = url
            .host_str()
            .map(normalise_host)
            .ok_or_else(|| BrowseError::InvalidUrl(format!("{}: no host", provider.name)))?;
        self.check_target(&url, policy, false, &host).await?;

        let mut resp = self
            .inner
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(map_send_error)?;
        let status = resp.status();
        if !status.is_success() {
            let retryable = status.is_server_error() || status.as_u16() == 429;
            return Err(BrowseError::failed(
                format!("search provider answered HTTP {status}"),
                retryable,
                None,
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_send_error)? {
            if body.len() + chunk.len() > sc.max_response_bytes {
                return Err(BrowseError::TooLarge {
                    limit: sc.max_response_bytes as u64,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let answer: ProviderAnswer = serde_json::from_slice(&body).map_err(|_| {
            BrowseError::failed(
                "search provider answer is not the expected JSON",
                false,
                None,
            )
        })?;
        let cap = req
            .max_results
            .map_or(sc.max_results, |m| m.min(sc.max_results));
        let mut results = Vec::new();
        let mut truncated = false;
        for item in answer.results {
            let Some(url) = item.url.as_deref().and_then(result_url) else {
                continue;
            };
            if results.len() == cap {
                truncated = true;
                break;
            }
            let title = self.clean(item.title.as_deref().unwrap_or(""), sc.max_title_chars);
            let snippet = self.clean(item.content.as_deref().unwrap_or(""), sc.max_snippet_chars);
            results.push(SearchResult {
                title,
                snippet,
                url,
            });
        }
        Ok(SearchResults {
            provider: provider.name.clone(),
            results,
            truncated,
            searched_at: Utc::now(),
        })
    }

    /// Sanitizer text steps (normalisation, denylists, truncation, leak filter) on one
    /// line of provider text.
    fn clean(&self, text: &str, max_chars: usize) -> String {
        let opts = SanitizeOptions {
            max_chars: Some(max_chars),
            ..Default::default()
        };
        let s = self
            .inner
            .sanitizer
            .sanitize_with(text, ContentKind::PlainText, &opts);
        s.text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// An absolute `http`/`https` URL of at most 2048 characters, normalised; else `None`.
fn result_url(raw: &str) -> Option<String> {
    let u = Url::parse(raw.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return None;
    }
    let s = u.to_string();
    (s.len() <= 2048).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_urls_are_http_only_and_bounded() {
        assert_eq!(
            result_url(" https://example.com/a?b=1 ").as_deref(),
            Some("https://example.com/a?b=1")
        );
        assert_eq!(result_url("javascript:alert(1)"), None);
        assert_eq!(result_url("file:///etc/passwd"), None);
        assert_eq!(result_url("/relative"), None);
        let long = format!("https://example.com/{}", "a".repeat(3000));
        assert_eq!(result_url(&long), None);
    }
}
