//! `bunker daemon` (being written).

use anyhow::{bail, Result};

use crate::cli::DaemonArgs;
use crate::context::Context;

pub fn run(_ctx: &Context, _args: DaemonArgs) -> Result<i32> {
    bail!("bunker daemon is not built yet")
}
