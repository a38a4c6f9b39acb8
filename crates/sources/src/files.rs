//! Files and directories: config, Terraform state, env files, artifact directories.

use std::path::PathBuf;

use bunker_engine::archiver::Archiver;
use bunker_engine::backup::Backup;
use bunker_engine::snapshot::Root;
use bunker_engine::tree::NodeKind;
use bunker_engine::Error;
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Captured, Source};

pub struct FilesSource {
    paths: Vec<PathBuf>,
    exclude: GlobSet,
}

impl FilesSource {
    /// Checks that every path exists and every exclude pattern parses before anything is read.
    pub fn new(paths: Vec<PathBuf>, exclude: &[String]) -> bunker_engine::Result<Self> {
        if paths.is_empty() {
            return Err(Error::invalid("paths", "none given"));
        }
        for p in &paths {
            std::fs::symlink_metadata(p).map_err(|e| Error::io(p, e))?;
        }
        Ok(FilesSource { paths, exclude: globs(exclude)? })
    }
}

/// Compiles glob patterns (`*.log`, `cache/**`); a bad one is named in the error.
pub fn globs(patterns: &[String]) -> bunker_engine::Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| Error::invalid("glob", format!("{p:?}: {e}")))?);
    }
    b.build().map_err(|e| Error::invalid("glob", e.to_string()))
}

impl Source for FilesSource {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, crate::SourceError> {
        let mut archiver = Archiver::new(backup, &self.exclude);
        let tree = archiver.save_paths(&self.paths)?;
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        Ok(Captured {
            root: Root::Tree { tree },
            meta: serde_json::json!({ "paths": paths }),
            warnings: archiver.warnings,
        })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesOptions {
    paths: Vec<PathBuf>,
    #[serde(default)]
    exclude: Vec<String>,
}

/// A `type = "files"` target: one snapshot of all its paths.
pub fn plan(target: &bunker_config::TargetConfig) -> Result<Vec<crate::Planned>, crate::SourceError> {
    let opts: FilesOptions = target.options()?;
    let source = FilesSource::new(opts.paths, &opts.exclude)?;
    Ok(vec![crate::Planned { snapshot_name: target.name.clone(), source: Box::new(source) }])
}

/// `type = "files"`: file trees.
pub struct Files;

impl crate::Kind for Files {
    fn name(&self) -> &'static str {
        "files"
    }

    fn selects_by(&self) -> &'static [&'static str] {
        &["--include"]
    }

    fn list(
        &self,
        restorer: &bunker_engine::restorer::Restorer<'_>,
        snapshot: &bunker_engine::Snapshot,
    ) -> Result<Vec<crate::Item>, crate::SourceError> {
        let Root::Tree { tree } = &snapshot.root else {
            return Err(crate::fail(format!("snapshot {} holds no file tree", snapshot.short_id())));
        };
        let mut out = Vec::new();
        list_tree(restorer, tree, "", &mut out)?;
        Ok(out)
    }

    fn item_content(
        &self,
        restorer: &bunker_engine::restorer::Restorer<'_>,
        snapshot: &bunker_engine::Snapshot,
        item: &str,
    ) -> Result<bunker_engine::tree::Content, crate::SourceError> {
        let Root::Tree { tree } = &snapshot.root else {
            return Err(crate::fail(format!("snapshot {} holds no file tree", snapshot.short_id())));
        };
        match restorer.find(tree, item)?.kind {
            NodeKind::File { content, .. } => Ok(content),
            _ => Err(crate::fail(format!("{item} is not a regular file in snapshot {}", snapshot.short_id()))),
        }
    }

    fn snapshot_kinds(&self) -> &'static [&'static str] {
        &["files"]
    }

    fn plan(&self, target: &bunker_config::TargetConfig) -> Result<Vec<crate::Planned>, crate::SourceError> {
        plan(target)
    }

    fn home(
        &self,
        snapshot: &bunker_engine::Snapshot,
        _target: &bunker_config::TargetConfig,
        base: &crate::HomeBase,
    ) -> Result<crate::Destination, crate::SourceError> {
        match &base.files {
            Some(dir) => Ok(crate::Destination::Dir(dir.join(&snapshot.name))),
            None => Err(crate::fail(format!(
                "give --to DIR to restore the files target {} into DIR/{}",
                snapshot.name, snapshot.name
            ))),
        }
    }

    fn restore(&self, job: &crate::RestoreJob<'_>) -> Result<crate::Restored, crate::SourceError> {
        restore_tree(job)
    }

    fn drill(
        &self,
        job: &crate::drill::DrillJob<'_>,
        out: &mut crate::drill::DrillOutcome,
    ) -> Result<(), crate::SourceError> {
        let snap = job.main()?;
        drill_tree(job, snap, out)
    }

    fn smoke_variable(&self) -> Option<&'static str> {
        Some("BUNKER_DRILL_FILES_DIR")
    }
}

/// A file tree into `--to DIR` (created if missing; a non-empty one only with `--force`), optionally
/// only the paths `--include` matches.
pub fn restore_tree(job: &crate::RestoreJob<'_>) -> Result<crate::Restored, crate::SourceError> {
    use bunker_engine::snapshot::Root;
    let snap = job.snapshot;
    let crate::Destination::Dir(to) = job.destination else {
        return Err(crate::fail(format!(
            "snapshot {} is a file tree; restore it with --to DIR (not {})",
            snap.short_id(),
            job.destination.flag()
        )));
    };
    let Root::Tree { tree } = &snap.root else {
        return Err(crate::fail(format!(
            "snapshot {} is a stream; write it out with `bunker dump {} > FILE`, or restore a PostgreSQL dump with --into",
            snap.short_id(),
            snap.short_id()
        )));
    };
    let include = if job.options.include.is_empty() { None } else { Some(globs(&job.options.include)?) };
    bunker_engine::restorer::ensure_empty_or_absent(to, job.options.force)?;
    let started = std::time::Instant::now();
    let stats = bunker_engine::restorer::Restorer::new(job.repo, job.index).restore_tree(
        tree,
        to,
        include.as_ref(),
        job.options.force,
    )?;
    if include.is_some() && stats.files + stats.dirs + stats.symlinks == 0 {
        return Err(crate::fail(format!(
            "--include {} matched nothing in snapshot {}; patterns match paths below the snapshot's roots (e.g. 'conf/**', 'www/index.html')",
            job.options.include.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", "),
            snap.short_id()
        )));
    }
    let mut restored = crate::Restored {
        into: to.display().to_string(),
        bytes: stats.bytes,
        details: vec![("to".into(), serde_json::json!(to))],
        json: serde_json::json!({ "snapshot": snap.id().to_hex(), "to": to, "stats": stats }),
        ..Default::default()
    };
    // What landed, compared chunk by chunk with the snapshot (a partial restore is not compared: the
    // tree as a whole is not there).
    if !job.options.no_verify && include.is_none() {
        let mut found = bunker_engine::compare::compare_tree(job.repo, job.index, tree, to)?;
        if job.options.force {
            // Restoring over a directory replaces what the snapshot has and leaves the rest.
            found.differences.retain(|d| !d.ends_with(": not in the snapshot"));
        }
        restored.verified = true;
        if !found.matches() {
            restored.problems.push(format!(
                "{} differences after restoring: {}",
                found.differences.len(),
                found.differences.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
        restored.json["verified"] = found.matches().into();
    }
    restored.lines.push(format!(
        "restored snapshot {} into {}: {} files, {} directories, {} symlinks, {} in {:.1}s",
        snap.short_id(),
        to.display(),
        stats.files,
        stats.dirs,
        stats.symlinks,
        crate::size(stats.bytes),
        started.elapsed().as_secs_f64()
    ));
    Ok(restored)
}

/// A file tree into a temporary directory, then every file compared chunk by chunk with the snapshot.
fn drill_tree(
    job: &crate::drill::DrillJob<'_>,
    snap: &bunker_engine::Snapshot,
    out: &mut crate::drill::DrillOutcome,
) -> Result<(), crate::SourceError> {
    use crate::drill::{Check, Clock, ScratchDir};
    let bunker_engine::snapshot::Root::Tree { tree } = &snap.root else {
        return crate::drill::read_stream(job, snap, out);
    };
    let mut clock = Clock::default();
    let dir = ScratchDir::new("bunker-drill-files-")?;
    let to = dir.path().join("restored");
    out.restored_into = to.display().to_string();
    out.provision_seconds = clock.lap();
    let restored = bunker_engine::restorer::Restorer::new(job.repo, job.index).restore_tree(tree, &to, None, false);
    out.scratch.push(Box::new(dir));
    let stats = restored.map_err(|e| crate::fail(format!("restoring snapshot {} failed: {e}", snap.short_id())))?;
    out.bytes = stats.bytes;
    out.restore_seconds = clock.lap();
    let found = bunker_engine::compare::compare_tree(job.repo, job.index, tree, &to)?;
    out.checks.push(Check::new(
        "file hashes",
        found.matches(),
        if found.matches() {
            format!(
                "{} files ({} bytes), {} directories, {} symlinks equal to the snapshot",
                found.files, found.bytes, found.dirs, found.symlinks
            )
        } else {
            format!(
                "{} differences: {}",
                found.differences.len(),
                found.differences.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            )
        },
    ));
    out.verify_seconds = clock.lap();
    Ok(())
}

/// Every entry below `tree`, depth first, names sorted as stored; `prefix` is the path of `tree`.
fn list_tree(
    restorer: &bunker_engine::restorer::Restorer<'_>,
    tree: &bunker_engine::BlobId,
    prefix: &str,
    out: &mut Vec<crate::Item>,
) -> Result<(), crate::SourceError> {
    for node in restorer.load_tree(tree)?.nodes {
        let path = if prefix.is_empty() { node.name.clone() } else { format!("{prefix}/{}", node.name) };
        let modified = chrono::DateTime::from_timestamp(node.mtime, node.mtime_nsec)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let mut item = crate::Item { path: path.clone(), modified, mode: Some(node.mode), ..Default::default() };
        match &node.kind {
            NodeKind::File { size, .. } => {
                item.kind = "file";
                item.size = Some(*size);
            }
            NodeKind::Dir { .. } => item.kind = "dir",
            NodeKind::Symlink { target } => {
                item.kind = "symlink";
                item.detail = Some(format!("-> {target}"));
            }
            NodeKind::Fifo => item.kind = "fifo",
            NodeKind::Chardev { .. } => item.kind = "chardev",
            NodeKind::Blockdev { .. } => item.kind = "blockdev",
        }
        out.push(item);
        if let NodeKind::Dir { subtree } = &node.kind {
            list_tree(restorer, subtree, &path, out)?;
        }
    }
    Ok(())
}
