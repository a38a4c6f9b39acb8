use anyhow::{bail, Result};
use bunker_engine::retention::{apply, Decision, Policy};
use bunker_engine::FileId;

use crate::cli::ForgetArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::Run;

/// Without `--keep-*` options, each target's policy comes from the stack file (`[retention]` and its
/// own `retention` keys), with its `min_age` floor; snapshots of targets without one are all kept.
pub fn run(ctx: &Context, args: ForgetArgs) -> Result<i32> {
    let policy = Policy {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within: args.keep_within.map(duration),
        min_age: args.min_age.map(duration),
    };
    let from_flags = !policy.is_empty();
    let stack = if from_flags { None } else { ctx.config()? };
    if !from_flags && !stack.is_some_and(|s| s.config.targets.iter().any(|t| s.config.retention_for(t).is_some())) {
        bail!(
            "no retention policy given: pass at least one --keep-* option, or add [retention] to the stack file \
             (forget never removes everything)"
        );
    }
    let repo = ctx.open()?;
    let mut run = Run::start("forget");
    let outcome = forget(ctx, &repo, &args, &policy, stack, &mut run);
    run.finish(&repo, outcome.as_ref().copied());
    let code = outcome?;
    if code == exit::OK && args.prune && !args.dry_run {
        return super::prune::run(ctx, crate::cli::PruneArgs { dry_run: false });
    }
    Ok(code)
}

fn forget(
    ctx: &Context,
    repo: &bunker_engine::Repository,
    args: &ForgetArgs,
    policy: &Policy,
    stack: Option<&bunker_config::LoadedConfig>,
    run: &mut Run,
) -> Result<i32> {
    let lock = ctx.lock(repo, true, "forget")?;
    let snapshots: Vec<_> =
        repo.load_snapshots()?.into_iter().filter(|s| args.name.as_ref().is_none_or(|n| &s.name == n)).collect();
    let now = chrono::Utc::now();
    let decisions = match stack {
        None => apply(policy, &snapshots, now),
        Some(stack) => {
            let mut decisions = Vec::new();
            let mut by_name: std::collections::BTreeMap<&str, Vec<bunker_engine::Snapshot>> = Default::default();
            for s in &snapshots {
                by_name.entry(s.name.as_str()).or_default().push(s.clone());
            }
            for (name, mut group) in by_name {
                group.sort_by_key(|s| std::cmp::Reverse(s.time));
                let configured = stack.config.target_of_snapshot(name).and_then(|t| stack.config.retention_for(t));
                let policy = match configured {
                    Some(r) if r.has_rules() => stack_policy(&r, args.min_age),
                    _ => {
                        // No policy for this one: everything stays.
                        let why = if stack.config.target_of_snapshot(name).is_some() {
                            "no retention policy"
                        } else {
                            "not a target of the stack file"
                        };
                        decisions.extend(group.iter().map(|s| Decision {
                            snapshot: s.id().to_hex(),
                            name: s.name.clone(),
                            time: s.time,
                            keep: true,
                            reasons: vec![why.to_string()],
                        }));
                        continue;
                    }
                };
                decisions.extend(apply(&policy, &group, now));
            }
            decisions
        }
    };
    if !args.dry_run {
        lock.verify()?;
        for d in decisions.iter().filter(|d| !d.keep) {
            repo.delete_snapshot(&FileId::from_hex(&d.snapshot)?)?;
        }
    }
    let removed = decisions.iter().filter(|d| !d.keep).count();
    run.detail("dry_run", args.dry_run.into());
    run.detail("removed", removed.into());
    run.detail("kept", (decisions.len() - removed).into());
    let wal_expired = expire_wal(repo, &snapshots, &decisions, args.dry_run)?;
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
    Ok(exit::OK)
}

fn duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("duration in range")
}

/// A stack file policy, its floor being `min_age` (7 days unless set), or `--min-age` over it.
fn stack_policy(r: &bunker_config::RetentionConfig, min_age: Option<std::time::Duration>) -> Policy {
    Policy {
        keep_last: r.keep_last,
        keep_hourly: r.keep_hourly,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
        keep_within: r.keep_within.map(duration),
        min_age: Some(duration(min_age.unwrap_or(r.floor()))),
    }
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
