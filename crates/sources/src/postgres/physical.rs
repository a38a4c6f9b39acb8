//! Physical base backups: the data directory read in place between `pg_backup_start` and
//! `pg_backup_stop`, stored as a file tree. Relation files are cut into fixed 64 KiB chunks, so a page
//! changed since the last base backup costs one chunk and every unchanged one dedups: every base backup
//! stores only what changed, yet restores as a full one. The WAL from the backup's start to its stop is
//! archived by `wal-push` (archive_command) into the same repository; the backup waits until the stop
//! segment is there, so a finished snapshot is always restorable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bunker_engine::archiver::Archiver;
use bunker_engine::backup::Backup;
use bunker_engine::chunker::ChunkerParams;
use bunker_engine::snapshot::Root;
use bunker_engine::tree::{Node, NodeKind};
use serde::{Deserialize, Serialize};

use super::conn::{error_text, ConnInfo};
use super::wal::{self, Segment};
use crate::{Captured, Source, SourceError};

/// Snapshot kind of a physical PostgreSQL base backup.
pub const KIND: &str = "postgres-physical";

/// Chunk size for the data directory: eight 8 KiB pages.
pub const CHUNK_SIZE: u32 = super::DATA_CHUNK_SIZE;

/// What PostgreSQL itself leaves out of base backups (see "Backing Up the Data Directory" in its
/// documentation): runtime state that is rebuilt at start, and the WAL, which comes from the archive.
pub const EXCLUDED: &[&str] = &[
    "pg_wal/*",
    "pg_replslot/*",
    "pg_dynshmem/*",
    "pg_notify/*",
    "pg_serial/*",
    "pg_snapshots/*",
    "pg_stat_tmp/*",
    "pg_subtrans/*",
    "pgsql_tmp*",
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "backup_manifest",
    "pg_internal.init",
    "recovery.signal",
    "standby.signal",
    "bunker-prefetch",
];

/// A cluster backed up physically. The data directory must be readable here (bunker runs on the
/// database host, as the `postgres` user or root).
pub struct PhysicalCluster {
    pub target: String,
    pub conn: ConnInfo,
    /// The data directory when it is not where the server says (a container's volume mounted elsewhere).
    pub data_dir: Option<PathBuf>,
    /// How long to wait for the backup's last WAL segment to be archived.
    pub archive_timeout: Duration,
    pub method: Method,
    pub pg_bin_dir: Option<PathBuf>,
}

/// How a base backup is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Local when the data directory is readable here, else replication.
    Auto,
    /// Read the data directory in place (bunker on the database host).
    Local,
    /// `pg_basebackup` over the replication protocol (from any host; the role needs REPLICATION).
    Replication,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "auto" => Some(Method::Auto),
            "local" => Some(Method::Local),
            "replication" => Some(Method::Replication),
            _ => None,
        }
    }
}

/// What a physical snapshot records (its `meta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhysicalMeta {
    pub server_version: String,
    pub server_version_num: i32,
    /// As a decimal string: JSON numbers lose precision beyond 2^53.
    pub system_identifier: String,
    pub timeline: u32,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub start_wal: String,
    pub stop_wal: String,
    pub start_time: chrono::DateTime<chrono::Utc>,
    pub stop_time: chrono::DateTime<chrono::Utc>,
    pub segment_size: u64,
    pub data_directory: String,
    /// The `backup_label` file, as the restored data directory holds it.
    pub backup_label: String,
    /// `local` (data directory read in place) or `replication` (pg_basebackup).
    #[serde(default)]
    pub method: String,
}

impl PhysicalMeta {
    pub fn start_segment(&self) -> Option<Segment> {
        Segment::parse(&self.start_wal, self.segment_size)
    }
    pub fn stop_segment(&self) -> Option<Segment> {
        Segment::parse(&self.stop_wal, self.segment_size)
    }
    pub fn start_lsn_value(&self) -> u64 {
        wal::parse_lsn(&self.start_lsn).unwrap_or(0)
    }
    pub fn stop_lsn(&self) -> u64 {
        wal::parse_lsn(&self.stop_lsn).unwrap_or(0)
    }
}

struct ServerFacts {
    version: String,
    version_num: i32,
    data_directory: String,
    system_identifier: i64,
    archive_mode: String,
    segment_size: i64,
}

fn query_err(conn: &ConnInfo) -> impl Fn(postgres::Error) -> SourceError + '_ {
    move |e| SourceError::Query { target: conn.display(), detail: error_text(&e) }
}

impl PhysicalCluster {
    fn facts(&self, client: &mut postgres::Client) -> Result<ServerFacts, SourceError> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
                 current_setting('data_directory'), (SELECT system_identifier FROM pg_control_system()), \
                 current_setting('archive_mode'), \
                 (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')",
                &[],
            )
            .map_err(query_err(&self.conn))?;
        Ok(ServerFacts {
            version: row.get(0),
            version_num: row.get(1),
            data_directory: row.get(2),
            system_identifier: row.get(3),
            archive_mode: row.get(4),
            segment_size: row.get(5),
        })
    }
}

/// Reads the system identifier from `global/pg_control` (its first eight bytes).
fn control_system_identifier(data_dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(data_dir.join("global/pg_control")).ok()?;
    Some(u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?))
}

/// `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)` and friends, from a backup label.
fn label_field<'a>(label: &'a str, key: &str) -> Option<&'a str> {
    label.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

impl Source for PhysicalCluster {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, SourceError> {
        let target = self.conn.display();
        let mut client = self.conn.connect()?;
        let facts = self.facts(&mut client)?;
        if facts.archive_mode == "off" {
            return Err(SourceError::Config(format!(
                "{target} has archive_mode = off: a physical backup needs its WAL archived; set archive_mode = on and \
                 archive_command = 'bunker wal-push --target {} %p', then restart the server",
                self.target
            )));
        }
        let data_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from(&facts.data_directory));
        let local = match control_system_identifier(&data_dir) {
            Some(id) if id as i64 == facts.system_identifier => Ok(()),
            Some(_) => Err(format!(
                "{} belongs to another cluster than {target} (system identifiers differ); set data_dir to this server's data directory",
                data_dir.display()
            )),
            None => Err(format!(
                "cannot read {}/global/pg_control: a local base backup reads the data directory, so run bunker on the database host as the postgres user (or root), set data_dir, or use method = \"replication\"",
                data_dir.display()
            )),
        };
        let method = match (self.method, local) {
            (Method::Local, Err(e)) => return Err(SourceError::Config(e)),
            (Method::Local, Ok(())) | (Method::Auto, Ok(())) => Method::Local,
            (Method::Auto, Err(e)) => {
                tracing::info!("{e}; streaming the base backup over the replication protocol instead");
                Method::Replication
            }
            (Method::Replication, _) => Method::Replication,
        };
        let segment_size = facts.segment_size as u64;
        let label = format!("bunker {} {}", self.target, chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
        let start_time = chrono::Utc::now();
        let copied = match method {
            Method::Replication => {
                drop(client);
                let major = (facts.version_num / 10000) as u32;
                let tools = super::tools::PgTools::find(major, self.pg_bin_dir.as_deref())?;
                let s = super::basebackup::stream(&self.conn, &tools.bin("pg_basebackup"), &label, backup)?;
                Copied { root: s.root, backup_label: s.backup_label, stop_lsn: s.stop_lsn, warnings: Vec::new() }
            }
            _ => self.copy_local(&mut client, &facts, &data_dir, &label, backup)?,
        };
        let stop_time = chrono::Utc::now();
        let label_text = &copied.backup_label;
        let timeline: u32 = label_field(label_text, "START TIMELINE:").and_then(|t| t.parse().ok()).unwrap_or(1);
        let start_field = label_field(label_text, "START WAL LOCATION:").unwrap_or("");
        let start_lsn = start_field.split_whitespace().next().unwrap_or("").to_string();
        let start_wal =
            start_field.split("(file ").nth(1).map(|v| v.trim_end_matches(')').to_string()).ok_or_else(|| {
                SourceError::Query { target: target.clone(), detail: "backup label has no START WAL LOCATION".into() }
            })?;
        let stop_lsn = copied.stop_lsn;
        // The segment holding the last byte before the stop location (PostgreSQL's XLByteToPrevSeg).
        let stop = Segment::of_lsn(timeline, wal::parse_lsn(&stop_lsn).unwrap_or(0).saturating_sub(1), segment_size);
        let stop_wal = stop.name(segment_size);
        wait_for_archived(backup.repository(), &self.target, &stop_wal, self.archive_timeout)?;
        let meta = PhysicalMeta {
            server_version: facts.version,
            server_version_num: facts.version_num,
            system_identifier: (facts.system_identifier as u64).to_string(),
            timeline,
            start_lsn,
            stop_lsn,
            start_wal,
            stop_wal,
            start_time,
            stop_time,
            segment_size,
            data_directory: data_dir.display().to_string(),
            backup_label: copied.backup_label,
            method: if method == Method::Replication { "replication" } else { "local" }.into(),
        };
        Ok(Captured {
            root: Root::Tree { tree: copied.root },
            meta: serde_json::to_value(&meta).expect("meta serialises"),
            warnings: copied.warnings,
        })
    }
}

/// What a base backup copied.
struct Copied {
    root: bunker_engine::BlobId,
    backup_label: String,
    stop_lsn: String,
    warnings: Vec<String>,
}

impl PhysicalCluster {
    /// Reads the data directory in place between `pg_backup_start` and `pg_backup_stop`, in one session.
    fn copy_local(
        &self,
        client: &mut postgres::Client,
        facts: &ServerFacts,
        data_dir: &Path,
        label: &str,
        backup: &Backup<'_>,
    ) -> Result<Copied, SourceError> {
        let target = self.conn.display();
        if std::fs::read_dir(data_dir.join("pg_tblspc")).map(|mut d| d.next().is_some()).unwrap_or(false) {
            return Err(SourceError::Config(format!(
                "{target} has tablespaces outside its data directory; physical backups of such clusters are not supported yet, use mode = \"logical\""
            )));
        }
        let new_api = facts.version_num >= 150000;
        let start_sql = if new_api {
            "SELECT pg_backup_start($1, true)::text"
        } else {
            "SELECT pg_start_backup($1, true, false)::text"
        };
        // Page checksums are verified as the files are read when the cluster has them (8 KiB pages only).
        let checksums: String = client
            .query_one(
                "SELECT current_setting('data_checksums') || '/' || current_setting('block_size') || '/' \
                 || (SELECT setting FROM pg_settings WHERE name = 'segment_size')",
                &[],
            )
            .map_err(query_err(&self.conn))?
            .get(0);
        let blocks_per_segment = checksums.rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or(131072);
        let start: String = client.query_one(start_sql, &[&label]).map_err(query_err(&self.conn))?.get(0);
        // From here on a failure must end the backup mode; dropping the session does that (non-exclusive).
        let pages = super::pages::PageChecks {
            start_lsn: super::wal::parse_lsn(&start).unwrap_or(0),
            blocks_per_segment,
            data_dir: data_dir.to_path_buf(),
        };
        let exclude = crate::files::globs(&EXCLUDED.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut archiver = Archiver::new(backup, &exclude)
            .chunking(ChunkerParams::fixed(CHUNK_SIZE))
            .tolerate_vanished()
            .with_digests();
        if checksums.starts_with(&format!("on/{}/", super::pages::BLOCK_SIZE)) {
            archiver = archiver.inspecting(&pages);
        }
        let mut nodes = archiver.save_contents(data_dir)?;
        // pg_wal moved elsewhere (initdb --waldir) is a symlink: stored as one, a restore would point the
        // copy at this server's WAL. Stored as an empty directory instead, as pg_basebackup does.
        if let Some(wal_dir) = nodes.iter_mut().find(|n| n.name == "pg_wal") {
            if matches!(wal_dir.kind, NodeKind::Symlink { .. }) {
                let empty = archiver.save_tree(bunker_engine::tree::Tree { nodes: Vec::new() })?;
                wal_dir.kind = NodeKind::Dir { subtree: empty };
                wal_dir.mode = 0o700;
            }
        }
        // A file that could not be read (permissions, a name that is not UTF-8) would leave a base backup
        // that looks complete and cannot start: fail instead.
        if !archiver.warnings.is_empty() {
            return Err(SourceError::Config(format!(
                "{} entries of {} could not be read, so this base backup would not be restorable: {}",
                archiver.warnings.len(),
                data_dir.display(),
                archiver.warnings.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            )));
        }
        let stop_sql = if new_api {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
        } else {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
        };
        let row = client.query_one(stop_sql, &[]).map_err(query_err(&self.conn))?;
        let stop_lsn: String = row.get(0);
        let backup_label: String = row.get(1);
        let tablespace_map: Option<String> = row.get(2);
        // The label and tablespace map go into the root of the tree, beside what was copied, and a
        // backup manifest in PostgreSQL's own format, so pg_verifybackup can check a restored copy.
        let now = chrono::Utc::now().timestamp();
        let mut files = archiver.digests.take().unwrap_or_default();
        let mut extra = vec![file_node(backup, "backup_label", backup_label.as_bytes(), data_dir)?];
        files.push(digest_of("backup_label", backup_label.as_bytes(), now));
        if let Some(map) = tablespace_map.filter(|m| !m.is_empty()) {
            extra.push(file_node(backup, "tablespace_map", map.as_bytes(), data_dir)?);
            files.push(digest_of("tablespace_map", map.as_bytes(), now));
        }
        let start_lsn = label_field(&backup_label, "START WAL LOCATION:").and_then(|v| v.split_whitespace().next());
        let timeline: u32 = label_field(&backup_label, "START TIMELINE:").and_then(|t| t.parse().ok()).unwrap_or(1);
        let manifest = super::manifest::render(&files, timeline, start_lsn.unwrap_or("0/0"), &stop_lsn);
        extra.push(file_node(backup, "backup_manifest", manifest.as_bytes(), data_dir)?);
        nodes.retain(|n| !extra.iter().any(|x| x.name == n.name));
        nodes.extend(extra);
        let root = archiver.save_tree(bunker_engine::tree::Tree { nodes })?;
        // Damaged pages at the source: the backup stands (it holds what the server has), with a warning
        // naming each relation file and block.
        let mut warnings = archiver.warnings;
        warnings.append(&mut archiver.findings);
        Ok(Copied { root, backup_label, stop_lsn, warnings })
    }
}

fn digest_of(path: &str, bytes: &[u8], mtime: i64) -> bunker_engine::archiver::FileDigest {
    bunker_engine::archiver::FileDigest {
        path: path.into(),
        size: bytes.len() as u64,
        mtime,
        crc32c: bunker_engine::archiver::crc32c(bytes),
    }
}

/// A small file stored whole, owned like the data directory, mode 0600.
fn file_node(backup: &Backup<'_>, name: &str, bytes: &[u8], data_dir: &Path) -> Result<Node, SourceError> {
    use std::os::unix::fs::MetadataExt;
    let (content, size) = backup.save_stream(bytes)?;
    let owner = std::fs::metadata(data_dir).map_err(|e| bunker_engine::Error::io(data_dir, e))?;
    Ok(Node {
        name: name.into(),
        name_bytes: None,
        kind: NodeKind::File { size, content },
        mode: 0o600,
        mtime: chrono::Utc::now().timestamp(),
        mtime_nsec: 0,
        uid: owner.uid(),
        gid: owner.gid(),
    })
}

/// Waits until `wal/<target>/<segment>` is in the repository: archive_command must have pushed the
/// backup's last segment, or the snapshot could not be restored.
fn wait_for_archived(
    repo: &bunker_engine::Repository,
    target: &str,
    segment: &str,
    timeout: Duration,
) -> Result<(), SourceError> {
    let started = Instant::now();
    let name = format!("{target}/{segment}");
    loop {
        if repo.object_exists(wal::NAMESPACE, &name)? {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(SourceError::Config(format!(
                "WAL segment {segment}, the last one this base backup needs, was not archived into the repository within {}s; check that archive_command is 'bunker wal-push --target {target} %p' and the server log for its errors",
                timeout.as_secs()
            )));
        }
        bunker_engine::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(200));
    }
}
