//! The engine's one error type. Every variant says what failed and, where it helps, what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no bunker repository at {location}: run `bunker init` first, or check --repo / BUNKER_REPO")]
    NoRepository { location: String },

    #[error("the S3 bucket {bucket} does not exist: create it (bunker does not create buckets), or check the repository URL")]
    NoBucket { bucket: String },

    #[error("a repository already exists at {location}; refusing to initialise it again")]
    AlreadyInitialised { location: String },

    #[error("wrong password: no key in {location} opens with it (`bunker key list` shows the key slots)")]
    WrongPassword { location: String },

    /// Content of a recipients repository read without an identity (a write-only host).
    #[error("{what} is encrypted for this repository's age recipients and this host holds only a write-only key: pass --identity FILE (or set BUNKER_IDENTITY_FILE) with a matching age identity")]
    NeedsIdentity { what: String },

    /// An identity that cannot be used: unreadable, damaged, passphrase-protected without the passphrase,
    /// or not one of the repository's recipients. One line, naming the file and what to do.
    #[error("{0}")]
    Identity(String),

    #[error("no key file in {location} opens the repository: keys/ is empty or every key file in it is damaged (restore keys/ from a copy of the repository)")]
    NoKey { location: String },

    #[error("repository format version {found} is not supported by this bunker (it reads version {supported}); upgrade bunker")]
    UnsupportedVersion { found: u32, supported: u32 },

    #[error("repository is locked{mode} by {holder}; wait for it to finish, use --retry-lock DURATION, or `bunker unlock` if that process is gone")]
    Locked { mode: &'static str, holder: String },

    #[error("lost the repository lock {path}: {why}; nothing was committed, run the command again")]
    LockLost { path: String, why: String },

    #[error("storage error while trying to {op} {path}: {detail}")]
    Storage {
        op: &'static str,
        path: String,
        kind: opendal::ErrorKind,
        /// One line: what the storage said, and a hint where we have one. Never raw responses.
        detail: String,
    },

    #[error("{path} is already in the repository with different content; refusing to overwrite it (find out why two different files have one name)")]
    ObjectConflict { path: String },

    #[error("{path} is under S3 Object Lock retention until {until} and cannot be deleted before then; prune leaves it for a later run")]
    Retained { path: String, until: String },

    #[error("{path} not found in the repository")]
    NotFound { path: String },

    #[error("damaged data: {0}")]
    Corrupt(String),

    /// A file that is authentic (its name and seal check out) but does not decode: written by another
    /// version of bunker, not damaged. Readers skip it like damage; `repair` never removes it.
    #[error("{0}: written in a form this bunker does not read (by a newer bunker?); upgrade bunker to read it")]
    UnknownContent(String),

    #[error("no snapshot matches {0:?}; `bunker snapshots` lists them")]
    NoSnapshot(String),

    #[error("{0:?} matches several snapshots; give more characters of the ID")]
    AmbiguousSnapshot(String),

    #[error("restore target {0} is not empty; pass --force to write into it anyway")]
    TargetNotEmpty(PathBuf),

    #[error("cannot write {path}: {source}: {}", write_hint(source))]
    WriteRefused {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("reading the backup input failed: {0}")]
    Input(#[source] std::io::Error),

    #[error("interrupted")]
    Interrupted,

    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A failed write into a local repository: [`Error::WriteRefused`], with what to do, when it can
    /// never succeed as things stand (full disk, read-only, no permission), else [`Error::Io`].
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if io_refuses_writes(&source) {
            Error::WriteRefused { path: path.into(), source }
        } else {
            Error::io(path, source)
        }
    }

    /// Whether storage said it is full (ENOSPC, EDQUOT, a quota): freeing space would help.
    pub fn is_full(&self) -> bool {
        match self {
            Error::WriteRefused { source, .. } | Error::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            }
            Error::Storage { detail, .. } => detail.contains("QuotaExceeded"),
            _ => false,
        }
    }

    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid { what, detail: detail.into() }
    }

    /// Whether this is storage refusing a write for good: a read-only file system, a full disk or quota,
    /// no permission, read-only credentials, a bucket whose Object Lock or policy refuses it. Retrying
    /// does not help; a reader can go on without writing (its lock, its catalog record).
    pub fn refuses_writes(&self) -> bool {
        match self {
            Error::WriteRefused { .. } => true,
            Error::Io { source, .. } | Error::Input(source) => io_refuses_writes(source),
            Error::Storage { kind, detail, .. } => {
                *kind == opendal::ErrorKind::PermissionDenied
                    || ["AccessDenied", "InvalidRequest", "ObjectLock", "Content-MD5", "QuotaExceeded"]
                        .iter()
                        .any(|s| detail.contains(s))
            }
            _ => false,
        }
    }
}

fn write_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => {
            "the repository's disk is full; free space there (`bunker prune` deletes what no snapshot needs); reading commands still work"
        }
        Some(libc::EROFS) => "the repository is on a read-only file system; reading commands work (they skip their lock)",
        _ => "no permission; check who owns the repository's files and who runs bunker (reading commands skip their lock)",
    }
}

/// ENOSPC, EDQUOT, EROFS, EACCES, EPERM: the write can never succeed as things stand.
pub fn io_refuses_writes(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EACCES | libc::EPERM))
        || e.kind() == std::io::ErrorKind::PermissionDenied
}
