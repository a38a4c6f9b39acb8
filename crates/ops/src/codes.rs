//! Exit codes (documented in the README's table): what the binary exits with, and what the daemon reads
//! back from the jobs it runs.

pub const OK: i32 = 0;
pub const FAILURE: i32 = 1;
pub const INCOMPLETE: i32 = 3;
/// A confirmation prompt was declined: nothing was changed.
pub const CANCELLED: i32 = 4;
pub const NO_REPOSITORY: i32 = 10;
pub const LOCKED: i32 = 11;
/// A wrong password, or an age identity missing, damaged or not one of the repository's recipients.
pub const WRONG_PASSWORD: i32 = 12;
/// `wal-fetch` could not read the archive (damaged segment, repository unreachable): above 125, so
/// PostgreSQL aborts recovery instead of taking it for the end of the archive.
pub const WAL_UNREADABLE: i32 = 126;
pub const INTERRUPTED: i32 = 130;
/// Standard output was closed by its reader (`bunker snapshots | head -1`): what a shell reports for a
/// tool that SIGPIPE ended. Nothing is printed; what was being written is not needed any more.
pub const CLOSED_STDOUT: i32 = 141;

/// The worse of two exit codes: any failure over incomplete over success (a command made of several
/// runs: a recovery point, a daemon job, `restore --point`).
pub fn worse(a: i32, b: i32) -> i32 {
    let rank = |c: i32| match c {
        OK => 0,
        INCOMPLETE => 1,
        _ => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// How a run that ended with `code` is recorded in the catalog.
pub fn run_status(code: i32) -> bunker_engine::catalog::RunStatus {
    use bunker_engine::catalog::RunStatus;
    match code {
        OK => RunStatus::Success,
        INCOMPLETE => RunStatus::Warning,
        INTERRUPTED => RunStatus::Interrupted,
        CANCELLED => RunStatus::Cancelled,
        _ => RunStatus::Failed,
    }
}

/// The exit code of an engine error (a missing repository, a lock, a wrong password, an interrupt).
pub fn of_engine(e: Option<&bunker_engine::Error>) -> i32 {
    use bunker_engine::Error;
    match e {
        Some(Error::NoRepository { .. } | Error::NoBucket { .. }) => NO_REPOSITORY,
        Some(Error::Locked { .. }) => LOCKED,
        Some(Error::WrongPassword { .. } | Error::NeedsIdentity { .. } | Error::Identity(_)) => WRONG_PASSWORD,
        Some(Error::Interrupted) => INTERRUPTED,
        _ => FAILURE,
    }
}

/// The exit code of an operation's error.
pub fn of(e: &crate::Error) -> i32 {
    if matches!(e, crate::Error::Source(bunker_sources::SourceError::Cancelled(_))) {
        return CANCELLED;
    }
    of_engine(e.engine())
}
