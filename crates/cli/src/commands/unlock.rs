use anyhow::Result;
use bunker_engine::lock::remove_locks;

use crate::cli::UnlockArgs;
use crate::context::Context;
use crate::exit;

pub fn run(ctx: &Context, args: UnlockArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let n = remove_locks(repo.storage(), args.remove_all)?;
    println!("removed {n} lock{}", if n == 1 { "" } else { "s" });
    Ok(exit::OK)
}
