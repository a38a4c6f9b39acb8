//! `bunker drill`: see [`crate::drill`].

use anyhow::Result;

use crate::cli::DrillArgs;
use crate::context::Context;

pub fn run(ctx: &Context, args: DrillArgs) -> Result<i32> {
    crate::drill::run(ctx, &args)
}
