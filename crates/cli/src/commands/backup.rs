//! `bunker backup`: a target (its sources, with its before/after hooks), `--stdin`, `--path`, and
//! `--all` / `--group` as one recovery point (every target in turn, tagged `point:ID`, with a `point` run
//! in the catalog listing what it meant to take, took and missed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::lock::LockGuard;
use bunker_engine::{Repository, Snapshot};
use bunker_ops::hooks::{self, HookEnv, Phase};
use bunker_ops::points::{self, new_point_id, TAG_PREFIX};
use bunker_sources::files::FilesSource;
use bunker_sources::stream::StreamSource;
use bunker_sources::{plan_target, Planned};

use crate::cli::BackupArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size, Progress};
use crate::runs::{Finish, Run};

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
    if args.all || args.group.is_some() {
        return back_up_point(ctx, &args);
    }
    let repo = ctx.open()?;
    let lock = ctx.lock(&repo, false, "backup")?;
    let (saved, code) = back_up_target(ctx, &repo, &lock, &args)?;
    print_saved(ctx, &saved);
    Ok(code)
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

/// Backs up one target (or --stdin/--path input) with its hooks, each snapshot its own catalog run;
/// returns what was saved and the exit code.
pub fn back_up_target(
    ctx: &Context,
    repo: &Repository,
    lock: &LockGuard,
    args: &BackupArgs,
) -> Result<(Vec<Snapshot>, i32)> {
    let name = args.target.clone().or_else(|| args.name.clone()).expect("clap requires a target or --name");
    let plans = {
        let mut run = Run::start("backup");
        run.target(&name);
        match plan(ctx, args) {
            Ok(plans) => plans,
            Err(e) => {
                run.finish(repo, Err(&e));
                return Err(e);
            }
        }
    };
    let hooks = match &args.target {
        Some(t) => ctx.config()?.and_then(|c| c.config.target(t)).map(|t| t.hooks.clone()),
        None => None,
    };
    let before = HookEnv { target: &name, snapshot: None, status: None, extra: Vec::new() };
    if let Some(h) = &hooks {
        if let Err(e) = hooks::run(h, Phase::BeforeBackup, &before, &crate::runs::Printer).map_err(anyhow::Error::from)
        {
            let mut run = Run::start("backup");
            run.target(&name);
            run.finish(repo, Err(&e));
            // Its after hook still runs, to undo what the before hook may have half done.
            after_hook(repo, hooks.as_ref(), &name, "failed", "");
            return Err(e);
        }
    }
    // Each snapshot is its own run: one database failing does not stop the others of the target.
    let several = plans.len() > 1;
    let mut saved = Vec::new();
    let mut failures = Vec::new();
    for planned in plans {
        let mut run = Run::start("backup");
        run.target(&planned.snapshot_name);
        let name = planned.snapshot_name.clone();
        let outcome = back_up(ctx, repo, lock, planned, &args.tags, &mut run);
        run.finish(repo, outcome.as_ref().map(|s| if s.warnings.is_empty() { exit::OK } else { exit::INCOMPLETE }));
        match outcome {
            Ok(snap) => saved.push(snap),
            Err(e) if !several => {
                after_hook(repo, hooks.as_ref(), &name, "failed", "");
                return Err(e);
            }
            Err(e) => {
                let interrupted = exit::code_for(&e) == exit::INTERRUPTED;
                eprintln!("bunker: error: backup of {name} failed: {}", exit::one_line(&e));
                failures.push(exit::code_for(&e));
                if interrupted {
                    break;
                }
            }
        }
    }
    let ids: Vec<String> = saved.iter().map(|s| s.id().to_hex()).collect();
    let after_ok =
        after_hook(repo, hooks.as_ref(), &name, if failures.is_empty() { "success" } else { "failed" }, &ids.join(" "));
    if let Some(code) = failures.iter().find(|c| **c == exit::INTERRUPTED).or(failures.first()) {
        return Ok((saved, *code));
    }
    let code = if !after_ok || saved.iter().any(|s| !s.warnings.is_empty()) { exit::INCOMPLETE } else { exit::OK };
    Ok((saved, code))
}

/// Runs the after_backup hook; a failure is reported and recorded (as a run of operation `hook`), and
/// turns the backup's exit code into a warning. Returns whether it succeeded (or there was none).
fn after_hook(
    repo: &Repository,
    hooks: Option<&bunker_config::Hooks>,
    target: &str,
    status: &str,
    snapshots: &str,
) -> bool {
    let Some(h) = hooks else { return true };
    let env = HookEnv { target, snapshot: Some(snapshots), status: Some(status), extra: Vec::new() };
    match hooks::run(h, Phase::AfterBackup, &env, &crate::runs::Printer).map_err(anyhow::Error::from) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("bunker: warning: {}", exit::one_line(&e));
            let mut run = Run::start("hook");
            run.target(target);
            run.detail("phase", "after_backup".into());
            run.finish(repo, Err(&e));
            false
        }
    }
}

/// What to back up: a `bunker.toml` target (one or more snapshots), or standard input / paths.
fn plan(ctx: &Context, args: &BackupArgs) -> Result<Vec<Planned>> {
    if let Some(name) = &args.target {
        let Some(loaded) = ctx.config()? else {
            bail!("no stack file: give --config PATH, set BUNKER_CONFIG, or create ./bunker.toml with [targets.{name}]")
        };
        let Some(target) = loaded.config.target(name) else {
            let known: Vec<&str> = loaded.config.targets.iter().map(|t| t.name.as_str()).collect();
            bail!("{} has no target {name:?}; its targets: {}", loaded.path.display(), known.join(", "))
        };
        return Ok(plan_target(target)?);
    }
    let name = args.name.clone().expect("clap requires --name with --stdin/--path");
    let source: Box<dyn bunker_sources::Source> = if args.stdin {
        Box::new(StreamSource::new(std::io::stdin().lock()))
    } else {
        Box::new(FilesSource::new(args.path.clone(), &args.exclude)?)
    };
    Ok(vec![Planned { snapshot_name: name, source }])
}

fn back_up(
    ctx: &Context,
    repo: &Repository,
    lock: &LockGuard,
    planned: Planned,
    tags: &[String],
    run: &mut Run,
) -> Result<Snapshot> {
    let Planned { snapshot_name, mut source } = planned;
    let (index, _) = repo.load_index()?;
    let parent = repo
        .load_snapshots()?
        .into_iter()
        .filter(|s| s.name == snapshot_name)
        .max_by_key(|s| s.time)
        .and_then(|s| s.id);
    let backup = Backup::start(repo, lock, Arc::new(index));
    let progress = Progress::new(ctx.progress(), &format!("backing up {snapshot_name}"));
    let done = AtomicBool::new(false);
    let captured = std::thread::scope(|scope| {
        if progress.is_active() {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    progress.set(backup.bytes_read());
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            });
        }
        let r = source.backup(&backup);
        done.store(true, Ordering::Relaxed);
        r
    });
    run.bytes(backup.bytes_read(), 0);
    let captured = captured?;
    drop(progress);
    for w in &captured.warnings {
        tracing::warn!("{w}");
    }
    let draft = SnapshotDraft {
        name: snapshot_name,
        kind: source.kind().into(),
        tags: tags.to_vec(),
        meta: captured.meta,
        parent,
        warnings: captured.warnings,
    };
    let snap = backup.commit(captured.root, draft)?;
    run.snapshot(&snap.id());
    run.bytes(snap.stats.bytes_read, snap.stats.bytes_stored);
    Ok(snap)
}

/// The targets of `--all` or `--group NAME`, in the stack file's order.
fn targets(ctx: &Context, args: &BackupArgs) -> Result<Vec<String>> {
    let Some(loaded) = ctx.config()? else {
        bail!("no stack file: --all and --group back up its targets; give --config PATH or set BUNKER_CONFIG")
    };
    Ok(points::targets_of(&loaded.config, &loaded.path, args.group.as_deref())?)
}

/// `backup --all` / `--group`: every target in turn as one recovery point. A target that fails does not
/// stop the others; the exit code is the worst of them.
pub fn back_up_point(ctx: &Context, args: &BackupArgs) -> Result<i32> {
    let targets = targets(ctx, args)?;
    let repo = ctx.open()?;
    let lock = ctx.lock(&repo, false, "backup")?;
    let started = chrono::Utc::now();
    let point = new_point_id(started);
    let mut run = Run::start("point");
    run.detail("point", point.clone().into());
    run.detail("targets", targets.clone().into());
    let mut saved = Vec::new();
    let mut failed = Vec::new();
    let mut code = exit::OK;
    for target in &targets {
        let mut tags = args.tags.clone();
        tags.push(format!("{TAG_PREFIX}{point}"));
        let one = BackupArgs { target: Some(target.clone()), tags, ..Default::default() };
        match back_up_target(ctx, &repo, &lock, &one) {
            Ok((snaps, c)) => {
                if c != exit::OK && c != exit::INCOMPLETE {
                    failed.push(target.clone());
                }
                code = exit::worse(code, c);
                saved.extend(snaps);
            }
            Err(e) => {
                eprintln!("bunker: error: backup of {target} failed: {}", exit::one_line(&e));
                failed.push(target.clone());
                code = exit::worse(code, exit::code_for(&e));
                if exit::code_for(&e) == exit::INTERRUPTED {
                    break;
                }
            }
        }
    }
    let ids: Vec<String> = saved.iter().map(|s| s.id().to_hex()).collect();
    run.detail("snapshots", ids.into());
    run.detail("failed", failed.clone().into());
    if !failed.is_empty() {
        run.problem(format!("{} of {} targets failed: {}", failed.len(), targets.len(), failed.join(", ")));
    }
    let bytes_read = saved.iter().map(|s| s.stats.bytes_read).sum();
    run.bytes(bytes_read, saved.iter().map(|s| s.stats.bytes_stored).sum());
    run.finish(&repo, Ok(code));
    if ctx.global.json {
        let snaps: Vec<_> =
            saved.iter().map(|s| serde_json::json!({"id": s.id().to_hex(), "name": s.name, "time": s.time})).collect();
        json(
            &serde_json::json!({ "point": point, "time": started, "targets": targets, "snapshots": snaps, "failed": failed }),
        );
    } else {
        print_saved(ctx, &saved);
        println!(
            "recovery point {point}: {} of {} targets saved{}",
            targets.len() - failed.len(),
            targets.len(),
            if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(", ")) }
        );
    }
    Ok(code)
}
