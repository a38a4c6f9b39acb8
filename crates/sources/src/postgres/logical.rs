//! Logical backups: `pg_dump` in its custom format, uncompressed (the engine's dedup and zstd do better
//! than pg_dump's own compression, and on all cores), streamed straight into the repository. Facts about
//! the database — exact row counts per table, schema fingerprint, extensions, sizes, versions — are read in
//! a transaction whose snapshot pg_dump imports (`--snapshot`), so they describe exactly what was dumped.

use std::io::Read;
use std::process::{Child, Stdio};

use bunker_engine::backup::Backup;
use bunker_engine::snapshot::Root;
use serde::Serialize;

use super::archive::{ArchiveLayout, Scanned};
use super::conn::{error_text, ConnInfo};
use super::tools::PgTools;
use crate::{Captured, Source, SourceError};

/// Snapshot kind of a logical PostgreSQL backup.
pub const KIND: &str = "postgres-logical";

/// One database, dumped logically.
pub struct LogicalDatabase {
    pub conn: ConnInfo,
    pub pg_bin_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

#[derive(Debug, Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub version: String,
}

/// What a logical snapshot records about its database (its `meta`).
#[derive(Debug, Serialize, serde::Deserialize, Clone)]
pub struct LogicalMeta {
    pub database: String,
    pub server_version: String,
    pub server_version_num: i32,
    pub pg_dump_version: String,
    pub dump_format: String,
    pub database_size: i64,
    pub tables: Vec<TableRows>,
    pub schema_fingerprint: String,
    pub extensions: Vec<Extension>,
    /// Where the dump's TOC ends and each table's data lies, for parallel restores straight from the
    /// repository. Absent when the dump could not be mapped (restores then go through a temporary file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveLayout>,
}

impl Source for LogicalDatabase {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, SourceError> {
        let mut client = self.conn.connect()?;
        let target = self.conn.display();
        let sql_err = |e: postgres::Error| SourceError::Query { target: target.clone(), detail: error_text(&e) };
        let version_num: i32 =
            client.query_one("SELECT current_setting('server_version_num')::int", &[]).map_err(sql_err)?.get(0);
        let server_version: String =
            client.query_one("SELECT current_setting('server_version')", &[]).map_err(sql_err)?.get(0);
        let tools = PgTools::find((version_num / 10000) as u32, self.pg_bin_dir.as_deref())?;

        // One snapshot for pg_dump and for the facts we record. The transaction stays open until pg_dump
        // is done, so the snapshot stays importable whatever the timing.
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").map_err(sql_err)?;
        let snapshot: String = client.query_one("SELECT pg_export_snapshot()", &[]).map_err(sql_err)?.get(0);
        let mut dump = self.spawn_pg_dump(&tools, &snapshot)?;
        let stderr = collect_stderr(&mut dump);

        let conn = self.conn.clone();
        let (facts, stored) = std::thread::scope(|scope| {
            let facts = scope.spawn(move || {
                let facts = read_facts(&mut client)
                    .map_err(|e| SourceError::Query { target: conn.display(), detail: error_text(&e) });
                (client, facts)
            });
            let mut stdout = Scanned::new(dump.stdout.take().expect("piped stdout"));
            let stored = backup.save_stream_fine(&mut stdout);
            let layout = stdout.scanner.finish();
            (facts.join().expect("facts thread"), stored.map(|s| (s, layout)))
        });
        let (mut client, facts) = facts;
        let status = dump.wait().map_err(|e| SourceError::Tool { tool: "pg_dump".into(), detail: e.to_string() })?;
        let _ = client.batch_execute("COMMIT");
        let stderr = stderr.join().unwrap_or_default();
        if !status.success() {
            return Err(SourceError::Tool {
                tool: "pg_dump".into(),
                detail: format!("{status}: {}", last_lines(&stderr, 3)),
            });
        }
        let ((content, size), layout) = stored?;
        if layout.is_none() {
            tracing::warn!("could not map the archive's data blocks; restores of this snapshot will be slower");
        }
        let (database_size, tables, schema_fingerprint, extensions) = facts?;
        let meta = LogicalMeta {
            database: self.conn.dbname.clone(),
            server_version,
            server_version_num: version_num,
            pg_dump_version: tools.version("pg_dump").unwrap_or_default(),
            dump_format: "custom".into(),
            database_size,
            tables,
            schema_fingerprint,
            extensions,
            archive: layout,
        };
        Ok(Captured {
            root: Root::Stream { size, content },
            meta: serde_json::to_value(&meta).expect("meta serialises"),
            warnings: Vec::new(),
        })
    }
}

impl LogicalDatabase {
    fn spawn_pg_dump(&self, tools: &PgTools, snapshot: &str) -> Result<Child, SourceError> {
        let mut cmd = self.conn.tool(tools.bin("pg_dump"));
        cmd.args(["--format=custom", "--compress=0"])
            .arg(format!("--snapshot={snapshot}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn()
            .map_err(|e| SourceError::Tool { tool: tools.bin("pg_dump").display().to_string(), detail: e.to_string() })
    }
}

type Facts = (i64, Vec<TableRows>, String, Vec<Extension>);

const USER_RELATIONS: &str =
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
                              AND n.nspname NOT LIKE 'pg_temp%'";

/// Size, exact row counts of every user table, a fingerprint of the schema, and extensions.
fn read_facts(client: &mut postgres::Client) -> Result<Facts, postgres::Error> {
    let size: i64 = client.query_one("SELECT pg_database_size(current_database())", &[])?.get(0);
    let tables = client.query(
        &format!(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND {USER_RELATIONS} ORDER BY 1, 2"
        ),
        &[],
    )?;
    let mut rows = Vec::with_capacity(tables.len());
    for t in tables {
        let (schema, table): (String, String) = (t.get(0), t.get(1));
        let count: i64 =
            client.query_one(&format!("SELECT count(*) FROM ONLY {}", quote_pair(&schema, &table)), &[])?.get(0);
        rows.push(TableRows { schema, table, rows: count });
    }
    let mut fp = blake3::Hasher::new();
    for q in [
        format!(
            "SELECT n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
             || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped AND {USER_RELATIONS} \
             ORDER BY n.nspname, c.relname, a.attnum"
        ),
        format!(
            "SELECT n.nspname || '.' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(con.oid) \
             FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace WHERE {USER_RELATIONS} ORDER BY 1"
        ),
        format!(
            "SELECT n.nspname || '.' || c.relname || ' ' || pg_get_indexdef(c.oid) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'i' AND {USER_RELATIONS} ORDER BY 1"
        ),
    ] {
        for row in client.query(q.as_str(), &[])? {
            let line: String = row.get(0);
            fp.update(line.as_bytes());
            fp.update(b"\n");
        }
    }
    let extensions = client
        .query("SELECT extname, extversion FROM pg_extension ORDER BY 1", &[])?
        .into_iter()
        .map(|r| Extension { name: r.get(0), version: r.get(1) })
        .collect();
    Ok((size, rows, fp.finalize().to_hex().to_string(), extensions))
}

/// `"schema"."table"`, quoted as PostgreSQL's quote_ident would for any name.
pub(crate) fn quote_pair(schema: &str, table: &str) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!("{}.{}", q(schema), q(table))
}

fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    })
}

/// The last `n` non-empty lines of a tool's stderr, on one line.
pub(crate) fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    if tail.is_empty() {
        "no message".into()
    } else {
        tail
    }
}
