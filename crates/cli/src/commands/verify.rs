//! `bunker verify SNAPSHOT --against WHERE`: a live copy checked against what the snapshot recorded,
//! without restoring anything (for PostgreSQL dumps: row counts, foreign keys and the target's
//! assertions), by the snapshot's kind.

use anyhow::Result;
use bunker_engine::Repository;

use crate::cli::VerifyArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::{Finish, Run};

pub fn run(ctx: &Context, args: VerifyArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let mut run = Run::start("verify");
    run.target(&args.snapshot);
    let outcome = verify_against(ctx, &repo, &args, &mut run);
    run.finish(&repo, outcome.as_ref().copied());
    outcome
}

fn verify_against(ctx: &Context, repo: &Repository, args: &VerifyArgs, run: &mut Run) -> Result<i32> {
    let snapshots = repo.load_snapshots()?;
    let snap = repo.select(&snapshots, &args.snapshot)?;
    run.target(&snap.name);
    run.snapshot(&snap.id());
    let target = ctx.config()?.and_then(|c| c.config.target(bunker_ops::points::target_of(&snap.name)));
    let found = bunker_sources::kind_of_snapshot(snap).verify_against(snap, target, &args.against)?;
    for (k, v) in &found.details {
        run.detail(k, v.clone());
    }
    if !found.problems.is_empty() {
        run.problem(found.problems.join("; "));
    }
    if ctx.global.json {
        json(&found.json);
    } else {
        for line in &found.lines {
            println!("{line}");
        }
        for w in &found.warnings {
            eprintln!("{w}");
        }
    }
    Ok(if found.problems.is_empty() { exit::OK } else { exit::FAILURE })
}
