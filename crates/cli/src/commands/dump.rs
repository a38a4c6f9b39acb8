use std::io::Write;

use anyhow::{bail, Result};
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::tree::NodeKind;

use crate::cli::DumpArgs;
use crate::context::Context;
use crate::exit;

pub fn run(ctx: &Context, args: DumpArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let _lock = ctx.read_lock(&repo, "dump")?;
    let snapshots = repo.load_snapshots()?;
    let snap = repo.select(&snapshots, &args.snapshot)?;
    if !repo.reads_content() {
        bail!(bunker_engine::Error::NeedsIdentity { what: format!("snapshot {} ({})", snap.short_id(), snap.name) });
    }
    let (index, _) = repo.load_index()?;
    let restorer = Restorer::new(&repo, &index);
    let content = match (&snap.root, &args.path) {
        (Root::Stream { content, .. }, None) => content.clone(),
        (Root::Tree { .. }, None) => bail!(
            "snapshot {} is a file tree; name a file (`bunker dump {} PATH`) or use `bunker restore --to DIR`",
            snap.short_id(),
            args.snapshot
        ),
        (Root::Tree { tree }, Some(path)) => match restorer.find(tree, path)?.kind {
            NodeKind::File { content, .. } => content,
            _ => bail!("{path} is not a regular file in snapshot {}", snap.short_id()),
        },
        // One item of a stream by name (an object of an S3 snapshot), as its kind finds it.
        (Root::Stream { .. }, Some(path)) => {
            bunker_sources::kind_of_snapshot(snap).item_content(&restorer, snap, path)?
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let written =
        restorer.dump(&content, &mut out).and_then(|_| out.flush().map_err(|e| bunker_engine::Error::io("output", e)));
    match written {
        Err(bunker_engine::Error::Io { source, .. }) if exit::is_broken_pipe(&source) => Ok(exit::CLOSED_STDOUT),
        other => other.map(|_| exit::OK).map_err(Into::into),
    }
}
