//! Any command's standard output as a snapshot (`type = "command"`, `backup = "…"`): a search engine's
//! dump, `mysqldump`, an export script. The command runs with `sh -c`; a non-zero exit means a failed
//! run and no snapshot. Restoring feeds the snapshot to the `restore` command's standard input.

use std::io::BufRead;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use bunker_engine::backup::Backup;
use bunker_engine::snapshot::Root;

use crate::{Captured, Planned, Source, SourceError};

/// Snapshot kind.
pub const KIND: &str = "command";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandOptions {
    backup: String,
    restore: Option<String>,
}

pub struct CommandSource {
    pub command: String,
}

/// A `type = "command"` target: one snapshot of its command's output.
pub fn plan(target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
    let opts: CommandOptions = target.options()?;
    if opts.backup.trim().is_empty() {
        return Err(SourceError::Config(format!("target {}: backup is empty; give the command to run", target.name)));
    }
    Ok(vec![Planned { snapshot_name: target.name.clone(), source: Box::new(CommandSource { command: opts.backup }) }])
}

/// The target's `restore` command.
pub fn restore_command(target: &bunker_config::TargetConfig) -> Result<Option<String>, SourceError> {
    Ok(target.options::<CommandOptions>()?.restore)
}

/// The last lines a command wrote to stderr, for an error message.
fn collect_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<Vec<String>> {
    let err = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            tail.push_back(line);
            if tail.len() > 3 {
                tail.pop_front();
            }
        }
        tail.into_iter().collect()
    })
}

fn failed(what: &str, status: std::process::ExitStatus, tail: &[String]) -> SourceError {
    SourceError::Tool {
        tool: format!("{what} command"),
        detail: format!("{status}{}", if tail.is_empty() { String::new() } else { format!(": {}", tail.join(" | ")) }),
    }
}

impl Source for CommandSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, SourceError> {
        let mut child = bunker_engine::child::scrub_secrets(&mut Command::new("sh"))
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SourceError::Tool { tool: "backup command".into(), detail: format!("cannot run sh: {e}") })?;
        let stderr = collect_stderr(&mut child);
        let stdout = child.stdout.take().expect("piped");
        let stored = backup.save_stream(stdout);
        if stored.is_err() {
            let _ = child.kill();
        }
        let status =
            child.wait().map_err(|e| SourceError::Tool { tool: "backup command".into(), detail: e.to_string() })?;
        let tail = stderr.join().unwrap_or_default();
        let (content, size) = stored?;
        if !status.success() {
            return Err(failed("backup", status, &tail));
        }
        Ok(Captured {
            root: Root::Stream { content, size },
            // Not the command itself: interpolated into it, a secret would end up in the snapshot.
            meta: serde_json::json!({ "exit": 0 }),
            warnings: Vec::new(),
        })
    }
}

/// Runs `command` with `input` on its standard input; fails on a non-zero exit.
pub fn run_restore(
    command: &str,
    input: impl FnOnce(&mut dyn std::io::Write) -> Result<u64, SourceError>,
) -> Result<u64, SourceError> {
    let mut child = bunker_engine::child::scrub_secrets(&mut Command::new("sh"))
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        // Its output goes to stderr: stdout stays bunker's (--json).
        .stdout(std::io::stderr().as_fd().try_clone_to_owned().map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SourceError::Tool { tool: "restore command".into(), detail: format!("cannot run sh: {e}") })?;
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().expect("piped");
    let fed = input(&mut stdin);
    drop(stdin);
    let status =
        child.wait().map_err(|e| SourceError::Tool { tool: "restore command".into(), detail: e.to_string() })?;
    let tail = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(failed("restore", status, &tail));
    }
    // A command that stops reading early (and exits 0) is its own business; a read error on our side is not.
    match fed {
        Err(SourceError::Engine(bunker_engine::Error::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(0)
        }
        other => other,
    }
}

/// `type = "command"`: a command's output, and streams backed up from standard input.
pub struct CommandKind;

impl crate::Kind for CommandKind {
    fn name(&self) -> &'static str {
        "command"
    }

    fn snapshot_kinds(&self) -> &'static [&'static str] {
        &[KIND, "stream"]
    }

    fn plan(&self, target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
        plan(target)
    }

    fn home(
        &self,
        _snapshot: &bunker_engine::Snapshot,
        _target: &bunker_config::TargetConfig,
        _base: &crate::HomeBase,
    ) -> Result<crate::Destination, SourceError> {
        Ok(crate::Destination::Exec(None))
    }

    fn restore(&self, job: &crate::RestoreJob<'_>) -> Result<crate::Restored, SourceError> {
        let snap = job.snapshot;
        let given = match job.destination {
            crate::Destination::Exec(given) => given,
            crate::Destination::Dir(_) => {
                return Err(crate::fail(format!(
                    "snapshot {} is a stream; write it out with `bunker dump {} > FILE`, feed it to a command with --exec, or restore a PostgreSQL dump with --into",
                    snap.short_id(),
                    snap.short_id()
                )))
            }
            other => {
                return Err(crate::fail(format!(
                    "snapshot {} is a command's output; feed it to a command with --exec [COMMAND], or write it out with `bunker dump {} > FILE` (not {})",
                    snap.short_id(),
                    snap.short_id(),
                    other.flag()
                )))
            }
        };
        let command = match given {
            Some(c) => c.clone(),
            None => {
                let configured = match job.target {
                    Some(t) if t.kind == "command" => restore_command(t)?,
                    _ => None,
                };
                configured.ok_or_else(|| {
                    crate::fail(format!(
                        "no restore command for {}: add restore = \"…\" to [targets.{}] or give one with --exec COMMAND",
                        snap.name, snap.name
                    ))
                })?
            }
        };
        let Root::Stream { content, .. } = &snap.root else {
            return Err(crate::fail(format!("snapshot {} is a file tree; restore it with --to DIR", snap.short_id())));
        };
        let restorer = bunker_engine::restorer::Restorer::new(job.repo, job.index);
        let started = std::time::Instant::now();
        let bytes = run_restore(&command, |stdin| Ok(restorer.dump(content, stdin)?))?;
        let size = match &snap.root {
            Root::Stream { size, .. } => *size,
            Root::Tree { .. } => 0,
        };
        // Every chunk was checked against its ID on the way; what the command got must be all of it
        // (unless it stopped reading early and exited 0, its own business).
        let problems = if bytes != size && bytes != 0 {
            vec![format!("fed {bytes} bytes to the restore command, the snapshot holds {size}")]
        } else {
            Vec::new()
        };
        Ok(crate::Restored {
            verified: true,
            problems,
            into: "its restore command".into(),
            bytes,
            lines: vec![format!(
                "fed snapshot {} ({}) to the restore command in {:.1}s",
                snap.short_id(),
                crate::size(bytes),
                started.elapsed().as_secs_f64()
            )],
            json: serde_json::json!({ "snapshot": snap.id().to_hex(), "bytes": bytes }),
            ..Default::default()
        })
    }

    fn drill(&self, job: &crate::drill::DrillJob<'_>, out: &mut crate::drill::DrillOutcome) -> Result<(), SourceError> {
        let snap = job.main()?;
        crate::drill::read_stream(job, snap, out)
    }
}
