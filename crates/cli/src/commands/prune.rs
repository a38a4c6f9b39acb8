use anyhow::Result;

use crate::cli::PruneArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};

pub fn run(ctx: &Context, args: PruneArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let lock = ctx.lock(&repo, true, "prune")?;
    let r = bunker_engine::prune::prune(&repo, &lock, args.dry_run)?;
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
