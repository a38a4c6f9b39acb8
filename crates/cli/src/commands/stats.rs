use anyhow::Result;

use crate::context::Context;
use crate::exit;
use crate::output::{json, size};

pub fn run(ctx: &Context) -> Result<i32> {
    let repo = ctx.open()?;
    let _lock = ctx.read_lock(&repo, "stats")?;
    let s = bunker_engine::stats::stats(&repo)?;
    if ctx.global.json {
        json(&s);
    } else {
        println!("snapshots:          {}", s.snapshots);
        println!("logical size:       {}", size(s.logical_bytes));
        println!("unique data:        {}", size(s.unique_bytes));
        println!("stored:             {} ({} packs, {} blobs)", size(s.stored_bytes), s.packs, s.blobs);
        if s.objects > 0 {
            println!("named objects:      {} ({}; archived WAL)", s.objects, size(s.object_bytes));
        }
        println!("dedup ratio:        {:.2}x", s.dedup_ratio);
        println!("compression ratio:  {:.2}x", s.compression_ratio);
    }
    Ok(exit::OK)
}
