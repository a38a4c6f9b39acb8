use anyhow::{bail, Result};
use bunker_engine::retention::{apply, Policy};
use bunker_engine::FileId;

use crate::cli::ForgetArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;

pub fn run(ctx: &Context, args: ForgetArgs) -> Result<i32> {
    let policy = Policy {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within: args.keep_within.map(|d| chrono::Duration::from_std(d).expect("duration in range")),
    };
    if policy.is_empty() {
        bail!("no retention policy given: pass at least one --keep-* option (forget never removes everything)");
    }
    let repo = ctx.open()?;
    let lock = ctx.lock(&repo, true, "forget")?;
    let snapshots: Vec<_> =
        repo.load_snapshots()?.into_iter().filter(|s| args.name.as_ref().is_none_or(|n| &s.name == n)).collect();
    let decisions = apply(&policy, &snapshots);
    if !args.dry_run {
        lock.verify()?;
        for d in decisions.iter().filter(|d| !d.keep) {
            repo.delete_snapshot(&FileId::from_hex(&d.snapshot)?)?;
        }
    }
    let removed = decisions.iter().filter(|d| !d.keep).count();
    let wal_expired = expire_wal(&repo, &snapshots, &decisions, args.dry_run)?;
    if ctx.global.json {
        json(&serde_json::json!({ "dry_run": args.dry_run, "decisions": decisions, "wal_expired": wal_expired }));
    } else {
        for d in &decisions {
            let verdict = if d.keep { format!("keep ({})", d.reasons.join(", ")) } else { "remove".into() };
            println!("{} {} {} {verdict}", &d.snapshot[..8], d.time.format("%Y-%m-%d %H:%M:%S"), d.name);
        }
        let verb = if args.dry_run { "would remove" } else { "removed" };
        println!("{verb} {removed} of {} snapshots", decisions.len());
        for (target, files) in &wal_expired {
            if !files.is_empty() {
                println!("{verb} {} archived WAL files of {target} older than its oldest base backup", files.len());
            }
        }
    }
    if args.prune && !args.dry_run {
        drop(lock);
        return super::prune::run(ctx, crate::cli::PruneArgs { dry_run: false });
    }
    Ok(exit::OK)
}

/// For each physical PostgreSQL target, the archived WAL older than its oldest base backup that stays.
/// A target left with no base backup keeps all its WAL.
fn expire_wal(
    repo: &bunker_engine::Repository,
    snapshots: &[bunker_engine::Snapshot],
    decisions: &[bunker_engine::retention::Decision],
    dry_run: bool,
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    use bunker_sources::postgres::physical::{PhysicalMeta, KIND};
    let kept: std::collections::HashSet<&str> =
        decisions.iter().filter(|d| d.keep).map(|d| d.snapshot.as_str()).collect();
    let mut oldest: std::collections::BTreeMap<String, PhysicalMeta> = Default::default();
    let mut targets = std::collections::BTreeSet::new();
    for s in snapshots.iter().filter(|s| s.kind == KIND) {
        targets.insert(s.name.clone());
        if !kept.contains(s.id().to_hex().as_str()) {
            continue;
        }
        let Ok(meta) = serde_json::from_value::<PhysicalMeta>(s.meta.clone()) else { continue };
        let older = oldest.get(&s.name).is_none_or(|o| meta.start_lsn_value() < o.start_lsn_value());
        if older {
            oldest.insert(s.name.clone(), meta);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for target in targets {
        let Some(meta) = oldest.get(&target) else {
            tracing::warn!("{target} keeps no base backup; its archived WAL is kept whole");
            continue;
        };
        let Some(start) = meta.start_segment() else { continue };
        let files = bunker_sources::postgres::wal::expire(repo, &target, start, meta.segment_size, dry_run)?;
        out.insert(target, files);
    }
    Ok(out)
}
