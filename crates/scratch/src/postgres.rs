//! Scratch PostgreSQL clusters. The server binaries live in `/usr/lib/postgresql/<major>/bin` (Debian) or
//! `/usr/pgsql-<major>/bin` (RPM), not on PATH. initdb and postgres refuse to run as root, so when we are
//! root they run as the `postgres` user, in a directory that user owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, Error, Result};

const SEARCH_ROOTS: [&str; 2] = ["/usr/lib/postgresql/{major}/bin", "/usr/pgsql-{major}/bin"];

/// Where server binaries are looked for: `$BUNKER_PG_SERVER_DIRS` (colon-separated, `{major}` in each
/// replaced by the version) for installs elsewhere, else the Debian and RPM locations.
fn search_roots() -> Vec<String> {
    match std::env::var("BUNKER_PG_SERVER_DIRS") {
        Ok(v) if !v.trim().is_empty() => v.split(':').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
        _ => SEARCH_ROOTS.iter().map(|r| r.to_string()).collect(),
    }
}

/// The directory of one major version's server binaries.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub major: u32,
    pub dir: PathBuf,
}

impl PgBinaries {
    /// The binaries of exactly this major version.
    pub fn find(major: u32) -> Result<Self> {
        let candidates: Vec<PathBuf> =
            search_roots().iter().map(|r| PathBuf::from(r.replace("{major}", &major.to_string()))).collect();
        candidates
            .iter()
            .find(|d| d.join("postgres").is_file())
            .map(|d| PgBinaries { major, dir: d.clone() })
            .ok_or_else(|| Error::NoServerBinaries {
                major,
                searched: candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "),
            })
    }

    /// The newest installed major version.
    pub fn newest() -> Result<Self> {
        let mut found: Vec<u32> = Vec::new();
        for parent in ["/usr/lib/postgresql", "/usr"] {
            let Ok(rd) = std::fs::read_dir(parent) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let num = name.strip_prefix("pgsql-").unwrap_or(&name);
                if let Ok(m) = num.parse::<u32>() {
                    if Self::find(m).is_ok() {
                        found.push(m);
                    }
                }
            }
        }
        let major = found.into_iter().max().ok_or_else(|| Error::NoServer { searched: search_roots().join(", ") })?;
        Self::find(major)
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A running scratch cluster. Dropping it stops the server (immediate mode) and removes its directory.
pub struct ScratchPostgres {
    bins: PgBinaries,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres_user: bool,
    stopped: bool,
}

impl ScratchPostgres {
    /// initdb + pg_ctl start on a free port, listening on 127.0.0.1 and a socket in its own directory;
    /// trust authentication for the `postgres` superuser.
    pub fn start(bins: &PgBinaries) -> Result<Self> {
        Self::start_with(bins, &[])
    }

    /// Like [`start`](Self::start), with extra `postgresql.conf` lines (e.g. `archive_mode = on`).
    pub fn start_with(bins: &PgBinaries, settings: &[&str]) -> Result<Self> {
        Self::start_initdb(bins, settings, &[])
    }

    /// Like [`start_with`](Self::start_with), the cluster made with page checksums (`initdb -k`).
    pub fn start_with_checksums(bins: &PgBinaries, settings: &[&str]) -> Result<Self> {
        Self::start_initdb(bins, settings, &["--data-checksums"])
    }

    fn start_initdb(bins: &PgBinaries, settings: &[&str], initdb_args: &[&str]) -> Result<Self> {
        let as_postgres_user = is_root();
        let dir = tempfile::Builder::new()
            .prefix("bunker-scratch-pg-")
            .tempdir()
            .map_err(|e| Error::Io { path: std::env::temp_dir().display().to_string(), source: e })?;
        if as_postgres_user {
            chown_to_postgres(dir.path())?;
        }
        let mut pg = ScratchPostgres { bins: bins.clone(), dir, port: 0, as_postgres_user, stopped: true };
        let data = pg.data_dir();
        let mut args = vec!["-D", path_str(&data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"];
        args.extend(["--no-instructions", "--no-sync"]);
        args.extend_from_slice(initdb_args);
        pg.run("initdb", &args)?;
        let mut conf = String::from(
            "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 40\nshared_buffers = 64MB\nmax_wal_size = 1GB\n",
        );
        conf.push_str(&format!("unix_socket_directories = '{}'\n", pg.dir.path().display()));
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        let conf_path = data.join("postgresql.auto.conf");
        std::fs::write(&conf_path, conf).map_err(|e| Error::Io { path: conf_path.display().to_string(), source: e })?;
        // Another process may take a free port between our check and the server's bind: try a few.
        let mut last = None;
        for _ in 0..5 {
            pg.port = free_port()?;
            match pg.pg_ctl_start() {
                Ok(()) => {
                    pg.stopped = false;
                    return Ok(pg);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let log = self.dir.path().join("server.log");
        let port = self.port.to_string();
        let opts = format!("-p {port}");
        self.run(
            "pg_ctl",
            &["-D", path_str(&self.data_dir()), "-l", path_str(&log), "-o", &opts, "-w", "-t", "60", "start"],
        )
        .map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String =
                tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
            match e {
                Error::Command { what, .. } => Error::Command { what, detail: tail },
                other => other,
            }
        })?;
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let ok = Command::new(self.bins.bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::NotReady {
            port: self.port,
            secs: limit.as_secs(),
            log: std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn major(&self) -> u32 {
        self.bins.major
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.bins
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A libpq URL for a database on this cluster, as the superuser over TCP.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL through psql as the superuser over the cluster's socket (`ON_ERROR_STOP`), returning its
    /// unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let socket = format!("host={} port={} user=postgres dbname={database}", self.dir.path().display(), self.port);
        let out = Command::new(self.bins.bin("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &socket, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Io { path: "psql".into(), source: e })?;
        if !out.status.success() {
            return Err(Error::Command {
                what: format!("psql {}", sql.chars().take(80).collect::<String>()),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Creates a login role with a password and makes TCP connections require passwords (scram-sha-256);
    /// the local socket stays trusted for setup.
    pub fn require_password(&self, user: &str, password: &str) -> Result<()> {
        let quoted_pw = password.replace('\'', "''");
        self.psql("postgres", &format!("CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD '{quoted_pw}'"))?;
        let hba = self.data_dir().join("pg_hba.conf");
        let rules =
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n";
        self.write_as_owner(&hba, rules)?;
        self.run("pg_ctl", &["-D", path_str(&self.data_dir()), "reload"])?;
        // The superuser keeps working over the socket for psql() below.
        Ok(())
    }

    fn write_as_owner(&self, path: &Path, text: &str) -> Result<()> {
        std::fs::write(path, text).map_err(|e| Error::Io { path: path.display().to_string(), source: e })
    }

    /// Stops the server now (immediate mode), as a crash would; the directory stays until drop.
    pub fn kill(&mut self) -> Result<()> {
        if !self.stopped {
            self.stopped = true;
            self.run("pg_ctl", &["-D", path_str(&self.data_dir()), "-m", "immediate", "-w", "stop"])?;
        }
        Ok(())
    }

    /// Runs a server binary, as the `postgres` user when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let bin = self.bins.bin(program);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        crate::without_secrets(&mut cmd);
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Io { path: bin.display().to_string(), source: e })?;
        if !out.status.success() {
            let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if detail.is_empty() {
                detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            return Err(Error::Command { what: format!("{program} {}", args.join(" ")), detail });
        }
        Ok(())
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!("could not stop scratch PostgreSQL on port {}: {e}", self.port);
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn chown_to_postgres(dir: &Path) -> Result<()> {
    let out = Command::new("chown")
        .args(["postgres:postgres", path_str(dir)])
        .output()
        .map_err(|e| Error::Io { path: "chown".into(), source: e })?;
    if !out.status.success() {
        return Err(Error::Command {
            what: format!("chown postgres {}", dir.display()),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_start_in_parallel_and_vanish_on_drop() {
        let bins = PgBinaries::newest().expect("a PostgreSQL server is installed on this machine");
        let a = ScratchPostgres::start(&bins).unwrap();
        let b = ScratchPostgres::start(&bins).unwrap();
        assert_ne!(a.port(), b.port());
        a.psql("postgres", "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 10)").unwrap();
        assert_eq!(a.psql("postgres", "SELECT count(*) FROM t").unwrap(), "10");
        assert!(b.psql("postgres", "SELECT count(*) FROM t").is_err(), "clusters must not share data");
        let (dir, port) = (a.dir.path().to_path_buf(), a.port());
        drop(a);
        assert!(!dir.exists(), "scratch directory left behind");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "server still listening");
    }

    #[test]
    fn a_missing_major_version_names_the_package() {
        let err = PgBinaries::find(4).unwrap_err().to_string();
        assert!(err.contains("postgresql-4"), "{err}");
    }
}
