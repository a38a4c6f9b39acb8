//! Base backups over the replication protocol, for when bunker does not run on the database host:
//! `pg_basebackup --format=tar --pgdata=-` streams the data directory as one tar archive, which is turned
//! into the same file tree a local base backup stores (fixed-size chunks, so it dedups against earlier
//! base backups either way). The server writes `backup_label` and `backup_manifest` into the stream.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bunker_engine::backup::{Backup, PendingStream};
use bunker_engine::chunker::ChunkerParams;
use bunker_engine::tree::{Node, NodeKind, Tree};
use bunker_engine::BlobId;

use super::conn::ConnInfo;
use crate::SourceError;

/// Files whose chunks may be in the pipeline at once.
const MAX_PENDING: usize = 256;

/// What the stream held besides the files.
pub struct Streamed {
    pub root: BlobId,
    pub backup_label: String,
    pub stop_lsn: String,
}

/// Runs pg_basebackup against `conn` and stores its tar stream as a tree.
pub fn stream(
    conn: &ConnInfo,
    pg_basebackup: &Path,
    label: &str,
    backup: &Backup<'_>,
) -> Result<Streamed, SourceError> {
    let tool = |detail: String| SourceError::Tool { tool: "pg_basebackup".into(), detail };
    let mut child = conn
        .tool(pg_basebackup)
        .args(["--pgdata=-", "--format=tar", "--wal-method=none", "--checkpoint=fast", "--verbose"])
        .arg(format!("--label={label}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| tool(format!("cannot run {}: {e}", pg_basebackup.display())))?;
    let stderr = child.stderr.take().expect("piped");
    let messages = std::thread::spawn(move || {
        std::io::BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<String>>()
    });
    let stdout = child.stdout.take().expect("piped");
    let stored = store_tar(stdout, backup);
    if stored.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| tool(e.to_string()))?;
    let messages = messages.join().unwrap_or_default();
    if !status.success() {
        let last: Vec<&str> = messages.iter().rev().take(3).rev().map(String::as_str).collect();
        return Err(tool(format!("{status}: {}", last.join(" | "))));
    }
    let (root, label_text, manifest) = stored?;
    let backup_label = label_text.ok_or_else(|| tool("the stream holds no backup_label".into()))?;
    let stop_lsn = manifest
        .as_deref()
        .and_then(manifest_end_lsn)
        .ok_or_else(|| tool("the stream holds no backup_manifest with a WAL range".into()))?;
    Ok(Streamed { root, backup_label, stop_lsn })
}

/// The end of the last WAL range a backup manifest names (where the backup stopped).
fn manifest_end_lsn(manifest: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    v["WAL-Ranges"].as_array()?.last()?["End-LSN"].as_str().map(str::to_owned)
}

type StoredTar = (BlobId, Option<String>, Option<Vec<u8>>);

/// Stores every entry of a tar stream; returns the root tree, the text of `backup_label` and the bytes of
/// `backup_manifest`.
fn store_tar(input: impl Read, backup: &Backup<'_>) -> Result<StoredTar, SourceError> {
    let bad =
        |e: std::io::Error| SourceError::Tool { tool: "pg_basebackup".into(), detail: format!("tar stream: {e}") };
    let mut archive = tar::Archive::new(input);
    let mut entries: Vec<(PathBuf, Node)> = Vec::new();
    let mut pending: VecDeque<(usize, PendingStream)> = VecDeque::new();
    let mut label = None;
    let mut manifest = None;
    for entry in archive.entries().map_err(bad)? {
        bunker_engine::interrupt::check()?;
        let mut entry = entry.map_err(bad)?;
        // Only plain names: "./x" is "x", and "." (the directory itself) is the root.
        let raw = entry.path().map_err(bad)?.into_owned();
        let path: PathBuf = raw.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
        if raw.components().any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::RootDir)) {
            return Err(bad(std::io::Error::other(format!("unsafe entry name {}", raw.display()))));
        }
        if path.as_os_str().is_empty() {
            continue;
        }
        let header = entry.header();
        let mut node = Node {
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            name_bytes: None,
            kind: NodeKind::File { size: 0, content: Default::default() },
            mode: header.mode().map_err(bad)? & 0o7777,
            mtime: header.mtime().map_err(bad)? as i64,
            mtime_nsec: 0,
            uid: header.uid().map_err(bad)? as u32,
            gid: header.gid().map_err(bad)? as u32,
        };
        let kind = header.entry_type();
        if kind.is_dir() {
            node.kind = NodeKind::Dir { subtree: BlobId([0; 32]) };
        } else if kind.is_symlink() {
            let target = entry.link_name().map_err(bad)?.map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            node.kind = NodeKind::Symlink { target };
        } else if kind.is_file() {
            let size = entry.size();
            if path == Path::new("backup_label") || path == Path::new("backup_manifest") {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(bad)?;
                let (content, size) = backup.save_stream(&bytes[..])?;
                node.kind = NodeKind::File { size, content };
                if path == Path::new("backup_label") {
                    label = Some(String::from_utf8_lossy(&bytes).into_owned());
                } else {
                    manifest = Some(bytes);
                }
            } else {
                let stream =
                    backup.submit_chunks(&mut entry, ChunkerParams::fixed(super::DATA_CHUNK_SIZE), Some(size))?;
                pending.push_back((entries.len(), stream));
                backup.count_file();
            }
        } else {
            continue;
        }
        entries.push((path, node));
        while pending.len() > MAX_PENDING {
            let (at, stream) = pending.pop_front().expect("non-empty");
            let (content, size) = backup.finish_stream(stream)?;
            entries[at].1.kind = NodeKind::File { size, content };
        }
    }
    for (at, stream) in pending {
        let (content, size) = backup.finish_stream(stream)?;
        entries[at].1.kind = NodeKind::File { size, content };
    }
    Ok((build_trees(entries, backup)?, label, manifest))
}

/// Saves the directories deepest first, each as a tree of its entries; returns the root's.
fn build_trees(entries: Vec<(PathBuf, Node)>, backup: &Backup<'_>) -> Result<BlobId, SourceError> {
    let mut children: HashMap<PathBuf, Vec<Node>> = HashMap::new();
    let mut dirs: Vec<(PathBuf, Node)> = Vec::new();
    let mut seen_dirs: HashSet<PathBuf> = HashSet::new();
    for (path, node) in entries {
        if matches!(node.kind, NodeKind::Dir { .. }) {
            seen_dirs.insert(path.clone());
            dirs.push((path, node));
        } else {
            children.entry(parent_of(&path)).or_default().push(node);
        }
    }
    // A directory the stream implies without its own entry.
    let implied: Vec<PathBuf> = dirs
        .iter()
        .map(|(p, _)| p.clone())
        .chain(children.keys().cloned())
        .flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf).collect::<Vec<_>>())
        .chain(children.keys().cloned())
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    for p in implied {
        if seen_dirs.insert(p.clone()) {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let node = Node {
                name,
                name_bytes: None,
                kind: NodeKind::Dir { subtree: BlobId([0; 32]) },
                mode: 0o700,
                mtime: 0,
                mtime_nsec: 0,
                uid: 0,
                gid: 0,
            };
            dirs.push((p, node));
        }
    }
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, mut node) in dirs {
        let subtree = save_tree(children.remove(&path).unwrap_or_default(), backup)?;
        node.kind = NodeKind::Dir { subtree };
        children.entry(parent_of(&path)).or_default().push(node);
    }
    save_tree(children.remove(Path::new("")).unwrap_or_default(), backup)
}

fn parent_of(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn save_tree(mut nodes: Vec<Node>, backup: &Backup<'_>) -> Result<BlobId, SourceError> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(backup.save_meta(serde_json::to_vec(&Tree { nodes }).expect("tree serialises"))?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stop_location_comes_from_the_manifest() {
        let m = br#"{ "PostgreSQL-Backup-Manifest-Version": 1, "Files": [],
            "WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" } ] }"#;
        assert_eq!(super::manifest_end_lsn(m).as_deref(), Some("0/2000100"));
        assert_eq!(super::manifest_end_lsn(b"{}"), None);
    }
}
