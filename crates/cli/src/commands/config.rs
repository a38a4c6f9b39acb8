//! `bunker config check`: every error of the stack file, one line each with its line number, in file
//! order; then each target's options as its source reads them. Nothing is connected to.

use anyhow::{bail, Context as _, Result};

use crate::cli::ConfigCommand;
use crate::context::Context;
use crate::exit;
use crate::output::json;

pub fn run(ctx: &Context, command: ConfigCommand) -> Result<i32> {
    match command {
        ConfigCommand::Check => check(ctx),
    }
}

fn check(ctx: &Context) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot find the current directory")?;
    let path = match (&ctx.global.config, std::env::var_os(bunker_config::ENV_VAR).filter(|v| !v.is_empty())) {
        (Some(p), _) => cwd.join(p),
        (None, Some(p)) => cwd.join(p),
        (None, None) => cwd.join(bunker_config::FILE_NAME),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{} does not exist; give --config PATH or set BUNKER_CONFIG", path.display())
        }
        Err(e) => bail!("cannot read {}: {e}; check its permissions", path.display()),
    };
    let env = |name: &str| std::env::var(name).ok();
    let (config, errors) = bunker_config::Config::check_keeping(&text, &path, &env);
    let mut problems: Vec<(usize, String)> = errors.into_iter().map(|e| (e.line(), e.to_string())).collect();
    // The sources' own reading of their options, for every target the file itself got right (whatever
    // is wrong elsewhere in it).
    if let Some(config) = config {
        for target in &config.targets {
            if let Err(e) = bunker_sources::plan_target(target) {
                let line = match &e {
                    bunker_sources::SourceError::Settings(inner) => inner.line(),
                    _ => target.line,
                };
                let message = e.to_string();
                let message = if message.starts_with(&path.display().to_string()) {
                    message
                } else {
                    format!("{}:{line}: {message}", path.display())
                };
                problems.push((line, message));
            }
        }
    }
    problems.sort_by_key(|(line, _)| *line);
    problems.dedup_by(|a, b| a.1 == b.1);
    if ctx.global.json {
        let errors: Vec<_> = problems.iter().map(|(line, m)| serde_json::json!({"line": line, "error": m})).collect();
        json(&serde_json::json!({ "file": path, "ok": problems.is_empty(), "errors": errors }));
    } else if problems.is_empty() {
        println!("{}: ok", path.display());
    } else {
        for (_, message) in &problems {
            eprintln!("{message}");
        }
        eprintln!("{} errors in {}", problems.len(), path.display());
    }
    Ok(if problems.is_empty() { exit::OK } else { exit::FAILURE })
}
