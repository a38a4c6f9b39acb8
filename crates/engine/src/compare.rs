//! Comparing a restored directory with the snapshot tree it came from, without reading the repository's
//! data again: each file on disk is cut where the snapshot's chunks end and every piece is hashed with
//! the repository's blob-ID key, so a file matches only if every byte is what was backed up. Drills use
//! it to prove that what landed on disk is the backup, not merely that the backup could be read.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::index::Index;
use crate::restorer::Restorer;
use crate::tree::{NodeKind, Tree};
use crate::{BlobId, Repository};

/// What a comparison found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TreeComparison {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of files read and hashed.
    pub bytes: u64,
    /// One line per entry that differs (`path: what`), in tree order.
    pub differences: Vec<String>,
}

impl TreeComparison {
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compares the directory `dir` with the tree `root`: every entry present with its kind, every file with
/// the snapshot's size and chunk hashes, every symlink with its target. Entries on disk that the snapshot
/// lacks are differences too.
pub fn compare_tree(repo: &Repository, index: &Index, root: &BlobId, dir: &Path) -> Result<TreeComparison> {
    let restorer = Restorer::new(repo, index);
    let mut out = TreeComparison::default();
    let tree = restorer.load_tree(root)?;
    walk(repo, index, &restorer, &tree, dir, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk(
    repo: &Repository,
    index: &Index,
    restorer: &Restorer<'_>,
    tree: &Tree,
    dir: &Path,
    rel: &Path,
    out: &mut TreeComparison,
) -> Result<()> {
    let mut on_disk: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect(),
        Err(e) => return Err(Error::io(dir, e)),
    };
    on_disk.sort();
    for extra in on_disk.iter().filter(|n| !tree.nodes.iter().any(|node| node.file_name() == **n)) {
        out.differences.push(format!("{}: not in the snapshot", rel.join(extra).display()));
    }
    for node in &tree.nodes {
        crate::interrupt::check()?;
        let path = dir.join(node.file_name());
        let shown = rel.join(node.file_name());
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                out.differences.push(format!("{}: missing", shown.display()));
                continue;
            }
        };
        match &node.kind {
            NodeKind::Dir { subtree } if meta.is_dir() => {
                out.dirs += 1;
                walk(repo, index, restorer, &restorer.load_tree(subtree)?, &path, &shown, out)?;
            }
            NodeKind::Symlink { target } if meta.file_type().is_symlink() => {
                out.symlinks += 1;
                let actual = std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                if actual.as_os_str() != std::ffi::OsStr::new(target) {
                    out.differences.push(format!("{}: symlink to {}, not {target}", shown.display(), actual.display()));
                }
            }
            NodeKind::File { size, content } if meta.is_file() => {
                out.files += 1;
                if meta.len() != *size {
                    out.differences.push(format!("{}: {} bytes, the snapshot has {size}", shown.display(), meta.len()));
                    continue;
                }
                let ids = restorer.chunk_ids(content)?;
                if let Some(at) = compare_file(repo, index, &ids, &path)? {
                    out.differences.push(format!("{}: differs from byte {at}", shown.display()));
                }
                out.bytes += size;
            }
            NodeKind::Fifo if meta.file_type().is_fifo() => {}
            NodeKind::Chardev { device } | NodeKind::Blockdev { device }
                if (meta.file_type().is_char_device() || meta.file_type().is_block_device())
                    && meta.rdev() == *device => {}
            _ => out.differences.push(format!("{}: not a {}", shown.display(), kind_name(&node.kind))),
        }
    }
    Ok(())
}

/// The offset of the first chunk of `path` whose keyed hash is not its ID, if any.
fn compare_file(repo: &Repository, index: &Index, ids: &[BlobId], path: &Path) -> Result<Option<u64>> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for id in ids {
        let loc = index
            .get(id)
            .ok_or_else(|| Error::Corrupt(format!("blob {} is not in the index (run `bunker check`)", id.short())))?;
        let len = loc.blob.raw_length as usize;
        buf.resize(len, 0);
        file.read_exact(&mut buf).map_err(|e| Error::io(path, e))?;
        if repo.crypto().blob_id(&buf) != *id {
            return Ok(Some(offset));
        }
        offset += len as u64;
    }
    Ok(None)
}

fn kind_name(kind: &NodeKind) -> &'static str {
    match kind {
        NodeKind::File { .. } => "file",
        NodeKind::Dir { .. } => "directory",
        NodeKind::Symlink { .. } => "symlink",
        NodeKind::Fifo => "named pipe",
        NodeKind::Chardev { .. } => "character device (with that number)",
        NodeKind::Blockdev { .. } => "block device (with that number)",
    }
}
