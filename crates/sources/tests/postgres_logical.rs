//! Logical PostgreSQL backups against real scratch clusters: what goes in comes back equal, the facts
//! recorded describe exactly what was dumped, and failures leave no snapshot.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::config::InitOptions;
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::storage::{Location, Storage};
use bunker_engine::{lock, Repository};
use bunker_scratch::{PgBinaries, ScratchPostgres};
use bunker_sources::postgres::restore::{restore, RestoreOptions, StoredArchive};
use bunker_sources::postgres::{ConnInfo, LogicalDatabase, LogicalMeta};
use bunker_sources::{Source, SourceError};

const SCHEMA: &str = r#"
CREATE EXTENSION hstore;
CREATE SCHEMA sales;
CREATE TABLE public.customers (id serial PRIMARY KEY, email text UNIQUE NOT NULL, prefs jsonb, tags text[], attrs hstore);
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES public.customers(id),
                           total numeric(12,2), receipt bytea, placed_at timestamptz DEFAULT now());
CREATE SEQUENCE sales.invoice_no START 1000;
INSERT INTO public.customers (email, prefs, tags, attrs)
  SELECT 'user' || g || '@example.com', jsonb_build_object('theme', 'dark', 'n', g), ARRAY['a' || g, 'b'], 'k=>v'
  FROM generate_series(1, 2000) g;
INSERT INTO sales.orders (customer_id, total, receipt)
  SELECT 1 + (g % 2000), g * 1.5, decode(md5(g::text), 'hex') FROM generate_series(1, 5000) g;
SELECT nextval('sales.invoice_no') FROM generate_series(1, 7);
SELECT lo_from_bytea(4242, 'large object payload');
COMMENT ON LARGE OBJECT 4242 IS 'a receipt scan';
CREATE MATERIALIZED VIEW sales.totals AS SELECT customer_id, sum(total) AS total FROM sales.orders GROUP BY 1;
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repository,
    bins: PgBinaries,
    source: ScratchPostgres,
}

fn fixture() -> Fixture {
    std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
    std::env::set_var("BUNKER_CACHE_DIR", "off");
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries on this machine");
    let source = ScratchPostgres::start(&bins).unwrap();
    source.psql("postgres", "CREATE DATABASE shop").unwrap();
    source.psql("shop", SCHEMA).unwrap();
    let status = Command::new(bins.bin("pgbench"))
        .args(["-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", &source.port().to_string(), "-U", "postgres", "shop"])
        .output()
        .unwrap();
    assert!(status.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&status.stderr));
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::create(&Location::Local(dir.path().join("repo"))).unwrap();
    let repo = Repository::init(storage, "pw", &InitOptions::default()).unwrap();
    Fixture { _dir: dir, repo, bins, source }
}

fn back_up(repo: &Repository, mut source: LogicalDatabase) -> Result<bunker_engine::Snapshot, SourceError> {
    let guard = lock::acquire(repo.storage(), false, "test", Duration::ZERO)?;
    let (index, _) = repo.load_index()?;
    let backup = Backup::start(repo, &guard, Arc::new(index));
    let captured = source.backup(&backup)?;
    let draft =
        SnapshotDraft { name: "shop".into(), kind: source.kind().into(), meta: captured.meta, ..Default::default() };
    Ok(backup.commit(captured.root, draft)?)
}

/// Per-table content checksums, comparable across clusters.
fn checksums(pg: &ScratchPostgres, db: &str) -> String {
    let tables = pg
        .psql(db, "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")
        .unwrap();
    tables
        .lines()
        .map(|t| {
            let sum = pg
                .psql(db, &format!("SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"))
                .unwrap();
            format!("{t}={sum}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn logical_round_trip_is_equal_and_records_consistent_facts() {
    let f = fixture();
    let conn = ConnInfo::resolve(&f.source.url("shop")).unwrap();
    let snap = back_up(&f.repo, LogicalDatabase { conn, pg_bin_dir: None }).unwrap();
    let meta: LogicalMeta = serde_json::from_value(snap.meta.clone()).unwrap();
    assert_eq!(meta.database, "shop");
    assert_eq!(meta.server_version_num / 10000, f.bins.major as i32);
    let rows = |s: &str, t: &str| meta.tables.iter().find(|r| r.schema == s && r.table == t).map(|r| r.rows);
    assert_eq!(rows("public", "customers"), Some(2000));
    assert_eq!(rows("sales", "orders"), Some(5000));
    assert_eq!(rows("public", "pgbench_accounts"), Some(100_000));
    assert!(meta.extensions.iter().any(|e| e.name == "hstore"));
    assert_eq!(meta.schema_fingerprint.len(), 64);
    assert!(meta.pg_dump_version.contains(&f.bins.major.to_string()));

    // The backup mapped the archive: its TOC, and one data block per table (and one for large objects).
    let layout = meta.archive.as_ref().expect("the archive's layout is recorded");
    assert!(layout.blocks.len() >= 6, "{layout:?}");
    assert!(layout.blocks.windows(2).all(|w| w[0].end() == w[1].offset()), "blocks are adjacent: {layout:?}");

    // Restore into a new database of another cluster (straight from the repository, table by table),
    // then again over it (replacing, from a temporary file): both times every table equal.
    let (index, _) = f.repo.load_index().unwrap();
    let Root::Stream { content, size } = &snap.root else { panic!("a logical snapshot is a stream") };
    assert_eq!(layout.blocks.last().unwrap().end(), *size);
    let restorer = Restorer::new(&f.repo, &index);
    let archive = StoredArchive { restorer: &restorer, content, layout: Some(layout) };
    let target = ScratchPostgres::start(&f.bins).unwrap();
    let into = ConnInfo::resolve(&target.url("shop")).unwrap();
    let opts = RestoreOptions { jobs: 2, force: false, keep_owners: false, pg_bin_dir: None, confirm: None };
    let restored = restore(&archive, &into, &opts).unwrap();
    assert_eq!((restored.method, restored.bytes), ("direct", *size));
    let same_as_source = |target: &ScratchPostgres| {
        assert_eq!(checksums(target, "shop"), checksums(&f.source, "shop"));
        assert_eq!(target.psql("shop", "SELECT last_value FROM sales.invoice_no").unwrap(), "1006");
        assert_eq!(target.psql("shop", "SELECT convert_from(lo_get(4242), 'UTF8')").unwrap(), "large object payload");
        assert_eq!(target.psql("shop", "SELECT obj_description(4242, 'pg_largeobject')").unwrap(), "a receipt scan");
        assert_eq!(target.psql("shop", "SELECT count(*) FROM sales.totals").unwrap(), "2000");
        let fks = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'sales.orders'::regclass";
        assert_eq!(target.psql("shop", fks).unwrap(), "1");
    };
    same_as_source(&target);
    let err = restore(&archive, &into, &opts).unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
    let replaced = restore(&archive, &into, &RestoreOptions { force: true, ..opts }).unwrap();
    assert_eq!(replaced.method, "file");
    same_as_source(&target);

    // The same database again: only the chunk holding the dump's header (it carries the dump time) is new.
    let conn = ConnInfo::resolve(&f.source.url("shop")).unwrap();
    let again = back_up(&f.repo, LogicalDatabase { conn, pg_bin_dir: None }).unwrap();
    assert!(again.stats.chunks_new <= 1, "{:?}", again.stats);
    assert!(again.stats.bytes_new <= 4 << 20, "more than one (max-size) chunk is new: {:?}", again.stats);
}

#[test]
fn connection_failures_and_a_killed_pg_dump_leave_no_snapshot() {
    let f = fixture();
    let count = || f.repo.load_snapshots().unwrap().len();

    let dead = bunker_scratch::free_port().unwrap();
    let conn = ConnInfo::resolve(&format!("postgresql://postgres@127.0.0.1:{dead}/shop")).unwrap();
    let err = back_up(&f.repo, LogicalDatabase { conn, pg_bin_dir: None }).unwrap_err().to_string();
    assert!(err.contains("cannot connect") && err.contains(&dead.to_string()), "{err}");

    let conn = ConnInfo::resolve(&f.source.url("nosuchdb")).unwrap();
    let err = back_up(&f.repo, LogicalDatabase { conn, pg_bin_dir: None }).unwrap_err().to_string();
    assert!(err.contains("nosuchdb"), "{err}");

    // A pg_dump that dies mid-stream (SIGKILL after some output).
    let fake = f._dir.path().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let real = f.bins.bin("pg_dump");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real} --version; fi\n{real} \"$@\" | head -c 100000\nkill -9 $$\n",
        real = real.display()
    );
    let path = fake.join("pg_dump");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conn = ConnInfo::resolve(&f.source.url("shop")).unwrap();
    let err = back_up(&f.repo, LogicalDatabase { conn, pg_bin_dir: Some(fake) }).unwrap_err().to_string();
    assert!(err.contains("pg_dump failed"), "{err}");
    assert_eq!(count(), 0, "a failed dump left a snapshot");
}
