//! `bunker daemon`: the stack file, the repository, the singleton lock, SIGHUP and the HTTP side here;
//! the scheduling loop is [`bunker_ops::daemon`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use crate::cli::DaemonArgs;
use crate::context::Context;
use crate::exit;

/// The daemon's events on stderr, each line saying it comes from the daemon.
struct DaemonPrinter;

impl bunker_ops::Events for DaemonPrinter {
    fn progress(&self, line: &str) {
        eprintln!("bunker daemon: {line}");
    }
    fn warning(&self, line: &str) {
        tracing::warn!("{line}");
    }
    fn run_finished(&self, repo: &bunker_engine::Repository, record: &bunker_engine::catalog::RunRecord) {
        bunker_ops::notify::run_finished(repo, record);
    }
}

pub fn run(ctx: &Context, args: DaemonArgs) -> Result<i32> {
    let Some(loaded) = ctx.config()? else {
        bail!("the daemon runs the stack file's [schedules]: give --config PATH, set BUNKER_CONFIG, or run where bunker.toml is")
    };
    let config_path = loaded.path.clone();
    let config = loaded.config.clone();
    if config.schedules.is_empty() && args.listen.is_none() {
        bail!(
            "{} has no [schedules]; add one (e.g. backup = \"0 1 * * *\"), or give --listen to only serve metrics",
            config_path.display()
        );
    }
    let (repo, password) = ctx.open_keeping_password()?;
    let _singleton = bunker_engine::lock::acquire_singleton(repo.storage(), "daemon", "daemon")
        .context("another bunker daemon runs for this repository")?;
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())
        .context("cannot install the SIGHUP handler")?;
    let published = bunker_ops::daemon::shared();
    if let Some(addr) = args.listen {
        let bound = crate::http::serve(addr, published.clone())?;
        eprintln!("bunker daemon: serving /metrics, /healthz and /status on http://{bound}");
    }
    bunker_ops::daemon::run(bunker_ops::daemon::Setup {
        repo,
        password,
        config_path,
        config,
        repo_location: ctx.global.repo.clone(),
        identity: ctx.global.identity.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        exe: std::env::current_exe().context("cannot find the bunker executable to run jobs with")?,
        refresh: args.refresh,
        catch_up: !args.no_catch_up,
        published,
        hangup,
        events: &DaemonPrinter,
    })?;
    Ok(exit::OK)
}
