use anyhow::Result;
use bunker_engine::Repository;
use bunker_sources::postgres::verify::verify;

use crate::cli::VerifyArgs;
use crate::context::Context;
use crate::runs::Run;

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
    let pg = super::pg::load(ctx, snap)?;
    let against = pg.database(&args.against)?;
    run.detail("against", against.display().into());
    let report = verify(&against, &pg.meta.tables, pg.assertions())?;
    Ok(super::pg::report(ctx, &report, run))
}
