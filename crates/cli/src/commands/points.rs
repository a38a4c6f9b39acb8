//! `bunker points`: the recovery points `backup --all` / `--group` took (see [`bunker_ops::points`]),
//! complete or not.

use anyhow::Result;
use bunker_ops::points;

use crate::context::Context;
use crate::exit;
use crate::output::json;

/// `bunker points`: each recovery point, oldest first: its time, targets, the snapshots of it that
/// remain, and whether it is complete (every target it meant to take has a snapshot in it).
pub fn list(ctx: &Context) -> Result<i32> {
    let repo = ctx.open()?;
    // Runs first: their listing is the catalog fingerprint the snapshots' memo is checked against.
    let runs = repo.load_runs_of(&["point"])?;
    let snapshots = repo.load_recent_snapshots()?;
    let rows = points::list(&runs, &snapshots);
    if ctx.global.json {
        json(&rows);
    } else {
        for p in &rows {
            println!(
                "{}  {}  {} snapshots{}",
                p.point,
                if p.complete { "complete  " } else { "INCOMPLETE" },
                p.snapshots.len(),
                if p.missing.is_empty() {
                    String::new()
                } else {
                    format!(", missing: {}", serde_json::json!(p.missing))
                }
            );
        }
        println!("{} recovery points", rows.len());
    }
    Ok(exit::OK)
}
