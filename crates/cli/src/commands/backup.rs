use std::sync::Arc;

use anyhow::Result;
use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_sources::files::FilesSource;
use bunker_sources::stream::StreamSource;
use bunker_sources::Source;

use crate::cli::BackupArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size, Progress};

pub fn run(ctx: &Context, args: BackupArgs) -> Result<i32> {
    let mut source: Box<dyn Source> = if args.stdin {
        Box::new(StreamSource::new(std::io::stdin().lock()))
    } else {
        Box::new(FilesSource::new(args.path.clone(), &args.exclude)?)
    };
    let repo = ctx.open()?;
    let lock = ctx.lock(&repo, false, "backup")?;
    let (index, _) = repo.load_index()?;
    let parent =
        repo.load_snapshots()?.into_iter().filter(|s| s.name == args.name).max_by_key(|s| s.time).and_then(|s| s.id);

    let backup = Backup::start(&repo, &lock, Arc::new(index));
    let progress = Progress::new(ctx.progress(), &format!("backing up {}", args.name));
    let done = std::sync::atomic::AtomicBool::new(false);
    let captured = std::thread::scope(|scope| {
        if progress.is_active() {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    progress.set(backup.bytes_read());
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            });
        }
        let r = source.backup(&backup);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    })?;
    drop(progress);
    let incomplete = !captured.warnings.is_empty();
    for w in &captured.warnings {
        tracing::warn!("{w}");
    }
    let draft = SnapshotDraft {
        name: args.name,
        kind: source.kind().into(),
        tags: args.tags,
        meta: captured.meta,
        parent,
        warnings: captured.warnings,
    };
    let snap = backup.commit(captured.root, draft)?;
    if ctx.global.json {
        json(&serde_json::json!({
            "id": snap.id().to_hex(),
            "name": snap.name,
            "time": snap.time,
            "stats": snap.stats,
            "warnings": snap.warnings,
        }));
    } else {
        let s = &snap.stats;
        println!(
            "snapshot {} of {} saved: {} read, {} new ({} stored) in {:.1}s{}",
            snap.short_id(),
            snap.name,
            size(s.bytes_read),
            size(s.bytes_new),
            size(s.bytes_stored),
            s.duration_secs,
            if incomplete { format!(", {} entries could not be read", snap.warnings.len()) } else { String::new() }
        );
    }
    Ok(if incomplete { exit::INCOMPLETE } else { exit::OK })
}
