//! What a drill provisions on this host, and how each piece is torn down: scratch PostgreSQL clusters
//! and Redis servers (from `bunker-scratch`), recovered physical clusters, temporary directories, and
//! a prefix of `[drill] scratch_s3`. Dropping a [`Teardown`] removes them newest first (a server
//! before the directory it runs in); `--keep` leaves them in place instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use bunker_engine::restorer::Restorer;
use bunker_engine::storage::Location;
use bunker_engine::Repository;
use bunker_scratch::{ScratchPostgres, ScratchRedis};
use bunker_sources::postgres::physical::PhysicalMeta;
use bunker_sources::postgres::wal::{self, WalName};
use bunker_sources::s3::bucket::{Bucket, BucketSpec};

pub enum Scratch {
    Postgres(ScratchPostgres),
    Redis(ScratchRedis),
    Physical(PhysicalServer),
    Dir(ScratchDir),
    S3(Box<S3Prefix>),
}

impl Scratch {
    /// How to reach it once the drill has exited (`--keep`), and how to remove it.
    pub fn keep(self) -> String {
        let how = match &self {
            Scratch::Postgres(pg) => format!(
                "PostgreSQL {}: psql {} (stop: pg_ctl -D {} stop; then rm -r {})",
                pg.major(),
                pg.url("postgres"),
                pg.data_dir().display(),
                pg.data_dir().parent().map(|p| p.display().to_string()).unwrap_or_default()
            ),
            Scratch::Redis(r) => {
                format!(
                    "Redis: redis-cli -u {} (stop: redis-cli -u {} shutdown nosave; rm -r {})",
                    r.url(),
                    r.url(),
                    r.dir().display()
                )
            }
            Scratch::Physical(p) => format!(
                "recovered PostgreSQL: psql postgresql://postgres@127.0.0.1:{}/postgres (stop: {} -D {} stop)",
                p.port,
                p.pg_ctl.display(),
                p.pgdata.display()
            ),
            Scratch::Dir(d) => format!("directory {}", d.path().display()),
            Scratch::S3(s) => format!("objects under {}", s.url),
        };
        match self {
            Scratch::Dir(d) => {
                let _ = d.dir.keep();
            }
            other => std::mem::forget(other),
        }
        how
    }
}

/// Everything one drill provisioned; dropped, it is torn down newest first.
#[derive(Default)]
pub struct Teardown(pub Vec<Scratch>);

impl Drop for Teardown {
    fn drop(&mut self) {
        while let Some(s) = self.0.pop() {
            drop(s);
        }
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
                bail!("cannot hand {} to the postgres user (is there one?)", d.path().display());
            }
        }
        Ok(d)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A recovered physical cluster, stopped when dropped (its directory is a [`ScratchDir`] of its own).
pub struct PhysicalServer {
    pub pgdata: PathBuf,
    pub pg_ctl: PathBuf,
    pub port: u16,
}

impl Drop for PhysicalServer {
    fn drop(&mut self) {
        if bunker_sources::postgres::pitr::running_postmaster(&self.pgdata).is_some() {
            if let Err(e) = bunker_sources::postgres::pitr::stop(&self.pgdata, &self.pg_ctl) {
                tracing::warn!("could not stop the drill's PostgreSQL on port {}: {e}", self.port);
            }
        }
    }
}

/// A prefix of `[drill] scratch_s3` for one target of one drill; its objects are deleted when dropped.
pub struct S3Prefix {
    pub bucket: Bucket,
    pub url: String,
}

impl S3Prefix {
    pub fn open(url: &str, sub: &str, target: Option<&bunker_config::TargetConfig>) -> Result<S3Prefix> {
        let Location::S3(dest) = Location::parse(url)? else {
            bail!("[drill] scratch_s3 {url:?} is not an s3://bucket/prefix URL")
        };
        // The target's credentials serve the scratch bucket too, unless the environment has its own.
        let source = match target {
            Some(t) if t.kind == "s3" => Some(bunker_sources::s3::spec(t)?.0),
            _ => None,
        };
        let mut spec = BucketSpec::at(&dest, source.as_ref());
        spec.prefix = if spec.prefix.is_empty() { sub.to_string() } else { format!("{}/{sub}", spec.prefix) };
        let bucket = Bucket::open(&spec)?;
        if !bucket.list()?.is_empty() {
            bail!("{} already holds objects; a drill restores only into an empty prefix", spec.display());
        }
        Ok(S3Prefix { url: spec.display(), bucket })
    }
}

impl Drop for S3Prefix {
    fn drop(&mut self) {
        let keys = match self.bucket.list() {
            Ok(l) => l,
            Err(e) => return tracing::warn!("could not list the drill's objects under {}: {e}", self.url),
        };
        for o in keys {
            if let Err(e) = self.bucket.delete(&o.key) {
                return tracing::warn!("could not delete the drill's objects under {}: {e}", self.url);
            }
        }
    }
}

/// Fetches the archived WAL a recovery from `meta`'s base backup can use (segments from its first on,
/// every timeline history) into `spool`, in parallel; `restore_command` then copies from there. Returns
/// the bytes fetched.
pub fn spool_wal(repo: &Repository, target: &str, meta: &PhysicalMeta, spool: &Path) -> Result<u64> {
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
        let b = b.ok_or_else(|| anyhow!("archived WAL file {name} vanished"))?;
        std::fs::write(spool.join(name), &b)?;
        bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(())
    })
    .map_err(|e| e.context(format!("fetching the WAL archive of {target}")))?;
    Ok(bytes.into_inner())
}

/// S3 objects written as files under `dir` (each key a relative path), hashed on the way and read back.
/// Returns the bytes written, the objects read back equal to the snapshot, and the keys that differ.
pub fn objects_into_dir(
    restorer: &Restorer<'_>,
    entries: &[bunker_sources::s3::Entry],
    dir: &Path,
) -> Result<(u64, usize, Vec<String>)> {
    let bytes = AtomicU64::new(0);
    let verified = AtomicUsize::new(0);
    let differing = Mutex::new(Vec::new());
    each_in_parallel(entries, |e| {
        let written = (|| -> Result<()> {
            let path = dir.join(key_path(&e.key));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = Hashing { inner: std::fs::File::create(&path)?, hasher: blake3::Hasher::new() };
            let n = restorer.dump(&e.content, &mut file)?;
            bytes.fetch_add(n, Ordering::Relaxed);
            let mut back = blake3::Hasher::new();
            std::io::copy(&mut std::fs::File::open(&path)?, &mut back)?;
            let hex = |h: &blake3::Hasher| h.finalize().to_hex().to_string();
            if hex(&file.hasher) == e.blake3 && hex(&back) == e.blake3 && n == e.size {
                verified.fetch_add(1, Ordering::Relaxed);
            } else {
                differing.lock().expect("differing").push(e.key.clone());
            }
            Ok(())
        })();
        written.map_err(|err| err.context(format!("object {:?}", e.key)))
    })?;
    Ok((bytes.into_inner(), verified.into_inner(), differing.into_inner().expect("differing")))
}

/// Runs `each` on every item, four at a time; stops at the first failure (returned) or an interrupt.
fn each_in_parallel<T: Sync>(items: &[T], each: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
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

/// An object key as a relative path that stays inside the directory: empty, `.` and `..` components
/// are escaped rather than followed.
fn key_path(key: &str) -> PathBuf {
    key.split('/')
        .map(|c| match c {
            "" => "%2F".to_string(),
            "." => "%2E".to_string(),
            ".." => "%2E%2E".to_string(),
            c => c.to_string(),
        })
        .collect()
}

struct Hashing {
    inner: std::fs::File,
    hasher: blake3::Hasher,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_never_leave_the_directory() {
        assert_eq!(key_path("a/b.jpg"), PathBuf::from("a/b.jpg"));
        assert_eq!(key_path("../../etc/passwd"), PathBuf::from("%2E%2E/%2E%2E/etc/passwd"));
        assert_eq!(key_path("/abs//x"), PathBuf::from("%2F/abs/%2F/x"));
        assert!(key_path("./x").components().all(|c| matches!(c, std::path::Component::Normal(_))));
    }
}
