//! `version`, `status`, `models`.

use serde_json::json;

use crate::app::Ctx;
use crate::cli::ModelsCmd;
use crate::error::{CliError, CliResult};
use crate::util::{outln, print_json};

/// The version string.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `cynork version`: `cynork version=<v>` / `{"version":"<v>"}` (no network).
pub fn version(ctx: &Ctx) {
    if ctx.json {
        print_json(&json!({"version": VERSION}));
    } else {
        outln(&format!("cynork version={VERSION}"));
    }
}

/// `cynork status`: `GET /healthz` must answer 200 with a body containing `ok`.
pub async fn status(ctx: &Ctx) -> CliResult {
    let client = ctx.client()?;
    match client.healthz().await {
        Ok(body) if body.contains("ok") => {
            if ctx.json {
                print_json(&json!({"gateway": "ok"}));
            } else {
                outln("ok");
            }
            Ok(())
        }
        Ok(body) => Err(CliError::gateway(format!(
            "gateway unreachable: unexpected health answer {:?}",
            body.trim()
        ))),
        Err(e) => Err(CliError::gateway(format!("gateway unreachable: {e}"))),
    }
}

/// `cynork models list`.
pub async fn models(ctx: &Ctx, c: ModelsCmd) -> CliResult {
    let ModelsCmd::List = c;
    let client = ctx.authed()?;
    let body = client
        .request_value(
            cynode_client::gateway::Method::GET,
            &["v1", "models"],
            &[],
            None,
        )
        .await?;
    if ctx.json {
        print_json(&body);
        return Ok(());
    }
    let list: cynode_core::proto::v1::gateway::ModelList = serde_json::from_value(body)
        .map_err(|e| CliError::gateway(format!("decode response: {e}")))?;
    for m in list.data {
        outln(&m.id);
    }
    Ok(())
}
