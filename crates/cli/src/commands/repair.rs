use anyhow::Result;
use bunker_engine::repair::{repair_index, repair_snapshots};
use bunker_ops::details::{Details, RepairDetails};

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
            run.details(&Details::Repair(RepairDetails {
                what: "index".into(),
                dry_run,
                packs_read: Some(r.packs_read as u64),
                packs_added: Some(r.packs_added as u64),
                packs_dropped: r.packs_dropped.clone(),
                packs_salvaged: r.packs_salvaged.clone(),
                index_files_removed: Some(r.index_files_removed as u64),
                ..Default::default()
            }));
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
            run.details(&Details::Repair(RepairDetails {
                what: "snapshots".into(),
                dry_run,
                removed: r.removed.iter().map(|s| serde_json::to_value(s).expect("serialisable")).collect(),
                runs_removed: r.runs_removed.clone(),
                ..Default::default()
            }));
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
