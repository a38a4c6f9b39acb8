//! `bunker copy --to NAME` (being written).

use anyhow::{bail, Result};

use crate::cli::CopyArgs;
use crate::context::Context;

pub fn run(_ctx: &Context, _args: CopyArgs) -> Result<i32> {
    bail!("bunker copy is not built yet")
}
