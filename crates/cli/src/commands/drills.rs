//! `bunker drills`.
use anyhow::Result;

use crate::cli::DrillsArgs;
use crate::context::Context;

pub fn run(_ctx: &Context, _args: DrillsArgs) -> Result<i32> {
    anyhow::bail!("drills: under construction")
}
