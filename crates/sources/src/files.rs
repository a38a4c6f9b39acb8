//! Files and directories: config, Terraform state, env files, artifact directories.

use std::path::PathBuf;

use bunker_engine::archiver::Archiver;
use bunker_engine::backup::Backup;
use bunker_engine::snapshot::Root;
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
