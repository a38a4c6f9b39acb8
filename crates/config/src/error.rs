//! The config crate's one error type. Every message is one line: where (file and line), what is wrong, and
//! what to do. No message ever contains a configured value, so a secret cannot leak through an error.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The longest name a target may have (it becomes part of snapshot names and file names).
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {} (named {by}) does not exist; check the path", path.display())]
    Missing { path: PathBuf, by: &'static str },

    #[error("cannot read config file {}: {source}; check its permissions", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    #[error("cannot find the current directory to look for bunker.toml: {0}")]
    CurrentDir(std::io::Error),

    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },

    #[error("{}:{line}: environment variable {var} is not set (used in {key}); export it or write ${{{var}:-DEFAULT}}", path.display())]
    UnsetVariable { path: PathBuf, line: usize, var: String, key: String },

    #[error("{}:{line}: {problem} in {key}; write ${{NAME}} or ${{NAME:-DEFAULT}} (NAME: letters, digits, _), or $$ for a literal $", path.display())]
    BadInterpolation { path: PathBuf, line: usize, key: String, problem: &'static str },

    #[error("{}:{line}: unknown section [{name}]; expected repository, repositories, targets, retention, health, schedules, notifications, groups or drill", path.display())]
    UnknownSection { path: PathBuf, line: usize, name: String },

    #[error("{}:{line}: unknown key {key}; expected one of {expected}", path.display())]
    UnknownKey { path: PathBuf, line: usize, key: String, expected: &'static str },

    #[error("{}:{line}: {key} is missing; {hint}", path.display())]
    MissingKey { path: PathBuf, line: usize, key: String, hint: &'static str },

    #[error("{}:{line}: {key} must be {expected}, not {found}", path.display())]
    WrongType { path: PathBuf, line: usize, key: String, expected: &'static str, found: &'static str },

    #[error("{}:{line}: {key} is empty; give a value or remove the key", path.display())]
    Empty { path: PathBuf, line: usize, key: String },

    #[error("{}:{line}: [{section}] sets both password and password_file; keep only one", path.display())]
    BothPasswords { path: PathBuf, line: usize, section: String },

    #[error("{}:{line}: invalid target name {name:?}; use letters, digits, '.', '_' or '-', starting with a letter or digit, at most {max} characters", path.display(), max = MAX_NAME_LEN)]
    BadTargetName { path: PathBuf, line: usize, name: String },

    #[error("{}:{line}: {key}: {detail}", path.display())]
    Invalid { path: PathBuf, line: usize, key: String, detail: String },

    #[error("{}:{line}: target {target}: {detail}", path.display())]
    TargetOption { path: PathBuf, line: usize, target: String, detail: String },
}

impl Error {
    /// The line the error points at (0 for errors about no line in particular), to sort by.
    pub fn line(&self) -> usize {
        match self {
            Error::Missing { .. } | Error::Read { .. } | Error::CurrentDir(_) => 0,
            Error::Syntax { line, .. }
            | Error::UnsetVariable { line, .. }
            | Error::BadInterpolation { line, .. }
            | Error::UnknownSection { line, .. }
            | Error::UnknownKey { line, .. }
            | Error::MissingKey { line, .. }
            | Error::WrongType { line, .. }
            | Error::Empty { line, .. }
            | Error::BothPasswords { line, .. }
            | Error::BadTargetName { line, .. }
            | Error::Invalid { line, .. }
            | Error::TargetOption { line, .. } => *line,
        }
    }
}
