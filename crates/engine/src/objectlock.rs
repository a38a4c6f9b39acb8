//! S3 Object Lock over deduplicated data. Every lasting object is written locked until now + the
//! repository's period ([`crate::storage::Storage::with_object_lock`]); but a pack written a year ago may
//! still hold chunks today's snapshot uses, so its first lock is not enough. [`extend`] moves the
//! retain-until date of every object a kept snapshot still needs (its pack, the index files, the
//! snapshot files, keys, config, WAL objects) to at least now + period, and [`retained`] tells `prune`
//! and `forget` which objects they must leave for a later run.
//!
//! What is extended: everything outside the short-lived directories, except packs no kept snapshot
//! uses. With the identity (a repository whose trees this host can read) "uses" means a blob of the
//! pack is reachable from a snapshot; a write-only host cannot read trees and extends every pack the
//! index lists (a superset: forgotten data stays locked until the next prune drops it from the index).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::FileId;
use crate::pack::pack_id_from_path;
use crate::repository::Repository;
use crate::storage::{Retention, Storage};

/// What [`extend`] did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ExtendReport {
    /// Objects that must stay locked (referenced, outside the short-lived directories).
    pub objects: usize,
    /// Of those, the ones whose date was moved (the rest were locked far enough ahead already).
    pub extended: usize,
    /// Packs left as they were because no kept snapshot uses them (prune removes them once unlocked).
    pub unreferenced_packs: usize,
    /// Index files left as they were: every pack they list is listed by a newer one.
    pub superseded_index_files: usize,
    /// The date extended objects now carry.
    pub until: Option<DateTime<Utc>>,
    /// The earliest retain-until date among the objects that must stay locked, after the run.
    pub earliest_until: Option<DateTime<Utc>>,
    /// Whether the packs kept were found by walking trees (true) or taken from the index (write-only).
    pub exact: bool,
    pub dry_run: bool,
}

/// How far ahead an extension reaches beyond the period, so that objects are not touched on every run:
/// a quarter of the period, between a minute and 30 days. An object is extended again once its lock
/// ends within the period.
pub fn slack(period_secs: u64) -> chrono::Duration {
    chrono::Duration::seconds((period_secs / 4).clamp(60, 30 * 86_400) as i64)
}

/// Extends the lock of everything kept snapshots need (see the module docs). A repository without
/// Object Lock is refused.
pub fn extend(repo: &Repository, dry_run: bool) -> Result<ExtendReport> {
    let storage = repo.storage();
    let Some(policy) = storage.object_lock() else {
        return Err(Error::invalid(
            "object lock",
            "this repository was not created with --object-lock; nothing of it is locked",
        ));
    };
    let listing = repo.load_pack_listing()?;
    let (referenced, exact) = referenced_packs(repo, &listing)?;
    let mut report = ExtendReport { exact, dry_run, ..Default::default() };
    let objects = storage.list("")?;
    // Each kept pack needs one index file that lists it: the newest. Older ones (a prune could not
    // delete them while they were locked) are left to expire, so that prune can remove them after.
    let modified: HashMap<&str, std::time::SystemTime> =
        objects.iter().filter_map(|o| Some((o.path.as_str(), o.modified?))).collect();
    let needed_index: HashSet<String> = referenced
        .as_ref()
        .map_or_else(|| listing.listed_by.keys().copied().collect::<Vec<_>>(), |r| r.iter().copied().collect())
        .iter()
        .filter_map(|p| {
            listing
                .listed_by
                .get(p)?
                .iter()
                .map(|f| format!("index/{f}"))
                .max_by_key(|f| modified.get(f.as_str()).copied())
        })
        .collect();
    let mut paths = Vec::new();
    for o in &objects {
        if !Storage::is_lockable(&o.path) {
            continue;
        }
        if let Some(id) = pack_id_from_path(&o.path) {
            if referenced.as_ref().is_some_and(|r| !r.contains(&id)) {
                report.unreferenced_packs += 1;
                continue;
            }
        }
        if o.path.starts_with("index/") && !needed_index.contains(&o.path) {
            report.superseded_index_files += 1;
            continue;
        }
        paths.push(o.path.clone());
    }
    report.objects = paths.len();
    let now = Utc::now();
    let period = chrono::Duration::seconds(policy.period_secs as i64);
    let until = now + period + slack(policy.period_secs);
    let workers = crate::segment::read_workers(repo);
    let current = crate::segment::par_map(&paths, workers, |p| storage.retention(p));
    let mut todo = Vec::new();
    let mut earliest: Option<DateTime<Utc>> = None;
    for (path, r) in paths.iter().zip(current) {
        let r = match r {
            Ok(r) => r,
            // Gone since the listing (a concurrent prune): nothing to lock.
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        match r {
            Some(Retention { until: u, .. }) if u >= now + period => {
                earliest = Some(earliest.map_or(u, |e| e.min(u)));
            }
            _ => todo.push(path.clone()),
        }
    }
    report.extended = todo.len();
    if !todo.is_empty() {
        report.until = Some(until);
        if !dry_run {
            let results = crate::segment::par_map(&todo, workers, |p| match storage.extend_retention(p, until) {
                Err(Error::NotFound { .. }) => Ok(()),
                r => r,
            });
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        earliest = Some(earliest.map_or(until, |e| e.min(until)));
    }
    report.earliest_until = earliest;
    Ok(report)
}

/// The packs kept snapshots need (`None`: every pack, when part of the index cannot be read, so that
/// a pack only a damaged index file lists is not left to expire), and whether that was found exactly
/// (by walking their trees).
fn referenced_packs(
    repo: &Repository,
    listing: &crate::repository::PackListing,
) -> Result<(Option<HashSet<FileId>>, bool)> {
    if !listing.unreadable.is_empty() {
        return Ok((None, false));
    }
    if !repo.reads_content() {
        return Ok((Some(listing.packs.keys().copied().collect()), false));
    }
    let index = listing.index();
    let restorer = crate::restorer::Restorer::new(repo, &index);
    let mut used = crate::walk::BlobSet::default();
    for snap in repo.load_snapshots()? {
        crate::walk::collect_blobs(&restorer, &snap, &mut used)?;
    }
    if repo.damage().list().iter().any(|d| d.path.starts_with("snapshots/")) {
        // A snapshot that cannot be read may use any pack: keep them all locked.
        return Ok((None, false));
    }
    let packs = listing
        .packs
        .iter()
        .filter(|(_, blobs)| blobs.iter().any(|b| used.contains(&b.id)))
        .map(|(id, _)| *id)
        .collect();
    Ok((Some(packs), true))
}

/// Of `paths`, those still under retention now, with the date it ends: what prune and forget must
/// leave. Empty for a repository without Object Lock.
pub fn retained(storage: &Storage, paths: &[String], workers: usize) -> Result<HashMap<String, DateTime<Utc>>> {
    if storage.object_lock().is_none() || paths.is_empty() {
        return Ok(HashMap::new());
    }
    let now = Utc::now();
    let mut out = HashMap::new();
    for (p, r) in paths.iter().zip(crate::segment::par_map(paths, workers, |p| storage.retention(p))) {
        match r {
            Ok(Some(r)) if r.until > now => {
                out.insert(p.clone(), r.until);
            }
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
