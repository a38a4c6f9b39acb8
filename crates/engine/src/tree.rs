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
    /// The entry's name; when its bytes are not UTF-8, a lossy rendering of them (for listings and
    /// `--include`), and [`Node::name_bytes`] holds the bytes.
    pub name: String,
    /// Hex of the name's bytes, only for names that are not UTF-8: restored byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_bytes: Option<String>,
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
    File {
        size: u64,
        content: Content,
    },
    Dir {
        subtree: BlobId,
    },
    Symlink {
        target: String,
    },
    /// A named pipe, or a character or block device (`device` = `st_rdev`): no content, recreated with
    /// mknod. Sockets are not stored (their server makes them anew).
    Fifo,
    Chardev {
        device: u64,
    },
    Blockdev {
        device: u64,
    },
}

impl Node {
    /// The name as the file system has it: its bytes when they are not UTF-8.
    pub fn file_name(&self) -> std::ffi::OsString {
        use std::os::unix::ffi::OsStringExt;
        match self.name_bytes.as_deref().and_then(|h| hex::decode(h).ok()) {
            Some(bytes) => std::ffi::OsString::from_vec(bytes),
            None => self.name.clone().into(),
        }
    }
}

/// A directory entry's name for a [`Node`]: the name, and its bytes (hex) when they are not UTF-8.
pub fn node_name(name: &std::ffi::OsStr) -> (String, Option<String>) {
    use std::os::unix::ffi::OsStrExt;
    match name.to_str() {
        Some(s) => (s.to_owned(), None),
        None => (name.to_string_lossy().into_owned(), Some(hex::encode(name.as_bytes()))),
    }
}
