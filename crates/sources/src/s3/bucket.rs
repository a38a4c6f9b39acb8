//! A bucket (and prefix) backed up or restored into: a blocking façade over opendal's S3 service, with
//! its retry layer for transient errors (5xx, timeouts, throttling). Objects are read and written whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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

    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = opendal::Result<T>> + Send + 'static,
    ) -> opendal::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| Err(opendal::Error::new(ErrorKind::Unexpected, "storage task vanished")))
    }

    fn fail(&self, op: &str, key: &str, e: opendal::Error) -> SourceError {
        let what = if key.is_empty() { self.spec.display() } else { format!("{} object {key:?}", self.spec.display()) };
        SourceError::Query { target: what, detail: format!("{op}: {}", describe(&e)) }
    }

    /// Every object under the prefix, keys relative to it.
    pub fn list(&self) -> Result<Vec<Listed>, SourceError> {
        let op = self.op.clone();
        let entries =
            self.run(async move { op.list_with("/").recursive(true).await }).map_err(|e| self.fail("list", "", e))?;
        let mut out: Vec<Listed> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| Listed {
                key: e.path().trim_start_matches('/').to_string(),
                size: e.metadata().content_length(),
                etag: e.metadata().etag().map(|t| t.trim_matches('"').to_string()),
                last_modified: e.metadata().last_modified().map(|t| t.to_string()),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Whether a key would reach S3 as itself: opendal normalises paths (trims whitespace, collapses
    /// `//`, strips a leading `/`), so such keys would be read or written under another name.
    pub fn key_is_safe(key: &str) -> bool {
        !key.is_empty() && key.trim() == key && !key.contains("//") && !key.starts_with('/') && !key.ends_with('/')
    }

    /// An object's bytes and attributes: one GET, whose response headers carry the content type and user
    /// metadata (a HEAD only when the service does not return them with the content).
    pub fn get(&self, key: &str) -> Result<(Bytes, Attrs, Option<String>), SourceError> {
        let (op, k) = (self.op.clone(), key.to_string());
        let (bytes, meta) = self
            .run(async move {
                let reader = op.reader(&k).await?;
                let bytes = reader.read(..).await?.to_bytes();
                Ok((bytes, reader.metadata().cloned()))
            })
            .map_err(|e| self.fail("read", key, e))?;
        let meta = match meta {
            Some(m) => m,
            None => {
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
        let etag = meta.etag().map(|t| t.trim_matches('"').to_string());
        Ok((bytes, attrs, etag))
    }

    /// Writes an object (multipart for large ones) with its attributes.
    pub fn put(&self, key: &str, data: Bytes, attrs: &Attrs) -> Result<(), SourceError> {
        let (op, k, a) = (self.op.clone(), key.to_string(), attrs.clone());
        self.run(async move {
            let mut w = op.write_with(&k, data).chunk(8 << 20).concurrent(4);
            if let Some(ct) = &a.content_type {
                w = w.content_type(ct);
            }
            if !a.metadata.is_empty() {
                w = w.user_metadata(a.metadata.clone());
            }
            w.await.map(|_| ())
        })
        .map_err(|e| self.fail("write", key, e))
    }

    pub fn delete(&self, key: &str) -> Result<(), SourceError> {
        let (op, k) = (self.op.clone(), key.to_string());
        self.run(async move { op.delete(&k).await }).map_err(|e| self.fail("delete", key, e))
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
