//! Restoring S3 snapshots into a bucket and prefix: `--into s3://…` [--dry-run] [--delete-extra].

use anyhow::{bail, Result};
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::storage::Location;
use bunker_engine::{Repository, Snapshot};
use bunker_sources::s3::bucket::{Bucket, BucketSpec};
use bunker_sources::s3::restore::{restore, S3RestoreOptions};

use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};
use crate::runs::Run;

pub fn restore_into(
    ctx: &Context,
    repo: &Repository,
    args: &RestoreArgs,
    snap: &Snapshot,
    into: &str,
    run: &mut Run,
) -> Result<i32> {
    let Location::S3(dest) = Location::parse(into)? else {
        bail!("--into {into:?}: an S3 snapshot is restored into s3://BUCKET/PREFIX[?endpoint=URL&region=R]")
    };
    // The target's credentials (and concurrency) serve the destination too, unless the environment has its own.
    let target = ctx.config()?.and_then(|c| c.config.target(&snap.name));
    let (source_spec, concurrency) = match target {
        Some(t) if t.kind == "s3" => {
            let (s, c) = bunker_sources::s3::spec(t)?;
            (Some(s), c)
        }
        _ => (None, 8),
    };
    let spec = BucketSpec::at(&dest, source_spec.as_ref());
    run.detail("into", spec.display().into());
    let Root::Stream { content, .. } = &snap.root else { bail!("snapshot {} holds no manifest", snap.short_id()) };
    let started = std::time::Instant::now();
    let (index, _) = repo.load_index()?;
    let restorer = Restorer::new(repo, &index);
    let entries = bunker_sources::s3::read_manifest(&restorer, content)?;
    let bucket = Bucket::open(&spec)?;
    let opts =
        S3RestoreOptions { dry_run: args.dry_run, delete_extra: args.delete_extra, force: args.force, concurrency };
    let report = restore(&restorer, &entries, &bucket, &opts)?;
    run.bytes(report.bytes_written, 0);
    run.detail("written", report.written.len().into());
    if ctx.global.json {
        json(&serde_json::json!({ "snapshot": snap.id().to_hex(), "into": spec.display(), "report": report }));
    } else {
        let verb = if args.dry_run { "would write" } else { "wrote" };
        if args.dry_run {
            for k in &report.written {
                println!("write  {k}");
            }
            for k in &report.extra {
                println!("{}  {k}", if args.delete_extra { "delete" } else { "extra (kept; --delete-extra deletes)" });
            }
        }
        println!(
            "{verb} {} of {} objects ({}) into {}; {} already there; {} extra{} in {:.1}s",
            report.written.len(),
            entries.len(),
            size(report.bytes_written),
            spec.display(),
            report.unchanged,
            report.extra.len(),
            if args.delete_extra && !args.dry_run { format!(", {} deleted", report.deleted) } else { String::new() },
            started.elapsed().as_secs_f64()
        );
        if !args.dry_run {
            println!("  {} objects read back and equal to the snapshot", report.verified);
        }
        for k in &report.mismatches {
            println!("  PROBLEM: {k:?} differs after writing");
        }
    }
    if report.mismatches.is_empty() {
        Ok(exit::OK)
    } else {
        run.problem(format!("{} objects differ after writing", report.mismatches.len()));
        Ok(exit::FAILURE)
    }
}
