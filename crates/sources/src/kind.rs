//! The contract every source kind implements, for the whole life of its snapshots: plan a backup,
//! restore a snapshot to a destination and verify what landed, drill it into scratch resources, give
//! smoke tests their endpoint, do what retention needs beside forgetting snapshots, and report its
//! health facts. Orchestration (`bunker-ops`) only ever calls these methods; it never looks at a kind's
//! name. The kinds are listed once, in [`crate::KINDS`].

use std::path::PathBuf;

use bunker_config::TargetConfig;
use bunker_engine::index::Index;
use bunker_engine::restorer::Restorer;
use bunker_engine::tree::Content;
use bunker_engine::{Repository, Snapshot};

use crate::drill::{DrillJob, DrillOutcome};
use crate::{Planned, SourceError};

pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// One source kind: `type = "…"` in the stack file, and the snapshot kinds it writes.
pub trait Kind: Send + Sync {
    /// Its `type` in the stack file (`postgres`, `redis`, `s3`, `files`, `command`).
    fn name(&self) -> &'static str;

    /// The snapshot kinds it writes (`postgres-logical`, …); a snapshot is handled by the kind that lists
    /// its kind.
    fn snapshot_kinds(&self) -> &'static [&'static str];

    /// The snapshots to take for a target of the stack file. Nothing is read yet.
    fn plan(&self, target: &TargetConfig) -> Result<Vec<Planned>>;

    /// Whether this snapshot is restored only together with another (PostgreSQL's roles script goes with
    /// each database): a point restore and a drill skip it on its own.
    fn is_companion(&self, _snapshot: &Snapshot) -> bool {
        false
    }

    /// Where the snapshot goes back to when no destination is given: where its target lives according
    /// to the stack file (`restore --point`, `restore NAME` without a destination). `base` holds the
    /// directories the caller gave for kinds that have no home of their own (files, data directories).
    fn home(&self, snapshot: &Snapshot, target: &TargetConfig, base: &HomeBase) -> Result<Destination>;

    /// Whether [`Kind::restore`] honours `options.dry_run` itself (reads the destination and says what
    /// it would change, changing nothing). For the other kinds a dry run never reaches `restore`: the
    /// orchestration says what would be restored where, and runs no hook.
    fn previews_restore(&self) -> bool {
        false
    }

    /// Restores `job.snapshot` to `job.destination` and, unless `job.options.no_verify`, checks what
    /// landed against the snapshot's recorded facts. Must refuse a destination it cannot take with one
    /// line naming the destinations it can, and must never overwrite a non-empty destination without
    /// `force`. Problems found by verification are returned in [`Restored::problems`], not as errors.
    fn restore(&self, job: &RestoreJob<'_>) -> Result<Restored>;

    /// Checks a live copy (`bunker verify SNAPSHOT --against WHERE`) against the snapshot's recorded
    /// facts without restoring anything; kinds that record nothing to check against refuse.
    fn verify_against(&self, snapshot: &Snapshot, target: Option<&TargetConfig>, against: &str) -> Result<Restored> {
        let _ = (target, against);
        Err(crate::fail(format!(
            "snapshot {} is a {} snapshot; `bunker verify --against` checks PostgreSQL dumps (restore the others, which verifies them)",
            snapshot.short_id(),
            snapshot.kind
        )))
    }

    /// Provisions scratch resources on this host, restores the job's snapshots into them and verifies
    /// them, filling in `out` as it goes (timings, checks, where it restored). The scratch resources go
    /// into `out.scratch`, torn down when dropped, newest first. Must never write to production.
    fn drill(&self, job: &DrillJob<'_>, out: &mut DrillOutcome) -> Result<()>;

    /// The variable smoke tests find this kind's scratch endpoint in (`BUNKER_DRILL_PG_URL`, …), if any.
    fn smoke_variable(&self) -> Option<&'static str> {
        None
    }

    /// What retention must do beside forgetting this target's snapshots: `before` were its snapshots,
    /// `kept` are the ones left (physical PostgreSQL: expire WAL no kept base backup needs). Returns what
    /// it removed (or, with `dry_run`, would).
    fn after_forget(
        &self,
        _repo: &Repository,
        _target: &str,
        _before: &[&Snapshot],
        _kept: &[&Snapshot],
        _dry_run: bool,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// What `target` keeps in the repository beyond its snapshots (physical PostgreSQL: archived WAL),
    /// for the live RPO of health; `None` for kinds that keep nothing else.
    fn live_data(&self, _repo: &Repository, _target: &TargetConfig) -> Result<Option<LiveData>> {
        Ok(None)
    }

    /// The selective-restore flags its restores apply (`--include`, `--exclude`); any other given is
    /// refused by the orchestration, never ignored.
    fn selects_by(&self) -> &'static [&'static str] {
        &[]
    }

    /// What the snapshot holds, for `bunker ls`: every file, object, table or key it can name, in a
    /// stable order. Reads content (a tree, a manifest), so it needs what a restore needs. Kinds that
    /// cannot list their snapshots say so.
    fn list(&self, _restorer: &Restorer<'_>, snapshot: &Snapshot) -> Result<Vec<Item>> {
        Err(crate::fail(format!(
            "snapshot {} ({}) cannot be listed yet: `bunker ls` knows file trees, S3 snapshots, logical PostgreSQL dumps and Redis snapshots",
            snapshot.short_id(),
            snapshot.kind
        )))
    }

    /// The bytes of one item [`Kind::list`] names (`bunker dump SNAPSHOT ITEM`): a file of a tree, an
    /// object of a bucket. `item` is its path as listed.
    fn item_content(&self, _restorer: &Restorer<'_>, snapshot: &Snapshot, item: &str) -> Result<Content> {
        Err(crate::fail(format!(
            "snapshot {} ({}) has no items to dump by name ({item:?}); dump it whole with `bunker dump {}`",
            snapshot.short_id(),
            snapshot.kind,
            snapshot.short_id()
        )))
    }
}

/// One thing a snapshot holds, as `bunker ls` shows it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Item {
    /// Its path (a file's below the tree's roots, an object's key).
    pub path: String,
    /// `file`, `dir`, `symlink`, `object`, …
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Permission bits, for files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Anything else worth a column: a symlink's target, a checksum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Item {
    /// Whether `selector` picks this item: a glob (`uploads/*.jpg`, `**/logo.*`) when it holds a glob
    /// character, else the path itself or anything below it.
    pub fn matches(&self, selector: &Selector) -> bool {
        selector.matches(&self.path)
    }
}

/// What `ls`, `versions` and selective restores pick by: a glob, or a path and what lies below it.
pub enum Selector {
    Glob(globset::GlobMatcher),
    Path(String),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector> {
        if text.contains(['*', '?', '[', '{']) {
            let glob = globset::Glob::new(text)
                .map_err(|e| bunker_engine::Error::invalid("pattern", format!("{text:?}: {e}")))?;
            Ok(Selector::Glob(glob.compile_matcher()))
        } else {
            Ok(Selector::Path(text.trim_end_matches('/').to_string()))
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            Selector::Glob(g) => g.is_match(path),
            Selector::Path(p) => {
                p.is_empty() || path == p || path.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// Where a restore writes; which ones a kind takes is the kind's to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `--into`: a database URL or name, a Redis URL, an `s3://` URL.
    Into(String),
    /// `--to DIR`: a directory.
    Dir(PathBuf),
    /// `--pgdata DIR`: a PostgreSQL data directory, recovered per [`RestoreOptions::recovery`].
    DataDir(PathBuf),
    /// `--rdb-file PATH`: a Redis RDB file.
    RdbFile(PathBuf),
    /// `--exec [COMMAND]`: fed to a command's standard input (the target's `restore` command when none).
    Exec(Option<String>),
}

impl Destination {
    /// The flag a user gives for it, for errors.
    pub fn flag(&self) -> &'static str {
        match self {
            Destination::Into(_) => "--into",
            Destination::Dir(_) => "--to",
            Destination::DataDir(_) => "--pgdata",
            Destination::RdbFile(_) => "--rdb-file",
            Destination::Exec(_) => "--exec",
        }
    }
}

/// Directories given for the kinds without a home of their own, in a point restore: files go to
/// `files/SNAPSHOT-NAME`, a physical cluster to `pgdata` (`pgdata/TARGET` when the point has several).
#[derive(Debug, Clone, Default)]
pub struct HomeBase {
    pub files: Option<PathBuf>,
    pub pgdata: Option<PathBuf>,
    /// The point holds several physical PostgreSQL targets: each gets its own directory under `pgdata`.
    pub several_data_dirs: bool,
}

/// How a physical PostgreSQL restore recovers; the point restore sets `to_time` to the point's end.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// `--to-time` etc. as given; `None` everywhere: to the end of the archive.
    pub target: RecoveryTarget,
    /// `None`: latest; `Some(0)`: the base backup's own (`current`).
    pub timeline: Option<u32>,
    pub action: TargetAction,
    /// Start the cluster and wait until recovery reaches its target: the port and how long to wait.
    pub start: Option<(u16, std::time::Duration)>,
    pub keep_archiving: bool,
    /// The `restore_command` to write; `None`: bunker's own `wal-fetch` (see [`RestoreJob::wal_fetch`]).
    pub restore_command: Option<String>,
}

/// How to restore, beside where.
#[derive(Default, Clone)]
pub struct RestoreOptions<'a> {
    pub force: bool,
    /// Parallel jobs (pg_restore); `None`: the number of cores.
    pub jobs: Option<usize>,
    pub no_verify: bool,
    /// PostgreSQL: restore the target's roles script first, keep owners.
    pub with_globals: bool,
    /// Files, S3: only paths (keys) matching these globs, and what lies under them.
    pub include: Vec<String>,
    /// S3: not the keys matching these globs.
    pub exclude: Vec<String>,
    /// Redis: only the keys this glob matches (`session:*`).
    pub match_keys: Option<String>,
    /// Redis: only this database.
    pub db: Option<u32>,
    /// S3: say what would be written, write nothing.
    pub dry_run: bool,
    /// S3: delete objects the snapshot does not have.
    pub delete_extra: bool,
    pub recovery: Recovery,
    /// Asked before replacing what a destination holds, when there is someone to ask.
    pub confirm: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
}

/// One restore, as the orchestration hands it to a kind.
pub struct RestoreJob<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    /// Every snapshot of the repository (for companions: a roles script, other base backups).
    pub snapshots: &'a [Snapshot],
    pub snapshot: &'a Snapshot,
    /// Whether the user named this very snapshot (an ID) rather than a target's newest: physical
    /// PostgreSQL then restores it instead of choosing the base backup for the recovery target.
    pub pinned: bool,
    /// The target the snapshot belongs to (the part of its name before `/`).
    pub target_name: &'a str,
    /// Its section of the stack file, when the stack file still has it.
    pub target: Option<&'a TargetConfig>,
    pub destination: &'a Destination,
    pub options: &'a RestoreOptions<'a>,
    /// The `restore_command` that fetches this target's WAL through bunker (physical PostgreSQL).
    pub wal_fetch: &'a (dyn Fn(&str) -> Result<String> + Sync),
}

/// What a restore did: for the catalog, for the user (lines to print, a JSON document), and what its
/// verification found.
#[derive(Debug, Default)]
pub struct Restored {
    /// The snapshot actually restored (physical PostgreSQL may choose another base backup).
    pub snapshot: Option<bunker_engine::FileId>,
    /// Where it went, as shown (no password).
    pub into: String,
    pub bytes: u64,
    /// Facts for the catalog run's details (`method`, `keys`, `timeline`…).
    pub details: Vec<(String, serde_json::Value)>,
    /// Lines for a person, in order.
    pub lines: Vec<String>,
    /// Lines about mismatches, for standard error.
    pub warnings: Vec<String>,
    /// The same for `--json`.
    pub json: serde_json::Value,
    /// Whether what landed was checked against the snapshot.
    pub verified: bool,
    /// What verification found wrong; any makes the restore fail (exit 1).
    pub problems: Vec<String>,
}

/// Data a target keeps beside its snapshots (archived WAL): when its newest piece was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveData {
    pub files: usize,
    pub newest: Option<std::time::SystemTime>,
}

/// Where recovery of a physical PostgreSQL restore stops (`--to-time`, `--to-lsn`, … ; a point restore
/// recovers to the point's end).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RecoveryTarget {
    /// Replay everything archived.
    #[default]
    Latest,
    /// Stop as soon as the base backup is consistent.
    Immediate,
    Time(chrono::DateTime<chrono::FixedOffset>),
    Lsn(u64),
    Xid(u64),
    Name(String),
}

/// What a recovered PostgreSQL server does on reaching its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetAction {
    #[default]
    Promote,
    Pause,
    Shutdown,
}
