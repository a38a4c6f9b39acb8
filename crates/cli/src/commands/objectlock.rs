use anyhow::Result;
use bunker_ops::details::{Details, ObjectLockDetails};

use crate::cli::ObjectLockCommand;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::{Finish, Run};

/// `bunker object-lock extend`, recorded in the catalog (operation `object-lock`): the earliest lock
/// end it leaves is what `status` and `/metrics` report.
pub fn run(ctx: &Context, command: ObjectLockCommand) -> Result<i32> {
    let ObjectLockCommand::Extend { dry_run } = command;
    let repo = ctx.open()?;
    let mut run = Run::start("object-lock");
    let outcome = extend(ctx, &repo, dry_run, &mut run);
    run.finish(&repo, outcome.as_ref().copied());
    outcome
}

fn extend(ctx: &Context, repo: &bunker_engine::Repository, dry_run: bool, run: &mut Run) -> Result<i32> {
    let r = bunker_engine::objectlock::extend(repo, dry_run)?;
    run.details(&Details::ObjectLock(ObjectLockDetails {
        dry_run,
        objects: r.objects as u64,
        extended: r.extended as u64,
        until: r.until,
        earliest_until: r.earliest_until,
    }));
    if ctx.global.json {
        json(&r);
        return Ok(exit::OK);
    }
    let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let verb = if dry_run { "would extend" } else { "extended" };
    match r.until {
        Some(until) => println!("{verb} the lock of {} of {} objects to {}", r.extended, r.objects, when(until)),
        None => println!("all {} objects kept snapshots need are locked far enough ahead", r.objects),
    }
    if let Some(e) = r.earliest_until {
        println!("the earliest lock ends {}", when(e));
    }
    if r.unreferenced_packs + r.superseded_index_files > 0 {
        println!(
            "left alone: {} packs no kept snapshot uses and {} superseded index files (prune removes them once their lock ends)",
            r.unreferenced_packs, r.superseded_index_files
        );
    }
    if !r.exact {
        println!("(this host cannot read the snapshots' trees: every pack the index lists was treated as needed)");
    }
    Ok(exit::OK)
}
