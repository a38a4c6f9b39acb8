//! Point-in-time recovery: pick the base backup that can reach a target, configure the restored data
//! directory to replay archived WAL up to it (`recovery.signal`, `restore_command = bunker wal-fetch`),
//! and optionally start the server and wait until recovery has reached the target.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use crate::kind::{RecoveryTarget, TargetAction};

use super::physical::PhysicalMeta;
use super::wal;
use crate::SourceError;

impl RecoveryTarget {
    /// The `recovery_target*` setting for this target, if any.
    fn setting(&self) -> Option<(&'static str, String)> {
        match self {
            RecoveryTarget::Latest => None,
            RecoveryTarget::Immediate => Some(("recovery_target", "immediate".into())),
            RecoveryTarget::Time(t) => Some(("recovery_target_time", t.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string())),
            RecoveryTarget::Lsn(l) => Some(("recovery_target_lsn", wal::format_lsn(*l))),
            RecoveryTarget::Xid(x) => Some(("recovery_target_xid", x.to_string())),
            RecoveryTarget::Name(n) => Some(("recovery_target_name", n.clone())),
        }
    }

    pub fn describe(&self) -> String {
        match self.setting() {
            None => "the end of the archived WAL".into(),
            Some((k, v)) => format!("{} {v}", k.trim_start_matches("recovery_target_")),
        }
    }
}

impl TargetAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "promote" => Some(TargetAction::Promote),
            "pause" => Some(TargetAction::Pause),
            "shutdown" => Some(TargetAction::Shutdown),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// Picks the newest base backup that ends before the target (any backup can reach "latest", a
/// transaction ID or a restore point, so those take the newest). Returns its position in `bases`.
pub fn choose_base(bases: &[PhysicalMeta], target: &RecoveryTarget, timeline: Option<u32>) -> Result<usize, String> {
    let fits = |m: &PhysicalMeta| match target {
        RecoveryTarget::Time(t) => m.stop_time <= t.with_timezone(&chrono::Utc),
        RecoveryTarget::Lsn(l) => m.stop_lsn() <= *l,
        _ => true,
    };
    let newest = bases
        .iter()
        .enumerate()
        .filter(|(_, m)| timeline.is_none_or(|t| m.timeline <= t))
        .filter(|(_, m)| fits(m))
        .max_by_key(|(_, m)| m.stop_time);
    match newest {
        Some((i, _)) => Ok(i),
        None if bases.is_empty() => Err("no physical base backup: take one with `bunker backup TARGET`".into()),
        None => {
            let oldest = bases.iter().map(|m| m.stop_time).min().expect("non-empty");
            Err(format!(
                "no base backup ends before {}: the oldest finished at {oldest} (at {}); choose a later target",
                target.describe(),
                bases.iter().min_by_key(|m| m.stop_time).map(|m| m.stop_lsn.as_str()).unwrap_or("?"),
            ))
        }
    }
}

pub struct RecoverySettings<'a> {
    pub target: &'a RecoveryTarget,
    /// `recovery_target_timeline`: `latest` (default), `current`, or a number.
    pub timeline: Option<&'a str>,
    pub action: TargetAction,
    /// The shell command PostgreSQL runs to fetch WAL (`%f` and `%p` in it).
    pub restore_command: &'a str,
    /// `archive_mode = off` in the restored cluster (drills must not archive into production's WAL).
    pub archive_off: bool,
    pub comment: &'a str,
}

/// Writes `recovery.signal` and the recovery settings into a restored data directory, replacing any
/// recovery settings an earlier restore left in `postgresql.auto.conf`; creates what the excluded
/// directories' contents leave out (`pg_wal/archive_status`); sets the directory's mode to 0700.
pub fn configure(pgdata: &Path, s: &RecoverySettings<'_>) -> Result<(), SourceError> {
    let io = |p: &Path, e: std::io::Error| SourceError::from(bunker_engine::Error::io(p, e));
    let auto = pgdata.join("postgresql.auto.conf");
    let existing = std::fs::read_to_string(&auto).unwrap_or_default();
    let mut out: Vec<String> = existing
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            !(key == "restore_command"
                || key.starts_with("recovery_target")
                || (s.archive_off && key == "archive_mode")
                || l.starts_with("# bunker restore"))
        })
        .map(str::to_owned)
        .collect();
    out.push(format!("# bunker restore: {}", s.comment));
    out.push(format!("restore_command = {}", quote(s.restore_command)));
    if let Some((key, value)) = s.target.setting() {
        out.push(format!("{key} = {}", quote(&value)));
    }
    out.push(format!("recovery_target_timeline = {}", quote(s.timeline.unwrap_or("latest"))));
    if s.target != &RecoveryTarget::Latest {
        out.push(format!("recovery_target_action = {}", quote(s.action.as_str())));
    }
    if s.archive_off {
        out.push("archive_mode = 'off'".into());
    }
    let mut text = out.join("\n");
    text.push('\n');
    std::fs::write(&auto, text).map_err(|e| io(&auto, e))?;
    std::fs::write(pgdata.join("recovery.signal"), b"").map_err(|e| io(pgdata, e))?;
    let status = pgdata.join("pg_wal/archive_status");
    std::fs::create_dir_all(&status).map_err(|e| io(&status, e))?;
    // Restored as root, the files carry their recorded owner but the directory itself is root's:
    // PostgreSQL refuses a data directory its user does not own.
    let owner = cluster_owner(pgdata);
    for p in [
        pgdata.to_path_buf(),
        auto,
        pgdata.join("recovery.signal"),
        pgdata.join("pg_wal"),
        pgdata.join("pg_wal/archive_status"),
    ] {
        chown(&p, owner);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700)).map_err(|e| io(pgdata, e))?;
    Ok(())
}

/// A postgresql.conf string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The owner of a data directory's files (`PG_VERSION`'s), which the directory itself must have.
fn cluster_owner(pgdata: &Path) -> (u32, u32) {
    let version = pgdata.join("PG_VERSION");
    if version.exists() {
        owner_of(&version)
    } else {
        owner_of(pgdata)
    }
}

fn owner_of(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| (m.uid(), m.gid())).unwrap_or((0, 0))
}

fn chown(p: &Path, (uid, gid): (u32, u32)) {
    let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
}

/// Where a started recovery ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reached {
    /// `promoted`, `paused` or `shut down`.
    pub state: String,
    pub lsn: Option<String>,
    pub last_transaction: Option<String>,
    pub timeline: Option<u32>,
    /// The server's own account of where it stopped ("recovery stopping before commit of transaction …").
    pub stop_line: Option<String>,
    pub log: PathBuf,
    pub seconds: f64,
}

/// Starts PostgreSQL on a restored, configured data directory (as the directory's owner when we are
/// root), on `port` with its socket in the data directory, and waits until recovery reaches its target
/// and the server has done what `action` says. A server that stops on a fatal error (a WAL segment that
/// cannot be read, a target past the archive's end) is reported with the log's own words.
pub fn start_and_wait(
    pgdata: &Path,
    pg_ctl: &Path,
    port: u16,
    action: TargetAction,
    timeout: Duration,
) -> Result<Reached, SourceError> {
    let log = pgdata.join("log").join("bunker-recovery.log");
    let log_dir = pgdata.join("log");
    std::fs::create_dir_all(&log_dir).map_err(|e| bunker_engine::Error::io(&log_dir, e))?;
    let owner = cluster_owner(pgdata);
    chown(&log_dir, owner);
    // pg_ctl appends: a log left by an earlier recovery would be read as this one's.
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let opts = format!("-p {port} -c unix_socket_directories='{}'", pgdata.display());
    let mut cmd = as_owner(owner, pg_ctl);
    cmd.arg("-D").arg(pgdata).arg("-l").arg(&log).arg("-o").arg(&opts).arg("-W").arg("start");
    let out =
        cmd.output().map_err(|e| SourceError::Tool { tool: pg_ctl.display().to_string(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(SourceError::Tool {
            tool: "pg_ctl start".into(),
            detail: super::logical::last_lines(&String::from_utf8_lossy(&out.stderr), 3),
        });
    }
    // Progress is read from the server's log, which needs no connection (peer authentication would
    // refuse root connecting as postgres, and a paused server may not accept one anyway).
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let fresh = text.as_str();
        let reached = |state: &str| Reached {
            state: state.into(),
            lsn: after(&text, "redo done at ").map(|v| v.split_whitespace().next().unwrap_or("").to_string()),
            last_transaction: after(&text, "last completed transaction was at log time ").map(str::to_owned),
            timeline: after(&text, "selected new timeline ID: ").and_then(|t| t.trim().parse().ok()),
            stop_line: find_line(&text, "recovery stopping"),
            log: log.clone(),
            seconds: started.elapsed().as_secs_f64(),
        };
        let done = |state: &str| {
            // Segments fetched ahead that recovery did not use.
            let _ = std::fs::remove_dir_all(pgdata.join("pg_wal/bunker-prefetch"));
            Ok(reached(state))
        };
        let promoted = fresh
            .find("archive recovery complete")
            .is_some_and(|i| fresh[i..].contains("database system is ready to accept connections"));
        if promoted && action != TargetAction::Shutdown {
            return done("promoted");
        }
        if action == TargetAction::Pause && fresh.contains("pausing at the end of recovery") {
            return done("paused");
        }
        if !postmaster_running(pgdata) {
            if action == TargetAction::Shutdown
                && text.contains("recovery stopping")
                && text.contains("database system is shut down")
            {
                return done("shut down");
            }
            if started.elapsed() > Duration::from_secs(3) || text.contains("FATAL") {
                let why = find_line(&text, "FATAL").unwrap_or_else(|| "the server stopped".into());
                return Err(SourceError::Tool {
                    tool: "recovery".into(),
                    detail: format!("PostgreSQL stopped before reaching the target: {why} (log: {})", log.display()),
                });
            }
        }
        if started.elapsed() > timeout {
            return Err(SourceError::Tool {
                tool: "recovery".into(),
                detail: format!(
                    "recovery did not reach its target within {}s; the server is still running (log: {})",
                    timeout.as_secs(),
                    log.display()
                ),
            });
        }
        bunker_engine::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What follows the last occurrence of `needle` on its line.
fn after<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().rev().find_map(|l| l.find(needle).map(|i| l[i + needle.len()..].trim()))
}

/// Stops a server started by [`start_and_wait`] (fast mode).
pub fn stop(pgdata: &Path, pg_ctl: &Path) -> Result<(), SourceError> {
    let out = as_owner(cluster_owner(pgdata), pg_ctl)
        .arg("-D")
        .arg(pgdata)
        .args(["-m", "fast", "-w", "stop"])
        .output()
        .map_err(|e| SourceError::Tool { tool: "pg_ctl stop".into(), detail: e.to_string() })?;
    if out.status.success() || !postmaster_running(pgdata) {
        Ok(())
    } else {
        Err(SourceError::Tool {
            tool: "pg_ctl stop".into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().into(),
        })
    }
}

fn find_line(text: &str, needle: &str) -> Option<String> {
    text.lines().rev().find(|l| l.contains(needle)).map(|l| {
        // Drop the log prefix (timestamp, pid) up to the severity.
        let l = l.trim();
        ["LOG:", "FATAL:", "PANIC:"]
            .iter()
            .find_map(|sev| l.find(sev).map(|i| l[i..].to_string()))
            .unwrap_or_else(|| l.to_string())
    })
}

/// Whether `postmaster.pid` names a live process.
fn postmaster_running(pgdata: &Path) -> bool {
    running_postmaster(pgdata).is_some()
}

/// The pid in `postmaster.pid`, when that process is alive (another user's counts: EPERM).
pub fn running_postmaster(pgdata: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok())?;
    // SAFETY: signal 0 only checks that the process exists.
    let alive =
        unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}

/// Refuses a data directory a running server uses, a non-empty one without `force`, and with `force`
/// anything but a data directory (it is emptied, so never a parent holding several).
pub fn check_data_dir(pgdata: &Path, force: bool) -> Result<(), SourceError> {
    if let Some(pid) = running_postmaster(pgdata) {
        return Err(SourceError::Config(format!(
            "PostgreSQL (pid {pid}) is running on {}; stop it before restoring into its data directory",
            pgdata.display()
        )));
    }
    let nonempty = std::fs::read_dir(pgdata).map(|mut d| d.next().is_some()).unwrap_or(false);
    if force && nonempty && !pgdata.join("PG_VERSION").is_file() {
        return Err(SourceError::Config(format!(
            "{} is not empty and not a PostgreSQL data directory (no PG_VERSION); --force only replaces a data directory, give a path to one or an empty directory",
            pgdata.display()
        )));
    }
    Ok(bunker_engine::restorer::ensure_empty_or_absent(pgdata, force)?)
}

/// Empties a data directory (with --force), so no file of the old cluster survives beside the restored ones.
pub fn empty_data_dir(dir: &Path) -> Result<(), SourceError> {
    let io = |p: &Path, e: std::io::Error| SourceError::from(bunker_engine::Error::io(p, e));
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        if meta.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }
            .map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// The timeline recovery from `meta`'s base backup follows — `timeline` when given (0: the backup's
/// own), else the newest archived one that holds the backup's history (PostgreSQL's own "latest" takes
/// the newest outright, and refuses to start when it branched off before the backup) — after checking
/// that the archive holds every segment recovery needs before `target`: PostgreSQL would take a hole for
/// the end of the archive and promote there, short of the target, without a word.
pub fn replay_timeline(
    repo: &bunker_engine::Repository,
    name: &str,
    meta: &PhysicalMeta,
    target: &RecoveryTarget,
    timeline: Option<u32>,
) -> Result<u32, SourceError> {
    let (Some(start), Some(stop)) = (meta.start_segment(), meta.stop_segment()) else {
        return Ok(timeline.filter(|t| *t > 0).unwrap_or(meta.timeline));
    };
    let listing = wal::list(repo, name, meta.segment_size)?;
    let timeline = match timeline {
        Some(0) => meta.timeline,
        Some(t) => t,
        None => wal::newest_reachable_timeline(repo, name, &listing, start, stop)?,
    };
    let needed = wal::needed(repo, name, &listing, start, stop, Some(timeline))?;
    let blocking: Vec<String> = wal::gaps(&listing, &needed)
        .iter()
        .filter(|g| match target {
            RecoveryTarget::Latest => true,
            RecoveryTarget::Lsn(l) => g.first.number <= l / meta.segment_size,
            _ => g.first.number <= stop.number,
        })
        .map(|g| g.describe(meta.segment_size))
        .collect();
    if blocking.is_empty() {
        return Ok(timeline);
    }
    Err(SourceError::Config(format!(
        "the WAL archive of {name} is missing {}: recovery would stop there, short of {}; restore to a point before it (--to-time, --to-lsn) or repair the archive (`bunker wal verify` lists what is missing)",
        blocking.join(", "),
        target.describe()
    )))
}

/// A command run as the data directory's owner when we are root (PostgreSQL refuses to run as root).
fn as_owner((uid, _): (u32, u32), program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    let mut c = if unsafe { libc::geteuid() } == 0 && uid != 0 {
        let name = user_name(uid).unwrap_or_else(|| "postgres".into());
        let mut c = Command::new("runuser");
        c.args(["-u", &name, "--"]).arg(program);
        c.current_dir("/");
        c
    } else {
        Command::new(program)
    };
    bunker_engine::child::scrub_secrets(&mut c);
    c
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(stop: &str, lsn: &str, tli: u32) -> PhysicalMeta {
        let t = chrono::DateTime::parse_from_rfc3339(stop).unwrap().with_timezone(&chrono::Utc);
        PhysicalMeta {
            server_version: "15".into(),
            server_version_num: 150000,
            system_identifier: "1".into(),
            timeline: tli,
            start_lsn: lsn.into(),
            stop_lsn: lsn.into(),
            start_wal: String::new(),
            stop_wal: String::new(),
            start_time: t,
            stop_time: t,
            segment_size: wal::DEFAULT_SEGMENT_SIZE,
            data_directory: String::new(),
            backup_label: String::new(),
            method: "local".into(),
        }
    }

    #[test]
    fn the_newest_base_backup_before_the_target_is_chosen() {
        let bases = [
            meta("2026-11-01T01:00:00Z", "0/3000000", 1),
            meta("2026-11-02T01:00:00Z", "0/9000000", 1),
            meta("2026-11-03T01:00:00Z", "0/F000000", 2),
        ];
        let at = |s: &str| RecoveryTarget::Time(chrono::DateTime::parse_from_rfc3339(s).unwrap());
        assert_eq!(choose_base(&bases, &RecoveryTarget::Latest, None), Ok(2));
        assert_eq!(choose_base(&bases, &at("2026-11-02T12:00:00+00:00"), None), Ok(1));
        assert_eq!(choose_base(&bases, &at("2026-11-02T02:00:00+01:00"), None), Ok(1));
        assert_eq!(choose_base(&bases, &at("2026-11-02T01:30:00+01:00"), None), Ok(0));
        assert_eq!(choose_base(&bases, &RecoveryTarget::Lsn(0x9000000), None), Ok(1));
        assert_eq!(choose_base(&bases, &RecoveryTarget::Latest, Some(1)), Ok(1));
        let err = choose_base(&bases, &at("2026-10-01T00:00:00Z"), None).unwrap_err();
        assert!(err.contains("no base backup ends before time 2026-10-01"), "{err}");
        assert!(choose_base(&[], &RecoveryTarget::Latest, None).unwrap_err().contains("bunker backup"));
    }

    #[test]
    fn configure_replaces_earlier_recovery_settings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("postgresql.auto.conf"),
            "port = 5433\nrecovery_target_name = 'old'\nrestore_command = 'cp x'\narchive_mode = on\n",
        )
        .unwrap();
        let target = RecoveryTarget::Name("p1".into());
        let s = RecoverySettings {
            target: &target,
            timeline: None,
            action: TargetAction::Promote,
            restore_command: "bunker wal-fetch --target main %f %p",
            archive_off: true,
            comment: "snapshot 1234",
        };
        configure(dir.path(), &s).unwrap();
        let conf = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert_eq!(
            conf,
            "port = 5433\n# bunker restore: snapshot 1234\nrestore_command = 'bunker wal-fetch --target main %f %p'\n\
             recovery_target_name = 'p1'\nrecovery_target_timeline = 'latest'\nrecovery_target_action = 'promote'\narchive_mode = 'off'\n"
        );
        assert!(dir.path().join("recovery.signal").is_file());
        assert!(dir.path().join("pg_wal/archive_status").is_dir());
    }
}
