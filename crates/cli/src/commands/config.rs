//! `bunker config check` (being written).

use anyhow::{bail, Result};

use crate::cli::ConfigCommand;
use crate::context::Context;

pub fn run(_ctx: &Context, _command: ConfigCommand) -> Result<i32> {
    bail!("bunker config check is not built yet")
}
