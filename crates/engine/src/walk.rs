//! What snapshots reference: every metadata and data blob reachable from their roots.

use std::collections::HashSet;

use crate::error::Result;
use crate::id::{BlobId, IdBuildHasher};
use crate::restorer::Restorer;
use crate::snapshot::{Root, Snapshot};
use crate::tree::{Content, NodeKind};

pub type BlobSet = HashSet<BlobId, IdBuildHasher>;

/// Adds every blob `snapshot` needs to `used`. Trees already in `used` are not walked again, so
/// unchanged subtrees shared by many snapshots cost one visit.
pub fn collect_blobs(restorer: &Restorer<'_>, snapshot: &Snapshot, used: &mut BlobSet) -> Result<()> {
    match &snapshot.root {
        Root::Stream { content, .. } => collect_content(restorer, content, used),
        Root::Tree { tree } => collect_tree(restorer, tree, used),
    }
}

fn collect_content(restorer: &Restorer<'_>, content: &Content, used: &mut BlobSet) -> Result<()> {
    if let Content::Lists(lists) = content {
        used.extend(lists.iter().copied());
    }
    used.extend(restorer.chunk_ids(content)?);
    Ok(())
}

fn collect_tree(restorer: &Restorer<'_>, id: &BlobId, used: &mut BlobSet) -> Result<()> {
    if !used.insert(*id) {
        return Ok(());
    }
    for node in restorer.load_tree(id)?.nodes {
        match &node.kind {
            NodeKind::Dir { subtree } => collect_tree(restorer, subtree, used)?,
            NodeKind::File { content, .. } => collect_content(restorer, content, used)?,
            NodeKind::Symlink { .. } | NodeKind::Fifo | NodeKind::Chardev { .. } | NodeKind::Blockdev { .. } => {}
        }
    }
    Ok(())
}
