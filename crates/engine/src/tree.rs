//! What a snapshot's root points to. A stream is a content list; a file tree is a chain of tree blobs
//! (JSON, stored as metadata blobs), one per directory, each naming its entries in sorted order.

use serde::{Deserialize, Serialize};

use crate::id::BlobId;

/// Chunk IDs beyond this many are moved out of line into chunk-list blobs.
pub const INLINE_CHUNKS: usize = 1024;
/// IDs per chunk-list blob (32 bytes each: 1 MiB).
pub const CHUNKS_PER_LIST: usize = 32 * 1024;

/// The data chunks of one stream or file, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// The chunk IDs themselves.
    Chunks(Vec<BlobId>),
    /// Metadata blobs, each the concatenation of up to [`CHUNKS_PER_LIST`] raw 32-byte chunk IDs.
    Lists(Vec<BlobId>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Chunks(Vec::new())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(flatten)]
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum NodeKind {
    File { size: u64, content: Content },
    Dir { subtree: BlobId },
    Symlink { target: String },
}
