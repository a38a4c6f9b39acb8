use anyhow::{bail, Result};
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::{select, Root};
use bunker_sources::files::globs;

use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};

pub fn run(ctx: &Context, args: RestoreArgs) -> Result<i32> {
    let include = if args.include.is_empty() { None } else { Some(globs(&args.include)?) };
    bunker_engine::restorer::ensure_empty_or_absent(&args.to, args.force)?;
    let repo = ctx.open()?;
    let _lock = ctx.lock(&repo, false, "restore")?;
    let snapshots = repo.load_snapshots()?;
    let snap = select(&snapshots, &args.snapshot)?;
    let Root::Tree { tree } = &snap.root else {
        bail!("snapshot {} is a stream; write it out with `bunker dump {} > FILE`", snap.short_id(), args.snapshot);
    };
    let (index, _) = repo.load_index()?;
    let started = std::time::Instant::now();
    let stats = Restorer::new(&repo, &index).restore_tree(tree, &args.to, include.as_ref(), args.force)?;
    if ctx.global.json {
        json(&serde_json::json!({ "snapshot": snap.id().to_hex(), "to": args.to, "stats": stats }));
    } else {
        println!(
            "restored snapshot {} into {}: {} files, {} directories, {} symlinks, {} in {:.1}s",
            snap.short_id(),
            args.to.display(),
            stats.files,
            stats.dirs,
            stats.symlinks,
            size(stats.bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(exit::OK)
}
