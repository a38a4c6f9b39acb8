//! Recovery points: `backup --all` / `--group G` backs up several targets as one point, whose ID (its
//! start time, plus four random hex digits) every snapshot of it carries as the tag `point:ID`, and
//! whose run in the catalog (operation `point`) lists the targets it meant to take, the snapshots it
//! took and the targets that failed. `bunker points` lists them (read back by [`bunker_ops::points`]).

use anyhow::{bail, Result};

use bunker_ops::points::{self, new_point_id, TAG_PREFIX};

use crate::cli::BackupArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::{Finish, Run};

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
        match super::backup::back_up_target(ctx, &repo, &lock, &one) {
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
        super::backup::print_saved(ctx, &saved);
        println!(
            "recovery point {point}: {} of {} targets saved{}",
            targets.len() - failed.len(),
            targets.len(),
            if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(", ")) }
        );
    }
    Ok(code)
}

/// `bunker points`: each recovery point, oldest first: its time, targets, the snapshots of it that
/// remain, and whether it is complete (every target it meant to take has a snapshot in it).
pub fn list(ctx: &Context) -> Result<i32> {
    let repo = ctx.open()?;
    let snapshots = repo.load_snapshots()?;
    let runs = repo.load_runs()?;
    let rows = points::list(&runs, &snapshots);
    if ctx.global.json {
        json(&rows);
    } else {
        for p in &rows {
            println!(
                "{}  {}  {} snapshots{}",
                p.point,
                if p.complete { "complete  " } else { "INCOMPLETE" },
                p.snapshots.len(),
                if p.missing.is_empty() {
                    String::new()
                } else {
                    format!(", missing: {}", serde_json::json!(p.missing))
                }
            );
        }
        println!("{} recovery points", rows.len());
    }
    Ok(exit::OK)
}
