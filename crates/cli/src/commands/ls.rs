use anyhow::Result;
use bunker_sources::Item;

use crate::cli::{LsArgs, VersionsArgs};
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};

/// `bunker ls SNAPSHOT [PATTERN] [--long]`.
pub fn list(ctx: &Context, args: LsArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let _lock = ctx.read_lock(&repo, "ls")?;
    let (snap, items) = bunker_ops::browse::list(&repo, &args.snapshot, args.pattern.as_deref())?;
    if ctx.global.json {
        json(&serde_json::json!({ "snapshot": snap.id().to_hex(), "name": snap.name, "items": items }));
        return Ok(exit::OK);
    }
    for i in &items {
        if args.long {
            println!("{}", long_line(i));
        } else {
            println!("{}{}", i.path, if i.kind == "dir" { "/" } else { "" });
        }
    }
    Ok(exit::OK)
}

/// `bunker versions TARGET PATH`.
pub fn versions(ctx: &Context, args: VersionsArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let _lock = ctx.read_lock(&repo, "versions")?;
    let versions = bunker_ops::browse::versions(&repo, &args.target, &args.path)?;
    if ctx.global.json {
        json(&versions);
        return Ok(exit::OK);
    }
    println!("{:<10} {:<20} {:>10} {:<34} changed", "snapshot", "time", "size", "etag");
    for v in &versions {
        println!(
            "{:<10} {:<20} {:>10} {:<34} {}",
            &v.snapshot[..8],
            v.time.format("%Y-%m-%d %H:%M:%S"),
            v.item.size.map(size).unwrap_or_default(),
            v.item.etag.as_deref().unwrap_or("-"),
            if v.changed { "yes" } else { "" }
        );
    }
    let changes = versions.iter().filter(|v| v.changed).count();
    println!(
        "{} snapshots hold {}, {changes} distinct version(s); `bunker dump ID {}` writes one out",
        versions.len(),
        args.path,
        args.path
    );
    Ok(exit::OK)
}

fn long_line(i: &Item) -> String {
    let mode = i.mode.map(|m| format!("{m:04o}")).unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{:<8} {mode:>4} {:>10} {:<20} {}",
        i.kind,
        i.size.map(size).unwrap_or_default(),
        i.modified.as_deref().unwrap_or("-"),
        i.path
    );
    for extra in [i.etag.as_deref(), i.content_type.as_deref(), i.detail.as_deref()].into_iter().flatten() {
        line.push_str("  ");
        line.push_str(extra);
    }
    line
}
