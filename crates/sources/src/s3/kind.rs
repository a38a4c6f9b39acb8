//! S3 buckets as a [`Kind`]: a snapshot goes back into a bucket and prefix (`--into s3://…`, the
//! target's own by default), every object written read back and hashed, or into a directory (`--to`, a
//! file per key); a drill restores into `[drill] scratch_s3` or a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::storage::Location;
use bunker_engine::Snapshot;

use super::bucket::{Bucket, BucketSpec};
use super::restore::{restore, S3RestoreOptions, Selection};
use super::{read_manifest, Entry, S3Meta, KIND};
use crate::drill::{each_in_parallel, facts, Check, Clock, DrillJob, DrillOutcome, Scratch, ScratchDir};
use crate::{fail, Destination, HomeBase, Kind, Planned, RestoreJob, Restored, SourceError};

pub struct S3;

impl Kind for S3 {
    fn previews_restore(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "s3"
    }

    fn snapshot_kinds(&self) -> &'static [&'static str] {
        &[KIND]
    }

    fn plan(&self, target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
        super::plan(target)
    }

    fn home(
        &self,
        _: &Snapshot,
        target: &bunker_config::TargetConfig,
        _: &HomeBase,
    ) -> Result<Destination, SourceError> {
        let (spec, _) = super::spec(target)?;
        let mut url = format!("s3://{}/{}?region={}", spec.bucket, spec.prefix, spec.region);
        if let Some(endpoint) = &spec.endpoint {
            url.push_str(&format!("&endpoint={endpoint}&path-style={}", spec.path_style));
        }
        Ok(Destination::Into(url))
    }

    fn restore(&self, job: &RestoreJob<'_>) -> Result<Restored, SourceError> {
        match job.destination {
            Destination::Into(url) => into_bucket(job, url),
            Destination::Dir(dir) => into_dir(job, dir),
            other => Err(fail(format!(
                "snapshot {} is an S3 snapshot; restore it with --into s3://BUCKET/PREFIX or --to DIR (not {})",
                job.snapshot.short_id(),
                other.flag()
            ))),
        }
    }

    fn drill(&self, job: &DrillJob<'_>, out: &mut DrillOutcome) -> Result<(), SourceError> {
        let snap = job.main()?;
        drill(job, snap, out)
    }

    fn smoke_variable(&self) -> Option<&'static str> {
        Some("BUNKER_DRILL_S3")
    }

    fn selects_by(&self) -> &'static [&'static str] {
        &["--include", "--exclude"]
    }

    fn list(&self, restorer: &Restorer<'_>, snapshot: &Snapshot) -> Result<Vec<crate::Item>, SourceError> {
        Ok(manifest(restorer, snapshot)?
            .into_iter()
            .map(|e| crate::Item {
                path: e.key,
                kind: "object",
                size: Some(e.size),
                modified: e.last_modified,
                etag: e.etag,
                content_type: e.attrs.content_type,
                detail: Some(format!("blake3:{}", &e.blake3[..e.blake3.len().min(16)])),
                ..Default::default()
            })
            .collect())
    }

    fn item_content(
        &self,
        restorer: &Restorer<'_>,
        snapshot: &Snapshot,
        item: &str,
    ) -> Result<bunker_engine::tree::Content, SourceError> {
        manifest(restorer, snapshot)?.into_iter().find(|e| e.key == item).map(|e| e.content).ok_or_else(|| {
            fail(format!(
                "no object {item:?} in snapshot {} (`bunker ls {}` lists its keys)",
                snapshot.short_id(),
                snapshot.short_id()
            ))
        })
    }
}

/// The manifest's entries `--include` / `--exclude` pick; picking none is an error.
fn selected(
    entries: Vec<Entry>,
    selection: &Selection,
    snap: &Snapshot,
    opts: &crate::RestoreOptions<'_>,
) -> Result<Vec<Entry>, SourceError> {
    if selection.is_all() {
        return Ok(entries);
    }
    let picked: Vec<Entry> = entries.into_iter().filter(|e| selection.picks(&e.key)).collect();
    if picked.is_empty() {
        let given: Vec<String> = opts.include.iter().chain(&opts.exclude).map(|p| format!("{p:?}")).collect();
        return Err(fail(format!(
            "{} picks no object of snapshot {}; patterns match keys (e.g. 'uploads/**', 'uploads/logo.jpg'); `bunker ls {}` lists them",
            given.join(", "),
            snap.short_id(),
            snap.short_id()
        )));
    }
    Ok(picked)
}

fn manifest(job_repo: &Restorer<'_>, snap: &Snapshot) -> Result<Vec<Entry>, SourceError> {
    let Root::Stream { content, .. } = &snap.root else {
        return Err(fail(format!("snapshot {} holds no manifest", snap.short_id())));
    };
    read_manifest(job_repo, content)
}

fn into_bucket(job: &RestoreJob<'_>, into: &str) -> Result<Restored, SourceError> {
    let snap = job.snapshot;
    let opts = job.options;
    let Location::S3(dest) = Location::parse(into)? else {
        return Err(fail(format!(
            "--into {into:?}: an S3 snapshot is restored into s3://BUCKET/PREFIX[?endpoint=URL&region=R]"
        )));
    };
    // The target's credentials (and concurrency) serve the destination too, unless the environment has its own.
    let (source_spec, concurrency) = match job.target {
        Some(t) if t.kind == "s3" => {
            let (s, c) = super::spec(t)?;
            (Some(s), c)
        }
        _ => (None, 8),
    };
    let spec = BucketSpec::at(&dest, source_spec.as_ref());
    let started = std::time::Instant::now();
    let restorer = Restorer::new(job.repo, job.index);
    let selection = Selection::new(&opts.include, &opts.exclude)?;
    let entries = selected(manifest(&restorer, snap)?, &selection, snap, opts)?;
    let bucket = Bucket::open(&spec)?;
    let s3 = S3RestoreOptions {
        dry_run: opts.dry_run,
        delete_extra: opts.delete_extra,
        force: opts.force,
        concurrency,
        selection,
    };
    let report = restore(&restorer, &entries, &bucket, &s3)?;
    let mut out = Restored {
        into: spec.display(),
        bytes: report.bytes_written,
        details: vec![("into".into(), spec.display().into()), ("written".into(), report.written.len().into())],
        json: serde_json::json!({ "snapshot": snap.id().to_hex(), "into": spec.display(), "report": report }),
        verified: !opts.dry_run,
        ..Default::default()
    };
    let verb = if opts.dry_run { "would write" } else { "wrote" };
    if opts.dry_run {
        for k in &report.written {
            let verb = if report.replaced.contains(k) { "replace" } else { "write" };
            out.lines.push(format!("{verb}  {k}"));
        }
        for k in &report.extra {
            out.lines.push(format!(
                "{}  {k}",
                if opts.delete_extra { "delete" } else { "extra (kept; --delete-extra deletes)" }
            ));
        }
    }
    out.lines.push(format!(
        "{verb} {} of {} objects ({}{}) into {}; {} already there; {} extra{} in {:.1}s",
        report.written.len(),
        entries.len(),
        crate::size(report.bytes_written),
        if report.replaced.is_empty() {
            String::new()
        } else {
            format!(", {} replacing others", report.replaced.len())
        },
        spec.display(),
        report.unchanged,
        report.extra.len(),
        if opts.delete_extra && !opts.dry_run { format!(", {} deleted", report.deleted) } else { String::new() },
        started.elapsed().as_secs_f64()
    ));
    if !opts.dry_run {
        out.lines.push(format!("  {} objects read back and equal to the snapshot", report.verified));
    }
    for k in &report.mismatches {
        out.lines.push(format!("  PROBLEM: {k:?} differs after writing"));
    }
    if !report.mismatches.is_empty() {
        out.problems.push(format!("{} objects differ after writing", report.mismatches.len()));
    }
    Ok(out)
}

/// Every object as a file under `--to DIR` (a key's `/` makes directories), read back and hashed.
fn into_dir(job: &RestoreJob<'_>, dir: &Path) -> Result<Restored, SourceError> {
    let snap = job.snapshot;
    bunker_engine::restorer::ensure_empty_or_absent(dir, job.options.force)?;
    let started = std::time::Instant::now();
    let restorer = Restorer::new(job.repo, job.index);
    let selection = Selection::new(&job.options.include, &job.options.exclude)?;
    let entries = selected(manifest(&restorer, snap)?, &selection, snap, job.options)?;
    std::fs::create_dir_all(dir)?;
    let (bytes, verified, differing) = objects_into_dir(&restorer, &entries, dir)?;
    let mut out = Restored {
        into: dir.display().to_string(),
        bytes,
        details: vec![("to".into(), serde_json::json!(dir))],
        json: serde_json::json!({ "snapshot": snap.id().to_hex(), "to": dir, "objects": entries.len(), "bytes": bytes, "verified": verified, "mismatches": differing }),
        verified: true,
        ..Default::default()
    };
    out.lines.push(format!(
        "wrote {} objects ({}) of snapshot {} as files under {} in {:.1}s; {verified} read back and equal to the snapshot",
        entries.len(),
        crate::size(bytes),
        snap.short_id(),
        dir.display(),
        started.elapsed().as_secs_f64()
    ));
    if !differing.is_empty() {
        out.problems.push(format!("{} objects differ after writing", differing.len()));
    }
    Ok(out)
}

/// Into `[drill] scratch_s3` (a prefix of this drill's own) or a temporary directory; every object read
/// back and its BLAKE3 compared with the snapshot's record; then count and bytes against the backup's.
fn drill(job: &DrillJob<'_>, snap: &Snapshot, out: &mut DrillOutcome) -> Result<(), SourceError> {
    let mut clock = Clock::default();
    let meta: S3Meta = facts(snap, "S3")?;
    let restorer = Restorer::new(job.repo, job.index);
    let entries = manifest(&restorer, snap)?;
    let (written, verified, differing) = match job.scratch_s3 {
        Some(url) => {
            let prefix = S3Prefix::open(url, &format!("{}/{}", job.drill_id, job.name), job.config)?;
            out.provision_seconds = clock.lap();
            out.restored_into = prefix.bucket.spec.display();
            let opts = S3RestoreOptions {
                dry_run: false,
                delete_extra: false,
                force: false,
                concurrency: 16,
                selection: Selection::default(),
            };
            let report = restore(&restorer, &entries, &prefix.bucket, &opts);
            out.scratch.push(Box::new(prefix));
            let report = report?;
            (report.bytes_written, report.verified, report.mismatches)
        }
        None => {
            let dir = ScratchDir::new("bunker-drill-s3-")?;
            out.provision_seconds = clock.lap();
            out.restored_into = dir.path().display().to_string();
            let result = objects_into_dir(&restorer, &entries, dir.path());
            out.scratch.push(Box::new(dir));
            result?
        }
    };
    out.bytes = written;
    out.restore_seconds = clock.lap();
    let recorded_bytes: u64 = entries.iter().map(|e| e.size).sum();
    out.checks.push(Check::new(
        "objects",
        entries.len() as u64 == meta.objects && verified == entries.len(),
        format!("{verified} of {} objects restored and read back (the backup listed {})", entries.len(), meta.objects),
    ));
    out.checks.push(Check::new(
        "bytes",
        written == recorded_bytes && recorded_bytes == meta.bytes,
        format!("{written} bytes written, {recorded_bytes} in the manifest, {} listed at backup", meta.bytes),
    ));
    out.checks.push(Check::new(
        "checksums",
        differing.is_empty(),
        if differing.is_empty() {
            format!("{verified} objects' BLAKE3 equal to the backup's")
        } else {
            format!(
                "{} objects differ: {}",
                differing.len(),
                differing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            )
        },
    ));
    out.verify_seconds = clock.lap();
    Ok(())
}

/// A prefix of `[drill] scratch_s3` for one target of one drill; its objects are deleted when dropped.
pub struct S3Prefix {
    pub bucket: Bucket,
    pub url: String,
}

impl S3Prefix {
    pub fn open(url: &str, sub: &str, target: Option<&bunker_config::TargetConfig>) -> Result<S3Prefix, SourceError> {
        let Location::S3(dest) = Location::parse(url)? else {
            return Err(fail(format!("[drill] scratch_s3 {url:?} is not an s3://bucket/prefix URL")));
        };
        // The target's credentials serve the scratch bucket too, unless the environment has its own.
        let source = match target {
            Some(t) if t.kind == "s3" => Some(super::spec(t)?.0),
            _ => None,
        };
        let mut spec = BucketSpec::at(&dest, source.as_ref());
        spec.prefix = if spec.prefix.is_empty() { sub.to_string() } else { format!("{}/{sub}", spec.prefix) };
        let bucket = Bucket::open(&spec)?;
        if !bucket.list()?.is_empty() {
            return Err(fail(format!(
                "{} already holds objects; a drill restores only into an empty prefix",
                spec.display()
            )));
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

impl Scratch for S3Prefix {
    fn keep(self: Box<Self>) -> String {
        let how = format!("objects under {}", self.url);
        std::mem::forget(self);
        how
    }
}

/// S3 objects written as files under `dir` (each key a relative path), hashed on the way and read back.
/// Returns the bytes written, the objects read back equal to the snapshot, and the keys that differ.
pub fn objects_into_dir(
    restorer: &Restorer<'_>,
    entries: &[Entry],
    dir: &Path,
) -> Result<(u64, usize, Vec<String>), SourceError> {
    let bytes = AtomicU64::new(0);
    let verified = AtomicUsize::new(0);
    let differing = Mutex::new(Vec::new());
    each_in_parallel(entries, |e| {
        let written = (|| -> Result<(), SourceError> {
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
        written.map_err(|err| fail(format!("object {:?}: {err}", e.key)))
    })?;
    Ok((bytes.into_inner(), verified.into_inner(), differing.into_inner().expect("differing")))
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
