//! Reading back: a stream to any writer (`dump`) or a file tree into a directory (`restore`). Blobs are
//! fetched, opened and verified by a pool of threads while the writer takes them in order; at most a
//! fixed number are in flight, so memory stays bounded.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::{bounded, Receiver, Sender};
use globset::GlobSet;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::index::Index;
use crate::repository::Repository;
use crate::tree::{Content, Node, NodeKind, Tree};

type Fetched = Result<Vec<u8>>;

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// A pool of blob fetchers alive for one restore.
struct Fetcher {
    jobs: Sender<(BlobId, Sender<Fetched>)>,
    depth: usize,
}

impl Fetcher {
    fn fetch(&self, id: BlobId) -> Receiver<Fetched> {
        let (tx, rx) = bounded(1);
        // The pool lives as long as the scope that owns this fetcher; a send cannot fail while it runs.
        let _ = self.jobs.send((id, tx));
        rx
    }

    /// Writes the blobs in order, keeping up to `depth` fetches in flight.
    fn write_blobs(&self, ids: &[BlobId], out: &mut dyn Write) -> Result<u64> {
        let mut waiting = VecDeque::new();
        let mut written = 0u64;
        let mut next = ids.iter();
        loop {
            while waiting.len() < self.depth {
                match next.next() {
                    Some(id) => waiting.push_back(self.fetch(*id)),
                    None => break,
                }
            }
            let Some(rx) = waiting.pop_front() else { return Ok(written) };
            crate::interrupt::check()?;
            let data = rx.recv().map_err(|_| Error::Corrupt("fetch pool stopped".into()))??;
            out.write_all(&data).map_err(|e| Error::io("output", e))?;
            written += data.len() as u64;
        }
    }
}

/// Fetches for the files of one directory, kept `depth` blobs ahead of the writer.
struct Ahead<'f> {
    fetcher: &'f Fetcher,
    todo: std::vec::IntoIter<(usize, BlobId)>,
    inflight: VecDeque<(usize, Receiver<Fetched>)>,
}

impl Ahead<'_> {
    /// Writes the blobs of the file at node position `node`, in order. Files are written in node order,
    /// so its blobs are always at the front of the queue.
    fn write_file(&mut self, node: usize, out: &mut dyn Write) -> Result<u64> {
        let mut written = 0u64;
        loop {
            while self.inflight.len() < self.fetcher.depth {
                let Some((i, id)) = self.todo.next() else { break };
                self.inflight.push_back((i, self.fetcher.fetch(id)));
            }
            match self.inflight.front() {
                Some((i, _)) if *i == node => {
                    let (_, rx) = self.inflight.pop_front().expect("non-empty");
                    crate::interrupt::check()?;
                    let data = rx.recv().map_err(|_| Error::Corrupt("fetch pool stopped".into()))??;
                    out.write_all(&data).map_err(|e| Error::io("output", e))?;
                    written += data.len() as u64;
                }
                _ => return Ok(written),
            }
        }
    }
}

/// A stream's chunks and the offset at which each ends.
pub struct StreamMap {
    ids: Vec<BlobId>,
    ends: Vec<u64>,
}

impl StreamMap {
    /// The stream's length in bytes.
    pub fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Passes on `left` bytes after skipping the first `skip`.
struct Trim<'w> {
    out: &'w mut dyn Write,
    skip: u64,
    left: u64,
}

impl Write for Trim<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let skipped = (self.skip.min(buf.len() as u64)) as usize;
        self.skip -= skipped as u64;
        let rest = &buf[skipped..];
        let take = (self.left.min(rest.len() as u64)) as usize;
        self.out.write_all(&rest[..take])?;
        self.left -= take as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

pub struct Restorer<'r> {
    repo: &'r Repository,
    index: &'r Index,
    threads: usize,
}

impl<'r> Restorer<'r> {
    pub fn new(repo: &'r Repository, index: &'r Index) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Restorer { repo, index, threads: (cores * 2).max(4) }
    }

    fn with_fetcher<T>(&self, f: impl FnOnce(&Fetcher) -> Result<T>) -> Result<T> {
        std::thread::scope(|scope| {
            let (tx, rx) = bounded::<(BlobId, Sender<Fetched>)>(self.threads * 2);
            for _ in 0..self.threads {
                let rx = rx.clone();
                scope.spawn(move || {
                    for (id, reply) in rx {
                        let _ = reply.send(self.repo.read_blob(self.index, &id));
                    }
                });
            }
            let fetcher = Fetcher { jobs: tx, depth: self.threads * 2 };
            f(&fetcher)
            // `fetcher` drops here, closing the channel so the pool's threads end before the scope does.
        })
    }

    /// The chunk IDs of a content list, loading chunk-list blobs when the list is out of line.
    pub fn chunk_ids(&self, content: &Content) -> Result<Vec<BlobId>> {
        match content {
            Content::Chunks(ids) => Ok(ids.clone()),
            Content::Lists(lists) => {
                let mut ids = Vec::new();
                for list in lists {
                    let raw = self.repo.read_blob(self.index, list)?;
                    if raw.len() % 32 != 0 {
                        return Err(Error::Corrupt(format!("chunk list {} has a partial entry", list.short())));
                    }
                    ids.extend(raw.chunks_exact(32).map(|c| BlobId(c.try_into().expect("32"))));
                }
                Ok(ids)
            }
        }
    }

    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        let raw = self.repo.read_blob(self.index, id)?;
        serde_json::from_slice(&raw).map_err(|e| Error::Corrupt(format!("tree {}: {e}", id.short())))
    }

    /// Writes a stream's content to `out`; returns the bytes written.
    pub fn dump(&self, content: &Content, out: &mut dyn Write) -> Result<u64> {
        let ids = self.chunk_ids(content)?;
        self.with_fetcher(|f| f.write_blobs(&ids, out))
    }

    /// Where each chunk of a stream begins, so that byte ranges can be read without the chunks before them.
    pub fn stream_map(&self, content: &Content) -> Result<StreamMap> {
        let ids = self.chunk_ids(content)?;
        let mut ends = Vec::with_capacity(ids.len());
        let mut end = 0u64;
        for id in &ids {
            let loc = self.index.get(id).ok_or_else(|| {
                Error::Corrupt(format!("blob {} is not in the index (run `bunker check`)", id.short()))
            })?;
            end += loc.blob.raw_length as u64;
            ends.push(end);
        }
        Ok(StreamMap { ids, ends })
    }

    /// Writes bytes `range` of a stream to `out`; returns the bytes written. A range past the end of the
    /// stream is an error: the caller's idea of the stream's layout is wrong.
    pub fn dump_range(&self, map: &StreamMap, range: std::ops::Range<u64>, out: &mut dyn Write) -> Result<u64> {
        if range.end > map.len() || range.start > range.end {
            return Err(Error::invalid(
                "range",
                format!("bytes {}..{} are outside a stream of {} bytes", range.start, range.end, map.len()),
            ));
        }
        if range.is_empty() {
            return Ok(0);
        }
        // The first chunk that ends after range.start, and the first that ends at or after range.end.
        let first = map.ends.partition_point(|&e| e <= range.start);
        let last = map.ends.partition_point(|&e| e < range.end);
        let first_start = if first == 0 { 0 } else { map.ends[first - 1] };
        let mut trim = Trim { out, skip: range.start - first_start, left: range.end - range.start };
        self.with_fetcher(|f| f.write_blobs(&map.ids[first..=last], &mut trim))?;
        Ok(range.end - range.start)
    }

    /// Finds the node at `path` (components separated by `/`) in a tree.
    pub fn find(&self, root: &BlobId, path: &str) -> Result<Node> {
        let mut tree = self.load_tree(root)?;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let node = tree
                .nodes
                .into_iter()
                .find(|n| n.name == *part)
                .ok_or_else(|| Error::invalid("path", format!("{path:?} is not in the snapshot")))?;
            if i + 1 == parts.len() {
                return Ok(node);
            }
            match &node.kind {
                NodeKind::Dir { subtree } => tree = self.load_tree(subtree)?,
                _ => return Err(Error::invalid("path", format!("{path:?}: {part} is not a directory"))),
            }
        }
        Err(Error::invalid("path", "empty path"))
    }

    /// Restores a tree into `target`. Refuses a non-empty target unless `force`. With `include`, only
    /// entries whose path (relative to the snapshot root) matches, or lies under a match, are written.
    pub fn restore_tree(
        &self,
        root: &BlobId,
        target: &Path,
        include: Option<&GlobSet>,
        force: bool,
    ) -> Result<RestoreStats> {
        ensure_empty_or_absent(target, force)?;
        std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
        let tree = self.load_tree(root)?;
        let mut stats = RestoreStats::default();
        self.with_fetcher(|f| {
            let mut walk =
                Walk { restorer: self, root: target, fetcher: f, include, stats: &mut stats, owners: is_root() };
            walk.tree(&tree, target, Path::new(""), include.is_none(), true)
        })?;
        Ok(stats)
    }
}

struct Walk<'a, 'r> {
    restorer: &'a Restorer<'r>,
    root: &'a Path,
    fetcher: &'a Fetcher,
    include: Option<&'a GlobSet>,
    stats: &'a mut RestoreStats,
    owners: bool,
}

impl Walk<'_, '_> {
    /// Restores `tree` into `dir`. `dir_ready` says `dir` exists as a real directory (with `--include`,
    /// the directories above an included entry are only created when something in them is).
    fn tree(&mut self, tree: &Tree, dir: &Path, rel: &Path, included: bool, dir_ready: bool) -> Result<()> {
        let inclusion: Vec<bool> = tree
            .nodes
            .iter()
            .map(|n| included || self.include.is_some_and(|g| g.is_match(rel.join(n.file_name()))))
            .collect();
        // The blobs of every file restored here, in order, fetched ahead of the writes so small files
        // do not wait for their fetches one by one.
        let mut plan = Vec::new();
        for (i, node) in tree.nodes.iter().enumerate() {
            if let (NodeKind::File { content, .. }, true) = (&node.kind, inclusion[i]) {
                plan.extend(self.restorer.chunk_ids(content)?.into_iter().map(|id| (i, id)));
            }
        }
        let mut ahead = Ahead { fetcher: self.fetcher, todo: plan.into_iter(), inflight: VecDeque::new() };
        for (i, node) in tree.nodes.iter().enumerate() {
            crate::interrupt::check()?;
            let name = node.file_name();
            check_name(&name)?;
            let path = dir.join(&name);
            let node_rel = rel.join(&name);
            let included = inclusion[i];
            if included && !dir_ready {
                self.ensure_ancestors(rel)?;
            }
            match &node.kind {
                NodeKind::Dir { subtree } => {
                    let sub = self.restorer.load_tree(subtree)?;
                    if included {
                        ensure_dir(&path)?;
                        self.stats.dirs += 1;
                    }
                    self.tree(&sub, &path, &node_rel, included, included)?;
                    if included {
                        self.finish(node, &path, None)?;
                    }
                }
                _ if !included => {}
                NodeKind::File { .. } => {
                    let mut file = create_file(&path)?;
                    self.stats.bytes += ahead.write_file(i, &mut file).map_err(|e| at(e, &path))?;
                    self.stats.files += 1;
                    self.finish(node, &path, Some(&file))?;
                }
                NodeKind::Symlink { target } => {
                    remove_non_dir(&path)?;
                    std::os::unix::fs::symlink(target, &path).map_err(|e| Error::io(&path, e))?;
                    self.stats.symlinks += 1;
                    self.finish(node, &path, None)?;
                }
                NodeKind::Fifo | NodeKind::Chardev { .. } | NodeKind::Blockdev { .. } => {
                    remove_non_dir(&path)?;
                    make_special(&node.kind, &path)?;
                    self.stats.files += 1;
                    self.finish(node, &path, None)?;
                }
            }
        }
        Ok(())
    }

    fn ensure_ancestors(&self, rel: &Path) -> Result<()> {
        let mut at = self.root.to_path_buf();
        for part in rel.components() {
            at.push(part);
            ensure_dir(&at)?;
        }
        Ok(())
    }

    /// Owner, mode and mtime, in that order (chown clears setuid bits; mtime last so nothing bumps it).
    /// Nothing here follows a symlink: lchown, fchmod on the open file (or chmod on a directory we
    /// made), and times set on the link itself.
    fn finish(&self, node: &Node, path: &Path, file: Option<&std::fs::File>) -> Result<()> {
        if self.owners {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| Error::invalid("path", "contains NUL"))?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) } != 0 {
                return Err(Error::io(path, std::io::Error::last_os_error()));
            }
        }
        let mode = std::fs::Permissions::from_mode(node.mode);
        match (file, &node.kind) {
            (Some(f), _) => f.set_permissions(mode).map_err(|e| Error::io(path, e))?,
            (None, NodeKind::Dir { .. } | NodeKind::Fifo | NodeKind::Chardev { .. } | NodeKind::Blockdev { .. }) => {
                std::fs::set_permissions(path, mode).map_err(|e| Error::io(path, e))?
            }
            _ => {}
        }
        let mtime = filetime::FileTime::from_unix_time(node.mtime, node.mtime_nsec);
        filetime::set_symlink_file_times(path, mtime, mtime).map_err(|e| Error::io(path, e))
    }
}

/// A tree entry's name must be one path component: a snapshot can never write outside the target.
fn check_name(name: &std::ffi::OsStr) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::Corrupt(format!("snapshot holds an unsafe entry name {name:?}; refusing to restore it")));
    }
    Ok(())
}

/// A named pipe or device node, with mknod (devices need root, as for `cp -a`).
fn make_special(kind: &NodeKind, path: &Path) -> Result<()> {
    let (mode, dev) = match kind {
        NodeKind::Fifo => (libc::S_IFIFO, 0),
        NodeKind::Chardev { device } => (libc::S_IFCHR, *device),
        NodeKind::Blockdev { device } => (libc::S_IFBLK, *device),
        _ => return Ok(()),
    };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::invalid("path", "contains NUL"))?;
    // SAFETY: c is a valid NUL-terminated path; mknod only creates a file system entry.
    if unsafe { libc::mknod(c.as_ptr(), mode | 0o600, dev as libc::dev_t) } != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Makes `path` a real directory: an existing directory is kept, a file or symlink there is replaced.
fn ensure_dir(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    std::fs::create_dir(path).map_err(|e| Error::io(path, e))
}

/// Removes a file or symlink in the way (never a directory: that would need a tree delete).
fn remove_non_dir(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::invalid(
            "restore target",
            format!("{} is a directory where the snapshot has a file; move it away first", path.display()),
        )),
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Creates a regular file without following a symlink that may sit at `path`.
fn create_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        remove_non_dir(path)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

fn at(e: Error, path: &Path) -> Error {
    match e {
        Error::Io { source, .. } => Error::io(path, source),
        other => other,
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Restores never write into a non-empty directory unless told to.
pub fn ensure_empty_or_absent(target: &Path, force: bool) -> Result<()> {
    match std::fs::read_dir(target) {
        Ok(mut rd) => {
            if rd.next().is_some() && !force {
                return Err(Error::TargetNotEmpty(PathBuf::from(target)));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(Error::invalid("restore target", format!("{} is not a directory", target.display())))
        }
        Err(e) => Err(Error::io(target, e)),
    }
}
