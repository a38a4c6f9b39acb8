//! One target of a drill: provision its scratch server or directory, restore its snapshots into it,
//! and verify what landed against what the backup recorded. Each kind of snapshot has its function;
//! all return the scratch resources they hold (torn down when dropped) and fill in a [`TargetDrill`].

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use bunker_engine::index::Index;
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::{Repository, Snapshot};
use bunker_scratch::{PgBinaries, ScratchPostgres, ScratchRedis};
use bunker_sources::postgres::{self, ConnInfo};

use super::record::{Check, TargetDrill};
use super::scratch::{PhysicalServer, S3Prefix, Scratch, ScratchDir};

/// What one target's drill needs from the whole drill.
pub struct TargetJob<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    pub name: String,
    pub snapshots: Vec<&'a Snapshot>,
    pub config: Option<&'a bunker_config::TargetConfig>,
    /// Physical PostgreSQL is recovered to here (the point's end); `None`: to the end of the archive.
    pub pitr_until: Option<chrono::DateTime<chrono::Utc>>,
    /// `[drill] scratch_s3`, with a sub-prefix of this drill's own.
    pub scratch_s3: Option<String>,
    pub drill_id: String,
}

/// Timings of one target, filled in as it goes.
pub struct Clock {
    started: Instant,
    mark: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { started: Instant::now(), mark: Instant::now() }
    }
    /// Seconds since the last lap.
    fn lap(&mut self) -> f64 {
        let s = self.mark.elapsed().as_secs_f64();
        self.mark = Instant::now();
        s
    }
    pub fn total(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Restores and verifies one target; scratch resources come back in `Scratch` (held until the hooks ran).
pub fn drill(job: &TargetJob<'_>, out: &mut TargetDrill, scratch: &mut Vec<Scratch>) -> Result<()> {
    let mut clock = Clock::new();
    let main = job.snapshots.iter().find(|s| s.kind != postgres::globals::KIND).copied();
    let Some(main) = main else { bail!("the point holds only a roles snapshot of {}", job.name) };
    out.kind = main.kind.clone();
    let result = match main.kind.as_str() {
        postgres::logical::KIND => postgres_logical(job, out, scratch, &mut clock),
        postgres::physical::KIND => postgres_physical(job, main, out, scratch, &mut clock),
        bunker_sources::redis::KIND_RDB | bunker_sources::redis::KIND_KEYS => {
            redis(job, main, out, scratch, &mut clock)
        }
        bunker_sources::s3::KIND => s3(job, main, out, scratch, &mut clock),
        _ => match &main.root {
            Root::Tree { tree } => files(job, main, tree, out, scratch, &mut clock),
            Root::Stream { size, content } => stream(job, main, *size, content, out, &mut clock),
        },
    };
    out.rto_seconds = clock.total();
    out.throughput_bytes_per_second =
        if out.restore_seconds > 0.0 { out.bytes as f64 / out.restore_seconds } else { 0.0 };
    result
}

/// The facts a source recorded in a snapshot (`meta`), as that source's type.
fn facts<T: serde::de::DeserializeOwned>(snap: &Snapshot, what: &str) -> Result<T> {
    serde_json::from_value(snap.meta.clone())
        .map_err(|e| anyhow!("snapshot {} has unreadable {what} facts: {e}", snap.short_id()))
}

/// Every database of a logical target into one scratch cluster of the dump's major version, roles first.
fn postgres_logical(
    job: &TargetJob<'_>,
    out: &mut TargetDrill,
    scratch: &mut Vec<Scratch>,
    clock: &mut Clock,
) -> Result<()> {
    let restorer = Restorer::new(job.repo, job.index);
    let databases: Vec<&Snapshot> =
        job.snapshots.iter().copied().filter(|s| s.kind == postgres::logical::KIND).collect();
    let metas =
        databases.iter().map(|s| facts::<postgres::LogicalMeta>(s, "PostgreSQL")).collect::<Result<Vec<_>>>()?;
    let major = (metas[0].server_version_num / 10000) as u32;
    let bins = PgBinaries::find(major)?;
    let server = ScratchPostgres::start(&bins)?;
    out.provision_seconds = clock.lap();
    out.restored_into = server.url("");
    let settings = match job.config {
        Some(t) if t.kind == "postgres" => Some(postgres::settings(t)?),
        _ => None,
    };
    let tools_dir = settings.as_ref().and_then(|s| s.pg_bin_dir.clone()).unwrap_or_else(|| bins.dir.clone());
    let globals = job.snapshots.iter().find(|s| s.kind == postgres::globals::KIND);
    if let Some(globals) = globals {
        let Root::Stream { content, .. } = &globals.root else {
            bail!("snapshot {} holds no script", globals.short_id())
        };
        let mut script = tempfile::Builder::new().prefix("bunker-drill-globals-").suffix(".sql").tempfile()?;
        restorer.dump(content, script.as_file_mut())?;
        let skipped = postgres::globals::apply(
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
        let Root::Stream { content, .. } = &snap.root else { bail!("snapshot {} holds no dump", snap.short_id()) };
        let conn = ConnInfo::resolve(&server.url(&meta.database))?;
        let opts = postgres::restore::RestoreOptions {
            jobs,
            force: false,
            keep_owners: globals.is_some(),
            pg_bin_dir: Some(&tools_dir),
            confirm: None,
        };
        let archive = postgres::restore::StoredArchive { restorer: &restorer, content, layout: meta.archive.as_ref() };
        let restored = postgres::restore::restore(&archive, &conn, &opts)
            .map_err(|e| anyhow!("restoring snapshot {} ({}) failed: {e}", snap.short_id(), meta.database))?;
        out.bytes += restored.bytes;
        reports.push((conn, meta));
    }
    out.restore_seconds = clock.lap();
    let assertions = settings.as_ref().map(|s| s.assertions.clone()).unwrap_or_default();
    let configured_db = settings.as_ref().map(|s| s.conn.dbname.clone());
    for (conn, meta) in reports {
        // Assertions are written against the target's database (its url's), or the only one.
        let here = configured_db.as_deref() == Some(meta.database.as_str()) || metas.len() == 1;
        let report = postgres::verify::verify(&conn, &meta.tables, if here { &assertions } else { &[] })?;
        push_pg_checks(out, &report, metas.len() > 1);
    }
    out.verify_seconds = clock.lap();
    scratch.push(Scratch::Postgres(server));
    Ok(())
}

/// Row counts, foreign keys and assertions of one restored database as checks.
fn push_pg_checks(out: &mut TargetDrill, r: &postgres::VerifyReport, name_db: bool) {
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
fn postgres_physical(
    job: &TargetJob<'_>,
    snap: &Snapshot,
    out: &mut TargetDrill,
    scratch: &mut Vec<Scratch>,
    clock: &mut Clock,
) -> Result<()> {
    use postgres::pitr::{self, RecoverySettings, RecoveryTarget, TargetAction};
    let meta: postgres::physical::PhysicalMeta = facts(snap, "base backup")?;
    let major = (meta.server_version_num / 10000) as u32;
    let bins = PgBinaries::find(major)?;
    let dir = ScratchDir::for_postgres("bunker-drill-pgdata-")?;
    let pgdata = dir.path().join("data");
    let spool = dir.path().join("wal");
    let listing = postgres::wal::list(job.repo, &job.name, meta.segment_size)?;
    out.live_rpo_seconds =
        listing.newest.and_then(|t| std::time::SystemTime::now().duration_since(t).ok()).map(|d| d.as_secs_f64());
    let target = match job.pitr_until {
        Some(t) => RecoveryTarget::Time(t.fixed_offset()),
        None => RecoveryTarget::Latest,
    };
    let timeline = pitr::replay_timeline(job.repo, &job.name, &meta, &target, None)?;
    let port = bunker_scratch::free_port()?;
    scratch.push(Scratch::Dir(dir));
    out.provision_seconds = clock.lap();
    let Root::Tree { tree } = &snap.root else { bail!("snapshot {} holds no data directory", snap.short_id()) };
    let stats = Restorer::new(job.repo, job.index).restore_tree(tree, &pgdata, None, false)?;
    let fetched = super::scratch::spool_wal(job.repo, &job.name, &meta, &spool)?;
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
    scratch.push(Scratch::Physical(server));
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
        Some(t) if t.kind == "postgres" => Some(postgres::settings(t)?),
        _ => None,
    };
    let socket =
        |db: &str| ConnInfo::resolve(&format!("host={} port={port} user=postgres dbname={db}", pgdata.display()));
    let admin = socket("postgres")?;
    let mut client = admin.connect()?;
    let databases: Vec<String> = client
        .query("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1", &[])
        .map_err(|e| anyhow!("listing the restored databases: {e}"))?
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
        let report = postgres::verify::verify(&conn, &[], if here { &assertions } else { &[] })?;
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
        .map_err(|e| anyhow!("{}: listing tables: {e}", conn.display()))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for name in names {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM ONLY {name}"), &[])
            .map_err(|e| anyhow!("{}: reading {name}: {e}", conn.display()))?
            .get(0);
        out.push((name, n));
    }
    Ok(out)
}

/// Into a scratch `redis-server`, then key counts per database and a sample of values and TTLs.
fn redis(
    job: &TargetJob<'_>,
    snap: &Snapshot,
    out: &mut TargetDrill,
    scratch: &mut Vec<Scratch>,
    clock: &mut Clock,
) -> Result<()> {
    use bunker_sources::redis::{restore, url::RedisUrl, RedisMeta};
    let meta: RedisMeta = facts(snap, "Redis")?;
    let server = ScratchRedis::start()?;
    out.provision_seconds = clock.lap();
    out.restored_into = server.url();
    let Root::Stream { size, content } = &snap.root else { bail!("snapshot {} holds no Redis data", snap.short_id()) };
    let restorer = Restorer::new(job.repo, job.index);
    let report = restore::restore_into(&restorer, content, &meta, &RedisUrl::parse(&server.url())?, false);
    scratch.push(Scratch::Redis(server));
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

/// Into `[drill] scratch_s3` (a prefix of this drill's own) or a temporary directory; every object read
/// back and its BLAKE3 compared with the snapshot's record; then count and bytes against the backup's.
fn s3(
    job: &TargetJob<'_>,
    snap: &Snapshot,
    out: &mut TargetDrill,
    scratch: &mut Vec<Scratch>,
    clock: &mut Clock,
) -> Result<()> {
    let meta: bunker_sources::s3::S3Meta = facts(snap, "S3")?;
    let Root::Stream { content, .. } = &snap.root else { bail!("snapshot {} holds no manifest", snap.short_id()) };
    let restorer = Restorer::new(job.repo, job.index);
    let entries = bunker_sources::s3::read_manifest(&restorer, content)?;
    let (written, verified, differing) = match &job.scratch_s3 {
        Some(url) => {
            let prefix = S3Prefix::open(url, &format!("{}/{}", job.drill_id, job.name), job.config)?;
            out.provision_seconds = clock.lap();
            out.restored_into = prefix.bucket.spec.display();
            let opts = bunker_sources::s3::restore::S3RestoreOptions {
                dry_run: false,
                delete_extra: false,
                force: false,
                concurrency: 16,
            };
            let report = bunker_sources::s3::restore::restore(&restorer, &entries, &prefix.bucket, &opts);
            scratch.push(Scratch::S3(Box::new(prefix)));
            let report = report?;
            (report.bytes_written, report.verified, report.mismatches)
        }
        None => {
            let dir = ScratchDir::new("bunker-drill-s3-")?;
            out.provision_seconds = clock.lap();
            out.restored_into = dir.path().display().to_string();
            let result = super::scratch::objects_into_dir(&restorer, &entries, dir.path());
            scratch.push(Scratch::Dir(dir));
            result?
        }
    };
    out.bytes = written;
    out.restore_seconds = clock.lap();
    let recorded_bytes: u64 = entries.iter().map(|e| e.size).sum();
    out.checks.push(Check::new(
        "objects",
        entries.len() as u64 == meta.objects && verified == entries.len(),
        format!("{verified} of {} objects restored and read back (the backup listed {})", entries.len(), meta.objects),
    ));
    out.checks.push(Check::new(
        "bytes",
        written == recorded_bytes && recorded_bytes == meta.bytes,
        format!("{written} bytes written, {recorded_bytes} in the manifest, {} listed at backup", meta.bytes),
    ));
    out.checks.push(Check::new(
        "checksums",
        differing.is_empty(),
        if differing.is_empty() {
            format!("{verified} objects' BLAKE3 equal to the backup's")
        } else {
            format!(
                "{} objects differ: {}",
                differing.len(),
                differing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            )
        },
    ));
    out.verify_seconds = clock.lap();
    Ok(())
}

/// A file tree into a temporary directory, then every file compared chunk by chunk with the snapshot.
fn files(
    job: &TargetJob<'_>,
    snap: &Snapshot,
    tree: &bunker_engine::BlobId,
    out: &mut TargetDrill,
    scratch: &mut Vec<Scratch>,
    clock: &mut Clock,
) -> Result<()> {
    let dir = ScratchDir::new("bunker-drill-files-")?;
    let to: PathBuf = dir.path().join("restored");
    out.restored_into = to.display().to_string();
    out.provision_seconds = clock.lap();
    let restored = Restorer::new(job.repo, job.index).restore_tree(tree, &to, None, false);
    scratch.push(Scratch::Dir(dir));
    let stats = restored.map_err(|e| anyhow!("restoring snapshot {} failed: {e}", snap.short_id()))?;
    out.bytes = stats.bytes;
    out.restore_seconds = clock.lap();
    let found = bunker_engine::compare::compare_tree(job.repo, job.index, tree, &to)?;
    out.checks.push(Check::new(
        "file hashes",
        found.matches(),
        if found.matches() {
            format!(
                "{} files ({} bytes), {} directories, {} symlinks equal to the snapshot",
                found.files, found.bytes, found.dirs, found.symlinks
            )
        } else {
            format!(
                "{} differences: {}",
                found.differences.len(),
                found.differences.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            )
        },
    ));
    out.verify_seconds = clock.lap();
    Ok(())
}

/// A stream (a command's output): read whole, every chunk checked against its ID, the length against
/// the snapshot's. Its `restore` command is never run by a drill: it would act on production.
fn stream(
    job: &TargetJob<'_>,
    snap: &Snapshot,
    size: u64,
    content: &bunker_engine::tree::Content,
    out: &mut TargetDrill,
    clock: &mut Clock,
) -> Result<()> {
    out.restored_into = "read and checked in memory".into();
    out.provision_seconds = clock.lap();
    let read = Restorer::new(job.repo, job.index)
        .dump(content, &mut std::io::sink())
        .map_err(|e| anyhow!("reading snapshot {} failed: {e}", snap.short_id()))?;
    out.bytes = read;
    out.restore_seconds = clock.lap();
    out.checks.push(Check::new(
        "stream",
        read == size,
        format!("{read} bytes read, every chunk equal to its ID; {size} recorded"),
    ));
    out.verify_seconds = clock.lap();
    Ok(())
}
