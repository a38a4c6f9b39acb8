//! Finding `pg_dump` / `pg_restore` of the server's major version: `pg_bin_dir` when given, else the
//! standard Debian and RPM directories, else the ones on PATH if their version matches.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SourceError;

#[derive(Debug, Clone)]
pub struct PgTools {
    pub major: u32,
    pub dir: Option<PathBuf>,
}

impl PgTools {
    pub fn find(major: u32, pg_bin_dir: Option<&Path>) -> Result<Self, SourceError> {
        let mut candidates: Vec<Option<PathBuf>> = Vec::new();
        if let Some(d) = pg_bin_dir {
            candidates.push(Some(d.to_path_buf()));
        } else {
            candidates.push(Some(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))));
            candidates.push(Some(PathBuf::from(format!("/usr/pgsql-{major}/bin"))));
            candidates.push(None); // PATH
        }
        for dir in candidates {
            let tools = PgTools { major, dir };
            if tools.version_major("pg_dump") == Some(major) {
                return Ok(tools);
            }
        }
        Err(SourceError::Config(match pg_bin_dir {
            Some(d) => format!("{} has no pg_dump for PostgreSQL {major}; fix pg_bin_dir", d.display()),
            None => format!(
                "no pg_dump for PostgreSQL {major} (the server's version): install postgresql-client-{major} or set pg_bin_dir"
            ),
        }))
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        match &self.dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    /// `pg_dump (PostgreSQL) 15.20 (Debian …)` → 15.
    pub fn version(&self, tool: &str) -> Option<String> {
        let out = Command::new(self.bin(tool)).arg("--version").output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn version_major(&self, tool: &str) -> Option<u32> {
        let v = self.version(tool)?;
        let number = v.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
        number.split('.').next()?.parse().ok()
    }
}
