//! Drills: restore a recovery point into scratch servers and directories on this host, verify it, run
//! the user's smoke tests against it, and measure RTO and RPO.

pub mod html;
pub mod record;

use anyhow::{bail, Result};

use crate::cli::DrillArgs;
use crate::context::Context;

pub fn run(_ctx: &Context, _args: &DrillArgs) -> Result<i32> {
    bail!("drill: under construction")
}
