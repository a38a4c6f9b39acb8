//! `bunker drill`: flags → [`bunker_ops::drill`] → the record printed (and the HTML report written).

use anyhow::Result;
use bunker_ops::drill::record::{secs, DrillRecord};
use bunker_ops::drill::DrillRequest;

use crate::cli::DrillArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};
use crate::runs::Printer;

pub fn run(ctx: &Context, args: DrillArgs) -> Result<i32> {
    let config = ctx.config()?.map(|l| &l.config);
    let repo = ctx.open()?;
    let request = DrillRequest { point: args.point, targets: args.targets, group: args.group, keep: args.keep };
    let drilled = bunker_ops::drill::run(config, &repo, ctx.lock_policy(), &request, &Printer)?;
    let code = if bunker_engine::interrupt::requested() {
        exit::INTERRUPTED
    } else if drilled.record.passed {
        exit::OK
    } else {
        exit::FAILURE
    };
    drop(drilled.teardown);
    print(ctx, &drilled.record);
    if let Some(path) = args.report.as_ref().or(config.and_then(|c| c.drill.report.as_ref())) {
        bunker_ops::drill::write_report(&repo, path)?;
        let shown = format!("report: {}", path.display());
        if ctx.global.json {
            eprintln!("bunker: {shown}");
        } else {
            println!("{shown}");
        }
    }
    Ok(code)
}

fn print(ctx: &Context, r: &DrillRecord) {
    if ctx.global.json {
        json(r);
        return;
    }
    println!(
        "drill of {} (taken {}): {}",
        r.point.as_deref().map(|p| format!("recovery point {p}")).unwrap_or("the newest snapshots".into()),
        r.point_time.format("%Y-%m-%d %H:%M:%S UTC"),
        if r.passed { "PASSED" } else { "FAILED" }
    );
    for t in &r.targets {
        println!(
            "  {:<16} {:<18} {:>8}  {:>10} restored at {:>7.1} MiB/s  RPO {}{}  {}",
            t.target,
            t.kind,
            secs(t.rto_seconds),
            size(t.bytes),
            t.throughput_bytes_per_second / (1 << 20) as f64,
            secs(t.rpo_seconds),
            t.live_rpo_seconds.map(|l| format!(" (live {})", secs(l))).unwrap_or_default(),
            if t.passed { "ok" } else { "FAILED" }
        );
        for c in &t.checks {
            println!("      {} {}: {}", if c.passed { "ok  " } else { "FAIL" }, c.name, c.detail);
        }
        if let Some(e) = &t.error {
            println!("      FAIL {e}");
        }
    }
    for h in &r.hooks {
        let whose = if h.scope == "drill" { String::new() } else { format!(" ({})", h.scope) };
        let result = if !h.ran {
            "not run".to_string()
        } else if h.passed {
            "ok".to_string()
        } else {
            h.detail.clone()
        };
        println!("  after_restore {:?}{whose}: {result} in {}", h.command, secs(h.seconds));
    }
    let objective = |o: Option<f64>| o.map(|o| format!(" (objective {})", secs(o))).unwrap_or_default();
    println!(
        "  RTO {}{}, RPO {}{}, {} restored",
        secs(r.rto_seconds),
        objective(r.rto_objective_seconds),
        secs(r.rpo_seconds),
        objective(r.rpo_objective_seconds),
        size(r.bytes_restored)
    );
    for p in &r.problems {
        println!("  PROBLEM: {p}");
    }
    for k in &r.kept {
        println!("  kept: {k}");
    }
}
