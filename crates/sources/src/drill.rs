//! What a kind's [`crate::Kind::drill`] works with: the job (the snapshots of one target and where the
//! drill allows it to write), the outcome it fills in (timings, checks, where it restored), and the
//! scratch resources it provisions on this host (temporary directories, recovered clusters, a prefix of
//! `[drill] scratch_s3`), each torn down when dropped. A drill never writes to a production server or
//! bucket: everything it restores goes to what it provisioned.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bunker_engine::index::Index;
use bunker_engine::{Repository, Snapshot};
use serde::{Deserialize, Serialize};

use crate::SourceError;

type Result<T, E = SourceError> = std::result::Result<T, E>;

/// One check of a restored target: row counts, foreign keys, an assertion, key counts, checksums…
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked, e.g. `row counts`, `foreign keys`, `assertion users_have_email`, `objects`.
    pub name: String,
    pub passed: bool,
    /// What was found, e.g. `12/12 tables as recorded` or `orders: 1000 rows, recorded 1001`.
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> Check {
        Check { name: name.into(), passed, detail: detail.into() }
    }
}

/// What one target's drill needs from the whole drill.
pub struct DrillJob<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    /// The target's name (the part of the snapshots' names before `/`).
    pub name: &'a str,
    /// Its snapshots to restore (a database per snapshot, its roles script…).
    pub snapshots: &'a [&'a Snapshot],
    pub config: Option<&'a bunker_config::TargetConfig>,
    /// Physical PostgreSQL is recovered to here (the point's end); `None`: to the end of the archive.
    pub recover_until: Option<chrono::DateTime<chrono::Utc>>,
    /// `[drill] scratch_s3`: S3 targets are restored under a prefix of this drill's own there.
    pub scratch_s3: Option<&'a str>,
    /// This drill's ID, for names of what it provisions.
    pub drill_id: &'a str,
}

impl DrillJob<'_> {
    /// The snapshot that is restored first: not a companion (a roles script); an error naming the
    /// target when it has only companions.
    pub fn main(&self) -> Result<&Snapshot> {
        let first =
            self.snapshots.first().ok_or_else(|| crate::fail(format!("no snapshot of {} to drill", self.name)))?;
        let kind = crate::kind_of_snapshot(first);
        self.snapshots.iter().copied().find(|s| !kind.is_companion(s)).ok_or_else(|| {
            crate::fail(format!("the drill holds only {} of {}, nothing it goes with", first.kind, self.name))
        })
    }
}

/// What a kind's drill of one target found, filled in as it goes.
#[derive(Default)]
pub struct DrillOutcome {
    /// The snapshot kind drilled.
    pub kind: String,
    /// Where it was restored: a scratch URL or directory (no password in it).
    pub restored_into: String,
    pub provision_seconds: f64,
    pub restore_seconds: f64,
    pub verify_seconds: f64,
    pub bytes: u64,
    pub checks: Vec<Check>,
    /// Physical PostgreSQL: the age of the newest archived WAL when the drill started.
    pub live_rpo_seconds: Option<f64>,
    /// What it provisioned, newest last; dropped newest first.
    pub scratch: Vec<Box<dyn Scratch>>,
}

/// Something a drill provisioned; dropping it tears it down.
pub trait Scratch: Send {
    /// Leaves it in place (`drill --keep`) and says how to reach it and how to remove it.
    fn keep(self: Box<Self>) -> String;
}

impl Scratch for bunker_scratch::ScratchPostgres {
    fn keep(self: Box<Self>) -> String {
        let how = format!(
            "PostgreSQL {}: psql {} (stop: pg_ctl -D {} stop; then rm -r {})",
            self.major(),
            self.url("postgres"),
            self.data_dir().display(),
            self.data_dir().parent().map(|p| p.display().to_string()).unwrap_or_default()
        );
        std::mem::forget(self);
        how
    }
}

impl Scratch for bunker_scratch::ScratchRedis {
    fn keep(self: Box<Self>) -> String {
        let how = format!(
            "Redis: redis-cli -u {} (stop: redis-cli -u {} shutdown nosave; rm -r {})",
            self.url(),
            self.url(),
            self.dir().display()
        );
        std::mem::forget(self);
        how
    }
}

/// A temporary directory, removed when dropped.
pub struct ScratchDir {
    dir: tempfile::TempDir,
}

impl ScratchDir {
    pub fn new(prefix: &str) -> Result<ScratchDir> {
        Ok(ScratchDir { dir: tempfile::Builder::new().prefix(prefix).tempdir()? })
    }

    /// A directory the `postgres` user owns when we are root (PostgreSQL refuses to run as root).
    pub fn for_postgres(prefix: &str) -> Result<ScratchDir> {
        let d = Self::new(prefix)?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let status = std::process::Command::new("chown").arg("postgres:postgres").arg(d.path()).status()?;
            if !status.success() {
                return Err(crate::fail(format!(
                    "cannot hand {} to the postgres user (is there one?)",
                    d.path().display()
                )));
            }
        }
        Ok(d)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Scratch for ScratchDir {
    fn keep(self: Box<Self>) -> String {
        let how = format!("directory {}", self.path().display());
        let _ = self.dir.keep();
        how
    }
}

/// Timings of one target, lap by lap.
pub struct Clock {
    mark: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { mark: Instant::now() }
    }
}

impl Clock {
    /// Seconds since the last lap.
    pub fn lap(&mut self) -> f64 {
        let s = self.mark.elapsed().as_secs_f64();
        self.mark = Instant::now();
        s
    }
}

/// The facts a source recorded in a snapshot (`meta`), as that source's type.
pub fn facts<T: serde::de::DeserializeOwned>(snap: &Snapshot, what: &str) -> Result<T> {
    serde_json::from_value(snap.meta.clone())
        .map_err(|e| crate::fail(format!("snapshot {} has unreadable {what} facts: {e}", snap.short_id())))
}

/// Runs `each` on every item, four at a time; stops at the first failure (returned) or an interrupt.
pub fn each_in_parallel<T: Sync>(items: &[T], each: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                if bunker_engine::interrupt::requested() || failure.lock().expect("failure").is_some() {
                    return;
                }
                let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else { return };
                if let Err(e) = each(item) {
                    failure.lock().expect("failure").get_or_insert(e);
                }
            });
        }
    });
    bunker_engine::interrupt::check()?;
    failure.into_inner().expect("failure").map_or(Ok(()), Err)
}

/// A stream (a command's output) in a drill: read whole, every chunk checked against its ID, the length
/// against the snapshot's. Its `restore` command is never run by a drill: it would act on production.
pub fn read_stream(
    job: &crate::drill::DrillJob<'_>,
    snap: &bunker_engine::Snapshot,
    out: &mut crate::drill::DrillOutcome,
) -> Result<()> {
    let bunker_engine::snapshot::Root::Stream { size, content } = &snap.root else {
        return Err(crate::fail(format!("snapshot {} holds no stream", snap.short_id())));
    };
    let mut clock = Clock::default();
    out.restored_into = "read and checked in memory".into();
    out.provision_seconds = clock.lap();
    let read = bunker_engine::restorer::Restorer::new(job.repo, job.index)
        .dump(content, &mut std::io::sink())
        .map_err(|e| crate::fail(format!("reading snapshot {} failed: {e}", snap.short_id())))?;
    out.bytes = read;
    out.restore_seconds = clock.lap();
    out.checks.push(Check::new(
        "stream",
        read == *size,
        format!("{read} bytes read, every chunk equal to its ID; {size} recorded"),
    ));
    out.verify_seconds = clock.lap();
    Ok(())
}
