//! Backs up file trees: walks paths, stores each file's bytes through the backup pipeline and each
//! directory as a tree blob. Unreadable entries are skipped and reported as warnings (the snapshot is then
//! marked incomplete), so one bad file never costs the whole backup.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use globset::GlobSet;

use std::collections::VecDeque;

use crate::backup::{Backup, PendingStream};
use crate::chunker::ChunkerParams;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::tree::{Content, Node, NodeKind, Tree};

/// Files of one directory whose chunks may be in the pipeline at once.
const MAX_PENDING_FILES: usize = 256;
/// A file up to this size that changed while it was read is read once more.
const REREAD_BELOW: u64 = 8 << 20;

/// Whether `path`'s size or mtime differ from `before` (it changed while it was read).
fn changed_since(path: &Path, before: &std::fs::Metadata) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(now) => {
            now.len() != before.len() || now.mtime() != before.mtime() || now.mtime_nsec() != before.mtime_nsec()
        }
        Err(_) => false,
    }
}

/// A look at the bytes of files as they are stored, without a second read: a source's own check of its
/// files (PostgreSQL's page checksums). The engine knows nothing of what is checked.
pub trait Inspect: Sync {
    /// An inspector for the file at `rel` (below the archived directory), or `None` to leave it alone.
    fn file(&self, rel: &Path) -> Option<Box<dyn InspectFile>>;
}

/// One file's inspection: fed every byte in order, then asked what it found.
pub trait InspectFile {
    fn update(&mut self, bytes: &[u8]);
    /// What it found, one line each (empty when all is well).
    fn finish(self: Box<Self>) -> Vec<String>;
}

pub struct Archiver<'a, 'r> {
    backup: &'a Backup<'r>,
    exclude: &'a GlobSet,
    chunking: Option<ChunkerParams>,
    tolerate_vanished: bool,
    inspect: Option<&'a dyn Inspect>,
    pub warnings: Vec<String>,
    /// What [`Archiver::inspecting`]'s inspectors found.
    pub findings: Vec<String>,
    /// With [`Archiver::with_digests`]: every file stored, with the CRC-32C of the bytes stored.
    pub digests: Option<Vec<FileDigest>>,
}

/// A stored file's path (below the archived directory), size, mtime and CRC-32C (Castagnoli), as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub path: String,
    pub size: u64,
    pub mtime: i64,
    pub crc32c: u32,
}

/// Passes reads through, computing their CRC-32C and feeding an inspector.
struct Crc32cReader<'i, R> {
    inner: R,
    digest: crc_fast::Digest,
    len: u64,
    inspector: Option<&'i mut Box<dyn InspectFile>>,
}

impl<R: std::io::Read> std::io::Read for Crc32cReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        if let Some(i) = self.inspector.as_mut() {
            i.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
}

/// The CRC-32C (Castagnoli, as PostgreSQL's backup manifests use) of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

impl<'a, 'r> Archiver<'a, 'r> {
    pub fn new(backup: &'a Backup<'r>, exclude: &'a GlobSet) -> Self {
        Archiver {
            backup,
            exclude,
            chunking: None,
            tolerate_vanished: false,
            inspect: None,
            warnings: Vec::new(),
            findings: Vec::new(),
            digests: None,
        }
    }

    /// Records a [`FileDigest`] of every file stored (a backup manifest's per-file checksums).
    pub fn with_digests(mut self) -> Self {
        self.digests = Some(Vec::new());
        self
    }

    /// Cuts files with these chunk sizes instead of the repository's.
    pub fn chunking(mut self, params: ChunkerParams) -> Self {
        self.chunking = Some(params);
        self
    }

    /// Entries that disappear between listing and reading are left out without a warning (a live
    /// database's data directory, where dropped tables' files vanish as a matter of course).
    /// Every file's bytes also go through `inspect` as they are read (findings in [`Archiver::findings`]).
    pub fn inspecting(mut self, inspect: &'a dyn Inspect) -> Self {
        self.inspect = Some(inspect);
        self
    }

    pub fn tolerate_vanished(mut self) -> Self {
        self.tolerate_vanished = true;
        self
    }

    /// Stores everything below directory `dir` and returns the nodes of its entries, for the caller to
    /// complete and save as a root tree with [`Archiver::save_tree`].
    pub fn save_contents(&mut self, dir: &Path) -> Result<Vec<Node>> {
        match self.dir_nodes(dir, Path::new(""))? {
            Some(nodes) => Ok(nodes),
            None => Err(Error::invalid("directory", self.warnings.pop().unwrap_or_default())),
        }
    }

    /// Stores `paths` as one tree whose entries are the paths' last components.
    pub fn save_paths(&mut self, paths: &[PathBuf]) -> Result<BlobId> {
        let mut nodes = Vec::new();
        for path in paths {
            let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
            let file_name = match path.file_name() {
                Some(n) => n.to_os_string(),
                None => std::fs::canonicalize(path)
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_os_string()))
                    .unwrap_or_else(|| "root".into()),
            };
            let (name, name_bytes) = crate::tree::node_name(&file_name);
            if nodes.iter().any(|n: &Node| n.name == name) {
                return Err(Error::invalid(
                    "paths",
                    format!("two paths end in {name:?}; back them up under separate names"),
                ));
            }
            if let Some((node, stream)) = self.save_entry(path, Path::new(&file_name), name.clone(), &meta)? {
                let mut node = node;
                node.name_bytes = name_bytes;
                if let Some(stream) = stream {
                    self.resolve(&mut node, stream)?;
                }
                nodes.push(node);
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.save_tree(Tree { nodes })
    }

    /// Stores one tree blob (its nodes sorted by name).
    pub fn save_tree(&self, mut tree: Tree) -> Result<BlobId> {
        tree.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.backup.save_meta(serde_json::to_vec(&tree).expect("tree serialises"))
    }

    fn save_dir(&mut self, dir: &Path, rel: &Path) -> Result<Option<BlobId>> {
        match self.dir_nodes(dir, rel)? {
            Some(nodes) => self.save_tree(Tree { nodes }).map(Some),
            None => Ok(None),
        }
    }

    fn dir_nodes(&mut self, dir: &Path, rel: &Path) -> Result<Option<Vec<Node>>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                self.warn(dir, &e);
                return Ok(None);
            }
        };
        let mut items: Vec<_> = entries.filter_map(|e| e.map_err(|err| self.warn(dir, &err)).ok()).collect();
        items.sort_by_key(|e| e.file_name());
        let mut nodes = Vec::with_capacity(items.len());
        // Files whose chunks are still in the pipeline, by node position: resolved in order, at most
        // MAX_PENDING_FILES at once, so reading the next files overlaps storing the previous ones.
        let mut pending: VecDeque<(usize, PendingStream)> = VecDeque::new();
        for entry in items {
            crate::interrupt::check()?;
            let path = entry.path();
            let file_name = entry.file_name();
            let (name, name_bytes) = crate::tree::node_name(&file_name);
            let child_rel = rel.join(&file_name);
            if self.exclude.is_match(&child_rel) || self.exclude.is_match(&name) {
                continue;
            }
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.warn(&path, &e);
                    continue;
                }
            };
            if let Some((mut node, stream)) = self.save_entry(&path, &child_rel, name, &meta)? {
                node.name_bytes = name_bytes;
                if let Some(stream) = stream {
                    pending.push_back((nodes.len(), stream));
                }
                nodes.push(node);
            }
            while pending.len() > MAX_PENDING_FILES {
                let (at, stream) = pending.pop_front().expect("non-empty");
                self.resolve(&mut nodes[at], stream)?;
            }
        }
        for (at, stream) in pending {
            self.resolve(&mut nodes[at], stream)?;
        }
        Ok(Some(nodes))
    }

    /// Fills in the content of a file node whose chunks were submitted earlier.
    fn resolve(&self, node: &mut Node, stream: PendingStream) -> Result<()> {
        let (content, size) = self.backup.finish_stream(stream)?;
        node.kind = NodeKind::File { size, content };
        Ok(())
    }

    /// One entry as a node; for a regular file, also its still-pending content.
    fn save_entry(
        &mut self,
        path: &Path,
        rel: &Path,
        name: String,
        meta: &std::fs::Metadata,
    ) -> Result<Option<(Node, Option<PendingStream>)>> {
        let mut stream = None;
        // The metadata of what was stored: a file read again has newer metadata than at first.
        let mut stored_meta = None;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            match self.save_dir(path, rel)? {
                Some(subtree) => NodeKind::Dir { subtree },
                None => return Ok(None),
            }
        } else if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(t) => NodeKind::Symlink { target: t.to_string_lossy().into_owned() },
                Err(e) => {
                    self.warn(path, &e);
                    return Ok(None);
                }
            }
        } else if ft.is_file() {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    self.warn(path, &e);
                    return Ok(None);
                }
            };
            let params = self.chunking.unwrap_or(self.backup.repository().config().chunker);
            let mut inspector = self.inspect.and_then(|i| i.file(rel));
            let submitted = if self.digests.is_some() || inspector.is_some() {
                let digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
                let mut reader = Crc32cReader { inner: file, digest, len: 0, inspector: inspector.as_mut() };
                let s = self.backup.submit_chunks(&mut reader, params, Some(meta.len()));
                if let (true, Some(digests)) = (s.is_ok(), &mut self.digests) {
                    digests.push(FileDigest {
                        path: rel.to_string_lossy().into_owned(),
                        size: reader.len,
                        mtime: meta.mtime(),
                        crc32c: reader.digest.finalize() as u32,
                    });
                }
                s
            } else {
                self.backup.submit_chunks(file, params, Some(meta.len()))
            };
            match submitted {
                Ok(s) => stream = Some(s),
                Err(Error::Input(e)) => {
                    self.warn(path, &e);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if let Some(i) = inspector {
                self.findings.extend(i.finish());
            }
            // A live data directory (tolerate_vanished) changes all the time and WAL replay mends it.
            if !self.tolerate_vanished && changed_since(path, meta) {
                match self.reread(path, meta, stream.take().expect("submitted"))? {
                    Some((s, m)) => {
                        stream = Some(s);
                        stored_meta = m;
                    }
                    None => return Ok(None),
                }
            }
            self.backup.count_file();
            NodeKind::File { size: 0, content: Content::default() }
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else if ft.is_char_device() {
            NodeKind::Chardev { device: meta.rdev() }
        } else if ft.is_block_device() {
            NodeKind::Blockdev { device: meta.rdev() }
        } else {
            // A socket: its server makes it anew. Not a loss of data, so no warning on the snapshot.
            tracing::info!("{}: a socket, not stored", path.display());
            return Ok(None);
        };
        let meta = stored_meta.as_ref().unwrap_or(meta);
        let node = Node {
            name,
            name_bytes: None,
            kind,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
        };
        Ok(Some((node, stream)))
    }

    /// A file that changed while it was read: a small one is read once more (what was stored of the first
    /// read stays as harmless, deduplicated data); a large one, or one that changed again, is kept as read
    /// with a warning naming it (the snapshot is then incomplete: that copy may mix old and new bytes).
    /// Returns the stream and, when it was read again, the metadata of the second read.
    fn reread(
        &mut self,
        path: &Path,
        meta: &std::fs::Metadata,
        first: PendingStream,
    ) -> Result<Option<(PendingStream, Option<std::fs::Metadata>)>> {
        let changed = |what: &str| {
            format!("{}: changed while it was read{what}; the stored copy may mix old and new contents", path.display())
        };
        if meta.len() > REREAD_BELOW {
            self.warnings.push(changed(""));
            return Ok(Some((first, None)));
        }
        self.backup.finish_stream(first)?;
        let again = match std::fs::symlink_metadata(path).and_then(|m| Ok((std::fs::File::open(path)?, m))) {
            Ok(v) => v,
            Err(e) => {
                self.warn(path, &e);
                return Ok(None);
            }
        };
        let (file, before) = again;
        let params = self.chunking.unwrap_or(self.backup.repository().config().chunker);
        let s = match self.backup.submit_chunks(file, params, Some(before.len())) {
            Ok(s) => s,
            Err(Error::Input(e)) => {
                self.warn(path, &e);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if changed_since(path, &before) {
            self.warnings.push(changed(", twice"));
        } else {
            tracing::info!("{}: changed while it was read; read again", path.display());
        }
        Ok(Some((s, Some(before))))
    }

    fn warn(&mut self, path: &Path, e: &std::io::Error) {
        if self.tolerate_vanished && e.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        self.warnings.push(format!("{}: {e}", path.display()));
    }
}
