//! PostgreSQL drills: a logical target's databases into one scratch cluster of the dump's major version
//! (roles first), then row counts, foreign keys and assertions; a base backup into a scratch data
//! directory recovered through the archived WAL (spooled here in parallel) to the point's end, started on
//! a free port, then every table read to its end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::{Repository, Snapshot};
use bunker_scratch::{PgBinaries, ScratchPostgres};

use super::physical::PhysicalMeta;
use super::wal::{self, WalName};
use super::ConnInfo;
use crate::drill::{each_in_parallel, facts, Check, Clock, DrillJob, DrillOutcome, Scratch, ScratchDir};
use crate::{fail, SourceError};

type Result<T, E = SourceError> = std::result::Result<T, E>;

/// Every database of a logical target into one scratch cluster of the dump's major version, roles first.
pub fn logical(job: &DrillJob<'_>, out: &mut DrillOutcome) -> Result<()> {
    let mut clock = Clock::default();
    let clock = &mut clock;
    let restorer = Restorer::new(job.repo, job.index);
    let databases: Vec<&Snapshot> = job.snapshots.iter().copied().filter(|s| s.kind == super::logical::KIND).collect();
    let metas = databases.iter().map(|s| facts::<super::LogicalMeta>(s, "PostgreSQL")).collect::<Result<Vec<_>>>()?;
    let major = (metas[0].server_version_num / 10000) as u32;
    let bins = PgBinaries::find(major)?;
    let server = ScratchPostgres::start(&bins)?;
    out.provision_seconds = clock.lap();
    out.restored_into = server.url("");
    let settings = match job.config {
        Some(t) if t.kind == "postgres" => Some(super::settings(t)?),
        _ => None,
    };
    let tools_dir = settings.as_ref().and_then(|s| s.pg_bin_dir.clone()).unwrap_or_else(|| bins.dir.clone());
    let globals = job.snapshots.iter().find(|s| s.kind == super::globals::KIND);
    if let Some(globals) = globals {
        let Root::Stream { content, .. } = &globals.root else {
            return Err(fail(format!("snapshot {} holds no script", globals.short_id())));
        };
        let mut script = tempfile::Builder::new().prefix("bunker-drill-globals-").suffix(".sql").tempfile()?;
        restorer.dump(content, script.as_file_mut())?;
        let skipped = super::globals::apply(
            script.path(),
            &ConnInfo::resolve(&server.url("postgres"))?,
            Some(&tools_dir),
            major,
        )?;
        out.checks.push(Check::new("roles", true, format!("roles script applied ({skipped} statements skipped)")));
    }
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mut reports = Vec::new();
    for (snap, meta) in databases.iter().zip(&metas) {
        let Root::Stream { content, .. } = &snap.root else {
            return Err(fail(format!("snapshot {} holds no dump", snap.short_id())));
        };
        let conn = ConnInfo::resolve(&server.url(&meta.database))?;
        let opts = super::restore::RestoreOptions {
            jobs,
            force: false,
            keep_owners: globals.is_some(),
            pg_bin_dir: Some(&tools_dir),
            confirm: None,
        };
        let archive = super::restore::StoredArchive { restorer: &restorer, content, layout: meta.archive.as_ref() };
        let restored = super::restore::restore(&archive, &conn, &opts)
            .map_err(|e| fail(format!("restoring snapshot {} ({}) failed: {e}", snap.short_id(), meta.database)))?;
        out.bytes += restored.bytes;
        reports.push((conn, meta));
    }
    out.restore_seconds = clock.lap();
    let assertions = settings.as_ref().map(|s| s.assertions.clone()).unwrap_or_default();
    let configured_db = settings.as_ref().map(|s| s.conn.dbname.clone());
    for (conn, meta) in reports {
        // Assertions are written against the target's database (its url's), or the only one.
        let here = configured_db.as_deref() == Some(meta.database.as_str()) || metas.len() == 1;
        let report = super::verify::verify(&conn, &meta.tables, if here { &assertions } else { &[] })?;
        push_pg_checks(out, &report, metas.len() > 1);
    }
    out.verify_seconds = clock.lap();
    out.scratch.push(Box::new(server));
    Ok(())
}

/// Row counts, foreign keys and assertions of one restored database as checks.
fn push_pg_checks(out: &mut DrillOutcome, r: &super::VerifyReport, name_db: bool) {
    let db = if name_db { format!(" ({})", r.database) } else { String::new() };
    if !r.tables.is_empty() {
        let wrong: Vec<String> = r
            .tables
            .iter()
            .filter(|t| t.actual != Some(t.expected))
            .map(|t| match t.actual {
                None => format!("{} missing (recorded {} rows)", t.table, t.expected),
                Some(n) => format!("{}: {n} rows, recorded {}", t.table, t.expected),
            })
            .collect();
        let rows: i64 = r.tables.iter().filter_map(|t| t.actual).sum();
        let detail = if wrong.is_empty() {
            format!("{}/{} tables as recorded at backup, {rows} rows", r.tables.len(), r.tables.len())
        } else {
            wrong.join("; ")
        };
        out.checks.push(Check::new(format!("row counts{db}"), wrong.is_empty(), detail));
    }
    let orphaned: Vec<String> = r
        .foreign_keys
        .iter()
        .filter(|f| f.orphans > 0)
        .map(|f| format!("{} on {}: {} orphaned rows", f.constraint, f.table, f.orphans))
        .collect();
    let detail = if orphaned.is_empty() {
        format!("{} foreign keys without orphans", r.foreign_keys.len())
    } else {
        orphaned.join("; ")
    };
    out.checks.push(Check::new(format!("foreign keys{db}"), orphaned.is_empty(), detail));
    for a in &r.assertions {
        let (passed, detail) = match &a.actual {
            Ok(v) if *v == a.expected => (true, format!("returned {v:?}")),
            Ok(v) => (false, format!("returned {v:?}, expected {:?}", a.expected)),
            Err(e) => (false, format!("failed: {e}")),
        };
        out.checks.push(Check::new(format!("assertion {}{db}", a.name), passed, detail));
    }
}

/// The base backup into a scratch data directory, recovered through the archived WAL to the point's
/// end (or the archive's), started on a free port; then every table read and every foreign key checked.
pub fn physical(job: &DrillJob<'_>, snap: &Snapshot, out: &mut DrillOutcome) -> Result<()> {
    let mut clock = Clock::default();
    let clock = &mut clock;
    use super::pitr::{self, RecoverySettings, RecoveryTarget, TargetAction};
    let meta: super::physical::PhysicalMeta = facts(snap, "base backup")?;
    let major = (meta.server_version_num / 10000) as u32;
    let bins = PgBinaries::find(major)?;
    let dir = ScratchDir::for_postgres("bunker-drill-pgdata-")?;
    let pgdata = dir.path().join("data");
    let spool = dir.path().join("wal");
    let listing = super::wal::list(job.repo, job.name, meta.segment_size)?;
    out.live_rpo_seconds =
        listing.newest.and_then(|t| std::time::SystemTime::now().duration_since(t).ok()).map(|d| d.as_secs_f64());
    let target = match job.recover_until {
        Some(t) => RecoveryTarget::Time(t.fixed_offset()),
        None => RecoveryTarget::Latest,
    };
    let timeline = pitr::replay_timeline(job.repo, job.name, &meta, &target, None)?;
    let port = bunker_scratch::free_port()?;
    out.scratch.push(Box::new(dir));
    out.provision_seconds = clock.lap();
    let Root::Tree { tree } = &snap.root else {
        return Err(fail(format!("snapshot {} holds no data directory", snap.short_id())));
    };
    let stats = Restorer::new(job.repo, job.index).restore_tree(tree, &pgdata, None, false)?;
    let fetched = spool_wal(job.repo, job.name, &meta, &spool)?;
    out.bytes = stats.bytes + fetched;
    let restore_command = format!("cp {}/%f %p", spool.display());
    pitr::configure(
        &pgdata,
        &RecoverySettings {
            target: &target,
            timeline: Some(&timeline.to_string()),
            action: TargetAction::Promote,
            restore_command: &restore_command,
            archive_off: true,
            comment: &format!("bunker drill {}", job.drill_id),
        },
    )?;
    let reached = pitr::start_and_wait(
        &pgdata,
        &bins.bin("pg_ctl"),
        port,
        TargetAction::Promote,
        std::time::Duration::from_secs(3600),
    );
    let server = PhysicalServer { pgdata: pgdata.clone(), pg_ctl: bins.bin("pg_ctl"), port };
    out.scratch.push(Box::new(server));
    let reached = reached?;
    out.restore_seconds = clock.lap();
    out.restored_into = format!("postgresql://postgres@127.0.0.1:{port}/");
    out.checks.push(Check::new(
        "recovery",
        true,
        format!(
            "{} to {}{}",
            reached.state,
            target.describe(),
            reached.last_transaction.as_deref().map(|t| format!("; last transaction at {t}")).unwrap_or_default()
        ),
    ));
    let settings = match job.config {
        Some(t) if t.kind == "postgres" => Some(super::settings(t)?),
        _ => None,
    };
    let socket =
        |db: &str| ConnInfo::resolve(&format!("host={} port={port} user=postgres dbname={db}", pgdata.display()));
    let admin = socket("postgres")?;
    let mut client = admin.connect()?;
    let databases: Vec<String> = client
        .query("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1", &[])
        .map_err(|e| fail(format!("listing the restored databases: {e}")))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let assertions = settings.as_ref().map(|s| s.assertions.clone()).unwrap_or_default();
    let configured_db = settings.as_ref().map(|s| s.conn.dbname.clone()).unwrap_or_else(|| "postgres".into());
    let mut tables = 0usize;
    let mut rows = 0i64;
    for db in &databases {
        let conn = socket(db)?;
        // Every table read to its end: a damaged page fails here. No counts were recorded for a base
        // backup, so the counts themselves are reported, not compared.
        let counts = count_tables(&conn)?;
        tables += counts.len();
        rows += counts.iter().map(|(_, n)| n).sum::<i64>();
        let here = *db == configured_db;
        let report = super::verify::verify(&conn, &[], if here { &assertions } else { &[] })?;
        push_pg_checks(out, &report, databases.len() > 1);
    }
    out.checks.push(Check::new(
        "tables readable",
        true,
        format!("{tables} tables in {} databases read to the end, {rows} rows", databases.len()),
    ));
    out.verify_seconds = clock.lap();
    Ok(())
}

fn count_tables(conn: &ConnInfo) -> Result<Vec<(String, i64)>> {
    let mut client = conn.connect()?;
    let names: Vec<String> = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .map_err(|e| fail(format!("{}: listing tables: {e}", conn.display())))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for name in names {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM ONLY {name}"), &[])
            .map_err(|e| fail(format!("{}: reading {name}: {e}", conn.display())))?
            .get(0);
        out.push((name, n));
    }
    Ok(out)
}

/// A recovered physical cluster, stopped when dropped (its directory is a [`ScratchDir`] of its own).
pub struct PhysicalServer {
    pub pgdata: PathBuf,
    pub pg_ctl: PathBuf,
    pub port: u16,
}

impl Drop for PhysicalServer {
    fn drop(&mut self) {
        if super::pitr::running_postmaster(&self.pgdata).is_some() {
            if let Err(e) = super::pitr::stop(&self.pgdata, &self.pg_ctl) {
                tracing::warn!("could not stop the drill's PostgreSQL on port {}: {e}", self.port);
            }
        }
    }
}

impl Scratch for PhysicalServer {
    fn keep(self: Box<Self>) -> String {
        let how = format!(
            "recovered PostgreSQL: psql postgresql://postgres@127.0.0.1:{}/postgres (stop: {} -D {} stop)",
            self.port,
            self.pg_ctl.display(),
            self.pgdata.display()
        );
        std::mem::forget(self);
        how
    }
}

/// Fetches the archived WAL a recovery from `meta`'s base backup can use (segments from its first on,
/// every timeline history) into `spool`, in parallel; `restore_command` then copies from there. Returns
/// the bytes fetched.
fn spool_wal(repo: &Repository, target: &str, meta: &PhysicalMeta, spool: &Path) -> Result<u64> {
    std::fs::create_dir_all(spool)?;
    let prefix = format!("{target}/");
    let first = meta.start_segment().map(|s| s.number).unwrap_or(0);
    let names: Vec<String> = repo
        .list_objects(wal::NAMESPACE, &prefix)?
        .into_iter()
        .map(|o| o.name[prefix.len()..].to_string())
        .filter(|f| match WalName::parse(f, meta.segment_size) {
            Some(WalName::Segment { segment, partial: false }) => segment.number >= first,
            Some(WalName::History { .. }) => true,
            _ => false,
        })
        .collect();
    let bytes = AtomicU64::new(0);
    each_in_parallel(&names, |name| {
        let b = repo.get_object(wal::NAMESPACE, &format!("{prefix}{name}"))?;
        let b = b.ok_or_else(|| fail(format!("archived WAL file {name} vanished")))?;
        std::fs::write(spool.join(name), &b)?;
        bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(())
    })
    .map_err(|e| fail(format!("fetching the WAL archive of {target}: {e}")))?;
    Ok(bytes.into_inner())
}
