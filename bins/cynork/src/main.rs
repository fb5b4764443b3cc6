//! `cynork`, the CyNodeAI command-line client: a thin layer over
//! [`cynode_client::gateway::GatewayClient`]. The contract is cli.md (flags, config
//! file, exit codes, output formats).

mod app;
mod cli;
mod cmd;
mod config;
mod error;
mod markdown;
mod util;

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: start runtime: {e}");
            std::process::exit(error::code::INTERNAL);
        }
    };
    let code = runtime.block_on(app::run_nested(argv));
    std::process::exit(code);
}
