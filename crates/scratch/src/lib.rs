//! Scratch servers: real PostgreSQL clusters started from the installed server binaries, each in its own
//! temporary directory on its own free port, gone when dropped. Drills restore into them; tests use them to
//! stay isolated and parallel-safe.

pub mod postgres;
pub mod redis;

pub use postgres::{PgBinaries, ScratchPostgres};
pub use redis::ScratchRedis;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no PostgreSQL {major} server binaries in {searched}: install the postgresql-{major} package")]
    NoServerBinaries { major: u32, searched: String },
    #[error("no PostgreSQL server binaries found in {searched}: install a postgresql-NN package")]
    NoServer { searched: String },
    #[error("no redis-server found (PATH, /usr/bin, $BUNKER_REDIS_SERVER): install the redis-server package")]
    NoRedis,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scratch PostgreSQL on port {port} did not accept connections within {secs} s: {log}")]
    NotReady { port: u16, secs: u64, log: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Io { path: "127.0.0.1:0".into(), source: e })?;
    let port = l.local_addr().map_err(|e| Error::Io { path: "127.0.0.1:0".into(), source: e })?.port();
    Ok(port)
}

/// Scratch servers never inherit bunker's own secrets (`BUNKER_*PASSWORD*`): a server running as
/// another user (`postgres`) exposes its environment to that user.
fn without_secrets(cmd: &mut std::process::Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("BUNKER_") && n.contains("PASSWORD")) {
            cmd.env_remove(name);
        }
    }
}
