//! Writes into a local repository. Every file is written whole to `tmp/` and renamed (or, when it must
//! not replace anything, hard-linked) into place, then made durable; a failed write removes its temp
//! file. Files are 0600 and directories 0700 whatever the umask: a repository holds nothing readable
//! without the key, but its names, sizes and times are nobody else's business (restic does the same).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where files being written live until they are complete.
pub const TMP_DIR: &str = "tmp";
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Creates the repository's root directory (0700) if it does not exist.
pub fn create_root(root: &Path) -> Result<()> {
    if root.is_dir() {
        return Ok(());
    }
    if root.exists() {
        return Err(Error::invalid(
            "repository",
            format!("{} is a file, not a directory: give a new or empty directory", root.display()),
        ));
    }
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    make_dir(root)
}

/// Writes `path` whole, replacing what was there.
pub fn write(root: &Path, path: &str, data: &[u8]) -> Result<()> {
    let target = root.join(path);
    let tmp = write_temp(root, &target, "write", data)?;
    let placed = ensure_parent(root, &target)
        .and_then(|_| std::fs::rename(&tmp, &target).map_err(|e| Error::write(&target, e)))
        .and_then(|_| sync_parent(&target));
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed
}

/// Creates `path` only if absent (atomically: a hard link from a complete temp file). `false` if it existed.
pub fn create_new(root: &Path, path: &str, data: &[u8]) -> Result<bool> {
    let target = root.join(path);
    let tmp = write_temp(root, &target, "create", data)?;
    let linked = ensure_parent(root, &target).and_then(|_| match std::fs::hard_link(&tmp, &target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::write(&target, e)),
    });
    let _ = std::fs::remove_file(&tmp);
    // The new name must survive a power loss too: callers (wal-push) let the source go at once.
    if let Ok(true) = linked {
        sync_parent(&target)?;
    }
    linked
}

/// A complete, synced temp file holding `data` for `target` (the name errors give); removed again if
/// anything fails.
fn write_temp(root: &Path, target: &Path, purpose: &str, data: &[u8]) -> Result<PathBuf> {
    let dir = root.join(TMP_DIR);
    if !dir.is_dir() {
        make_dir(&dir)?;
    }
    let tmp = dir.join(format!("{purpose}-{}", hex::encode(rand::random::<[u8; 8]>())));
    let written = (|| -> std::io::Result<()> {
        let mut f: File = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(&tmp)?;
        // The umask may have taken bits away from the mode asked for; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        f.write_all(data)?;
        f.sync_all()
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(Error::write(target, e))
        }
    }
}

/// Creates the directories between `root` and `target`'s parent that are missing, each 0700.
fn ensure_parent(root: &Path, target: &Path) -> Result<()> {
    let Some(parent) = target.parent() else { return Ok(()) };
    if parent.is_dir() {
        return Ok(());
    }
    let rel = parent.strip_prefix(root).unwrap_or(parent);
    let mut dir = root.to_path_buf();
    for c in rel.components() {
        dir.push(c);
        if !dir.is_dir() {
            make_dir(&dir)?;
        }
    }
    Ok(())
}

/// One directory, 0700 exactly; another process creating it first is fine.
fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| Error::write(dir, e))?;
            // The new directory's own name must survive a power loss too.
            sync_parent(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(Error::write(dir, e)),
    }
}

fn sync_parent(target: &Path) -> Result<()> {
    match target.parent() {
        Some(parent) => File::open(parent).and_then(|d| d.sync_all()).map_err(|e| Error::write(parent, e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn files_are_private_whatever_the_umask_and_temp_files_never_stay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        // SAFETY: umask only changes this process's file-creation mask (tests in this binary create
        // their files under their own temp dirs; a permissive mask harms none of them).
        let old = unsafe { libc::umask(0o000) };
        create_root(&root).unwrap();
        write(&root, "data/ab/abcd", b"pack").unwrap();
        assert!(create_new(&root, "locks/exclusive", b"lock").unwrap());
        assert!(!create_new(&root, "locks/exclusive", b"other").unwrap());
        unsafe { libc::umask(old) };
        for (p, mode) in [("", 0o700), ("data", 0o700), ("data/ab", 0o700), ("tmp", 0o700), ("locks", 0o700)] {
            assert_eq!(std::fs::metadata(root.join(p)).unwrap().mode() & 0o777, mode, "{p}");
        }
        for p in ["data/ab/abcd", "locks/exclusive"] {
            assert_eq!(std::fs::metadata(root.join(p)).unwrap().mode() & 0o777, 0o600, "{p}");
        }
        assert_eq!(std::fs::read(root.join("locks/exclusive")).unwrap(), b"lock");
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0, "no temp file left");
    }

    #[test]
    fn a_failed_write_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        create_root(&root).unwrap();
        // A file where a directory must go: the rename cannot happen.
        std::fs::write(root.join("data"), b"in the way").unwrap();
        assert!(write(&root, "data/ab/abcd", b"pack").is_err());
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }
}
