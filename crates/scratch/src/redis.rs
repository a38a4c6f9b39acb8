//! Scratch Redis servers: `redis-server` on a free port in its own temporary directory, nothing saved
//! unless asked, stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, Error, Result};

pub struct ScratchRedis {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// The `redis-server` binary: `$BUNKER_REDIS_SERVER`, else on PATH, else Debian's.
pub fn redis_server() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BUNKER_REDIS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("redis-server")).find(|c| c.is_file()))
        .unwrap_or(None);
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file())).ok_or(Error::NoRedis)
}

impl ScratchRedis {
    /// A server with nothing in it.
    pub fn start() -> Result<Self> {
        Self::start_with(None, &[])
    }

    /// A server that first loads `rdb` (copied in), with extra `redis-server` arguments (`--requirepass x`,
    /// `--rename-command SYNC ""`…).
    pub fn start_with(rdb: Option<&Path>, args: &[&str]) -> Result<Self> {
        let bin = redis_server()?;
        let mut dir = tempfile::Builder::new()
            .prefix("bunker-scratch-redis-")
            .tempdir()
            .map_err(|e| Error::Io { path: std::env::temp_dir().display().to_string(), source: e })?;
        if let Some(rdb) = rdb {
            let to = dir.path().join("dump.rdb");
            std::fs::copy(rdb, &to).map_err(|e| Error::Io { path: to.display().to_string(), source: e })?;
        }
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut cmd = Command::new(&bin);
            crate::without_secrets(&mut cmd);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(["--dbfilename", "dump.rdb", "--daemonize", "no", "--logfile", "server.log"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = cmd.spawn().map_err(|e| Error::Io { path: bin.display().to_string(), source: e })?;
            let mut server = ScratchRedis { child, dir, port };
            match server.wait_ready(Duration::from_secs(120)) {
                Ok(()) => return Ok(server),
                Err(e) => {
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                    last = Some(e);
                    dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tempdir"));
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Until the server answers PING with PONG (not LOADING) on its port.
    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        use std::io::{Read, Write};
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Command {
                    what: "redis-server".into(),
                    detail: format!("{status}: {}", self.log_tail()),
                });
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() {
                    if let Ok(n) = s.read(&mut buf) {
                        let reply = String::from_utf8_lossy(&buf[..n]);
                        if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
                            return Ok(());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::Command { what: "redis-server".into(), detail: format!("not ready in time: {}", self.log_tail()) })
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        log.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ScratchRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_start_on_their_own_ports_and_vanish() {
        let a = ScratchRedis::start().unwrap();
        let b = ScratchRedis::start().unwrap();
        assert_ne!(a.port(), b.port());
        let (dir, port) = (a.dir().to_path_buf(), a.port());
        drop(a);
        assert!(!dir.exists());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
