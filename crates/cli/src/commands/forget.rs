use anyhow::{bail, Result};
use bunker_engine::retention::{apply, Decision, Policy};
use bunker_engine::FileId;
use bunker_ops::details::{Details, ForgetDetails};

use crate::cli::ForgetArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::{Finish, Run};

/// Without `--keep-*` options, each target's policy comes from the stack file (`[retention]` and its
/// own `retention` keys), with its `min_age` floor; snapshots of targets without one are all kept. With
/// them, every snapshot is judged by those rules, under the floor the stack file sets for it (see
/// [`policy_for`]).
pub fn run(ctx: &Context, args: ForgetArgs) -> Result<i32> {
    let flags = Policy {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within: args.keep_within.map(duration),
        min_age: None,
    };
    let stack = ctx.config()?;
    if flags.is_empty() && !stack.is_some_and(|s| s.config.targets.iter().any(|t| s.config.retention_for(t).is_some()))
    {
        bail!(
            "no retention policy given: pass at least one --keep-* option, or add [retention] to the stack file \
             (forget never removes everything)"
        );
    }
    let repo = ctx.open()?;
    let mut run = Run::start("forget");
    let outcome = forget(ctx, &repo, &args, &flags, stack.map(|s| &s.config), &mut run);
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
    flags: &Policy,
    stack: Option<&bunker_config::Config>,
    run: &mut Run,
) -> Result<i32> {
    let lock = ctx.lock(repo, true, "forget")?;
    let snapshots: Vec<_> =
        repo.load_snapshots()?.into_iter().filter(|s| args.name.as_ref().is_none_or(|n| &s.name == n)).collect();
    let now = chrono::Utc::now();
    let mut by_name: std::collections::BTreeMap<&str, Vec<bunker_engine::Snapshot>> = Default::default();
    for s in &snapshots {
        by_name.entry(s.name.as_str()).or_default().push(s.clone());
    }
    let mut decisions = Vec::new();
    for (name, mut group) in by_name {
        match policy_for(name, flags, args.min_age, stack) {
            Ok(policy) => decisions.extend(apply(&policy, &group, now)),
            Err(why) => {
                // No policy for this one: everything stays.
                group.sort_by_key(|s| std::cmp::Reverse(s.time));
                decisions.extend(group.iter().map(|s| Decision {
                    snapshot: s.id().to_hex(),
                    name: s.name.clone(),
                    time: s.time,
                    keep: true,
                    reasons: vec![why.to_string()],
                }));
            }
        }
    }
    let mut retained = Vec::new();
    if !args.dry_run {
        lock.verify()?;
        for d in decisions.iter_mut().filter(|d| !d.keep) {
            match repo.delete_snapshot(&FileId::from_hex(&d.snapshot)?) {
                // S3 Object Lock still retains the snapshot file: it stays, and a later forget removes it.
                Err(bunker_engine::Error::Retained { until, .. }) => {
                    d.keep = true;
                    d.reasons = vec![format!("locked until {until}")];
                    retained.push(d.snapshot.clone());
                }
                r => r?,
            }
        }
    }
    let removed = decisions.iter().filter(|d| !d.keep).count();
    run.details(&Details::Forget(ForgetDetails {
        dry_run: args.dry_run,
        removed: removed as u64,
        kept: (decisions.len() - removed) as u64,
    }));
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
        if !retained.is_empty() {
            println!("kept {} snapshots S3 Object Lock still retains; a later forget removes them", retained.len());
        }
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

/// The policy for the snapshots called `name`, or why they are all kept.
///
/// Rules given on the command line (`flags`) apply to every name; their floor is `--min-age`, else, where
/// the stack file has a policy for the name's target (`[retention]` or the target's own, even
/// `retention = "none"`), that policy's `min_age` (7 days unless set), else, for a name that is no
/// target, `[retention]`'s; with none of these, no floor. Without such rules, a target's policy from the
/// stack file, its floor `--min-age` or its `min_age`; a target whose policy has no rule in force, and
/// any other name, keeps everything.
fn policy_for(
    name: &str,
    flags: &Policy,
    min_age: Option<std::time::Duration>,
    stack: Option<&bunker_config::Config>,
) -> std::result::Result<Policy, &'static str> {
    let target = stack.and_then(|c| c.target_of_snapshot(name));
    let configured = match (stack, target) {
        (Some(c), Some(t)) => c.retention_for(t),
        _ => None,
    };
    if !flags.is_empty() {
        let stack_floor = match target {
            Some(_) => configured.as_ref().map(|r| r.floor()),
            None => stack.and_then(|c| c.retention.as_ref()).map(|r| r.floor()),
        };
        return Ok(Policy { min_age: min_age.or(stack_floor).map(duration), ..flags.clone() });
    }
    match configured {
        Some(r) if r.has_rules() => Ok(stack_policy(&r, min_age)),
        _ if target.is_some() => Err("no retention policy"),
        _ => Err("not a target of the stack file"),
    }
}

/// A stack file policy (rules in force only, as [`bunker_config::Config::retention_for`] gives it), its
/// floor being `min_age` (7 days unless set), or `--min-age` over it.
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

/// What retention does beside forgetting snapshots, target by target, as each kind says (physical
/// PostgreSQL: the archived WAL older than its oldest base backup that stays; a target left with no base
/// backup keeps all its WAL). Returns what each target's kind removed (or would).
fn expire_wal(
    repo: &bunker_engine::Repository,
    snapshots: &[bunker_engine::Snapshot],
    decisions: &[bunker_engine::retention::Decision],
    dry_run: bool,
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let kept: std::collections::HashSet<&str> =
        decisions.iter().filter(|d| d.keep).map(|d| d.snapshot.as_str()).collect();
    let mut by_name: std::collections::BTreeMap<&str, Vec<&bunker_engine::Snapshot>> = Default::default();
    for s in snapshots {
        by_name.entry(s.name.as_str()).or_default().push(s);
    }
    let mut out = std::collections::BTreeMap::new();
    for (name, before) in by_name {
        let kind = bunker_sources::kind_of_snapshot(before[0]);
        let left: Vec<&bunker_engine::Snapshot> =
            before.iter().copied().filter(|s| kept.contains(s.id().to_hex().as_str())).collect();
        let files = kind.after_forget(repo, name, &before, &left, dry_run)?;
        if !files.is_empty() {
            out.insert(name.to_string(), files);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: std::time::Duration = std::time::Duration::from_secs(86400);

    fn stack(text: &str) -> bunker_config::Config {
        bunker_config::Config::parse_with_env(text, std::path::Path::new("/b.toml"), &|_| None).unwrap()
    }

    fn floor(p: &Policy) -> Option<std::time::Duration> {
        p.min_age.map(|d| d.to_std().unwrap())
    }

    const STACK: &str = "[retention]\nkeep_daily = 7\nmin_age = \"3d\"\n\n\
                         [targets.db]\ntype = \"files\"\nretention = { keep_daily = 0, keep_last = 2, min_age = \"1d\" }\n\n\
                         [targets.web]\ntype = \"files\"\n\n\
                         [targets.media]\ntype = \"files\"\nretention = \"none\"\n";

    #[test]
    fn command_line_rules_keep_the_stack_files_floor() {
        let flags = Policy { keep_last: Some(1), ..Default::default() };
        let c = stack(STACK);
        let for_name = |name, min_age| policy_for(name, &flags, min_age, Some(&c)).unwrap();
        assert_eq!(floor(&for_name("db", None)), Some(DAY), "the target's own min_age");
        assert_eq!(floor(&for_name("db/app", None)), Some(DAY), "a part of a target");
        assert_eq!(floor(&for_name("web", None)), Some(3 * DAY), "[retention]'s");
        assert_eq!(floor(&for_name("media", None)), Some(3 * DAY), "\"none\" switches rules off, not the floor");
        assert_eq!(floor(&for_name("adhoc", None)), Some(3 * DAY), "a name that is no target: [retention]'s");
        assert_eq!(floor(&for_name("db", Some(std::time::Duration::ZERO))), Some(std::time::Duration::ZERO));
        let p = for_name("web", None);
        assert_eq!((p.keep_last, p.keep_daily), (Some(1), None), "the command line's rules, not the file's");

        // Without [retention], the default floor only for targets with a policy of their own.
        let c =
            stack("[targets.db]\ntype = \"files\"\nretention = { keep_last = 2 }\n[targets.web]\ntype = \"files\"\n");
        let for_name = |name| floor(&policy_for(name, &flags, None, Some(&c)).unwrap());
        assert_eq!(for_name("db"), Some(bunker_config::DEFAULT_MIN_AGE));
        assert_eq!((for_name("web"), for_name("adhoc")), (None, None));
        assert_eq!(floor(&policy_for("db", &flags, None, None).unwrap()), None, "no stack file: no floor");
    }

    #[test]
    fn stack_policies_never_carry_a_switched_off_rule() {
        let c = stack(STACK);
        let none = Policy::default();
        let db = policy_for("db", &none, None, Some(&c)).unwrap();
        assert_eq!((db.keep_last, db.keep_daily, floor(&db)), (Some(2), None, Some(DAY)));
        let web = policy_for("web", &none, None, Some(&c)).unwrap();
        assert_eq!((web.keep_daily, floor(&web)), (Some(7), Some(3 * DAY)));
        assert_eq!(policy_for("media", &none, None, Some(&c)).unwrap_err(), "no retention policy");
        assert_eq!(policy_for("adhoc", &none, None, Some(&c)).unwrap_err(), "not a target of the stack file");
    }
}
