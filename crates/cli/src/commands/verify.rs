use anyhow::Result;
use bunker_engine::snapshot::select;
use bunker_sources::postgres::verify::verify;

use crate::cli::VerifyArgs;
use crate::context::Context;
use crate::exit;

pub fn run(ctx: &Context, args: VerifyArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let snapshots = repo.load_snapshots()?;
    let snap = select(&snapshots, &args.snapshot)?;
    let pg = super::pg::load(ctx, snap)?;
    let against = pg.database(&args.against)?;
    let report = verify(&against, &pg.meta, pg.assertions())?;
    Ok(if super::pg::report(ctx, &report) { exit::OK } else { exit::FAILURE })
}
