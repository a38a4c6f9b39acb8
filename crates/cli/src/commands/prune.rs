use anyhow::{bail, Result};
use bunker_ops::details::{Details, PruneDetails};

use crate::cli::PruneArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};
use crate::runs::{Finish, Run};

fn refuses_writes(e: &anyhow::Error) -> bool {
    e.downcast_ref::<bunker_engine::Error>().is_some_and(|e| e.refuses_writes())
}

fn is_full(e: &anyhow::Error) -> bool {
    e.downcast_ref::<bunker_engine::Error>().is_some_and(|e| e.is_full())
}

/// `bunker prune`, recorded in the catalog (operation `prune`, with what it freed).
pub fn run(ctx: &Context, args: PruneArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let mut run = Run::start("prune");
    let outcome = prune(ctx, &repo, &args, &mut run);
    run.finish(&repo, outcome.as_ref().copied());
    outcome
}

fn prune(ctx: &Context, repo: &bunker_engine::Repository, args: &PruneArgs, run: &mut Run) -> Result<i32> {
    let lock = match ctx.lock(repo, true, "prune") {
        Err(e) if refuses_writes(&e) => {
            // A full disk: what dead writers left in tmp/ goes first (no lock needed), then try again.
            let (n, freed) = bunker_engine::prune::remove_stale_temp_files(repo)?;
            match ctx.lock(repo, true, "prune") {
                Err(e) if is_full(&e) => {
                    let est = bunker_engine::prune::estimate(repo)?;
                    let tmp = if n > 0 {
                        format!(" (removed {n} stale temp files, {}, already)", size(freed))
                    } else {
                        String::new()
                    };
                    bail!(
                        "{}; prune writes about {} (its lock, its new index and repacked blobs) before it deletes anything, and would then free {}: free that much on the repository's disk{tmp} and run it again",
                        exit::one_line(&e),
                        size(est.bytes_to_write),
                        size(est.bytes_freed)
                    );
                }
                other => other?,
            }
        }
        other => other?,
    };
    let mut r = bunker_engine::prune::prune(repo, &lock, args.dry_run)?;
    // `[catalog] keep`: the history's own retention, applied as the catalog is folded.
    let keep = ctx.config()?.and_then(|l| l.config.catalog.keep);
    if let Some(keep) = keep {
        let now = chrono::Utc::now();
        if args.dry_run {
            r.catalog.runs_dropped = bunker_ops::history::expiring(repo, keep, now)?;
        } else {
            r.catalog += bunker_ops::history::expire(repo, keep, now)?;
        }
    }
    run.details(&Details::Prune(PruneDetails {
        dry_run: args.dry_run,
        bytes_freed: r.bytes_freed,
        packs_deleted: r.packs_deleted as u64,
        runs_dropped: r.catalog.runs_dropped as u64,
        packs_retained: r.packs_retained as u64,
    }));
    if ctx.global.json {
        json(&r);
    } else {
        let verb = if r.dry_run { "would free" } else { "freed" };
        println!(
            "{verb} {}: {} packs deleted, {} repacked{}, {} kept; {} blobs kept, {} removed",
            size(r.bytes_freed),
            r.packs_deleted,
            r.packs_repacked,
            if r.small_packs_merged > 0 {
                format!(" ({} small ones merged)", r.small_packs_merged)
            } else {
                String::new()
            },
            r.packs_kept,
            r.blobs_kept,
            r.blobs_removed
        );
        if r.packs_retained + r.index_files_retained > 0 {
            println!(
                "object lock: left {} packs and {} index files still under retention{}; a later prune removes them",
                r.packs_retained,
                r.index_files_retained,
                r.locked_until
                    .map(|t| format!(" (the first is released {})", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default()
            );
        }
        let c = &r.catalog;
        if c.segments_written > 0 {
            println!(
                "catalog: {} run records folded, {} snapshots summarised, into {} segments ({} replaced)",
                c.runs_folded, c.snapshots_summarised, c.segments_written, c.segments_replaced
            );
        }
        if let (Some(keep), true) = (keep, c.runs_dropped > 0) {
            let verb = if r.dry_run { "would drop" } else { "dropped" };
            println!(
                "catalog: {verb} {} run records older than {} ([catalog] keep)",
                c.runs_dropped,
                humantime::format_duration(keep)
            );
        }
    }
    Ok(exit::OK)
}
