//! The `bunker` binary: flags → a plan → calls into the engine and the sources. Each verb is a module of
//! `commands`; errors are turned into one line and a documented exit code here, at the edge.

mod cli;
mod commands;
mod context;
mod exit;
mod output;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    init_logging(args.global.verbose, args.global.quiet);
    exit::install_signal_handlers();
    let code = match commands::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bunker: error: {}", exit::one_line(&e));
            exit::code_for(&e)
        }
    };
    std::process::exit(code);
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,bunker=info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUNKER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
