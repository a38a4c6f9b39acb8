//! Every flag, defined once; help text is derived from these doc comments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "bunker", version, about = "Backup and disaster recovery for a web platform's stateful stack")]
#[command(after_help = "Exit codes: 0 ok, 1 failure (wal-fetch: not archived), 3 done with problems (some input \
unreadable, or damaged repository files skipped), 10 no repository, 11 lock held, 12 wrong password, 126 wal-fetch could not read the archive \
(PostgreSQL aborts recovery), 130 interrupted.")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Repository: a path, file://PATH, or s3://BUCKET/PREFIX[?endpoint=URL&region=R&path-style=true]
    #[arg(
        long,
        short = 'r',
        env = "BUNKER_REPO",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub repo: Option<String>,
    /// The stack file (default: $BUNKER_CONFIG, else ./bunker.toml when present)
    #[arg(long, global = true, help_heading = "Global options")]
    pub config: Option<PathBuf>,
    /// Print data as JSON on stdout (logs stay on stderr)
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Wait up to this long for a lock held by another process (e.g. 5m)
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "0s", help_heading = "Global options")]
    pub retry_lock: std::time::Duration,
    /// More logging (-v info, -vv debug)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,
    /// Only errors on stderr; no progress
    #[arg(long, short = 'q', global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// Read without writing a lock (a read-only mount, read-only credentials, Object Lock, a full disk);
    /// readers fall back to this by themselves when the lock cannot be written
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_lock: bool,
    /// An age identity file (age-keygen's AGE-SECRET-KEY-1…, passphrase-protected with `age -p`, or an
    /// SSH private key) to read a recipients repository's content: dump, restore, drill, check
    /// --read-data, copy, wal-fetch. It opens the repository without a password
    #[arg(long, env = "BUNKER_IDENTITY_FILE", global = true, help_heading = "Global options")]
    pub identity: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository
    Init(InitArgs),
    /// Back up a target of the stack file (PostgreSQL, Redis, S3, files, command), or standard input or
    /// paths, into new snapshots
    Backup(BackupArgs),
    /// List snapshots
    Snapshots(SnapshotsArgs),
    /// Write a snapshot's stream (or one file of a tree) to stdout
    Dump(DumpArgs),
    /// What a snapshot holds: a file tree's paths (modes, sizes, mtimes), an S3 snapshot's keys (sizes,
    /// ETags, content types); only what PATH or PATTERN picks (a glob, or a path and what lies below it)
    Ls(LsArgs),
    /// One file or object across a target's snapshots: when it changed, its size and ETag in each
    Versions(VersionsArgs),
    /// Restore a snapshot: files into a directory, a PostgreSQL dump into a database or a base backup to
    /// a point in time (--pgdata), Redis into a server or an RDB file, an S3 bucket into a bucket, a
    /// command's output into its restore command
    Restore(Box<RestoreArgs>),
    /// Check a database against a PostgreSQL snapshot: row counts, foreign keys, assertions
    Verify(VerifyArgs),
    /// Verify the repository's structure and, with --read-data, every byte
    Check(CheckArgs),
    /// The catalog: every backup, restore and verify run, successful or not, as stored in the repository
    History(HistoryArgs),
    /// Remove snapshots by retention policy (restic semantics)
    Forget(ForgetArgs),
    /// Delete data no snapshot references
    Prune(PruneArgs),
    /// Rebuild the index from the packs, or remove snapshots that cannot be restored
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Repository size, dedup and compression ratios
    Stats,
    /// Recovery points: the snapshots `backup --all` or `--group` took together
    Points,
    /// Health of every target (last success and its age, failures, live RPO), the repository's size and
    /// growth, the last check and drill; exit 0 ok, 1 warning, 2 critical
    Status,
    /// Success rate over 30 days, average duration and size, and storage added per day, per target
    Report(ReportArgs),
    /// Copy snapshots, the WAL archive and the catalog incrementally to a secondary repository
    /// ([repositories.NAME] in the stack file), creating it on first use
    Copy(CopyArgs),
    /// Run the stack file's [schedules] (backups, forget+prune, rotating data checks, copies, drills, health),
    /// and with --listen serve /metrics, /healthz and /status
    Daemon(DaemonArgs),
    /// Restore a recovery point into scratch PostgreSQL, Redis, storage and directories on this host,
    /// verify it, run the smoke tests, and measure RTO and RPO against their objectives
    Drill(DrillArgs),
    /// The drills the catalog records, newest last
    Drills(DrillsArgs),
    /// The stack file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the passwords (key slots) that open the repository
    #[command(subcommand)]
    Key(KeyCommand),
    /// S3 Object Lock: keep what kept snapshots need under retention (`init --object-lock`)
    #[command(subcommand, name = "object-lock")]
    ObjectLock(ObjectLockCommand),
    /// Remove stale locks (or all with --remove-all)
    Unlock(UnlockArgs),
    /// archive_command: archive one WAL file (%p) of a physical PostgreSQL target
    #[command(name = "wal-push")]
    WalPush(WalPushArgs),
    /// restore_command: fetch one archived WAL file (%f) to %p; exit 1 when it is not archived
    #[command(name = "wal-fetch")]
    WalFetch(WalFetchArgs),
    /// The WAL archive of physical PostgreSQL targets
    #[command(subcommand)]
    Wal(WalCommand),
}

#[derive(Args, Debug)]
pub struct WalPushArgs {
    /// The physical PostgreSQL target (default: the stack file's only one)
    #[arg(long)]
    pub target: Option<String>,
    /// Also push up to N-1 further segments PostgreSQL has ready, in parallel, to keep up with bursts
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// The file to archive (archive_command's %p)
    pub path: PathBuf,
}

#[derive(Args, Debug)]
pub struct WalFetchArgs {
    /// The physical PostgreSQL target (default: the stack file's only one)
    #[arg(long)]
    pub target: Option<String>,
    /// On a miss, also fetch the next N segments in parallel into the spool directory
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub prefetch: u16,
    /// Where prefetched segments wait (default: bunker-prefetch beside the destination)
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// The archived file's name (restore_command's %f)
    pub file: String,
    /// Where to write it (restore_command's %p)
    pub dest: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum WalCommand {
    /// Check that the archive holds every segment from each base backup's start to the newest one;
    /// report gaps by segment name and the live RPO (age of the newest archived file)
    Verify {
        /// The physical PostgreSQL target (default: every physical target of the stack file)
        target: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// zstd level for stored chunks (1–22)
    #[arg(long, default_value_t = 3)]
    pub compression: i32,
    /// Chunk sizes MIN,AVG,MAX in bytes, K or M suffixes allowed (default 512K,1M,4M)
    #[arg(long, value_parser = parse_chunk_sizes)]
    pub chunk_sizes: Option<[u32; 3]>,
    /// Target pack size in MiB (1–256)
    #[arg(long, default_value_t = 16)]
    pub pack_size_mib: u32,
    /// Seal content for this age recipient (age1…, or an ssh-ed25519 / ssh-rsa public key); repeat for
    /// several. The password then opens a write-only key: backups work, reading content needs --identity
    #[arg(long = "recipient", env = "BUNKER_RECIPIENT", value_delimiter = ',')]
    pub recipients: Vec<String>,
    /// A file of recipients, one per line (`#` comments), as age's -R takes
    #[arg(long)]
    pub recipients_file: Option<PathBuf>,
    /// S3 Object Lock: write every pack, index, snapshot, key and WAL object locked for this long
    /// (e.g. 30d) on a bucket created with Object Lock enabled; `object-lock extend` keeps what kept
    /// snapshots need locked that far ahead
    #[arg(long, value_parser = humantime::parse_duration)]
    pub object_lock: Option<std::time::Duration>,
    /// The retention mode: governance (those allowed to bypass it can still delete) or compliance
    /// (nobody can before the date)
    #[arg(long, requires = "object_lock", default_value = "governance", value_parser = ["governance", "compliance"])]
    pub object_lock_mode: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct BackupArgs {
    /// A target of the stack file (bunker.toml) to back up
    #[arg(conflicts_with_all = ["stdin", "path", "name"], required_unless_present_any = ["stdin", "path", "all", "group"])]
    pub target: Option<String>,
    /// Every target of the stack file, as one recovery point (one ID and time shared by its snapshots)
    #[arg(long, conflicts_with_all = ["target", "stdin", "path", "name", "group"])]
    pub all: bool,
    /// The targets of this group of the stack file ([groups] NAME = [targets]), as one recovery point
    #[arg(long, conflicts_with_all = ["target", "stdin", "path", "name"])]
    pub group: Option<String>,
    /// Read the data to back up from standard input
    #[arg(long, conflicts_with = "path", requires = "name")]
    pub stdin: bool,
    /// Files or directories to back up
    #[arg(long = "path", num_args = 1.., requires = "name")]
    pub path: Vec<PathBuf>,
    /// Name for the snapshot (with --stdin or --path)
    #[arg(long)]
    pub name: Option<String>,
    /// Tag for the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Glob of paths to leave out (repeatable), matched against the path below the backed-up
    /// directory and against the file name
    #[arg(long)]
    pub exclude: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots of this target
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot: ID or unique prefix, latest, or NAME:latest
    pub snapshot: String,
    /// Only this path (and what lies below it) or what this glob matches (`uploads/*.jpg`, `**/*.conf`)
    pub pattern: Option<String>,
    /// Sizes, times, modes, ETags and content types too
    #[arg(short, long)]
    pub long: bool,
}

#[derive(Args, Debug)]
pub struct VersionsArgs {
    /// The snapshots' name: a target (or TARGET/NAME for one of its several)
    pub target: String,
    /// The file's path or the object's key, as `bunker ls` shows it
    pub path: String,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot: ID or unique prefix, latest, or NAME:latest
    pub snapshot: String,
    /// For a file-tree snapshot: the file to write (e.g. etc/app.conf)
    pub path: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// Snapshot: NAME (its latest), NAME:ID-PREFIX, an ID or unique prefix, or latest
    #[arg(required_unless_present = "point", conflicts_with = "point")]
    pub snapshot: Option<String>,
    /// Restore every target of this recovery point (an ID from `bunker points`, or latest) where its
    /// stack file says it lives: PostgreSQL dumps into their databases, Redis into its server, S3 into its
    /// bucket, command outputs into their restore command; files into --to DIR/TARGET, physical
    /// PostgreSQL into --pgdata DIR (DIR/TARGET with several) recovered to the point's time
    #[arg(long, conflicts_with_all = ["into", "rdb_file", "exec", "include"])]
    pub point: Option<String>,
    /// Directory to restore a file tree (or an S3 snapshot's objects, a file per key) into (created if
    /// missing). Without --to, --into, --pgdata, --rdb-file or --exec, the snapshot goes back where its
    /// target lives according to the stack file
    #[arg(long, conflicts_with = "into")]
    pub to: Option<PathBuf>,
    /// Database to restore a PostgreSQL snapshot into: a libpq URL, or a database name on the
    /// target's server (created if missing); for a Redis snapshot, a redis:// or rediss:// URL; for an S3
    /// snapshot, s3://BUCKET/PREFIX[?endpoint=URL&region=R&path-style=true]
    #[arg(long)]
    pub into: Option<String>,
    /// Write a Redis snapshot as an RDB file (for a server's data directory)
    #[arg(long, conflicts_with_all = ["to", "into", "pgdata"])]
    pub rdb_file: Option<PathBuf>,
    /// Change nothing, run no hook: an S3 snapshot lists what would be written and deleted; the other
    /// kinds (and each snapshot of --point) say what would be restored where
    #[arg(long)]
    pub dry_run: bool,
    /// For an S3 snapshot: delete objects in the destination that the snapshot does not have
    #[arg(long, requires = "into")]
    pub delete_extra: bool,
    /// Feed the snapshot to a command's standard input: the target's `restore` command, or the one
    /// given here
    #[arg(long, num_args = 0..=1, value_name = "COMMAND", conflicts_with_all = ["to", "into", "pgdata", "rdb_file"])]
    pub exec: Option<Option<String>>,
    /// Parallel pg_restore jobs (default: the number of cores)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Skip checking the restored database against the snapshot
    #[arg(long)]
    pub no_verify: bool,
    /// First restore roles and tablespaces (the target's TARGET/globals snapshot), then keep owners
    /// and privileges
    #[arg(long, requires = "into")]
    pub with_globals: bool,
    /// Restore only paths (S3: keys) matching this glob (and what lies under them); repeatable
    #[arg(long)]
    pub include: Vec<String>,
    /// S3: leave out keys matching this glob (and what lies under them); repeatable
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Redis: restore only the keys this pattern matches (`session:*`), with their TTLs
    #[arg(long = "match", value_name = "PATTERN")]
    pub match_keys: Option<String>,
    /// Redis: restore only this database's keys
    #[arg(long)]
    pub db: Option<u32>,
    /// Write into a non-empty directory, replacing files of the same name (with --pgdata: emptying it
    /// first)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub pitr: PitrArgs,
}

/// Point-in-time recovery of a physical PostgreSQL target.
#[derive(Args, Debug, Clone, Default)]
pub struct PitrArgs {
    /// Restore a physical PostgreSQL target into this data directory (base backup, then WAL replay)
    #[arg(long, conflicts_with_all = ["to", "into"])]
    pub pgdata: Option<PathBuf>,
    /// Recover up to this time (RFC 3339 or "YYYY-MM-DD HH:MM:SS[+TZ]"; local time without a zone)
    #[arg(long, requires = "pgdata", group = "recovery_target")]
    pub to_time: Option<String>,
    /// Recover up to this WAL location (e.g. 0/3000148)
    #[arg(long, requires = "pgdata", group = "recovery_target")]
    pub to_lsn: Option<String>,
    /// Recover up to and including this transaction ID
    #[arg(long, requires = "pgdata", group = "recovery_target")]
    pub to_xid: Option<u64>,
    /// Recover up to this restore point (pg_create_restore_point)
    #[arg(long, requires = "pgdata", group = "recovery_target")]
    pub to_name: Option<String>,
    /// Stop as soon as the base backup is consistent
    #[arg(long, requires = "pgdata", group = "recovery_target")]
    pub immediate: bool,
    /// The timeline to recover along: latest (default), current, or a number
    #[arg(long, requires = "pgdata")]
    pub timeline: Option<String>,
    /// What the server does at the target: promote (default), pause or shutdown
    #[arg(long, requires = "pgdata", default_value = "promote")]
    pub target_action: String,
    /// Start PostgreSQL on the restored directory and wait until recovery reaches the target
    #[arg(long, requires_all = ["pgdata", "port"])]
    pub start: bool,
    /// Port for --start
    #[arg(long, requires = "start")]
    pub port: Option<u16>,
    /// Give up waiting for recovery after this long (with --start)
    #[arg(long, requires = "start", value_parser = humantime::parse_duration, default_value = "1h")]
    pub start_timeout: std::time::Duration,
    /// Keep WAL archiving on in the restored cluster, into the same target (for a cluster that replaces
    /// the lost one). Off by default: a test copy that promoted and archived would add a timeline to
    /// production's archive.
    #[arg(long, requires = "pgdata")]
    pub keep_archiving: bool,
    /// The restore_command to write instead of bunker's own wal-fetch invocation
    #[arg(long, requires = "pgdata")]
    pub restore_command: Option<String>,
}

impl RestoreArgs {
    /// The snapshot selector (empty with --point, which restores snapshots one by one).
    pub fn snapshot(&self) -> &str {
        self.snapshot.as_deref().unwrap_or("")
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Snapshot: NAME (its latest), NAME:ID-PREFIX, or an ID
    pub snapshot: String,
    /// The database to check: a libpq URL, or a database name on the target's server
    #[arg(long)]
    pub against: String,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Only runs of this target or snapshot name (a target also matches its TARGET/DB snapshots)
    #[arg(long)]
    pub target: Option<String>,
    /// Only runs of this operation: backup, restore, verify…
    #[arg(long)]
    pub operation: Option<String>,
    /// Only runs started within this long (7d, 24h) or since this date (2026-11-01, RFC 3339)
    #[arg(long, value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only runs that did not succeed
    #[arg(long)]
    pub failed: bool,
}

fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        let d = chrono::Duration::from_std(d).map_err(|_| format!("{s:?} is too long ago"))?;
        return Ok(chrono::Utc::now() - d);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
        if let Some(t) = midnight.and_local_timezone(chrono::Local).earliest() {
            return Ok(t.with_timezone(&chrono::Utc));
        }
    }
    Err(format!("{s:?} is neither a duration (7d, 24h) nor a date (2026-11-01, or RFC 3339)"))
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The period reported on (a duration such as 30d, or a date)
    #[arg(long, value_parser = parse_since, default_value = "30d")]
    pub since: chrono::DateTime<chrono::Utc>,
    /// Only this target
    #[arg(long)]
    pub target: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CopyArgs {
    /// The secondary repository: a [repositories.NAME] of the stack file
    #[arg(long)]
    pub to: String,
    /// Copy only snapshots of this name (default: every snapshot)
    #[arg(long)]
    pub name: Option<String>,
    /// Show what would be copied without copying
    #[arg(long)]
    pub dry_run: bool,
    /// Create the secondary as a recipients repository sealing content for this age recipient (repeat for
    /// several): a password repository's history moves into it, its content sealed again on the way
    #[arg(long = "recipient", value_delimiter = ',')]
    pub recipients: Vec<String>,
    /// A file of recipients for the secondary, one per line
    #[arg(long)]
    pub recipients_file: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Serve /metrics (Prometheus), /healthz and /status on this address, e.g. 127.0.0.1:9187
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// How often the metrics are refreshed from the catalog between jobs
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub refresh: std::time::Duration,
    /// Do not run schedules missed while the daemon was down
    #[arg(long)]
    pub no_catch_up: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DrillArgs {
    /// The recovery point to drill: `latest`, or an ID from `bunker points`. Default: the newest point
    /// (without points, or with --targets or --group: each target's newest complete snapshot)
    #[arg(long)]
    pub point: Option<String>,
    /// Only these targets, each's newest complete snapshot (of the point with --point); default:
    /// [drill] targets, else all
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub targets: Vec<String>,
    /// The targets of this group of the stack file, each's newest complete snapshot, and only the
    /// group's smoke tests (`[groups.NAME] after_restore`)
    #[arg(long)]
    pub group: Option<String>,
    /// Leave the scratch servers and directories in place and print how to connect to them
    #[arg(long)]
    pub keep: bool,
    /// Write a self-contained HTML report (per-target table, checks, RTO against the objective, history)
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct DrillsArgs {
    /// Only drills since (a duration such as 90d, or a date)
    #[arg(long, value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Write the HTML report of the newest drill, with the RTO history, to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check the stack file and report every error with its line; exit 1 when there is any
    Check,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read and verify every pack
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read and verify a random share of packs (10%), or part n of N fixed parts (2/7: checking 1/7 to
    /// 7/7 in turn reads every pack once)
    #[arg(long, value_parser = parse_subset)]
    pub read_data_subset: Option<DataSubset>,
}

fn parse_chunk_sizes(s: &str) -> Result<[u32; 3], String> {
    let sizes: Vec<u32> = s
        .split(',')
        .map(|p| {
            let p = p.trim().trim_end_matches("iB").trim_end_matches('B');
            let (num, mult) = match p.chars().last() {
                Some('K' | 'k') => (&p[..p.len() - 1], 1024),
                Some('M' | 'm') => (&p[..p.len() - 1], 1024 * 1024),
                _ => (p, 1),
            };
            num.parse::<u32>().map(|n| n * mult).map_err(|_| format!("{s:?}: {p:?} is not a size"))
        })
        .collect::<Result<_, _>>()?;
    sizes.try_into().map_err(|_| format!("{s:?}: give three sizes MIN,AVG,MAX"))
}

/// `check --read-data-subset`: a percentage, or part n of N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataSubset {
    Percent(f64),
    Part { n: u32, of: u32 },
}

fn parse_subset(s: &str) -> Result<DataSubset, String> {
    if let Some((n, of)) = s.split_once('/') {
        let bad = || format!("{s:?} is not a part like 2/7 (n from 1 to N)");
        let (n, of): (u32, u32) = (n.trim().parse().map_err(|_| bad())?, of.trim().parse().map_err(|_| bad())?);
        if n == 0 || of == 0 || n > of {
            return Err(bad());
        }
        return Ok(DataSubset::Part { n, of });
    }
    parse_percent(s).map(DataSubset::Percent)
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim_end_matches('%').parse().map_err(|_| format!("{s:?} is not a percentage like 10%"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{s:?} is not between 0% and 100%"));
    }
    Ok(v)
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Keep the N newest snapshots
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_daily: Option<u32>,
    /// … of the last N ISO weeks
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_weekly: Option<u32>,
    /// … of the last N months
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_monthly: Option<u32>,
    /// … of the last N years
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot younger than this, counted back from the newest (e.g. 7d, 2w)
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keep_within: Option<std::time::Duration>,
    /// Never remove snapshots younger than this, counted back from now. Without it, the floor of
    /// --keep-* rules and of the stack file's policies alike is the stack file's min_age (7 days by
    /// default) for targets it gives a retention policy ([retention] for other names), else none
    #[arg(long, value_parser = humantime::parse_duration)]
    pub min_age: Option<std::time::Duration>,
    /// Only snapshots of this target
    #[arg(long)]
    pub name: Option<String>,
    /// Show what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Prune afterwards
    #[arg(long)]
    pub prune: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Show what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers: packs no readable index lists (or, with
    /// --read-all-packs, every pack) are read, then one new index replaces the old index files
    Index {
        /// Read every pack's header, not only those of packs missing from the index
        #[arg(long)]
        read_all_packs: bool,
        /// Read every pack whole: the blobs of a damaged pack that still open are saved into new packs
        #[arg(long)]
        read_data: bool,
        /// Show what would change, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove snapshot files that cannot be read, snapshots whose trees or blobs are gone, and damaged
    /// records of the catalog
    Snapshots {
        /// List what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a password (from BUNKER_NEW_PASSWORD, BUNKER_NEW_PASSWORD_FILE, or a prompt)
    Add {
        /// The slot opens a write key only (back up, list, status; no content): a recipients
        /// repository's password slots are always write-only, and this asserts it
        #[arg(long)]
        write_only: bool,
    },
    /// List key slots
    List,
    /// Remove a key slot by ID prefix (never the one in use)
    Remove { id: String },
    /// Change the password of the key in use
    Passwd,
}

#[derive(Subcommand, Debug)]
pub enum ObjectLockCommand {
    /// Move the retain-until date of every object a kept snapshot still needs (packs it uses, index,
    /// snapshot, key, WAL objects) to at least the lock period ahead; the daemon runs it after backups
    Extend {
        /// Say how many objects would be extended, extend nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove all locks, not only stale ones
    #[arg(long)]
    pub remove_all: bool,
}
