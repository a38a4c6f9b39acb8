//! PostgreSQL as a [`Kind`]: a logical snapshot goes back into a database (`--into`, the one it was
//! dumped from by default; roles first with `--with-globals`), then row counts, foreign keys and the
//! target's assertions are checked; a base backup goes into a data directory (`--pgdata`), configured to
//! recover through the archived WAL to a time, LSN, XID or restore point, and optionally started.
//! Retention expires WAL no kept base backup needs; health reports the newest archived WAL.

use std::path::Path;

use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::{select, Root};
use bunker_engine::{Repository, Snapshot};

use super::pitr::{self, RecoverySettings};
use super::restore::{RestoreOptions as PgRestoreOptions, StoredArchive};
use super::tools::PgTools;
use super::{globals, logical, physical, ConnInfo, LogicalMeta, PhysicalMeta, TargetSettings, VerifyReport};
use crate::kind::LiveData;
use crate::{fail, Destination, HomeBase, Kind, Planned, RestoreJob, Restored, SourceError};

type Result<T, E = SourceError> = std::result::Result<T, E>;

pub struct Postgres;

impl Kind for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn snapshot_kinds(&self) -> &'static [&'static str] {
        &[logical::KIND, physical::KIND, globals::KIND]
    }

    fn plan(&self, target: &bunker_config::TargetConfig) -> Result<Vec<Planned>> {
        super::plan(target)
    }

    fn is_companion(&self, snapshot: &Snapshot) -> bool {
        snapshot.kind == globals::KIND
    }

    fn list(&self, restorer: &Restorer<'_>, snapshot: &Snapshot) -> Result<Vec<crate::Item>> {
        if snapshot.kind != logical::KIND {
            return Err(fail(format!(
                "snapshot {} is a {}: `bunker ls` lists what a logical dump holds (schemas, tables, sequences, large objects)",
                snapshot.short_id(),
                snapshot.kind
            )));
        }
        let meta: LogicalMeta = crate::drill::facts(snapshot, "PostgreSQL")?;
        list_dump(restorer, snapshot, &meta)
    }

    fn home(&self, snapshot: &Snapshot, target: &bunker_config::TargetConfig, base: &HomeBase) -> Result<Destination> {
        if snapshot.kind == physical::KIND {
            let Some(dir) = &base.pgdata else {
                return Err(fail(format!(
                    "give --pgdata DIR to restore the physical PostgreSQL target {}",
                    target.name
                )));
            };
            return Ok(Destination::DataDir(if base.several_data_dirs { dir.join(&target.name) } else { dir.clone() }));
        }
        let meta: LogicalMeta = crate::drill::facts(snapshot, "PostgreSQL")?;
        Ok(Destination::Into(meta.database))
    }

    fn restore(&self, job: &RestoreJob<'_>) -> Result<Restored> {
        match (job.snapshot.kind.as_str(), job.destination) {
            (physical::KIND, Destination::DataDir(dir)) => restore_physical(job, dir),
            (physical::KIND, other) => Err(fail(format!(
                "snapshot {} is a base backup; restore it with --pgdata DIR (not {})",
                job.snapshot.short_id(),
                other.flag()
            ))),
            (_, Destination::Into(into)) => restore_logical(job, into),
            (_, other) => Err(fail(format!(
                "snapshot {} is a PostgreSQL dump; restore it with --into DATABASE (a name on the target's server, or a URL), or write it out with `bunker dump` (not {})",
                job.snapshot.short_id(),
                other.flag()
            ))),
        }
    }

    fn verify_against(
        &self,
        snapshot: &Snapshot,
        target: Option<&bunker_config::TargetConfig>,
        against: &str,
    ) -> Result<Restored> {
        if snapshot.kind != logical::KIND {
            return Err(fail(format!(
                "snapshot {} is a {} snapshot; `bunker verify --against` checks logical dumps (drill a base backup instead)",
                snapshot.short_id(),
                snapshot.kind
            )));
        }
        let meta: LogicalMeta = crate::drill::facts(snapshot, "PostgreSQL")?;
        let settings = settings(target)?;
        let against = database(settings.as_ref(), against)?;
        let assertions = settings.as_ref().map(|s| s.assertions.as_slice()).unwrap_or(&[]);
        let report = super::verify::verify(&against, &meta.tables, assertions)?;
        let failures = report.failures();
        Ok(Restored {
            into: against.display(),
            details: vec![("against".into(), against.display().into())],
            lines: report_lines(&report),
            warnings: failures.iter().map(|f| format!("mismatch: {f}")).collect(),
            json: serde_json::json!({ "ok": failures.is_empty(), "failures": failures, "report": report }),
            verified: true,
            problems: if failures.is_empty() {
                Vec::new()
            } else {
                vec![format!("verification failed: {}", failures.join("; "))]
            },
            ..Default::default()
        })
    }

    fn drill(&self, job: &crate::drill::DrillJob<'_>, out: &mut crate::drill::DrillOutcome) -> Result<()> {
        let main = job.main()?;
        if main.kind == physical::KIND {
            super::drill::physical(job, main, out)
        } else {
            super::drill::logical(job, out)
        }
    }

    fn smoke_variable(&self) -> Option<&'static str> {
        Some("BUNKER_DRILL_PG_URL")
    }

    fn after_forget(
        &self,
        repo: &Repository,
        target: &str,
        before: &[&Snapshot],
        kept: &[&Snapshot],
        dry_run: bool,
    ) -> Result<Vec<String>> {
        if !before.iter().any(|s| s.kind == physical::KIND) {
            return Ok(Vec::new());
        }
        let oldest = kept
            .iter()
            .filter(|s| s.kind == physical::KIND)
            .filter_map(|s| serde_json::from_value::<PhysicalMeta>(s.meta.clone()).ok())
            .min_by_key(|m| m.start_lsn_value());
        let Some(meta) = oldest else {
            tracing::warn!("{target} keeps no base backup; its archived WAL is kept whole");
            return Ok(Vec::new());
        };
        let Some(start) = meta.start_segment() else { return Ok(Vec::new()) };
        Ok(super::wal::expire(repo, target, start, meta.segment_size, dry_run)?)
    }

    fn live_data(&self, repo: &Repository, target: &bunker_config::TargetConfig) -> Result<Option<LiveData>> {
        if super::settings(target).map(|s| s.mode != "physical").unwrap_or(true) {
            return Ok(None);
        }
        let listing = super::wal::list(repo, &target.name, super::wal::DEFAULT_SEGMENT_SIZE)?;
        Ok(Some(LiveData { files: listing.files, newest: listing.newest }))
    }
}

/// The stack file's settings of the snapshot's target, when it is a postgres target there.
fn settings(job_target: Option<&bunker_config::TargetConfig>) -> Result<Option<TargetSettings>> {
    match job_target {
        Some(t) if t.kind == "postgres" => Ok(Some(super::settings(t)?)),
        _ => Ok(None),
    }
}

/// A URL or keyword string as given; a bare name is a database on the target's server.
pub fn database(settings: Option<&TargetSettings>, spec: &str) -> Result<ConnInfo> {
    if spec.contains("://") || spec.contains('=') {
        return ConnInfo::resolve(spec);
    }
    match settings {
        Some(s) => Ok(s.conn.with_dbname(spec)),
        None => ConnInfo::resolve(&format!("dbname={spec}")),
    }
}

/// A verification report as lines for a person (mismatches go to standard error).
pub fn report_lines(report: &VerifyReport) -> Vec<String> {
    let ok_tables = report.tables.iter().filter(|t| t.actual == Some(t.expected)).count();
    let ok_fks = report.foreign_keys.iter().filter(|f| f.orphans == 0).count();
    let ok_asserts = report.assertions.iter().filter(|a| a.actual.as_ref().is_ok_and(|v| *v == a.expected)).count();
    vec![format!(
        "verified {}: row counts {}/{} tables, foreign keys {}/{} without orphans, assertions {}/{}",
        report.database,
        ok_tables,
        report.tables.len(),
        ok_fks,
        report.foreign_keys.len(),
        ok_asserts,
        report.assertions.len()
    )]
}

/// A logical snapshot into a database (roles first with `with_globals`), then verification.
fn restore_logical(job: &RestoreJob<'_>, into: &str) -> Result<Restored> {
    let snap = job.snapshot;
    let opts = job.options;
    let meta: LogicalMeta = crate::drill::facts(snap, "PostgreSQL")?;
    let settings = settings(job.target)?;
    let target = database(settings.as_ref(), into)?;
    let Root::Stream { content, .. } = &snap.root else {
        return Err(fail(format!("snapshot {} holds no dump stream", snap.short_id())));
    };
    let started = std::time::Instant::now();
    let restorer = Restorer::new(job.repo, job.index);
    let pg_bin_dir = settings.as_ref().and_then(|s| s.pg_bin_dir.as_deref());
    if opts.with_globals {
        let globals_name = format!("{}/{}", job.target_name, super::GLOBALS);
        let globals = select(job.snapshots, &format!("{globals_name}:latest")).map_err(|_| {
            fail(format!(
                "no roles snapshot {globals_name}: back the target up with databases = \"all\" or globals = true"
            ))
        })?;
        let Root::Stream { content, .. } = &globals.root else {
            return Err(fail(format!("snapshot {} holds no script", globals.short_id())));
        };
        let mut script = tempfile::Builder::new().prefix("bunker-globals-").suffix(".sql").tempfile()?;
        restorer.dump(content, script.as_file_mut())?;
        let major = (meta.server_version_num / 10000) as u32;
        let skipped = globals::apply(script.path(), &target, pg_bin_dir, major)?;
        if skipped > 0 {
            tracing::warn!("{skipped} statements of the roles script failed (usually: the role already exists)");
        }
    }
    let jobs = opts.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let ask = |what: &str| opts.confirm.is_some_and(|c| c(&format!("{what}. Replace what the dump contains?")));
    let pg_opts = PgRestoreOptions {
        jobs,
        force: opts.force,
        keep_owners: opts.with_globals,
        pg_bin_dir,
        confirm: if opts.confirm.is_some() { Some(&ask) } else { None },
    };
    let archive = StoredArchive { restorer: &restorer, content, layout: meta.archive.as_ref() };
    let restored = super::restore::restore(&archive, &target, &pg_opts)?;
    let mut out = Restored {
        into: target.display(),
        bytes: restored.bytes,
        details: vec![("into".into(), target.display().into()), ("method".into(), restored.method.into())],
        ..Default::default()
    };
    out.lines.push(format!(
        "restored snapshot {} ({}) into {} with {jobs} jobs ({}) in {:.1}s",
        snap.short_id(),
        crate::size(restored.bytes),
        target.display(),
        restored.method,
        started.elapsed().as_secs_f64()
    ));
    if opts.no_verify {
        out.json = serde_json::json!({ "snapshot": snap.id().to_hex(), "into": target.display(), "verified": false });
        return Ok(out);
    }
    let assertions = settings.as_ref().map(|s| s.assertions.as_slice()).unwrap_or(&[]);
    let report = super::verify::verify(&target, &meta.tables, assertions)?;
    let failures = report.failures();
    out.verified = true;
    out.details.push(("verified".into(), true.into()));
    out.lines.extend(report_lines(&report));
    out.warnings.extend(failures.iter().map(|f| format!("mismatch: {f}")));
    out.json = serde_json::json!({ "ok": failures.is_empty(), "failures": failures, "report": report });
    if !failures.is_empty() {
        out.problems.push(format!("verification failed: {}", failures.join("; ")));
    }
    Ok(out)
}

/// The physical PostgreSQL targets of a stack file (`type = "postgres"`, `mode = "physical"`).
pub fn physical_targets(config: &bunker_config::Config) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in config.targets.iter().filter(|t| t.kind == "postgres") {
        if super::settings(t)?.mode == "physical" {
            out.push(t.name.clone());
        }
    }
    Ok(out)
}

/// The base backups of a physical target, oldest first, with their facts.
pub fn base_backups<'a>(snapshots: &'a [Snapshot], target: &str) -> Result<Vec<(&'a Snapshot, PhysicalMeta)>> {
    let mut out = Vec::new();
    for s in snapshots.iter().filter(|s| s.kind == physical::KIND && s.name == target) {
        out.push((s, crate::drill::facts::<PhysicalMeta>(s, "base backup")?));
    }
    out.sort_by_key(|(s, _)| s.time);
    Ok(out)
}

/// A base backup into a data directory, recovery configured (and with `start`, run to its target).
/// Unless the user named the snapshot, the base backup is the newest one the recovery target can use.
fn restore_physical(job: &RestoreJob<'_>, pgdata: &Path) -> Result<Restored> {
    let rec = &job.options.recovery;
    let name = job.snapshot.name.as_str();
    pitr::check_data_dir(pgdata, job.options.force)?;
    let bases = base_backups(job.snapshots, name)?;
    let chosen = if job.pinned {
        bases.iter().position(|(s, _)| s.id() == job.snapshot.id()).expect("the snapshot is among its target's")
    } else {
        let metas: Vec<_> = bases.iter().map(|(_, m)| m.clone()).collect();
        pitr::choose_base(&metas, &rec.target, rec.timeline.filter(|t| *t > 0))
            .map_err(|e| fail(format!("{name}: {e}")))?
    };
    let (snap, meta) = &bases[chosen];
    let Root::Tree { tree } = &snap.root else {
        return Err(fail(format!("snapshot {} holds no data directory", snap.short_id())));
    };
    let timeline = pitr::replay_timeline(job.repo, name, meta, &rec.target, rec.timeline)?;
    let restore_command = match &rec.restore_command {
        Some(c) => c.clone(),
        None => (job.wal_fetch)(name)?,
    };
    let started = std::time::Instant::now();
    if job.options.force && pgdata.exists() {
        pitr::empty_data_dir(pgdata)?;
    }
    let stats = Restorer::new(job.repo, job.index).restore_tree(tree, pgdata, None, job.options.force)?;
    let comment = format!(
        "base backup {} of {} ({}), to {}, at {}",
        snap.short_id(),
        name,
        meta.stop_time.format("%Y-%m-%d %H:%M:%S UTC"),
        rec.target.describe(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    pitr::configure(
        pgdata,
        &RecoverySettings {
            target: &rec.target,
            timeline: Some(&timeline.to_string()),
            action: rec.action,
            restore_command: &restore_command,
            archive_off: !rec.keep_archiving,
            comment: &comment,
        },
    )?;
    let restored_secs = started.elapsed().as_secs_f64();
    let mut out = Restored {
        snapshot: Some(snap.id()),
        into: pgdata.display().to_string(),
        bytes: stats.bytes,
        details: vec![
            ("pgdata".into(), serde_json::json!(pgdata)),
            ("recovery_target".into(), rec.target.describe().into()),
            ("timeline".into(), timeline.into()),
        ],
        ..Default::default()
    };
    out.lines.push(format!(
        "restored base backup {} of {name} (taken {}, {}) into {} in {restored_secs:.1}s; recovery to {} configured",
        snap.short_id(),
        meta.stop_time.format("%Y-%m-%d %H:%M:%S UTC"),
        crate::size(stats.bytes),
        pgdata.display(),
        rec.target.describe()
    ));
    out.json = serde_json::json!({
        "snapshot": snap.id().to_hex(), "pgdata": pgdata, "bytes": stats.bytes, "files": stats.files,
        "base_backup_stop_lsn": meta.stop_lsn, "recovery_target": rec.target.describe(), "restore_seconds": restored_secs,
    });
    if let Some((port, timeout)) = rec.start {
        let major = (meta.server_version_num / 10000) as u32;
        let settings = settings(job.target)?;
        let tools = PgTools::find(major, settings.as_ref().and_then(|s| s.pg_bin_dir.as_deref()))?;
        let reached = pitr::start_and_wait(pgdata, &tools.bin("pg_ctl"), port, rec.action, timeout)?;
        // Recovery replayed the WAL to its target: the restored cluster is consistent and up.
        out.verified = true;
        let value = serde_json::to_value(&reached).expect("serialises");
        out.details.push(("reached".into(), value.clone()));
        out.lines.push(format!(
            "recovery {} after {:.1}s: {}{}{}",
            reached.state,
            reached.seconds,
            reached.stop_line.as_deref().unwrap_or("replayed all archived WAL"),
            reached.last_transaction.as_deref().map(|t| format!("; last transaction at {t}")).unwrap_or_default(),
            reached.timeline.map(|t| format!("; new timeline {t}")).unwrap_or_default(),
        ));
        if reached.state != "shut down" {
            out.lines.push(format!("PostgreSQL is running on port {port}, socket directory {}", pgdata.display()));
        }
        out.json["reached"] = value;
    }
    Ok(out)
}

/// What a logical dump holds, from its TOC (read from the repository: the header and TOC only, when
/// the archive is mapped) and its recorded row counts: schemas, tables (rows, and the bytes of their
/// data in the dump), sequences, views and large objects, as `schema.name`.
fn list_dump(restorer: &Restorer<'_>, snapshot: &Snapshot, meta: &LogicalMeta) -> Result<Vec<crate::Item>> {
    let rows: std::collections::HashMap<(&str, &str), i64> =
        meta.tables.iter().map(|t| ((t.schema.as_str(), t.table.as_str()), t.rows)).collect();
    let table_item = |schema: &str, table: &str, data: Option<u64>| crate::Item {
        path: format!("{schema}.{table}"),
        kind: "table",
        size: data,
        detail: rows.get(&(schema, table)).map(|n| format!("{n} rows")),
        ..Default::default()
    };
    let (Some(layout), Root::Stream { content, .. }) = (&meta.archive, &snapshot.root) else {
        // Not mapped: the tables and their row counts the backup recorded.
        return Ok(meta.tables.iter().map(|t| table_item(&t.schema, &t.table, None)).collect());
    };
    let map = restorer.stream_map(content)?;
    let mut head = Vec::with_capacity(layout.toc_end as usize);
    restorer.dump_range(&map, 0..layout.toc_end, &mut head)?;
    let toc = super::archive::parse_toc(&head)
        .map_err(|e| fail(format!("snapshot {}: its dump's TOC does not parse: {e}", snapshot.short_id())))?
        .ok_or_else(|| fail(format!("snapshot {}: its dump's TOC is cut short", snapshot.short_id())))?;
    let data: std::collections::HashMap<i64, u64> = layout.blocks.iter().map(|b| (b.dump_id(), b.len())).collect();
    let data_of = |ns: Option<&str>, tag: &str| {
        toc.entries
            .iter()
            .find(|e| e.desc == "TABLE DATA" && e.tag == tag && e.namespace.as_deref() == ns)
            .and_then(|e| data.get(&e.dump_id).copied())
    };
    let mut out = Vec::new();
    for e in &toc.entries {
        let ns = e.namespace.as_deref();
        let qualified = |tag: &str| match ns {
            Some(ns) => format!("{ns}.{tag}"),
            None => tag.to_string(),
        };
        let item = match e.desc.as_str() {
            "SCHEMA" => crate::Item { path: e.tag.clone(), kind: "schema", ..Default::default() },
            "TABLE" => table_item(ns.unwrap_or("public"), &e.tag, data_of(ns, &e.tag)),
            "SEQUENCE" => crate::Item { path: qualified(&e.tag), kind: "sequence", ..Default::default() },
            "VIEW" => crate::Item { path: qualified(&e.tag), kind: "view", ..Default::default() },
            "MATERIALIZED VIEW" => crate::Item { path: qualified(&e.tag), kind: "matview", ..Default::default() },
            "BLOB" | "BLOB METADATA" | "LARGE OBJECT" => {
                crate::Item { path: format!("large-object/{}", e.tag), kind: "large-object", ..Default::default() }
            }
            _ => continue,
        };
        out.push(item);
    }
    Ok(out)
}
