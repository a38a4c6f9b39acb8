//! Restoring Redis snapshots: `--into redis://…` (then checked) or `--rdb-file PATH`.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::{Repository, Snapshot};
use bunker_sources::redis::url::RedisUrl;
use bunker_sources::redis::{restore, RedisMeta};

use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::Run;

fn meta(snap: &Snapshot) -> Result<RedisMeta> {
    serde_json::from_value(snap.meta.clone())
        .map_err(|e| anyhow!("snapshot {} has unreadable Redis facts: {e}", snap.short_id()))
}

pub fn restore_into(
    ctx: &Context,
    repo: &Repository,
    args: &RestoreArgs,
    snap: &Snapshot,
    into: &str,
    run: &mut Run,
) -> Result<i32> {
    let meta = meta(snap)?;
    let target = RedisUrl::parse(into)?;
    run.detail("into", target.display().into());
    let Root::Stream { content, .. } = &snap.root else { bail!("snapshot {} holds no Redis data", snap.short_id()) };
    let started = std::time::Instant::now();
    let (index, _) = repo.load_index()?;
    let restorer = Restorer::new(repo, &index);
    let report = restore::restore_into(&restorer, content, &meta, &target, args.force)?;
    let restored: u64 = report.databases.iter().map(|d| d.restored).sum();
    run.detail("keys", restored.into());
    if ctx.global.json {
        json(&serde_json::json!({ "snapshot": snap.id().to_hex(), "into": target.display(), "report": report }));
    } else {
        println!(
            "restored snapshot {} ({} mode, {} keys) into {} in {:.1}s",
            snap.short_id(),
            meta.mode,
            restored,
            target.display(),
            started.elapsed().as_secs_f64()
        );
        for d in &report.databases {
            println!(
                "  db{}: {} keys in the snapshot ({} with a TTL), {} restored, {} present",
                d.db, d.recorded, d.recorded_expiring, d.restored, d.present
            );
        }
        println!("  {} sampled keys compared (value and TTL)", report.sampled);
        for p in report.problems.iter().chain(&report.mismatches) {
            println!("  PROBLEM: {p}");
        }
    }
    if report.ok() {
        Ok(exit::OK)
    } else {
        let all: Vec<&String> = report.problems.iter().chain(&report.mismatches).collect();
        run.problem(format!(
            "{} problems: {}",
            all.len(),
            all.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
        ));
        Ok(exit::FAILURE)
    }
}

pub fn write_rdb(ctx: &Context, repo: &Repository, args: &RestoreArgs, path: &Path, run: &mut Run) -> Result<i32> {
    let _lock = ctx.read_lock(repo, "restore")?;
    let snapshots = repo.load_snapshots()?;
    let snap = repo.select(&snapshots, args.snapshot())?;
    run.target(&snap.name);
    run.snapshot(&snap.id());
    run.detail("rdb_file", serde_json::json!(path));
    if snap.kind != bunker_sources::redis::KIND_RDB {
        bail!(
            "snapshot {} is a {} snapshot; --rdb-file needs a Redis snapshot taken with mode = \"rdb\" (restore a key dump with --into redis://…)",
            snap.short_id(),
            snap.kind
        );
    }
    let Root::Stream { content, .. } = &snap.root else { bail!("snapshot {} holds no RDB", snap.short_id()) };
    let (index, _) = repo.load_index()?;
    let bytes = restore::write_rdb_file(&Restorer::new(repo, &index), content, path, args.force)?;
    run.bytes(bytes, 0);
    if ctx.global.json {
        json(&serde_json::json!({ "snapshot": snap.id().to_hex(), "rdb_file": path, "bytes": bytes }));
    } else {
        println!("wrote snapshot {} as {} ({bytes} bytes)", snap.short_id(), path.display());
    }
    Ok(exit::OK)
}
