use anyhow::Result;

use crate::cli::PruneArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};
use crate::runs::Run;

/// `bunker prune`, recorded in the catalog (operation `prune`, with what it freed).
pub fn run(ctx: &Context, args: PruneArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let mut run = Run::start("prune");
    let outcome = prune(ctx, &repo, &args, &mut run);
    run.finish(&repo, outcome.as_ref().copied());
    outcome
}

fn prune(ctx: &Context, repo: &bunker_engine::Repository, args: &PruneArgs, run: &mut Run) -> Result<i32> {
    let lock = ctx.lock(repo, true, "prune")?;
    let r = bunker_engine::prune::prune(repo, &lock, args.dry_run)?;
    run.detail("dry_run", args.dry_run.into());
    run.detail("bytes_freed", r.bytes_freed.into());
    run.detail("packs_deleted", r.packs_deleted.into());
    if ctx.global.json {
        json(&r);
    } else {
        let verb = if r.dry_run { "would free" } else { "freed" };
        println!(
            "{verb} {}: {} packs deleted, {} repacked, {} kept; {} blobs kept, {} removed",
            size(r.bytes_freed),
            r.packs_deleted,
            r.packs_repacked,
            r.packs_kept,
            r.blobs_kept,
            r.blobs_removed
        );
    }
    Ok(exit::OK)
}
