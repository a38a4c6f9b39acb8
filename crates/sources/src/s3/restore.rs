//! Restoring an S3 snapshot into a bucket and prefix (the same or another), as of that snapshot: objects
//! missing or different in the destination are written with their content type and metadata; objects
//! already there with the recorded size and ETag are left alone; objects the snapshot does not have are
//! deleted only when asked. Every object written is read back and its BLAKE3 compared with the snapshot's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bunker_engine::restorer::Restorer;

use super::bucket::Bucket;
use super::Entry;
use crate::SourceError;

#[derive(Debug, Default, serde::Serialize)]
pub struct S3RestoreReport {
    /// Keys written (new or different in the destination).
    pub written: Vec<String>,
    /// Of those, the keys the destination held with other content (replaced, with `--force`).
    pub replaced: Vec<String>,
    /// Keys already there with the snapshot's size and ETag.
    pub unchanged: usize,
    /// Keys in the destination that the snapshot does not have (deleted with `delete_extra`).
    pub extra: Vec<String>,
    pub deleted: usize,
    pub bytes_written: u64,
    /// Objects read back and found equal to the snapshot.
    pub verified: usize,
    pub mismatches: Vec<String>,
    pub dry_run: bool,
}

pub struct S3RestoreOptions {
    pub dry_run: bool,
    pub delete_extra: bool,
    /// Replace objects the destination holds with other content (else refused).
    pub force: bool,
    pub concurrency: usize,
    /// `--include` / `--exclude`: only these keys are restored, and only these count as extra.
    pub selection: Selection,
}

/// Which keys a restore is about: those an `--include` glob matches (a key, or a "directory" above it:
/// `uploads/**`, `uploads/2026`), less those an `--exclude` glob matches. No include: every key.
#[derive(Default)]
pub struct Selection {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
}

impl Selection {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selection, SourceError> {
        let set = |p: &[String]| -> Result<Option<globset::GlobSet>, SourceError> {
            if p.is_empty() {
                Ok(None)
            } else {
                Ok(Some(crate::files::globs(p)?))
            }
        };
        Ok(Selection { include: set(include)?, exclude: set(exclude)? })
    }

    pub fn is_all(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    pub fn picks(&self, key: &str) -> bool {
        // The key, or one of its prefixes up to a '/', as a glob matches directories of files.
        let hit =
            |set: &globset::GlobSet| set.is_match(key) || key.match_indices('/').any(|(i, _)| set.is_match(&key[..i]));
        self.include.as_ref().is_none_or(hit) && !self.exclude.as_ref().is_some_and(hit)
    }
}

pub fn restore(
    restorer: &Restorer<'_>,
    entries: &[Entry],
    dest: &Bucket,
    opts: &S3RestoreOptions,
) -> Result<S3RestoreReport, SourceError> {
    let existing: HashMap<String, (u64, Option<String>)> =
        dest.list()?.into_iter().map(|l| (l.key, (l.size, l.etag))).collect();
    let mut report = S3RestoreReport { dry_run: opts.dry_run, ..Default::default() };
    let mut todo: Vec<&Entry> = Vec::new();
    let entries: Vec<&Entry> = entries.iter().filter(|e| opts.selection.picks(&e.key)).collect();
    for e in entries.iter().copied() {
        match existing.get(&e.key) {
            Some((size, etag)) if *size == e.size && etag.is_some() && *etag == e.etag => report.unchanged += 1,
            _ => todo.push(e),
        }
    }
    let wanted: std::collections::HashSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    // Keys the client would rewrite are never deleted: the request would reach another object.
    // With a selection, only keys it picks can be extra: the rest of the bucket is not this restore's.
    report.extra = existing
        .keys()
        .filter(|k| !wanted.contains(k.as_str()) && Bucket::key_is_safe(k) && opts.selection.picks(k))
        .cloned()
        .collect();
    report.extra.sort();
    report.written = todo.iter().map(|e| e.key.clone()).collect();
    report.replaced = todo.iter().filter(|e| existing.contains_key(&e.key)).map(|e| e.key.clone()).collect();
    if opts.dry_run {
        return Ok(report);
    }
    let replaced = report.replaced.len();
    if replaced > 0 && !opts.force {
        return Err(SourceError::Config(format!(
            "{} holds {replaced} of these objects with other content; pass --force to replace them (--dry-run lists them)",
            dest.spec.display()
        )));
    }
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let verified = AtomicUsize::new(0);
    let mismatches = Mutex::new(Vec::new());
    let failure: Mutex<Option<SourceError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..opts.concurrency.clamp(1, 64).min(todo.len().max(1)) {
            scope.spawn(|| loop {
                if failure.lock().expect("failure").is_some() || bunker_engine::interrupt::requested() {
                    return;
                }
                let Some(e) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else { return };
                let result = (|| -> Result<(), SourceError> {
                    // Streamed: the restorer checks each chunk against its ID on the way, and the whole
                    // object against the snapshot's hash before the upload is completed.
                    let mut upload = dest.create_write(&e.key, &e.attrs)?;
                    restorer.dump(&e.content, &mut upload)?;
                    let (hash, len) = upload.digest();
                    if hash != e.blake3 {
                        upload.abort();
                        return Err(SourceError::Engine(bunker_engine::Error::Corrupt(format!(
                            "object {:?}: the stored content does not hash to the snapshot's record",
                            e.key
                        ))));
                    }
                    upload.commit()?;
                    bytes.fetch_add(len, Ordering::Relaxed);
                    // Read back: what the destination holds must be what the snapshot holds.
                    let mut back = dest.open_read(&e.key)?;
                    std::io::copy(&mut back, &mut std::io::sink())
                        .map_err(|err| SourceError::Tool { tool: "S3 read-back".into(), detail: err.to_string() })?;
                    if back.digest().0 != e.blake3 || back.attrs.content_type != e.attrs.content_type {
                        mismatches.lock().expect("mismatches").push(e.key.clone());
                    } else {
                        verified.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })();
                if let Err(err) = result {
                    failure.lock().expect("failure").get_or_insert(err);
                    return;
                }
            });
        }
    });
    bunker_engine::interrupt::check()?;
    if let Some(e) = failure.into_inner().expect("failure") {
        return Err(e);
    }
    if opts.delete_extra {
        for k in &report.extra {
            dest.delete(k)?;
            report.deleted += 1;
        }
    }
    report.bytes_written = bytes.into_inner();
    report.verified = verified.into_inner();
    report.mismatches = mismatches.into_inner().expect("mismatches");
    Ok(report)
}
