use anyhow::Result;
use bunker_engine::repair::{repair_index, repair_snapshots};

use crate::cli::RepairCommand;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::{Finish, Run};

/// `bunker repair index|snapshots`, under the exclusive lock, recorded in the catalog (operation
/// `repair`, with what it rebuilt or removed).
pub fn run(ctx: &Context, command: RepairCommand) -> Result<i32> {
    let repo = ctx.open()?;
    let mut run = Run::start("repair");
    let outcome = repair(ctx, &repo, command, &mut run);
    run.finish(&repo, outcome.as_ref().copied());
    outcome
}

fn repair(ctx: &Context, repo: &bunker_engine::Repository, command: RepairCommand, run: &mut Run) -> Result<i32> {
    match command {
        RepairCommand::Index { read_all_packs, read_data, dry_run } => {
            let lock = ctx.lock(repo, true, "repair index")?;
            let r = repair_index(repo, &lock, read_all_packs, read_data, dry_run)?;
            run.detail("what", "index".into());
            run.detail("dry_run", dry_run.into());
            run.detail("packs_read", r.packs_read.into());
            run.detail("packs_added", r.packs_added.into());
            run.detail("packs_dropped", serde_json::json!(r.packs_dropped));
            run.detail("packs_salvaged", serde_json::json!(r.packs_salvaged));
            run.detail("index_files_removed", r.index_files_removed.into());
            if ctx.global.json {
                json(&r);
            } else {
                for d in &r.damaged_index_files {
                    eprintln!("damaged: {d}");
                }
                for d in &r.packs_dropped {
                    eprintln!("dropped: {d}");
                }
                for d in &r.packs_salvaged {
                    eprintln!("salvaged: {d}");
                }
                let verb = if dry_run { "would replace" } else { "replaced" };
                if r.changed {
                    println!(
                        "{verb} {} index files with one listing {} packs ({} blobs): {} headers read, {} packs indexed again, {} dropped",
                        r.index_files_removed,
                        r.packs - r.packs_dropped.iter().filter(|d| !d.contains("is missing")).count(),
                        r.blobs,
                        r.packs_read,
                        r.packs_added,
                        r.packs_dropped.len()
                    );
                } else {
                    println!(
                        "the index lists every pack as its header does ({} packs, {} headers read): nothing to repair",
                        r.packs, r.packs_read
                    );
                }
            }
            if !dry_run {
                // What was damaged is gone: the command did not finish "around" it.
                repo.damage().clear();
            }
            Ok(exit::OK)
        }
        RepairCommand::Snapshots { dry_run } => {
            let lock = ctx.lock(repo, true, "repair snapshots")?;
            let r = repair_snapshots(repo, &lock, dry_run)?;
            run.detail("what", "snapshots".into());
            run.detail("dry_run", dry_run.into());
            run.detail("removed", serde_json::to_value(&r.removed).expect("serialisable"));
            run.detail("runs_removed", serde_json::json!(r.runs_removed));
            if ctx.global.json {
                json(&r);
            } else {
                let verb = if dry_run { "would remove" } else { "removed" };
                for s in &r.removed {
                    let name = s.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                    println!("{verb} snapshot {}{name}: {}", &s.id[..8.min(s.id.len())], s.why);
                }
                for run in &r.runs_removed {
                    println!("{verb} damaged catalog record {run}");
                }
                println!("{} of {} snapshots {verb}", r.removed.len(), r.snapshots);
            }
            if !dry_run {
                repo.damage().clear();
            }
            Ok(exit::OK)
        }
    }
}
