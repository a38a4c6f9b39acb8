//! Redis as a [`Kind`]: snapshots go back into a server (`--into redis://…`, then key counts and a
//! sample checked) or out as an RDB file (`--rdb-file`); a drill restores into a scratch `redis-server`.

use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::Snapshot;

use super::url::RedisUrl;
use super::{restore, RedisMeta, KIND_KEYS, KIND_RDB};
use crate::drill::{facts, Check, Clock, DrillJob, DrillOutcome};
use crate::{fail, Destination, HomeBase, Kind, Planned, RestoreJob, Restored, SourceError};

pub struct Redis;

impl Kind for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn snapshot_kinds(&self) -> &'static [&'static str] {
        &[KIND_RDB, KIND_KEYS]
    }

    fn plan(&self, target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
        super::plan(target)
    }

    fn home(
        &self,
        _: &Snapshot,
        target: &bunker_config::TargetConfig,
        _: &HomeBase,
    ) -> Result<Destination, SourceError> {
        let Some(url) = target.options.get("url").and_then(|u| u.as_str()) else {
            return Err(fail(format!("target {} has no url", target.name)));
        };
        Ok(Destination::Into(url.to_string()))
    }

    fn restore(&self, job: &RestoreJob<'_>) -> Result<Restored, SourceError> {
        match job.destination {
            Destination::Into(url) => into_server(job, url),
            Destination::RdbFile(path) => rdb_file(job, path),
            other => Err(fail(format!(
                "snapshot {} is a Redis snapshot; restore it with --into redis://… or --rdb-file PATH (not {})",
                job.snapshot.short_id(),
                other.flag()
            ))),
        }
    }

    fn drill(&self, job: &DrillJob<'_>, out: &mut DrillOutcome) -> Result<(), SourceError> {
        let snap = job.main()?;
        drill(job, snap, out)
    }

    fn smoke_variable(&self) -> Option<&'static str> {
        Some("BUNKER_DRILL_REDIS_URL")
    }

    fn selects_by(&self) -> &'static [&'static str] {
        &["--match", "--db"]
    }

    /// Every key, as `KEY` with its database, TTL and the size of its serialised value (an RDB snapshot
    /// is loaded by a scratch `redis-server` first).
    fn list(&self, restorer: &Restorer<'_>, snapshot: &Snapshot) -> Result<Vec<crate::Item>, SourceError> {
        let meta = meta(snapshot)?;
        let Root::Stream { content, .. } = &snapshot.root else {
            return Err(fail(format!("snapshot {} holds no Redis data", snapshot.short_id())));
        };
        let taken = snapshot.time.timestamp_millis();
        let mut items = restore::with_frames(restorer, content, &meta, |frames| {
            let mut out = Vec::new();
            for f in frames {
                let f = f.map_err(|e| SourceError::Tool { tool: "redis key stream".into(), detail: e.to_string() })?;
                let ttl = if f.expires_at >= 0 {
                    format!(", ttl {}s at the snapshot", ((f.expires_at - taken).max(0) + 999) / 1000)
                } else {
                    String::new()
                };
                out.push(crate::Item {
                    path: String::from_utf8_lossy(&f.key).into_owned(),
                    kind: "key",
                    size: Some(f.payload.len() as u64),
                    detail: Some(format!("db{}{ttl}", f.db)),
                    ..Default::default()
                });
            }
            Ok(out)
        })?;
        items.sort_by(|a, b| (&a.detail, &a.path).cmp(&(&b.detail, &b.path)));
        Ok(items)
    }
}

fn meta(snap: &Snapshot) -> Result<RedisMeta, SourceError> {
    facts(snap, "Redis")
}

fn into_server(job: &RestoreJob<'_>, into: &str) -> Result<Restored, SourceError> {
    let snap = job.snapshot;
    let meta = meta(snap)?;
    let target = RedisUrl::parse(into)?;
    let Root::Stream { content, .. } = &snap.root else {
        return Err(fail(format!("snapshot {} holds no Redis data", snap.short_id())));
    };
    let started = std::time::Instant::now();
    let restorer = Restorer::new(job.repo, job.index);
    let filter = restore::KeyFilter::new(job.options.match_keys.as_deref(), job.options.db)?;
    let report = restore::restore_into(&restorer, content, &meta, &target, job.options.force, &filter)?;
    let restored: u64 = report.databases.iter().map(|d| d.restored).sum();
    if !filter.is_all() && report.picked == 0 {
        return Err(fail(format!(
            "--match/--db picks no key of snapshot {} (`bunker ls {}` lists its keys); nothing was restored",
            snap.short_id(),
            snap.short_id()
        )));
    }
    let mut out = Restored {
        into: target.display(),
        details: vec![("into".into(), target.display().into()), ("keys".into(), restored.into())],
        json: serde_json::json!({ "snapshot": snap.id().to_hex(), "into": target.display(), "report": report }),
        verified: true,
        ..Default::default()
    };
    out.lines.push(format!(
        "restored snapshot {} ({} mode, {} keys) into {} in {:.1}s",
        snap.short_id(),
        meta.mode,
        restored,
        target.display(),
        started.elapsed().as_secs_f64()
    ));
    for d in &report.databases {
        out.lines.push(format!(
            "  db{}: {} keys {} ({} with a TTL), {} restored, {} present",
            d.db,
            d.recorded,
            if filter.is_all() { "in the snapshot" } else { "picked" },
            d.recorded_expiring,
            d.restored,
            d.present
        ));
    }
    out.lines.push(format!("  {} sampled keys compared (value and TTL)", report.sampled));
    for p in report.problems.iter().chain(&report.mismatches) {
        out.lines.push(format!("  PROBLEM: {p}"));
    }
    if !report.ok() {
        let all: Vec<&String> = report.problems.iter().chain(&report.mismatches).collect();
        out.problems.push(format!(
            "{} problems: {}",
            all.len(),
            all.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(out)
}

fn rdb_file(job: &RestoreJob<'_>, path: &std::path::Path) -> Result<Restored, SourceError> {
    let snap = job.snapshot;
    if snap.kind != KIND_RDB {
        return Err(fail(format!(
            "snapshot {} is a {} snapshot; --rdb-file needs a Redis snapshot taken with mode = \"rdb\" (restore a key dump with --into redis://…)",
            snap.short_id(),
            snap.kind
        )));
    }
    let Root::Stream { content, .. } = &snap.root else {
        return Err(fail(format!("snapshot {} holds no RDB", snap.short_id())));
    };
    let bytes = restore::write_rdb_file(&Restorer::new(job.repo, job.index), content, path, job.options.force)?;
    Ok(Restored {
        into: path.display().to_string(),
        bytes,
        details: vec![("rdb_file".into(), serde_json::json!(path))],
        lines: vec![format!("wrote snapshot {} as {} ({bytes} bytes)", snap.short_id(), path.display())],
        json: serde_json::json!({ "snapshot": snap.id().to_hex(), "rdb_file": path, "bytes": bytes }),
        ..Default::default()
    })
}

/// Into a scratch `redis-server`, then key counts per database and a sample of values and TTLs.
fn drill(job: &DrillJob<'_>, snap: &Snapshot, out: &mut DrillOutcome) -> Result<(), SourceError> {
    let mut clock = Clock::default();
    let meta = meta(snap)?;
    let server = bunker_scratch::ScratchRedis::start()?;
    out.provision_seconds = clock.lap();
    out.restored_into = server.url();
    let Root::Stream { size, content } = &snap.root else {
        return Err(fail(format!("snapshot {} holds no Redis data", snap.short_id())));
    };
    let restorer = Restorer::new(job.repo, job.index);
    let all = restore::KeyFilter::default();
    let report = restore::restore_into(&restorer, content, &meta, &RedisUrl::parse(&server.url())?, false, &all);
    out.scratch.push(Box::new(server));
    let report = report?;
    out.bytes = *size;
    out.restore_seconds = clock.lap();
    for d in &report.databases {
        // Keys with a TTL may have expired since the snapshot; every other key must be there.
        let lower = d.recorded - d.recorded_expiring.min(d.recorded);
        let passed = d.restored >= lower && d.present >= lower && d.restored <= d.recorded;
        out.checks.push(Check::new(
            format!("keys db{}", d.db),
            passed,
            format!(
                "{} restored, {} present, {} recorded ({} with a TTL)",
                d.restored, d.present, d.recorded, d.recorded_expiring
            ),
        ));
    }
    let wrong: Vec<&String> = report.mismatches.iter().chain(&report.problems).collect();
    out.checks.push(Check::new(
        "sample",
        wrong.is_empty(),
        if wrong.is_empty() {
            format!("{} sampled keys equal to the snapshot (value and TTL)", report.sampled)
        } else {
            wrong.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
        },
    ));
    out.verify_seconds = clock.lap();
    Ok(())
}
