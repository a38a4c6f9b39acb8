use anyhow::Result;

use crate::cli::SnapshotsArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};

pub fn run(ctx: &Context, args: SnapshotsArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let snapshots: Vec<_> =
        repo.load_recent_snapshots()?.into_iter().filter(|s| args.name.as_ref().is_none_or(|n| &s.name == n)).collect();
    if ctx.global.json {
        let rows: Vec<_> = snapshots
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).expect("serialisable");
                v["id"] = s.id().to_hex().into();
                v
            })
            .collect();
        json(&rows);
        return Ok(exit::OK);
    }
    println!("{:<10} {:<20} {:<16} {:<8} {:>12} {:<12} tags", "id", "time", "name", "kind", "size", "host");
    for s in &snapshots {
        println!(
            "{:<10} {:<20} {:<16} {:<8} {:>12} {:<12} {}{}",
            s.short_id(),
            s.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S"),
            s.name,
            s.kind,
            size(s.stats.bytes_read),
            s.host,
            s.tags.join(","),
            if s.warnings.is_empty() { "" } else { " (incomplete)" }
        );
    }
    println!("{} snapshots", snapshots.len());
    Ok(exit::OK)
}
