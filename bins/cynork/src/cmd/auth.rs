//! `auth login|logout|whoami|refresh` (cli.md §7).

use std::io::{BufRead, Read, Write};
use std::time::Duration;

use cynode_client::gateway::{GatewayClient, GatewayClientConfig};
use serde_json::json;

use crate::app::Ctx;
use crate::cli::AuthCmd;
use crate::error::{CliError, CliResult};
use crate::util::{self, outln, print_json};

/// Runs an `auth` subcommand.
pub async fn run(ctx: &mut Ctx, c: AuthCmd) -> CliResult {
    match c {
        AuthCmd::Login {
            user,
            password_stdin,
        } => login(ctx, user, password_stdin).await,
        AuthCmd::Logout => logout(ctx).await,
        AuthCmd::Whoami => whoami(ctx).await,
        AuthCmd::Refresh => refresh(ctx).await,
    }
}

/// Removes exactly one trailing `\n` or `\r\n`.
fn strip_one_newline(mut s: String) -> String {
    if s.ends_with("\r\n") {
        s.truncate(s.len() - 2);
    } else if s.ends_with('\n') {
        s.truncate(s.len() - 1);
    }
    s
}

fn read_all_stdin() -> CliResult<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::general(format!("read password: {e}")))?;
    Ok(strip_one_newline(s))
}

async fn login(ctx: &mut Ctx, user: Option<String>, password_stdin: bool) -> CliResult {
    let user = user.filter(|u| !u.trim().is_empty());
    if password_stdin && user.is_none() {
        return Err(CliError::usage("--password-stdin requires --user"));
    }
    let handle = match user {
        Some(u) => u,
        None => {
            eprint!("User: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::general(format!("read user: {e}")))?;
            line.trim().to_string()
        }
    };
    let password = if password_stdin || !util::stdin_tty() {
        read_all_stdin()?
    } else {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        rpassword::read_password().map_err(|e| CliError::general(format!("read password: {e}")))?
    };
    let client = ctx.client()?;
    let tokens = client.login(&handle, &password).await?;
    ctx.save_tokens(&tokens.access_token, &tokens.refresh_token)?;
    if ctx.json {
        print_json(&json!({"logged_in": true, "user": handle}));
    } else {
        outln(&format!("logged_in=true user={handle}"));
    }
    Ok(())
}

async fn logout(ctx: &mut Ctx) -> CliResult {
    // Best effort: end the session on the gateway too (never fails the command).
    if !ctx.token.trim().is_empty() {
        let refresh = ctx.file.refresh_token.clone();
        if let Ok(client) = GatewayClient::with_config(GatewayClientConfig {
            base_url: ctx.gateway_url.clone(),
            token: Some(ctx.token.clone()),
            timeout: Some(Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(3),
            ..Default::default()
        }) {
            let r = (!refresh.is_empty()).then_some(refresh.as_str());
            let _ = client.logout(r).await;
        }
    }
    ctx.file.token.clear();
    ctx.file.refresh_token.clear();
    ctx.token.clear();
    crate::config::save(ctx.config_path.as_deref(), &ctx.file)?;
    if ctx.json {
        print_json(&json!({"logged_out": true}));
    } else {
        outln("logged out (logged_out=true)");
    }
    Ok(())
}

async fn whoami(ctx: &Ctx) -> CliResult {
    let me = ctx.authed()?.me().await?;
    if ctx.json {
        print_json(&json!({"id": me.id, "user": me.handle}));
    } else {
        outln(&format!("id={} user={}", me.id, me.handle));
    }
    Ok(())
}

async fn refresh(ctx: &mut Ctx) -> CliResult {
    let rt = ctx.file.refresh_token.clone();
    if rt.trim().is_empty() {
        return Err(CliError::auth(
            "no refresh token: run 'cynork auth login' first",
        ));
    }
    let tokens = ctx.client()?.refresh(&rt).await?;
    ctx.save_tokens(&tokens.access_token, &tokens.refresh_token)?;
    outln("Token refreshed successfully.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::strip_one_newline;

    #[test]
    fn only_one_trailing_newline_is_removed() {
        assert_eq!(strip_one_newline("pw\n".into()), "pw");
        assert_eq!(strip_one_newline("pw\r\n".into()), "pw");
        assert_eq!(strip_one_newline("pw\n\n".into()), "pw\n");
        assert_eq!(strip_one_newline("p w ".into()), "p w ");
    }
}
