//! bunker's repository engine: content-defined chunks, deduplicated, compressed and sealed into packs,
//! described by an index and snapshots, on local disk or any S3-compatible store. It knows nothing about
//! databases: sources hand it streams and file trees. `FORMAT.md` at the workspace root is the contract
//! of everything it writes.
//!
//! Data flows: source → [`chunker`] → [`backup`] workers → [`pack`]er → [`storage`];
//! back out: [`snapshot`] → [`restorer`] → sink.

pub mod archiver;
pub mod backup;
pub mod catalog;
pub mod check;
pub mod child;
pub mod chunker;
pub mod compare;
pub mod config;
pub mod content;
pub mod copy;
pub mod crypto;
pub mod error;
pub mod failpoint;
pub mod id;
pub mod index;
pub mod interrupt;
pub mod keys;
pub mod lock;
pub mod memo;
pub mod objectlock;
pub mod objects;
pub mod pack;
pub mod prune;
pub mod repair;
pub mod repository;
pub mod restorer;
pub mod retention;
pub mod segment;
pub mod snapshot;
pub mod stats;
pub mod storage;
#[cfg(test)]
mod testing;
pub mod tree;
pub mod walk;

pub use error::{Error, Result};
pub use id::{BlobId, FileId};
pub use repository::Repository;
pub use snapshot::Snapshot;
