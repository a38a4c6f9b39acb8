//! Restoring a logical snapshot: into a new or empty database (created when missing), in parallel with
//! `pg_restore -j`. A database that already holds tables is only written with `force`, which drops what
//! the dump recreates (`--clean --if-exists`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};

use bunker_engine::restorer::Restorer;
use bunker_engine::tree::Content;

use super::archive::{parse_toc, ArchiveLayout, DataBlock};
use super::conn::{error_text, ConnInfo};
use super::logical::last_lines;
use super::tools::PgTools;
use crate::SourceError;

#[derive(Clone, Copy)]
pub struct RestoreOptions<'a> {
    pub jobs: usize,
    pub force: bool,
    /// Keep object owners and privileges (the roles must exist, e.g. restored with the globals).
    pub keep_owners: bool,
    pub pg_bin_dir: Option<&'a Path>,
    /// Asked (with a description of the target) before replacing a non-empty database without `force`;
    /// `None` refuses outright.
    pub confirm: Option<&'a dyn Fn(&str) -> bool>,
}

/// A stored custom-format archive: the stream's content and, when the backup mapped it, its layout.
pub struct StoredArchive<'a> {
    pub restorer: &'a Restorer<'a>,
    pub content: &'a Content,
    pub layout: Option<&'a ArchiveLayout>,
}

/// How a restore went.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Restored {
    /// Archive bytes read from the repository.
    pub bytes: u64,
    /// `direct`: each table's data streamed from the repository into its own pg_restore; `file`: the
    /// archive written to a temporary file first (a replacing restore, or a dump bunker could not map).
    pub method: &'static str,
}

/// Restores a stored archive into the database `into`, creating it when missing.
///
/// Into a new or empty database, with a mapped archive, the restore runs in three steps, like
/// `pg_restore -j` but without a temporary copy of the dump: the schema (`--section=pre-data`) from the
/// TOC alone; then the data, `jobs` pg_restore processes at a time, each fed the TOC and a run of data
/// blocks read straight from the repository; then indexes and constraints (`--section=post-data -j`).
/// Replacing a database's contents (`--clean --if-exists`) must drop post-data objects before tables, so
/// it restores from a temporary file in one `pg_restore -j` run, with the TOC's data offsets filled in.
pub fn restore(
    archive: &StoredArchive<'_>,
    into: &ConnInfo,
    opts: &RestoreOptions<'_>,
) -> Result<Restored, SourceError> {
    let (major, replace) = prepare_target(into, opts)?;
    let tools = PgTools::find(major as u32, opts.pg_bin_dir)?;
    let runner = PgRestore { tools: &tools, into, keep_owners: opts.keep_owners };
    let jobs = opts.jobs.max(1);
    let work = tempfile::Builder::new()
        .prefix("bunker-restore-")
        .tempdir()
        .map_err(|e| local_io("a temporary directory", e))?;
    match archive.layout {
        Some(layout) if !replace => direct(archive, layout, &runner, jobs, work.path()),
        layout => via_file(archive, layout, &runner, jobs, replace, work.path()),
    }
}

/// Creates the database when missing; refuses (or asks before) replacing a non-empty one. Returns the
/// server's major version and whether the restore replaces existing contents.
fn prepare_target(into: &ConnInfo, opts: &RestoreOptions<'_>) -> Result<(i32, bool), SourceError> {
    let mut admin = into.with_dbname("postgres").connect()?;
    let target = into.display();
    let sql_err = |e: postgres::Error| SourceError::Query { target: target.clone(), detail: error_text(&e) };
    let major: i32 =
        admin.query_one("SELECT current_setting('server_version_num')::int / 10000", &[]).map_err(sql_err)?.get(0);
    let exists: bool = admin
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[&into.dbname])
        .map_err(sql_err)?
        .get(0);
    if !exists {
        let quoted = format!("\"{}\"", into.dbname.replace('"', "\"\""));
        admin.batch_execute(&format!("CREATE DATABASE {quoted}")).map_err(sql_err)?;
        return Ok((major, false));
    }
    drop(admin);
    let tables = user_relations(into)?;
    if tables == 0 {
        return Ok((major, false));
    }
    let what = format!("database {} is not empty ({tables} tables)", into.display());
    if opts.force {
        return Ok((major, true));
    }
    match opts.confirm {
        Some(ask) if ask(&what) => Ok((major, true)),
        Some(_) => Err(SourceError::Cancelled(format!("{what}; restore cancelled, nothing was changed"))),
        None => Err(SourceError::Config(format!("{what}; pass --force to replace what the dump contains"))),
    }
}

/// Runs pg_restore against the target with the options every step shares.
struct PgRestore<'a> {
    tools: &'a PgTools,
    into: &'a ConnInfo,
    keep_owners: bool,
}

impl PgRestore<'_> {
    fn command(&self) -> Command {
        let mut cmd = self.into.tool(self.tools.bin("pg_restore"));
        cmd.args(["--exit-on-error", "--format=custom"]);
        if !self.keep_owners {
            cmd.args(["--no-owner", "--no-privileges"]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    /// Runs one pg_restore on a file.
    fn run(&self, args: &[&str], archive: &Path) -> Result<(), SourceError> {
        let mut cmd = self.command();
        cmd.args(args).arg(archive);
        let out = cmd.output().map_err(|e| tool_error(e.to_string()))?;
        check(out.status, &out.stderr)
    }

    /// Runs one pg_restore reading the archive from its standard input, which `feed` writes.
    fn run_fed(
        &self,
        args: &[&str],
        feed: impl FnOnce(&mut ChildStdin) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let mut cmd = self.command();
        cmd.args(args).stdin(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| tool_error(e.to_string()))?;
        let mut stderr = child.stderr.take().expect("piped stderr");
        let errors = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            text
        });
        let mut stdin = child.stdin.take().expect("piped stdin");
        widen_pipe(&stdin);
        let fed = feed(&mut stdin);
        drop(stdin);
        if fed.is_err() {
            // pg_restore stopping early shows up here as a broken pipe; its own message says why.
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| tool_error(e.to_string()))?;
        let stderr = errors.join().unwrap_or_default();
        if matches!(fed, Err(SourceError::Engine(bunker_engine::Error::Interrupted))) {
            return fed;
        }
        if !status.success() && !stderr.is_empty() {
            return check(status, &stderr);
        }
        fed?;
        check(status, &stderr)
    }
}

fn direct(
    archive: &StoredArchive<'_>,
    layout: &ArchiveLayout,
    pg_restore: &PgRestore<'_>,
    jobs: usize,
    work: &Path,
) -> Result<Restored, SourceError> {
    let restorer = archive.restorer;
    let map = restorer.stream_map(archive.content)?;
    let mut head = Vec::with_capacity(layout.toc_end as usize);
    restorer.dump_range(&map, 0..layout.toc_end, &mut head)?;
    let toc = match parse_toc(&head) {
        Ok(Some(toc)) if toc.end as u64 == layout.toc_end => toc,
        Ok(_) => return Err(corrupt("the stored archive's table of contents does not end where the backup recorded")),
        Err(why) => return Err(corrupt(&why)),
    };
    let toc_file = work.join("toc.dump");
    std::fs::write(&toc_file, &head).map_err(|e| local_io(&toc_file.display().to_string(), e))?;
    pg_restore.run(&["--section=pre-data"], &toc_file)?;

    // Data entries without a block of their own (sequence values, large-object metadata…) in one run.
    let with_block: std::collections::HashSet<i64> = layout.blocks.iter().map(|b| b.dump_id()).collect();
    let rest: Vec<i64> = toc.entries.iter().map(|e| e.dump_id).filter(|id| !with_block.contains(id)).collect();
    let mut queue = vec![Job::Rest(rest)];
    let mut batches = batches(&layout.blocks);
    batches.sort_by_key(|b| std::cmp::Reverse(b.range.end - b.range.start));
    queue.extend(batches.into_iter().map(Job::Blocks));
    let queue = std::sync::Mutex::new(queue.into_iter());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<(), SourceError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|worker| {
                let (queue, failed, head, map, toc_file) = (&queue, &failed, &head, &map, &toc_file);
                scope.spawn(move || -> Result<(), SourceError> {
                    let list = work.join(format!("data-{worker}.list"));
                    loop {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            return Ok(());
                        }
                        let Some(job) = queue.lock().expect("queue").next() else { return Ok(()) };
                        let result = match job {
                            Job::Rest(ids) => write_list(&list, &ids).and_then(|_| {
                                pg_restore.run(&["--section=data", &format!("--use-list={}", list.display())], toc_file)
                            }),
                            Job::Blocks(batch) => write_list(&list, &batch.ids).and_then(|_| {
                                pg_restore.run_fed(
                                    &["--section=data", &format!("--use-list={}", list.display())],
                                    |stdin| {
                                        stdin
                                            .write_all(head)
                                            .map_err(|e| tool_error(format!("writing to pg_restore: {e}")))?;
                                        restorer.dump_range(map, batch.range.clone(), stdin)?;
                                        Ok(())
                                    },
                                )
                            }),
                        };
                        if result.is_err() {
                            failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            return result;
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("restore worker")).collect()
    });
    for result in results {
        result?;
    }
    pg_restore.run(&["--section=post-data", &format!("--jobs={jobs}")], &toc_file)?;
    Ok(Restored { bytes: map.len(), method: "direct" })
}

fn via_file(
    archive: &StoredArchive<'_>,
    layout: Option<&ArchiveLayout>,
    pg_restore: &PgRestore<'_>,
    jobs: usize,
    replace: bool,
    work: &Path,
) -> Result<Restored, SourceError> {
    let path = work.join("archive.dump");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| local_io(&path.display().to_string(), e))?;
    let bytes = archive.restorer.dump(archive.content, &mut file)?;
    if let Some(layout) = layout {
        // Fill in the data offsets pg_dump could not, so that pg_restore's workers seek instead of scan.
        let mut head = vec![0u8; layout.toc_end as usize];
        let io = |e| local_io(&path.display().to_string(), e);
        file.seek(SeekFrom::Start(0)).and_then(|_| file.read_exact(&mut head)).map_err(io)?;
        if let Ok(Some(toc)) = parse_toc(&head) {
            toc.set_offsets(&mut head, &layout.blocks);
            file.seek(SeekFrom::Start(0)).and_then(|_| file.write_all(&head)).map_err(io)?;
        }
    }
    drop(file);
    let jobs_arg = format!("--jobs={jobs}");
    let mut args = vec![jobs_arg.as_str()];
    if replace {
        args.extend(["--clean", "--if-exists"]);
    }
    pg_restore.run(&args, &path)?;
    Ok(Restored { bytes, method: "file" })
}

enum Job {
    Rest(Vec<i64>),
    Blocks(Batch),
}

/// A run of adjacent data blocks restored by one pg_restore.
#[derive(Debug, PartialEq, Eq)]
struct Batch {
    ids: Vec<i64>,
    range: std::ops::Range<u64>,
}

/// Blocks of at least this size get a pg_restore each; smaller neighbours share one up to this size.
const BATCH_BYTES: u64 = 32 << 20;

/// Groups blocks into runs of adjacent blocks, so that many small tables do not cost a process each.
fn batches(blocks: &[DataBlock]) -> Vec<Batch> {
    let mut sorted = blocks.to_vec();
    sorted.sort_by_key(|b| b.offset());
    let mut out: Vec<Batch> = Vec::new();
    let mut open: Option<Batch> = None;
    for block in sorted {
        let joins = matches!(&open, Some(b) if b.range.end == block.offset() && b.range.end - b.range.start + block.len() <= BATCH_BYTES);
        if joins {
            let b = open.as_mut().expect("open batch");
            b.ids.push(block.dump_id());
            b.range.end = block.end();
        } else {
            out.extend(open.take());
            open = Some(Batch { ids: vec![block.dump_id()], range: block.offset()..block.end() });
        }
    }
    out.extend(open);
    out
}

/// A 1 MiB pipe instead of 64 KiB: pg_restore reads row-sized pieces, and a wider pipe means far fewer
/// wake-ups of the two processes. Best effort: the kernel may refuse (then the default stays).
fn widen_pipe(stdin: &ChildStdin) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own changes only its buffer size.
    unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}

fn write_list(path: &Path, ids: &[i64]) -> Result<(), SourceError> {
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(path, text).map_err(|e| local_io(&path.display().to_string(), e))
}

fn check(status: std::process::ExitStatus, stderr: &[u8]) -> Result<(), SourceError> {
    if status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(stderr);
    Err(tool_error(if err.trim().is_empty() { status.to_string() } else { last_lines(&err, 3) }))
}

fn tool_error(detail: String) -> SourceError {
    SourceError::Tool { tool: "pg_restore".into(), detail }
}

fn corrupt(why: &str) -> SourceError {
    SourceError::Engine(bunker_engine::Error::Corrupt(format!("stored PostgreSQL archive: {why}")))
}

fn local_io(what: &str, e: std::io::Error) -> SourceError {
    SourceError::Config(format!("cannot use {what}: {e}; check the free space and permissions of TMPDIR"))
}

/// Tables, views and sequences outside the system schemas.
fn user_relations(conn: &ConnInfo) -> Result<i64, SourceError> {
    let mut client = conn.connect()?;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .map_err(|e| SourceError::Query { target: conn.display(), detail: error_text(&e) })?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_adjacent_blocks_share_a_batch_and_large_ones_stand_alone() {
        const M: u64 = 1 << 20;
        let blocks = [
            DataBlock(5, 100, 10 * M),
            DataBlock(3, 100 + 10 * M, 10 * M),
            DataBlock(7, 100 + 20 * M, 200 * M),
            DataBlock(4, 100 + 220 * M, M),
            DataBlock(9, 100 + 221 * M, 30 * M),
        ];
        let got = batches(&blocks);
        assert_eq!(
            got,
            [
                Batch { ids: vec![5, 3], range: 100..100 + 20 * M },
                Batch { ids: vec![7], range: 100 + 20 * M..100 + 220 * M },
                Batch { ids: vec![4, 9], range: 100 + 220 * M..100 + 251 * M },
            ]
        );
    }
}
