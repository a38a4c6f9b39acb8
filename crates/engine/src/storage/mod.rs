//! The repository's storage: a thin blocking façade over an opendal `Operator`, with retries and backoff
//! for transient errors. The engine's pipelines are threads; opendal is async, so each call is spawned on
//! a small runtime owned by the storage and awaited through a channel. That works from any thread,
//! including one that belongs to another runtime (a later async source), where `block_on` would panic.
//!
//! Local repositories write their files themselves ([`local`]): created 0600 in 0700 directories
//! whatever the umask, written to `tmp/` and renamed into place, the temp file removed on any error.
//! Nothing local is retried: a full disk, a read-only file system or a permission error does not get
//! better in twenty seconds, and the caller must hear about it at once.

mod local;
mod location;
mod s3lock;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};

pub use location::{Location, S3Location};
pub use s3lock::Retention;

use crate::error::{Error, Result};

/// One object in a listing: its path relative to the repository root and its size.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub path: String,
    pub size: u64,
    pub modified: Option<std::time::SystemTime>,
}

#[derive(Clone)]
pub struct Storage {
    op: Operator,
    runtime: Arc<tokio::runtime::Runtime>,
    location: Location,
    lock: Option<Arc<ObjectLocking>>,
}

/// A repository under S3 Object Lock: its policy and the client for the calls opendal lacks.
struct ObjectLocking {
    policy: crate::config::ObjectLock,
    client: s3lock::Client,
}

/// Where short-lived files live, written without retention whatever the repository's lock: locks (they
/// expire), temp files, and the catalog (loose run records are folded into segments and deleted, and
/// a month's segment is replaced as the month fills).
const UNLOCKED_DIRS: [&str; 4] = ["locks/", "tmp/", "runs/", "catalog/"];

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.location)
    }
}

impl Storage {
    /// Opens storage for a new repository, creating a local directory if needed.
    pub fn create(location: &Location) -> Result<Self> {
        if let Location::Local(root) = location {
            local::create_root(root)?;
        }
        Self::open(location)
    }

    /// Opens existing storage. A local directory that does not exist is no repository (and is not created).
    pub fn open(location: &Location) -> Result<Self> {
        let op = match location {
            Location::Local(root) => {
                let root = absolute(root)?;
                if !root.is_dir() {
                    return Err(Error::NoRepository { location: root.display().to_string() });
                }
                // Reads, listings and deletes only: writes go through `local` (see the module docs).
                let builder = opendal::services::Fs::default().root(&root.to_string_lossy());
                Operator::new(builder).map_err(|e| storage_err("open", &root.to_string_lossy(), e))?
            }
            Location::S3(s3) => {
                // Without opendal's default `auto-register-services` feature nothing installs the HTTP
                // transport, and every S3 call fails with "default HTTP transport is not installed".
                // Idempotent: first install wins.
                opendal::install_default();
                let mut builder = opendal::services::S3::default()
                    .bucket(&s3.bucket)
                    .root(&format!("/{}", s3.prefix))
                    .region(&s3.region);
                if let Some(ep) = &s3.endpoint {
                    builder = builder.endpoint(ep);
                }
                if !s3.path_style {
                    builder = builder.enable_virtual_host_style();
                }
                let op = Operator::new(builder).map_err(|e| storage_err("open", &location.to_string(), e))?;
                resilient(op, Duration::from_secs(120))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bunker-storage")
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        Ok(Storage { op, runtime: Arc::new(runtime), location: location.clone(), lock: None })
    }

    /// This storage writing lasting objects under `lock` (a repository's config says so): every write
    /// but [`UNLOCKED_DIRS`] carries a retain-until date, and deletes remove an object's versions. Only
    /// S3 has Object Lock: a local repository with a lock in its config is refused.
    pub fn with_object_lock(mut self, lock: Option<crate::config::ObjectLock>) -> Result<Storage> {
        let Some(policy) = lock else {
            self.lock = None;
            return Ok(self);
        };
        let Location::S3(s3) = &self.location else {
            return Err(Error::invalid("object lock", "S3 Object Lock needs an s3:// repository"));
        };
        let client = s3lock::Client::new(s3, io_timeout()).map_err(|f| self.lock_error("open", "", f))?;
        self.lock = Some(Arc::new(ObjectLocking { policy, client }));
        Ok(self)
    }

    /// The repository's Object Lock policy, if it has one.
    pub fn object_lock(&self) -> Option<crate::config::ObjectLock> {
        self.lock.as_ref().map(|l| l.policy)
    }

    /// Whether `path` is written with a retention in a locked repository.
    pub fn is_lockable(path: &str) -> bool {
        !UNLOCKED_DIRS.iter().any(|d| path.starts_with(d))
    }

    fn locking_for(&self, path: &str) -> Option<Arc<ObjectLocking>> {
        self.lock.clone().filter(|_| Self::is_lockable(path))
    }

    /// Whether the bucket was created with Object Lock enabled (for `init --object-lock`).
    pub fn bucket_lock_enabled(&self) -> Result<bool> {
        let Some(l) = self.lock.clone() else { return Ok(false) };
        self.run_lock(async move { l.client.bucket_lock_enabled().await })
            .map_err(|f| self.lock_error("inspect", "the bucket's Object Lock configuration", f))
    }

    /// The retention an object carries now (`None`: none, or it lies outside the lock).
    pub fn retention(&self, path: &str) -> Result<Option<Retention>> {
        let Some(l) = self.lock.clone() else { return Ok(None) };
        let p = path.to_string();
        self.run_lock(async move { l.client.retention(&p).await }).map_err(|f| self.lock_error("stat", path, f))
    }

    /// Moves an object's retain-until date to `until` (S3 refuses to shorten it).
    pub fn extend_retention(&self, path: &str, until: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let Some(l) = self.lock.clone() else { return Ok(()) };
        let p = path.to_string();
        let retention = Retention { mode: l.policy.mode, until };
        self.run_lock(async move { l.client.set_retention(&p, retention).await })
            .map_err(|f| self.lock_error("extend the retention of", path, f))
    }

    fn new_retention(l: &ObjectLocking) -> Retention {
        let until = chrono::Utc::now() + chrono::Duration::seconds(l.policy.period_secs as i64);
        Retention { mode: l.policy.mode, until }
    }

    fn run_lock<T, F>(&self, fut: F) -> std::result::Result<T, s3lock::Failure>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, s3lock::Failure>> + Send + 'static,
    {
        self.block_on(fut).unwrap_or_else(|| {
            Err(s3lock::Failure { status: None, code: "Unexpected".into(), message: "storage task vanished".into() })
        })
    }

    fn lock_error(&self, op: &'static str, path: &str, f: s3lock::Failure) -> Error {
        let kind = match f.status {
            Some(404) => return Error::NotFound { path: path.to_string() },
            Some(403) => ErrorKind::PermissionDenied,
            Some(412) => ErrorKind::ConditionNotMatch,
            _ => ErrorKind::Unexpected,
        };
        if f.code == "NoSuchBucket" {
            if let Location::S3(s3) = &self.location {
                return Error::NoBucket { bucket: s3.bucket.clone() };
            }
        }
        let hint = match f.status {
            Some(403) => " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy)",
            None => " (cannot reach the storage: check the endpoint and the network)",
            _ => "",
        };
        Error::Storage { op, path: path.to_string(), kind, detail: format!("{f}{hint}") }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn run<T, F>(&self, fut: F) -> opendal::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = opendal::Result<T>> + Send + 'static,
    {
        self.block_on(fut).unwrap_or_else(|| Err(opendal::Error::new(ErrorKind::Unexpected, "storage task vanished")))
    }

    /// Runs `fut` on the storage's runtime and waits for it from any thread (see the module docs);
    /// `None` if the task vanished.
    fn block_on<R: Send + 'static>(&self, fut: impl Future<Output = R> + Send + 'static) -> Option<R> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }

    pub fn read(&self, path: &str) -> Result<Bytes> {
        let op = self.op.clone();
        let p = path.to_string();
        self.run(async move { op.read(&p).await.map(|b| b.to_bytes()) }).map_err(|e| self.error("read", path, e))
    }

    pub fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Bytes> {
        let op = self.op.clone();
        let p = path.to_string();
        let bytes = self
            .run(async move { op.read_with(&p).range(offset..offset + len).await.map(|b| b.to_bytes()) })
            .map_err(|e| self.error("read", path, e))?;
        if bytes.len() as u64 != len {
            return Err(Error::Corrupt(format!(
                "{path}: wanted {len} bytes at offset {offset}, got {} (truncated?)",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Writes (or replaces) an object. Locally: whole (a temp file renamed into place), durable, 0600.
    pub fn write(&self, path: &str, data: Bytes) -> Result<()> {
        if let Location::Local(root) = &self.location {
            return local::write(&absolute(root)?, path, &data);
        }
        if let Some(l) = self.locking_for(path) {
            let p = path.to_string();
            let retention = Self::new_retention(&l);
            return self
                .run_lock(async move { l.client.put(&p, data, retention, false).await.map(|_| ()) })
                .map_err(|f| self.lock_error("write", path, f));
        }
        let op = self.op.clone();
        let p = path.to_string();
        self.run(async move { op.write(&p, data).await.map(|_| ()) }).map_err(|e| self.error("write", path, e))
    }

    /// Creates an object only if none exists under that name. Returns `false` if one already did.
    /// Local: a hard link from a fully written temp file (atomic in both senses). S3: `If-None-Match: *`.
    pub fn create_new(&self, path: &str, data: Bytes) -> Result<bool> {
        if let Location::Local(root) = &self.location {
            return local::create_new(&absolute(root)?, path, &data);
        }
        if let Some(l) = self.locking_for(path) {
            let p = path.to_string();
            let retention = Self::new_retention(&l);
            return self
                .run_lock(async move { l.client.put(&p, data, retention, true).await })
                .map_err(|f| self.lock_error("create", path, f));
        }
        let op = self.op.clone();
        let p = path.to_string();
        match self.run(async move { op.write_with(&p, data).if_not_exists(true).await.map(|_| ()) }) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists) => Ok(false),
            Err(e) => Err(self.error("create", path, e)),
        }
    }

    pub fn exists(&self, path: &str) -> Result<bool> {
        let op = self.op.clone();
        let p = path.to_string();
        self.run(async move { op.exists(&p).await }).map_err(|e| self.error("stat", path, e))
    }

    /// Deletes an object; deleting one that is already gone succeeds. Under Object Lock every version
    /// goes (a plain delete would only hide it); one still under retention is [`Error::Retained`].
    pub fn delete(&self, path: &str) -> Result<()> {
        if let Some(l) = self.lock.clone() {
            let p = path.to_string();
            return match self.run_lock(async move { l.client.delete_versions(&p).await }) {
                Ok(_) => Ok(()),
                Err(f) if f.status == Some(403) => match self.retention(path) {
                    Ok(Some(r)) if r.until > chrono::Utc::now() => {
                        Err(Error::Retained { path: path.to_string(), until: s3lock::iso(r.until) })
                    }
                    _ => Err(self.lock_error("delete", path, f)),
                },
                Err(f) => Err(self.lock_error("delete", path, f)),
            };
        }
        let op = self.op.clone();
        let p = path.to_string();
        self.run(async move { op.delete(&p).await }).map_err(|e| self.error("delete", path, e))
    }

    /// Temp files of a local repository (`tmp/`) older than `age`: what a writer killed outright left
    /// behind (a live writer renames or removes its own). S3 writes are atomic and leave none.
    pub fn stale_temp_files(&self, age: Duration) -> Result<Vec<ObjectInfo>> {
        if !matches!(self.location, Location::Local(_)) {
            return Ok(Vec::new());
        }
        let now = std::time::SystemTime::now();
        Ok(self
            .list(local::TMP_DIR)?
            .into_iter()
            .filter(|o| o.modified.and_then(|m| now.duration_since(m).ok()).is_some_and(|a| a > age))
            .collect())
    }

    /// Lists the files under `dir` (recursively), with sizes. A missing directory lists as empty.
    pub fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let op = self.op.clone();
        let d = format!("{}/", dir.trim_end_matches('/'));
        let entries = self
            .run(async move {
                match op.list_with(&d).recursive(true).await {
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                    r => r,
                }
            })
            .map_err(|e| self.error("list", dir, e))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| ObjectInfo {
                path: e.path().trim_start_matches('/').to_string(),
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified().map(std::time::SystemTime::from),
            })
            .collect())
    }
}

/// bunker's policy for any S3-compatible operator: whole calls time out after `timeout`, a stalled transfer
/// after `BUNKER_IO_TIMEOUT_SECS` (60 s), and transient errors (5xx, throttling, timeouts, resets) are retried up to six times with
/// jittered exponential backoff from `BUNKER_RETRY_MIN_DELAY_MS` (200 ms) to 10 s, each retry logged.
pub fn resilient(op: Operator, timeout: Duration) -> Operator {
    op.layer(TimeoutLayer::new().with_timeout(timeout).with_io_timeout(io_timeout())).layer(
        RetryLayer::new()
            .with_notify(RetryLog)
            .with_jitter()
            .with_min_delay(Duration::from_millis(retry_min_delay_ms()))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(6),
    )
}

fn io_timeout() -> Duration {
    let secs = std::env::var("BUNKER_IO_TIMEOUT_SECS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(60.0);
    Duration::from_secs_f64(secs.clamp(0.1, 3600.0))
}

fn retry_min_delay_ms() -> u64 {
    std::env::var("BUNKER_RETRY_MIN_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

fn storage_err(op: &'static str, path: &str, source: opendal::Error) -> Error {
    Error::Storage { op, path: path.to_string(), kind: source.kind(), detail: describe(&source) }
}

/// A short, single-line account of a storage error: its kind, the service's message, the underlying
/// cause (connection refused…), and what to do for the usual suspects. Raw responses and headers are left
/// out (they are long, and a storage error must never echo request details).
fn describe(e: &opendal::Error) -> String {
    fn clip(s: &str, n: usize) -> String {
        let one = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if one.chars().count() > n {
            format!("{}…", one.chars().take(n).collect::<String>())
        } else {
            one
        }
    }
    let mut out = e.kind().to_string();
    if !e.message().is_empty() {
        out.push_str(": ");
        out.push_str(&clip(e.message(), 240));
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&clip(&c.to_string(), 160));
        cause = c.source();
    }
    let s3_denied = ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"]
        .iter()
        .any(|code| e.message().contains(code));
    let hint = if e.message().contains("NoSuchBucket") {
        " (the bucket does not exist: create it first)"
    } else if s3_denied {
        " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy)"
    } else if e.kind() == ErrorKind::PermissionDenied {
        " (check the repository's file permissions and who runs bunker)"
    } else if e.message().contains("send http request") {
        " (cannot reach the storage: check the endpoint and the network)"
    } else {
        ""
    };
    out.push_str(hint);
    out
}

/// Logs each retry as one concise line (the default would log the full error with its backtrace).
struct RetryLog;

impl opendal::layers::RetryInterceptor for RetryLog {
    fn intercept(&self, event: opendal::layers::RetryEvent<'_>) {
        tracing::warn!(
            "storage {} failed ({}), retry {} in {:.1}s",
            event.op,
            describe(event.err),
            event.attempt,
            event.retry_after.as_secs_f64()
        );
    }
}

impl Storage {
    fn error(&self, op: &'static str, path: &str, e: opendal::Error) -> Error {
        match &self.location {
            _ if e.kind() == ErrorKind::NotFound => Error::NotFound { path: path.to_string() },
            Location::S3(s3) if e.message().contains("NoSuchBucket") => Error::NoBucket { bucket: s3.bucket.clone() },
            _ => storage_err(op, path, e),
        }
    }
}
