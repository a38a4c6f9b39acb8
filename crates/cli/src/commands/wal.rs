//! `wal-push` (archive_command), `wal-fetch` (restore_command) and `wal verify`. Push and fetch run once
//! per WAL segment, so they open the repository through the session-key cache, take no lock (archived
//! WAL references no pack) and record a catalog run only when they fail.

use std::path::Path;

use anyhow::{bail, Result};
use bunker_engine::objects::PutOutcome;
use bunker_ops::details::{Details, WalDetails};

use bunker_sources::postgres::wal::{self, Fetched};

use crate::cli::{WalCommand, WalFetchArgs, WalPushArgs};
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};
use crate::runs::{Finish, Run};

/// `--target`, else the stack file's only physical PostgreSQL target.
pub fn physical_target(ctx: &Context, given: Option<&str>) -> Result<String> {
    if let Some(t) = given {
        return Ok(t.to_string());
    }
    let targets = physical_targets(ctx)?;
    match targets.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no physical PostgreSQL target: give --target NAME, or add one with mode = \"physical\" to the stack file"
        ),
        many => bail!("several physical PostgreSQL targets ({}): give --target NAME", many.join(", ")),
    }
}

fn physical_targets(ctx: &Context) -> Result<Vec<String>> {
    let Some(loaded) = ctx.config()? else { return Ok(Vec::new()) };
    Ok(bunker_sources::postgres::physical_targets(&loaded.config)?)
}

pub fn push(ctx: &Context, args: WalPushArgs) -> Result<i32> {
    let target = physical_target(ctx, args.target.as_deref())?;
    let repo = ctx.open()?;
    let ahead = if args.parallel > 1 {
        let dir = args.path.parent().unwrap_or(Path::new("."));
        let file = args.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        wal::ready_after(dir, &file, args.parallel as usize - 1)
    } else {
        Vec::new()
    };
    let outcome = std::thread::scope(|scope| {
        // Segments PostgreSQL will ask for next: pushed now, alongside; when their turn comes, the push
        // finds them stored and returns at once. Their failures are only logged: PostgreSQL retries.
        let (repo, target) = (&repo, &target);
        let extra: Vec<_> = ahead.iter().map(|p| scope.spawn(move || (p, wal::push(repo, target, p)))).collect();
        let main = wal::push(repo, target, &args.path);
        for handle in extra {
            if let (p, Err(e)) = handle.join().expect("push thread") {
                tracing::debug!("pushing {} ahead failed (PostgreSQL will retry it): {e}", p.display());
            }
        }
        main
    });
    match outcome {
        Ok(pushed) => {
            match pushed.outcome {
                PutOutcome::Stored { stored_bytes } => {
                    tracing::info!("archived {} ({} as {})", pushed.file, size(pushed.bytes), size(stored_bytes))
                }
                PutOutcome::AlreadyStored => tracing::info!("{} was already archived with this content", pushed.file),
            }
            Ok(exit::OK)
        }
        Err(e) => {
            let e = anyhow::Error::from(e);
            let mut run = Run::start("wal-push");
            run.target(&target);
            run.details(&Details::Wal(WalDetails { file: args.path.display().to_string() }));
            run.finish(&repo, Err(&e));
            Err(e)
        }
    }
}

pub fn fetch(ctx: &Context, args: WalFetchArgs) -> Result<i32> {
    // Exit 1 means "not archived" to PostgreSQL; every error must exit above 125 instead, or recovery
    // would end early and promote at the wrong point.
    // A panic would exit 101, which PostgreSQL also reads as "not archived".
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fetch_inner(ctx, &args)))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (a bug: please report it)")));
    match outcome {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("bunker: error: wal-fetch {}: {}", args.file, exit::one_line(&e));
            Ok(if exit::code_for(&e) == exit::INTERRUPTED { exit::INTERRUPTED } else { exit::WAL_UNREADABLE })
        }
    }
}

fn fetch_inner(ctx: &Context, args: &WalFetchArgs) -> Result<i32> {
    let target = physical_target(ctx, args.target.as_deref())?;
    let repo = ctx.open()?;
    let spool = match &args.spool {
        Some(s) => s.clone(),
        None => args.dest.parent().unwrap_or(Path::new(".")).join("bunker-prefetch"),
    };
    match wal::fetch(&repo, &target, &args.file, &args.dest, &spool, args.prefetch as usize) {
        Ok(Fetched::Found { from_spool }) => {
            tracing::info!("fetched {}{}", args.file, if from_spool { " (prefetched)" } else { "" });
            Ok(exit::OK)
        }
        Ok(Fetched::NotArchived) => {
            tracing::info!("{} is not archived", args.file);
            Ok(exit::FAILURE)
        }
        Err(e) => {
            let e = anyhow::Error::from(e);
            let mut run = Run::start("wal-fetch");
            run.target(&target);
            run.details(&Details::Wal(WalDetails { file: args.file.clone() }));
            run.finish(&repo, Err(&e));
            Err(e)
        }
    }
}

pub fn run(ctx: &Context, cmd: WalCommand) -> Result<i32> {
    match cmd {
        WalCommand::Verify { target } => verify(ctx, target),
    }
}

fn verify(ctx: &Context, target: Option<String>) -> Result<i32> {
    let repo = ctx.open()?;
    let targets = match target {
        Some(t) => vec![t],
        None => {
            let t = physical_targets(ctx)?;
            if t.is_empty() {
                bail!("no physical PostgreSQL target in the stack file: give the target's name");
            }
            t
        }
    };
    let mut rows = Vec::new();
    let mut all_ok = true;
    let snapshots = repo.load_snapshots()?;
    for target in targets {
        let mut run = Run::start("wal-verify");
        run.target(&target);
        let bases = bunker_sources::postgres::base_backups(&snapshots, &target)?;
        let segment_size = bases.last().map(|(_, m)| m.segment_size).unwrap_or(wal::DEFAULT_SEGMENT_SIZE);
        let listing = wal::list(&repo, &target, segment_size)?;
        let age = listing.newest.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs_f64());
        let mut checked = Vec::new();
        let mut problems = Vec::new();
        let mut to_read = std::collections::BTreeSet::new();
        for (snap, meta) in &bases {
            let (Some(start), Some(stop)) = (meta.start_segment(), meta.stop_segment()) else {
                problems.push(format!("base backup {} records no WAL range", snap.short_id()));
                continue;
            };
            // Every archived timeline from the backup's on: recovery may be asked to follow any of them.
            let mut needed = std::collections::BTreeSet::new();
            for tli in listing.segments.keys().copied().filter(|t| *t >= start.timeline) {
                needed.extend(wal::needed(&repo, &target, &listing, start, stop, Some(tli))?);
            }
            let needed: Vec<_> = needed.into_iter().collect();
            let missing: Vec<String> = wal::gaps(&listing, &needed).iter().map(|g| g.describe(segment_size)).collect();
            for n in &missing {
                problems.push(format!("base backup {}: missing {n}", snap.short_id()));
            }
            to_read.extend(needed);
            checked.push(serde_json::json!({
                "snapshot": snap.id().to_hex(), "start_wal": meta.start_wal, "stop_wal": meta.stop_wal,
                "time": meta.stop_time, "missing": missing,
            }));
        }
        let mut to_read: Vec<_> = to_read.into_iter().collect();
        if !repo.reads_content() {
            // A write-only host sees which segments are archived, not what they hold.
            tracing::warn!(
                "{} archived segments were listed, not read back: this host's key is write-only (--identity FILE reads them)",
                to_read.len()
            );
            to_read.clear();
        }
        for (seg, why) in wal::damaged(&repo, &target, &to_read, segment_size, 4) {
            problems.push(format!("damaged {}: {why}", seg.name(segment_size)));
        }
        if bases.is_empty() {
            problems.push("no base backup: nothing can be replayed".into());
        }
        let ok = problems.is_empty();
        let read = to_read.len();
        all_ok &= ok;
        if !ctx.global.json {
            println!(
                "{target}: {} files archived ({}), newest {} archived {}; {} base backup(s) checked",
                listing.files,
                size(listing.stored_bytes),
                listing.newest_segment.map(|s| s.name(segment_size)).unwrap_or_else(|| "-".into()),
                age.map(|a| format!("{a:.0}s ago (live RPO)")).unwrap_or_else(|| "never".into()),
                bases.len()
            );
            for p in &problems {
                println!("  {p}");
            }
            if ok {
                println!("  continuous from every base backup to the newest segment ({read} segments read back)");
            }
        }
        rows.push(serde_json::json!({
            "target": target, "files": listing.files, "stored_bytes": listing.stored_bytes,
            "newest_segment": listing.newest_segment.map(|s| s.name(segment_size)),
            "newest_age_seconds": age, "base_backups": checked, "problems": problems, "ok": ok,
        }));
        if !ok {
            run.problem(problems.join("; "));
        }
        run.finish(&repo, Ok(if ok { exit::OK } else { exit::FAILURE }));
    }
    if ctx.global.json {
        json(&rows);
    }
    Ok(if all_ok { exit::OK } else { exit::FAILURE })
}
