//! Roles and tablespaces (`pg_dumpall --globals-only`): what per-database dumps leave out, so that owners
//! and privileges can be restored too.

use std::io::Read;
use std::process::Stdio;

use bunker_engine::backup::Backup;
use bunker_engine::snapshot::Root;

use super::conn::{error_text, ConnInfo};
use super::tools::PgTools;
use crate::{Captured, Source, SourceError};

pub const KIND: &str = "postgres-globals";

pub struct Globals {
    pub conn: ConnInfo,
    pub pg_bin_dir: Option<std::path::PathBuf>,
}

impl Source for Globals {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, SourceError> {
        let mut client = self.conn.connect()?;
        let version_num: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .map_err(|e| SourceError::Query { target: self.conn.display(), detail: error_text(&e) })?
            .get(0);
        drop(client);
        let tools = PgTools::find((version_num / 10000) as u32, self.pg_bin_dir.as_deref())?;
        let mut cmd = self.conn.tool(tools.bin("pg_dumpall"));
        cmd.arg("--globals-only").stdout(Stdio::piped()).stderr(Stdio::piped());
        let tool_err = |detail: String| SourceError::Tool { tool: "pg_dumpall".into(), detail };
        let mut child = cmd.spawn().map_err(|e| tool_err(e.to_string()))?;
        let mut stderr = child.stderr.take().expect("piped stderr");
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let stored = backup.save_stream(child.stdout.take().expect("piped stdout"));
        let status = child.wait().map_err(|e| tool_err(e.to_string()))?;
        let errors = errors.join().unwrap_or_default();
        if !status.success() {
            return Err(tool_err(format!("{status}: {}", errors.lines().last().unwrap_or("no message"))));
        }
        let (content, size) = stored?;
        Ok(Captured {
            root: Root::Stream { size, content },
            meta: serde_json::json!({ "server_version_num": version_num, "pg_dumpall_version": tools.version("pg_dumpall") }),
            warnings: Vec::new(),
        })
    }
}

/// Applies a globals script to the server of `conn`. Statements for roles that already exist fail
/// harmlessly and are skipped; the number of skipped statements is returned.
pub fn apply(
    script: &std::path::Path,
    conn: &ConnInfo,
    pg_bin_dir: Option<&std::path::Path>,
    major: u32,
) -> Result<usize, SourceError> {
    let tools = PgTools::find(major, pg_bin_dir)?;
    let mut cmd = conn.with_dbname("postgres").tool(tools.bin("psql"));
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-f"]).arg(script).stdout(Stdio::null());
    let out = cmd.output().map_err(|e| SourceError::Tool { tool: "psql".into(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(SourceError::Tool {
            tool: "psql".into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("ERROR")).count())
}
