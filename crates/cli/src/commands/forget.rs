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
    if ctx.global.json {
        json(&serde_json::json!({ "dry_run": args.dry_run, "decisions": decisions }));
    } else {
        for d in &decisions {
            let verdict = if d.keep { format!("keep ({})", d.reasons.join(", ")) } else { "remove".into() };
            println!("{} {} {} {verdict}", &d.snapshot[..8], d.time.format("%Y-%m-%d %H:%M:%S"), d.name);
        }
        let verb = if args.dry_run { "would remove" } else { "removed" };
        println!("{verb} {removed} of {} snapshots", decisions.len());
    }
    if args.prune && !args.dry_run {
        drop(lock);
        return super::prune::run(ctx, crate::cli::PruneArgs { dry_run: false });
    }
    Ok(exit::OK)
}
