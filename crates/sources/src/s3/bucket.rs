//! A bucket (and prefix) backed up or restored into: a blocking façade over opendal's S3 service, with
//! its retry layer for transient errors (5xx, timeouts, throttling). Objects are read as streams.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use opendal::{ErrorKind, Operator};

use crate::SourceError;

/// Where a bucket is and how to reach it.
#[derive(Clone)]
pub struct BucketSpec {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl BucketSpec {
    /// A bucket and prefix given as an `s3://` location (a restore's or a drill's destination), reached
    /// with `credentials`' keys (its target's) when it has them, else through the AWS environment.
    pub fn at(location: &bunker_engine::storage::S3Location, credentials: Option<&BucketSpec>) -> BucketSpec {
        BucketSpec {
            bucket: location.bucket.clone(),
            prefix: location.prefix.trim_matches('/').to_string(),
            endpoint: location.endpoint.clone(),
            region: location.region.clone(),
            path_style: location.path_style,
            access_key_id: credentials.and_then(|c| c.access_key_id.clone()),
            secret_access_key: credentials.and_then(|c| c.secret_access_key.clone()),
        }
    }

    /// `s3://bucket/prefix` at the endpoint, for messages (never a key).
    pub fn display(&self) -> String {
        let prefix = if self.prefix.is_empty() { String::new() } else { format!("/{}", self.prefix) };
        match &self.endpoint {
            Some(ep) => format!("s3://{}{prefix} at {ep}", self.bucket),
            None => format!("s3://{}{prefix}", self.bucket),
        }
    }
}

/// An object as a listing shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What an object carries besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

pub struct Bucket {
    op: Operator,
    runtime: Arc<tokio::runtime::Runtime>,
    pub spec: BucketSpec,
}

impl Bucket {
    pub fn open(spec: &BucketSpec) -> Result<Bucket, SourceError> {
        opendal::install_default();
        let root = format!("/{}", spec.prefix.trim_matches('/'));
        let mut b = opendal::services::S3::default().bucket(&spec.bucket).root(&root).region(&spec.region);
        if let Some(ep) = &spec.endpoint {
            b = b.endpoint(ep);
        }
        if !spec.path_style {
            b = b.enable_virtual_host_style();
        }
        if let (Some(id), Some(secret)) = (&spec.access_key_id, &spec.secret_access_key) {
            b = b.access_key_id(id).secret_access_key(secret);
        }
        let op = Operator::new(b).map_err(|e| SourceError::Config(format!("{}: {}", spec.display(), describe(&e))))?;
        let op = bunker_engine::storage::resilient(op, Duration::from_secs(300));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bunker-s3-source")
            .enable_all()
            .build()
            .map_err(|e| SourceError::Tool { tool: "tokio runtime".into(), detail: e.to_string() })?;
        Ok(Bucket { op, runtime: Arc::new(runtime), spec: spec.clone() })
    }

    /// Runs one opendal call to its end on the bucket's runtime, from a plain thread.
    fn run<T>(&self, fut: impl std::future::Future<Output = opendal::Result<T>>) -> opendal::Result<T> {
        self.runtime.block_on(fut)
    }

    fn fail(&self, op: &str, key: &str, e: opendal::Error) -> SourceError {
        let what = if key.is_empty() { self.spec.display() } else { format!("{} object {key:?}", self.spec.display()) };
        SourceError::Query { target: what, detail: format!("{op}: {}", describe(&e)) }
    }

    /// Every object under the prefix, keys relative to it, sorted.
    pub fn list(&self) -> Result<Vec<Listed>, SourceError> {
        let mut out = Vec::new();
        self.list_each(|l| {
            out.push(l);
            true
        })?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Hands each object under the prefix to `each` as the listing pages arrive (so work on the first
    /// objects overlaps the listing of the rest); stops early when `each` returns false.
    pub fn list_each(&self, mut each: impl FnMut(Listed) -> bool) -> Result<(), SourceError> {
        let op = self.op.clone();
        let mut lister =
            self.run(async move { op.lister_with("/").recursive(true).await }).map_err(|e| self.fail("list", "", e))?;
        loop {
            let next = self.runtime.block_on(std::future::poll_fn(|cx| Pin::new(&mut lister).poll_next(cx)));
            let entry = match next {
                None => return Ok(()),
                Some(Err(e)) => return Err(self.fail("list", "", e)),
                Some(Ok(entry)) => entry,
            };
            if !entry.metadata().is_file() {
                continue;
            }
            let listed = Listed {
                key: entry.path().trim_start_matches('/').to_string(),
                size: entry.metadata().content_length(),
                etag: entry.metadata().etag().map(|t| t.trim_matches('"').to_string()),
                last_modified: entry.metadata().last_modified().map(|t| t.to_string()),
            };
            if !each(listed) {
                return Ok(());
            }
        }
    }

    /// Whether a key would reach S3 as itself: opendal normalises paths (trims whitespace, collapses
    /// `//`, strips a leading `/`), so such keys would be read or written under another name.
    pub fn key_is_safe(key: &str) -> bool {
        !key.is_empty() && key.trim() == key && !key.contains("//") && !key.starts_with('/') && !key.ends_with('/')
    }

    /// Opens an object for reading: one GET, whose response headers carry the content type, user metadata
    /// and ETag (a HEAD only when the service does not return them with the content). The bytes stream
    /// through as they arrive, hashed on the way; an object is never held whole.
    pub fn open_read(&self, key: &str) -> Result<ObjectRead, SourceError> {
        let (op, k) = (self.op.clone(), key.to_string());
        let (stream, meta) = self
            .run(async move {
                let mut stream = op.reader(&k).await?.into_bytes_stream(..).await?;
                let meta = stream.metadata().await.ok();
                Ok((stream, meta))
            })
            .map_err(|e| self.fail("read", key, e))?;
        let meta = match meta {
            Some(m) if m.etag().is_some() => m,
            _ => {
                let (op, k) = (self.op.clone(), key.to_string());
                self.run(async move { op.stat(&k).await }).map_err(|e| self.fail("stat", key, e))?
            }
        };
        let attrs = Attrs {
            content_type: meta.content_type().map(str::to_owned),
            metadata: meta
                .user_metadata()
                .map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
                .unwrap_or_default(),
        };
        Ok(ObjectRead {
            stream,
            runtime: self.runtime.clone(),
            current: Bytes::new(),
            hasher: blake3::Hasher::new(),
            len: 0,
            attrs,
            etag: meta.etag().map(|t| t.trim_matches('"').to_string()),
            what: format!("{} object {key:?}", self.spec.display()),
        })
    }

    /// Starts writing an object with its attributes: parts of 8 MiB, four in flight, as the bytes come
    /// (multipart beyond one part). Nothing is visible until [`ObjectWrite::commit`]; dropped or
    /// aborted, the upload is abandoned.
    pub fn create_write(&self, key: &str, attrs: &Attrs) -> Result<ObjectWrite, SourceError> {
        let (op, k, a) = (self.op.clone(), key.to_string(), attrs.clone());
        let writer = self
            .run(async move {
                let mut w = op.writer_with(&k).chunk(8 << 20).concurrent(4);
                if let Some(ct) = &a.content_type {
                    w = w.content_type(ct);
                }
                if !a.metadata.is_empty() {
                    w = w.user_metadata(a.metadata.clone());
                }
                w.await
            })
            .map_err(|e| self.fail("write", key, e))?;
        Ok(ObjectWrite {
            writer: Some(writer),
            runtime: self.runtime.clone(),
            hasher: blake3::Hasher::new(),
            len: 0,
            what: format!("{} object {key:?}", self.spec.display()),
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), SourceError> {
        let (op, k) = (self.op.clone(), key.to_string());
        self.run(async move { op.delete(&k).await }).map_err(|e| self.fail("delete", key, e))
    }
}

/// An object being read: its attributes from the GET's headers, and its bytes as a [`Read`] that hashes
/// them on the way.
pub struct ObjectRead {
    stream: opendal::FuturesBytesStream,
    runtime: Arc<tokio::runtime::Runtime>,
    current: Bytes,
    hasher: blake3::Hasher,
    len: u64,
    pub attrs: Attrs,
    /// The GET's own ETag (the object may have changed since a listing).
    pub etag: Option<String>,
    what: String,
}

impl ObjectRead {
    /// The BLAKE3 (hex) and length of the bytes read so far: the object's, once read to its end.
    pub fn digest(&self) -> (String, u64) {
        (self.hasher.finalize().to_hex().to_string(), self.len)
    }
}

impl Read for ObjectRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let stream = &mut self.stream;
            match self.runtime.block_on(std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx))) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => {
                    let detail = match e.get_ref().and_then(|inner| inner.downcast_ref::<opendal::Error>()) {
                        Some(oe) => describe(oe),
                        None => e.to_string(),
                    };
                    return Err(std::io::Error::new(e.kind(), format!("{}: read: {detail}", self.what)));
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        let piece = self.current.split_to(n);
        out[..n].copy_from_slice(&piece);
        self.hasher.update(&piece);
        self.len += n as u64;
        Ok(n)
    }
}

/// An object being written: a [`Write`] that hashes what passes, then commits or abandons the upload.
pub struct ObjectWrite {
    writer: Option<opendal::Writer>,
    runtime: Arc<tokio::runtime::Runtime>,
    hasher: blake3::Hasher,
    len: u64,
    what: String,
}

impl ObjectWrite {
    /// The BLAKE3 (hex) and length of the bytes written so far.
    pub fn digest(&self) -> (String, u64) {
        (self.hasher.finalize().to_hex().to_string(), self.len)
    }

    /// Completes the upload: the object becomes visible.
    pub fn commit(mut self) -> Result<(), SourceError> {
        let mut writer = self.writer.take().expect("open writer");
        self.runtime
            .block_on(writer.close())
            .map(|_| ())
            .map_err(|e| SourceError::Query { target: self.what.clone(), detail: format!("write: {}", describe(&e)) })
    }

    /// Abandons the upload (multipart parts are discarded); the object is not written.
    pub fn abort(mut self) {
        self.abandon();
    }

    fn abandon(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            if let Err(e) = self.runtime.block_on(writer.abort()) {
                tracing::warn!("{}: abandoning the upload: {}", self.what, describe(&e));
            }
        }
    }
}

impl Write for ObjectWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let writer = self.writer.as_mut().expect("open writer");
        self.runtime
            .block_on(writer.write(Bytes::copy_from_slice(buf)))
            .map_err(|e| std::io::Error::other(format!("{}: write: {}", self.what, describe(&e))))?;
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWrite {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// One line: the kind of failure and what to do, never a raw response.
fn describe(e: &opendal::Error) -> String {
    let msg = e.message();
    if msg.contains("NoSuchBucket") {
        return "the bucket does not exist: not found at this endpoint and region (check bucket, endpoint, region)"
            .into();
    }
    if ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken"].iter().any(|c| msg.contains(c)) {
        return "access denied: check the credentials (access_key_id/secret_access_key, or the AWS environment) and the bucket policy".into();
    }
    match e.kind() {
        ErrorKind::NotFound => "not found (does the bucket exist at this endpoint and region?)".into(),
        ErrorKind::PermissionDenied => {
            "access denied: check the credentials (access_key_id/secret_access_key, or the AWS environment) and the bucket policy".into()
        }
        ErrorKind::ConfigInvalid => format!("invalid settings: {}", first_words(msg)),
        kind => format!("{kind}: {}", first_words(msg)),
    }
}

/// A message on one line, without request IDs, at most 200 characters.
fn first_words(msg: &str) -> String {
    let msg = msg.split("request_id").next().unwrap_or(msg);
    msg.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect()
}
