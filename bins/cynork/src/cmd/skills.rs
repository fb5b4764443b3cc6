//! `skills list|get|load|update|delete` (cli.md §12). Output is the gateway's JSON
//! body, pretty-printed, whatever `-o` says.

use cynode_client::gateway::Method;
use serde_json::{Value, json};

use crate::app::Ctx;
use crate::cli::SkillsCmd;
use crate::error::{CliError, CliResult};
use crate::util::{self, print_json};

fn read_file(path: &std::path::Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("read {}: {e}", path.display())))
}

fn show(body: &Value) {
    if !body.is_null() {
        print_json(body);
    }
}

/// Runs a `skills` subcommand.
pub async fn run(ctx: &Ctx, c: SkillsCmd) -> CliResult {
    let client = ctx.authed()?;
    match c {
        SkillsCmd::List { scope, owner } => {
            let mut q: Vec<(&str, &str)> = Vec::new();
            if let Some(s) = scope.as_deref() {
                q.push(("scope", s));
            }
            if let Some(o) = owner.as_deref() {
                q.push(("owner", o));
            }
            let body = client
                .request_value(Method::GET, &["v1", "skills"], &q, None)
                .await?;
            if body.is_null() {
                print_json(&json!({"skills": []}));
            } else {
                print_json(&body);
            }
        }
        SkillsCmd::Get { id } => {
            show(
                &client
                    .request_value(Method::GET, &["v1", "skills", &id], &[], None)
                    .await?,
            );
        }
        SkillsCmd::Load { file, name, scope } => {
            let content = read_file(&file)?;
            let mut body = json!({"content": content, "scope": scope});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            show(
                &client
                    .request_value(Method::POST, &["v1", "skills", "load"], &[], Some(&body))
                    .await?,
            );
        }
        SkillsCmd::Update {
            id,
            file,
            name,
            scope,
        } => {
            let content = read_file(&file)?;
            let mut body = json!({"content": content});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(s) = scope {
                body["scope"] = json!(s);
            }
            show(
                &client
                    .request_value(Method::PUT, &["v1", "skills", &id], &[], Some(&body))
                    .await?,
            );
        }
        SkillsCmd::Delete { id, yes } => {
            // Ask only when someone can answer (scripts pipe nothing and pass no -y).
            if !yes && util::stdin_tty() && !util::confirm(&format!("Delete skill {id}? [y/N] ")) {
                return Ok(());
            }
            show(
                &client
                    .request_value(Method::DELETE, &["v1", "skills", &id], &[], None)
                    .await?,
            );
        }
    }
    Ok(())
}
