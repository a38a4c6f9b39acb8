//! Hooks: a target's `before_backup`, `after_backup`, `before_restore` and `after_restore` commands, and
//! the smoke tests of drills, run with `sh -c` in their own process group, with `BUNKER_TARGET`,
//! `BUNKER_SNAPSHOT`, `BUNKER_PHASE` (and `BUNKER_STATUS` for after hooks) in their environment, and
//! killed at their timeout. Their output goes to [`Events::hook_output`].
//!
//! Failure policy: a `before_*` hook that fails (non-zero exit, or timeout) cancels the operation, which
//! is recorded as failed. The `after_*` hook runs whenever its `before_*` hook ran, even after a failure
//! (so "maintenance off" follows "maintenance on"), with `BUNKER_STATUS=success|failed`; when it fails, a
//! successful operation becomes a warning (exit 3) and its snapshot stays.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bunker_config::Hooks;

use crate::{fail, Error, Events, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    BeforeBackup,
    AfterBackup,
    BeforeRestore,
    AfterRestore,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::BeforeBackup => "before_backup",
            Phase::AfterBackup => "after_backup",
            Phase::BeforeRestore => "before_restore",
            Phase::AfterRestore => "after_restore",
        }
    }

    pub fn command(self, hooks: &Hooks) -> Option<&str> {
        match self {
            Phase::BeforeBackup => hooks.before_backup.as_deref(),
            Phase::AfterBackup => hooks.after_backup.as_deref(),
            Phase::BeforeRestore => hooks.before_restore.as_deref(),
            Phase::AfterRestore => hooks.after_restore.as_deref(),
        }
    }
}

/// What the hook sees besides its phase.
pub struct HookEnv<'a> {
    pub target: &'a str,
    pub snapshot: Option<&'a str>,
    /// `success` or `failed`, for after hooks.
    pub status: Option<&'a str>,
    /// Extra variables (the snapshot's full ID; drills put scratch endpoints here).
    pub extra: Vec<(String, String)>,
}

/// Runs a target's hook for `phase`, if it has one; `Ok(false)` when it has none.
pub fn run(hooks: &Hooks, phase: Phase, env: &HookEnv<'_>, events: &dyn Events) -> Result<bool> {
    let Some(command) = phase.command(hooks) else { return Ok(false) };
    run_command(command, hooks.timeout, phase, env, events)?;
    Ok(true)
}

/// Runs one hook command. The command as run may hold interpolated secrets: it is not logged.
pub fn run_command(
    command: &str,
    timeout: Duration,
    phase: Phase,
    env: &HookEnv<'_>,
    events: &dyn Events,
) -> Result<()> {
    tracing::info!("running the {} hook of {}", phase.name(), env.target);
    // An after hook undoes what its before hook did: it runs to its end (or timeout) even when the
    // operation was interrupted.
    let interruptible = matches!(phase, Phase::BeforeBackup | Phase::BeforeRestore);
    let mut cmd = Command::new("sh");
    bunker_engine::child::scrub_secrets(&mut cmd)
        .arg("-c")
        .arg(command)
        .env("BUNKER_TARGET", env.target)
        .env("BUNKER_PHASE", phase.name())
        .env("BUNKER_SNAPSHOT", env.snapshot.unwrap_or(""))
        .envs(env.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(status) = env.status {
        cmd.env("BUNKER_STATUS", status);
    }
    let mut child =
        cmd.spawn().map_err(|e| fail(format!("{} hook of {}: cannot run sh: {e}", phase.name(), env.target)))?;
    // Both outputs come back as lines over one channel, handed to the sink from this thread.
    let (send, lines) = std::sync::mpsc::channel::<String>();
    let outputs = [
        child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ];
    for out in outputs.into_iter().flatten() {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(std::result::Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
    }
    drop(send);
    let mut tail = std::collections::VecDeque::<String>::new();
    let take = |line: String, tail: &mut std::collections::VecDeque<String>| {
        events.hook_output(&line);
        tail.push_back(line);
        if tail.len() > 3 {
            tail.pop_front();
        }
    };
    let started = Instant::now();
    let status = loop {
        while let Ok(line) = lines.try_recv() {
            take(line, &mut tail);
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= timeout || (interruptible && bunker_engine::interrupt::requested()) {
            // The whole group: the shell and whatever it started.
            // SAFETY: kill with a negative pid signals the process group we created for the hook.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A process the hook left running in the background may hold its output open: give the readers a
    // moment, then stop waiting for them.
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => take(line, &mut tail),
            Err(_) => break,
        }
    }
    let last = tail.iter().cloned().collect::<Vec<_>>().join(" | ");
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(fail(format!(
            "{} hook of {} failed ({s}){}",
            phase.name(),
            env.target,
            if last.is_empty() { String::new() } else { format!(": {last}") }
        ))),
        None if interruptible && bunker_engine::interrupt::requested() => {
            Err(Error::Engine(bunker_engine::Error::Interrupted))
        }
        None => Err(fail(format!(
            "{} hook of {} did not finish within {}s and was killed; raise hook_timeout or fix the command",
            phase.name(),
            env.target,
            timeout.as_secs()
        ))),
    }
}
