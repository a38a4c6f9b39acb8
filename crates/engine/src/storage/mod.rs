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

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};

pub use location::{Location, S3Location};

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
}

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
        Ok(Storage { op, runtime: Arc::new(runtime), location: location.clone() })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn run<T, F>(&self, fut: F) -> opendal::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = opendal::Result<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| Err(opendal::Error::new(ErrorKind::Unexpected, "storage task vanished")))
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

    /// Deletes an object; deleting one that is already gone succeeds.
    pub fn delete(&self, path: &str) -> Result<()> {
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
