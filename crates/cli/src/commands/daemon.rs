//! `bunker daemon`: the loop lives in [`crate::daemon`].

use anyhow::Result;

use crate::cli::DaemonArgs;
use crate::context::Context;

pub fn run(ctx: &Context, args: DaemonArgs) -> Result<i32> {
    crate::daemon::run(ctx, args)
}
