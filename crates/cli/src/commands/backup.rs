//! `bunker backup`: a target, `--stdin`, `--path`, or `--all` / `--group` as one recovery point, through
//! [`bunker_ops::backup`]; the healthchecks pings of a backup run by cron; what was saved, printed.

use anyhow::{bail, Result};
use bunker_engine::{Repository, Snapshot};
use bunker_ops::backup;
use bunker_sources::files::FilesSource;
use bunker_sources::stream::StreamSource;
use bunker_sources::Planned;

use crate::cli::BackupArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size, Progress};
use crate::runs::{Finish, Printer, Run};

/// `bunker backup`. Run from cron or a Kubernetes CronJob (not by the daemon, which pings for its own
/// jobs), a backup of the stack's targets sends the `backup` healthchecks pings: start, then its exit code.
pub fn run(ctx: &Context, args: BackupArgs) -> Result<i32> {
    let pings = std::env::var_os(bunker_ops::daemon::JOB_ENV).is_none() && !args.stdin && args.path.is_empty();
    if pings {
        bunker_ops::notify::ping_start("backup");
    }
    let outcome = back_up_args(ctx, args);
    if pings {
        bunker_ops::notify::ping_finish("backup", outcome.as_ref().map(|c| *c).unwrap_or_else(exit::code_for));
    }
    outcome
}

fn back_up_args(ctx: &Context, args: BackupArgs) -> Result<i32> {
    let events = Watched(ctx.progress());
    if args.all || args.group.is_some() {
        let Some(loaded) = ctx.config()? else {
            bail!("no stack file: --all and --group back up its targets; give --config PATH or set BUNKER_CONFIG")
        };
        let repo = ctx.open()?;
        let lock = ctx.lock(&repo, false, "backup")?;
        let p = backup::back_up_point(
            &loaded.config,
            &loaded.path,
            &repo,
            &lock,
            args.group.as_deref(),
            &args.tags,
            &events,
        )?;
        print_point(ctx, &p);
        return Ok(p.code);
    }
    let repo = ctx.open()?;
    let lock = ctx.lock(&repo, false, "backup")?;
    let done = match &args.target {
        Some(name) => {
            let Some(loaded) = ctx.config()? else {
                let e = anyhow::anyhow!(
                    "no stack file: give --config PATH, set BUNKER_CONFIG, or create ./bunker.toml with [targets.{name}]"
                );
                let mut run = Run::start("backup");
                run.target(name);
                run.finish(&repo, Err(&e));
                return Err(e);
            };
            backup::back_up_target(&loaded.config, &loaded.path, &repo, &lock, name, &args.tags, &events)?
        }
        None => {
            let name = args.name.clone().expect("clap requires a target or --name");
            let planned = input(&args).map_err(bunker_ops::Error::from);
            backup::back_up_planned(&repo, &lock, &name, planned, None, &args.tags, &events)?
        }
    };
    print_saved(ctx, &done.saved);
    Ok(done.code)
}

/// The binary's events, with a live byte counter on a terminal unless `--json` or `--quiet`.
struct Watched(bool);

impl bunker_ops::Events for Watched {
    fn progress(&self, line: &str) {
        Printer.progress(line)
    }
    fn warning(&self, line: &str) {
        Printer.warning(line)
    }
    fn hook_output(&self, line: &str) {
        Printer.hook_output(line)
    }
    fn meter(&self, what: &str) -> Option<Box<dyn Fn(u64) + Sync + '_>> {
        let progress = Progress::new(self.0, what);
        progress.is_active().then(|| Box::new(move |bytes| progress.set(bytes)) as Box<dyn Fn(u64) + Sync>)
    }
    fn run_finished(&self, repo: &Repository, record: &bunker_engine::catalog::RunRecord) {
        Printer.run_finished(repo, record)
    }
}

/// Prints what a backup saved: one JSON object for one snapshot, a list for several.
pub fn print_saved(ctx: &Context, saved: &[Snapshot]) {
    if ctx.global.json {
        let rows: Vec<_> = saved
            .iter()
            .map(|s| {
                serde_json::json!({"id": s.id().to_hex(), "name": s.name, "time": s.time, "stats": s.stats, "warnings": s.warnings})
            })
            .collect();
        // One snapshot (the --stdin/--path form) prints an object, a target's several snapshots a list.
        if rows.len() == 1 {
            json(&rows[0]);
        } else {
            json(&rows);
        }
    } else {
        for snap in saved {
            let s = &snap.stats;
            println!(
                "snapshot {} of {} saved: {} read, {} new ({} stored) in {:.1}s{}",
                snap.short_id(),
                snap.name,
                size(s.bytes_read),
                size(s.bytes_new),
                size(s.bytes_stored),
                s.duration_secs,
                if snap.warnings.is_empty() {
                    String::new()
                } else {
                    format!(", {} entries could not be read", snap.warnings.len())
                }
            );
        }
    }
}

/// What `--stdin` or `--path` backs up.
fn input(args: &BackupArgs) -> Result<Vec<Planned>, bunker_sources::SourceError> {
    let name = args.name.clone().expect("clap requires --name with --stdin/--path");
    let source: Box<dyn bunker_sources::Source> = if args.stdin {
        Box::new(StreamSource::new(std::io::stdin().lock()))
    } else {
        Box::new(FilesSource::new(args.path.clone(), &args.exclude)?)
    };
    Ok(vec![Planned { snapshot_name: name, source }])
}

/// What `backup --all` / `--group` saved, as one JSON document or a line per snapshot and a summary.
fn print_point(ctx: &Context, p: &backup::PointBackup) {
    let (point, started, targets, saved, failed) = (&p.point, p.time, &p.targets, &p.saved, &p.failed);
    if ctx.global.json {
        let snaps: Vec<_> =
            saved.iter().map(|s| serde_json::json!({"id": s.id().to_hex(), "name": s.name, "time": s.time})).collect();
        json(
            &serde_json::json!({ "point": point, "time": started, "targets": targets, "snapshots": snaps, "failed": failed }),
        );
    } else {
        print_saved(ctx, saved);
        println!(
            "recovery point {point}: {} of {} targets saved{}",
            targets.len() - failed.len(),
            targets.len(),
            if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(", ")) }
        );
    }
}
