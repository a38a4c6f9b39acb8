//! `bunker report` (being written).

use anyhow::{bail, Result};

use crate::cli::ReportArgs;
use crate::context::Context;

pub fn run(_ctx: &Context, _args: ReportArgs) -> Result<i32> {
    bail!("bunker report is not built yet")
}
