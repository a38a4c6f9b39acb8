//! S3-compatible buckets (media, uploads), incrementally: each snapshot is a manifest of every object under
//! the prefix (key, size, ETag, last modified, content type, user metadata, BLAKE3 of the bytes, and the
//! content's chunk list). Objects whose key, size and ETag match the previous snapshot's are not
//! downloaded again: their entry, and so their stored content, is reused. New or changed objects are
//! downloaded `concurrency` at a time. Restores write a snapshot's objects into any bucket and prefix.

pub mod bucket;
pub mod restore;

mod kind;
pub use kind::S3;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bunker_engine::backup::Backup;
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::tree::Content;
use serde::{Deserialize, Serialize};

use self::bucket::{Attrs, Bucket, BucketSpec, Listed};
use crate::{Captured, Planned, Source, SourceError};

/// Snapshot kind.
pub const KIND: &str = "s3";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Options {
    bucket: String,
    #[serde(default)]
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible servers want; default true
    /// with an endpoint, false for AWS.
    path_style: Option<bool>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    concurrency: Option<usize>,
}

/// One object of a snapshot's manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    #[serde(flatten)]
    pub attrs: Attrs,
    /// Hex BLAKE3 of the object's bytes.
    pub blake3: String,
    pub content: Content,
}

/// What an S3 snapshot records (its `meta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3Meta {
    pub bucket: String,
    pub prefix: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    pub objects: u64,
    pub bytes: u64,
    /// New or changed since the previous snapshot, so downloaded.
    pub downloaded: u64,
    pub downloaded_bytes: u64,
    /// Unchanged, reused from the previous snapshot without a download.
    pub reused: u64,
}

pub struct S3Source {
    pub target: String,
    pub spec: BucketSpec,
    pub concurrency: usize,
}

/// The bucket a target names, and how many transfers at once.
pub fn spec(target: &bunker_config::TargetConfig) -> Result<(BucketSpec, usize), SourceError> {
    let o: S3Options = target.options()?;
    if o.access_key_id.is_some() != o.secret_access_key.is_some() {
        return Err(SourceError::Config(format!(
            "target {}: give both access_key_id and secret_access_key, or neither (then the AWS environment is used)",
            target.name
        )));
    }
    let spec = BucketSpec {
        path_style: o.path_style.unwrap_or(o.endpoint.is_some()),
        bucket: o.bucket,
        prefix: o.prefix.trim_matches('/').to_string(),
        endpoint: o.endpoint,
        region: o.region.unwrap_or_else(|| "us-east-1".into()),
        access_key_id: o.access_key_id,
        secret_access_key: o.secret_access_key,
    };
    Ok((spec, o.concurrency.unwrap_or(8).clamp(1, 64)))
}

/// A `type = "s3"` target: one snapshot of the bucket (prefix).
pub fn plan(target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
    let (spec, concurrency) = spec(target)?;
    let source = S3Source { target: target.name.clone(), spec, concurrency };
    Ok(vec![Planned { snapshot_name: target.name.clone(), source: Box::new(source) }])
}

/// Reads a snapshot's manifest.
pub fn read_manifest(restorer: &Restorer<'_>, content: &Content) -> Result<Vec<Entry>, SourceError> {
    let mut bytes = Vec::new();
    restorer.dump(content, &mut bytes)?;
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .map_err(|e| SourceError::Engine(bunker_engine::Error::Corrupt(format!("S3 manifest line: {e}"))))
        })
        .collect()
}

/// The latest snapshot of `name`'s manifest, by key, for reuse.
fn previous(backup: &Backup<'_>, name: &str) -> Result<HashMap<String, Entry>, SourceError> {
    let repo = backup.repository();
    let Some(prev) =
        repo.load_snapshots()?.into_iter().filter(|s| s.name == name && s.kind == KIND).max_by_key(|s| s.time)
    else {
        return Ok(HashMap::new());
    };
    let Root::Stream { content, .. } = &prev.root else { return Ok(HashMap::new()) };
    if !repo.reads_content() {
        // A write-only host cannot read the last manifest: every object is downloaded again, and its
        // chunks still deduplicate against what is stored.
        tracing::info!("{name}: the previous manifest is sealed for the recipients; every object is read again");
        return Ok(HashMap::new());
    }
    let (index, _) = repo.load_index()?;
    let restorer = Restorer::new(repo, &index);
    let entries = match read_manifest(&restorer, content) {
        Ok(entries) => entries,
        // Its manifest's chunks only in a damaged index file, or in a damaged pack: download everything.
        Err(SourceError::Engine(e @ bunker_engine::Error::Corrupt(_))) => {
            tracing::warn!("the previous snapshot of {name} cannot be read ({e}); every object is downloaded again");
            return Ok(HashMap::new());
        }
        Err(e) => return Err(e),
    };
    // Only entries whose every chunk the readable index still lists are reused: a chunk known only to a
    // damaged index file is downloaded and stored again, never referenced on trust.
    let intact = |e: &Entry| {
        let lists = match &e.content {
            Content::Lists(lists) => lists.as_slice(),
            Content::Chunks(_) => &[],
        };
        lists.iter().all(|l| index.contains(l))
            && restorer.chunk_ids(&e.content).is_ok_and(|ids| ids.iter().all(|c| index.contains(c)))
    };
    Ok(entries.into_iter().filter(intact).map(|e| (e.key.clone(), e)).collect())
}

impl Source for S3Source {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, SourceError> {
        let bucket = Bucket::open(&self.spec)?;
        let previous = previous(backup, &self.target)?;
        // The listing feeds the downloads page by page: the first objects are on their way while the
        // rest is still being listed.
        let (todo_tx, todo_rx) = crossbeam_channel::unbounded::<Listed>();
        let reused: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());
        let warnings = Mutex::new(Vec::new());
        let downloaded = AtomicU64::new(0);
        let downloaded_bytes = AtomicU64::new(0);
        let fetched: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
        let failure: Mutex<Option<SourceError>> = Mutex::new(None);
        let stop = || failure.lock().expect("failure").is_some() || bunker_engine::interrupt::requested();
        std::thread::scope(|scope| {
            for _ in 0..self.concurrency {
                let todo_rx = todo_rx.clone();
                scope.spawn(|| {
                    for obj in todo_rx {
                        if stop() {
                            return;
                        }
                        let result = bucket.open_read(&obj.key).and_then(|mut object| {
                            let pending = backup.submit_stream(&mut object, Some(obj.size))?;
                            let (content, size) = backup.finish_stream(pending)?;
                            let (blake3, _) = object.digest();
                            Ok(Entry {
                                key: obj.key.clone(),
                                size,
                                etag: object.etag.take().or_else(|| obj.etag.clone()),
                                last_modified: obj.last_modified.clone(),
                                attrs: std::mem::take(&mut object.attrs),
                                blake3,
                                content,
                            })
                        });
                        match result {
                            Ok(e) => {
                                downloaded.fetch_add(1, Ordering::Relaxed);
                                downloaded_bytes.fetch_add(e.size, Ordering::Relaxed);
                                fetched.lock().expect("fetched").push(e);
                            }
                            Err(e) => {
                                failure.lock().expect("failure").get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
            drop(todo_rx);
            let listing = bucket.list_each(|obj| {
                if !Bucket::key_is_safe(&obj.key) {
                    warnings.lock().expect("warnings").push(format!(
                        "object {:?}: its key has leading or trailing spaces, a leading or trailing '/' or '//', which this S3 client would rewrite; skipped",
                        obj.key
                    ));
                    return true;
                }
                match previous.get(&obj.key) {
                    Some(p) if p.size == obj.size && obj.etag.is_some() && p.etag == obj.etag => {
                        reused.lock().expect("reused").insert(obj.key.clone(), p.clone());
                    }
                    _ => {
                        let _ = todo_tx.send(obj);
                    }
                }
                !stop()
            });
            drop(todo_tx);
            if let Err(e) = listing {
                failure.lock().expect("failure").get_or_insert(e);
            }
        });
        bunker_engine::interrupt::check()?;
        if let Some(e) = failure.into_inner().expect("failure") {
            return Err(e);
        }
        let mut entries = reused.into_inner().expect("reused");
        let reused = entries.len() as u64;
        let warnings = warnings.into_inner().expect("warnings");
        let downloaded = downloaded.into_inner();
        for e in fetched.into_inner().expect("fetched") {
            entries.insert(e.key.clone(), e);
        }
        let mut manifest = Vec::new();
        for e in entries.values() {
            serde_json::to_writer(&mut manifest, e).expect("entry serialises");
            manifest.push(b'\n');
        }
        let (content, size) = backup.save_stream_fine(&manifest[..])?;
        let meta = S3Meta {
            bucket: self.spec.bucket.clone(),
            prefix: self.spec.prefix.clone(),
            endpoint: self.spec.endpoint.clone(),
            objects: entries.len() as u64,
            bytes: entries.values().map(|e| e.size).sum(),
            downloaded,
            downloaded_bytes: downloaded_bytes.into_inner(),
            reused,
        };
        Ok(Captured {
            root: Root::Stream { content, size },
            meta: serde_json::to_value(&meta).expect("meta serialises"),
            warnings,
        })
    }
}
