use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::lock::LockGuard;
use bunker_engine::{Repository, Snapshot};
use bunker_sources::files::FilesSource;
use bunker_sources::stream::StreamSource;
use bunker_sources::{plan_target, Planned};

use crate::cli::BackupArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size, Progress};

pub fn run(ctx: &Context, args: BackupArgs) -> Result<i32> {
    let plans = plan(ctx, &args)?;
    let repo = ctx.open()?;
    let lock = ctx.lock(&repo, false, "backup")?;
    let mut saved = Vec::new();
    for planned in plans {
        saved.push(back_up(ctx, &repo, &lock, planned, &args.tags)?);
    }
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
        for snap in &saved {
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
    Ok(if saved.iter().any(|s| !s.warnings.is_empty()) { exit::INCOMPLETE } else { exit::OK })
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

fn back_up(ctx: &Context, repo: &Repository, lock: &LockGuard, planned: Planned, tags: &[String]) -> Result<Snapshot> {
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
    })?;
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
    Ok(backup.commit(captured.root, draft)?)
}
