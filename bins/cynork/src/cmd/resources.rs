//! `prefs`, `settings`, `nodes`, `creds`, `audit`, `project` (cli.md §13): one request
//! each; the gateway's body is printed as pretty JSON (`project set` prints
//! `active_project=…` and saves it in the config file). Flags and the positional word
//! form (`prefs set scope type user key k value '"v"'`) are both accepted.

use cynode_client::gateway::Method;
use serde_json::{Map, Value, json};

use crate::app::Ctx;
use crate::cli::{
    AuditCmd, CredsCmd, NodesCmd, Paging, PrefArgs, PrefsCmd, ProjectCmd, SettingsCmd,
};
use crate::config;
use crate::error::{CliError, CliResult};
use crate::util::{out, outln, print_json};

/// Named values found in positional words.
#[derive(Debug, Default, PartialEq)]
pub struct WordArgs {
    /// `scope type X`, `scope_type X`.
    pub scope_type: Option<String>,
    /// `scope id X`, `scope_id X`.
    pub scope_id: Option<String>,
    /// `key X`.
    pub key: Option<String>,
    /// `value X`.
    pub value: Option<String>,
    /// `reason X`.
    pub reason: Option<String>,
}

/// Reads `name value` pairs out of stray words; unknown words are ignored.
pub fn parse_words(words: &[String]) -> WordArgs {
    let mut w = WordArgs::default();
    let mut i = 0;
    while i < words.len() {
        let word = words[i].trim_start_matches('-').replace('-', "_");
        let (slot, skip) = match word.as_str() {
            "scope" => match words.get(i + 1).map(String::as_str) {
                Some("type") => (Some(&mut w.scope_type), 2),
                Some("id") => (Some(&mut w.scope_id), 2),
                _ => (None, 1),
            },
            "scope_type" => (Some(&mut w.scope_type), 1),
            "scope_id" => (Some(&mut w.scope_id), 1),
            "key" => (Some(&mut w.key), 1),
            "value" => (Some(&mut w.value), 1),
            "reason" => (Some(&mut w.reason), 1),
            _ => (None, 1),
        };
        match slot {
            Some(s) if i + skip < words.len() => {
                *s = Some(words[i + skip].clone());
                i += skip + 1;
            }
            _ => i += skip,
        }
    }
    w
}

fn json_value(text: &str) -> CliResult<Value> {
    serde_json::from_str(text).map_err(|e| CliError::usage(format!("invalid JSON value: {e}")))
}

/// Prints a body: pretty JSON, raw text, or `empty` when there is none.
fn show(body: Value, empty: Option<Value>) {
    match body {
        Value::Null => {
            if let Some(e) = empty {
                print_json(&e);
            }
        }
        Value::String(s) => out(&format!("{s}\n")),
        v => print_json(&v),
    }
}

fn pairs<'a>(items: &'a [(&'a str, Option<String>)]) -> Vec<(&'a str, &'a str)> {
    items
        .iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect()
}

struct Scope {
    scope_type: Option<String>,
    scope_id: Option<String>,
    key: Option<String>,
    value: Option<String>,
    reason: Option<String>,
}

fn scope_of(a: &PrefArgs) -> Scope {
    let w = parse_words(&a.words);
    Scope {
        scope_type: a.scope_type.clone().or(w.scope_type),
        scope_id: a.scope_id.clone().or(w.scope_id),
        key: a.key.clone().or(w.key),
        value: w.value,
        reason: w.reason,
    }
}

/// `prefs …`.
pub async fn prefs(ctx: &Ctx, c: PrefsCmd) -> CliResult {
    let client = ctx.authed()?;
    match c {
        PrefsCmd::List(a) => {
            let s = scope_of(&a);
            let q = [
                ("scope_type", s.scope_type),
                ("scope_id", s.scope_id),
                ("key", s.key),
            ];
            let body = client
                .request_value(Method::GET, &["v1", "prefs"], &pairs(&q), None)
                .await?;
            show(body, Some(json!([])));
        }
        PrefsCmd::Get(a) => {
            let s = scope_of(&a);
            let q = [
                ("scope_type", s.scope_type),
                ("scope_id", s.scope_id),
                ("key", s.key),
            ];
            let body = client
                .request_value(Method::GET, &["v1", "prefs", "effective"], &pairs(&q), None)
                .await?;
            show(body, Some(json!({})));
        }
        PrefsCmd::Set {
            scope,
            value,
            value_file,
            reason,
        } => {
            let s = scope_of(&scope);
            let text = match (value, value_file, s.value) {
                (Some(v), _, _) => Some(v),
                (None, Some(f), _) => Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| CliError::usage(format!("read {}: {e}", f.display())))?,
                ),
                (None, None, w) => w,
            };
            let mut body = Map::new();
            for (k, v) in [
                ("scope_type", s.scope_type),
                ("scope_id", s.scope_id),
                ("key", s.key),
                ("reason", reason.or(s.reason)),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            if let Some(t) = text {
                body.insert("value".into(), json_value(&t)?);
            }
            if let Some(v) = scope.expected_version {
                body.insert("expected_version".into(), json!(v));
            }
            let body = client
                .request_value(
                    Method::POST,
                    &["v1", "prefs"],
                    &[],
                    Some(&Value::Object(body)),
                )
                .await?;
            show(body, None);
        }
        PrefsCmd::Delete(a) => {
            let s = scope_of(&a);
            let q = [
                ("scope_type", s.scope_type),
                ("scope_id", s.scope_id),
                ("key", s.key),
            ];
            let body = client
                .request_value(Method::DELETE, &["v1", "prefs"], &pairs(&q), None)
                .await?;
            show(body, None);
        }
        PrefsCmd::Effective {
            scope,
            task_id,
            project_id,
        } => {
            let s = scope_of(&scope);
            let q = [
                ("scope_type", s.scope_type),
                ("scope_id", s.scope_id),
                ("key", s.key),
                ("task_id", task_id),
                ("project_id", project_id),
            ];
            let body = client
                .request_value(Method::GET, &["v1", "prefs", "effective"], &pairs(&q), None)
                .await?;
            show(body, Some(json!({})));
        }
    }
    Ok(())
}

/// `settings get|set`.
pub async fn settings(ctx: &Ctx, c: SettingsCmd) -> CliResult {
    let client = ctx.authed()?;
    match c {
        SettingsCmd::Get { key, words } => {
            let w = parse_words(&words.words);
            let q = [("key", key.or(w.key))];
            let body = client
                .request_value(Method::GET, &["v1", "settings"], &pairs(&q), None)
                .await?;
            show(body, Some(json!({})));
        }
        SettingsCmd::Set {
            key,
            value,
            reason,
            words,
        } => {
            let w = parse_words(&words.words);
            let mut body = Map::new();
            if let Some(k) = key.or(w.key) {
                body.insert("key".into(), json!(k));
            }
            if let Some(v) = value.or(w.value) {
                body.insert("value".into(), json_value(&v)?);
            }
            if let Some(r) = reason.or(w.reason) {
                body.insert("reason".into(), json!(r));
            }
            let body = client
                .request_value(
                    Method::POST,
                    &["v1", "settings"],
                    &[],
                    Some(&Value::Object(body)),
                )
                .await?;
            show(body, None);
        }
    }
    Ok(())
}

fn page_query(p: &Paging) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("limit", p.limit.map(|l| l.clamp(1, 200).to_string())),
        ("cursor", p.cursor.clone()),
    ]
}

/// `nodes list|get`.
pub async fn nodes(ctx: &Ctx, c: NodesCmd) -> CliResult {
    let client = ctx.authed()?;
    match c {
        NodesCmd::List(p) => {
            let q = page_query(&p);
            let body = client
                .request_value(Method::GET, &["v1", "nodes"], &pairs(&q), None)
                .await?;
            show(body, Some(json!([])));
        }
        NodesCmd::Get { id, .. } => {
            let body = client
                .request_value(Method::GET, &["v1", "nodes", &id], &[], None)
                .await?;
            show(body, Some(json!({})));
        }
    }
    Ok(())
}

/// `creds list`.
pub async fn creds(ctx: &Ctx, c: CredsCmd) -> CliResult {
    let client = ctx.authed()?;
    let CredsCmd::List { provider, paging } = c;
    let mut q = page_query(&paging);
    q.push(("provider", provider));
    let body = client
        .request_value(Method::GET, &["v1", "creds"], &pairs(&q), None)
        .await?;
    show(body, Some(json!([])));
    Ok(())
}

/// `audit list`.
pub async fn audit(ctx: &Ctx, c: AuditCmd) -> CliResult {
    let client = ctx.authed()?;
    let AuditCmd::List {
        resource_type,
        actor_id,
        since,
        until,
        paging,
    } = c;
    let mut q = page_query(&paging);
    q.extend([
        ("resource_type", resource_type),
        ("actor_id", actor_id),
        ("since", since),
        ("until", until),
    ]);
    let body = client
        .request_value(Method::GET, &["v1", "audit"], &pairs(&q), None)
        .await?;
    show(body, Some(json!([])));
    Ok(())
}

/// `project list|get|set`.
pub async fn project(ctx: &Ctx, c: ProjectCmd) -> CliResult {
    let client = ctx.authed()?;
    match c {
        ProjectCmd::List(p) => {
            let q = page_query(&p);
            let body = client
                .request_value(Method::GET, &["v1", "projects"], &pairs(&q), None)
                .await?;
            show(body, Some(json!([])));
        }
        ProjectCmd::Get { id, .. } => {
            let body = client
                .request_value(Method::GET, &["v1", "projects", &id], &[], None)
                .await?;
            show(body, Some(json!({})));
        }
        ProjectCmd::Set { id, .. } => {
            let project = match id.trim() {
                "" | "none" => Value::Null,
                p => json!(p),
            };
            // The gateway resolves an id or slug and checks access; the answer is
            // kept in the config file as the default project of `task create` and
            // `chat`.
            let body = client
                .request_value(
                    Method::POST,
                    &["v1", "projects", "set"],
                    &[],
                    Some(&json!({"project_id": project})),
                )
                .await?;
            let active = body
                .get("active_project")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut file = ctx.file.clone();
            file.set_active_project(active.as_deref());
            config::save(ctx.config_path.as_deref(), &file)?;
            if ctx.json {
                print_json(&json!({ "active_project": active }));
            } else {
                outln(&format!(
                    "active_project={}",
                    active.as_deref().unwrap_or("none")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_acceptance_word_forms_parse() {
        let a = parse_words(&w(&[
            "scope",
            "type",
            "user",
            "key",
            "output.summary_style",
            "value",
            "\"concise\"",
        ]));
        assert_eq!(a.scope_type.as_deref(), Some("user"));
        assert_eq!(a.key.as_deref(), Some("output.summary_style"));
        assert_eq!(a.value.as_deref(), Some("\"concise\""));
        let a = parse_words(&w(&["key", "agents.pm.model", "value", "\"qwen3.5:0.8b\""]));
        assert_eq!(a.key.as_deref(), Some("agents.pm.model"));
        let a = parse_words(&w(&["stray", "scope", "id", "abc", "key"]));
        assert_eq!(a.scope_id.as_deref(), Some("abc"));
        assert_eq!(a.key, None);
    }
}
