//! Connecting the way libpq does, for bunker's own connection and for the tools it runs: the target's
//! URL first, then the `PG*` environment variables for whatever it leaves out, then `~/.pgpass`
//! (`PGPASSFILE`) for the password; `sslmode` as libpq defines it. The password is never put on a command
//! line: child processes get it through `PGPASSWORD`, and it never appears in errors or logs.

use std::path::PathBuf;
use std::str::FromStr;

use crate::SourceError;

/// Where and how to connect, resolved; `password` is kept out of `Debug`.
#[derive(Clone)]
pub struct ConnInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    password: Option<String>,
    pub sslmode: SslMode,
    /// The CA certificates (PEM) a verify-ca / verify-full server certificate must chain to, as libpq's
    /// `sslrootcert` (`PGSSLROOTCERT`, else `~/.postgresql/root.crt` when present).
    pub sslrootcert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<Self, SourceError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(SourceError::Config(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )))
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.display())
    }
}

impl ConnInfo {
    /// Resolves a libpq URL (`postgresql://user:pass@host:port/db?sslmode=…`) or keyword string.
    pub fn resolve(url: &str) -> Result<Self, SourceError> {
        Self::resolve_with(url, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn resolve_with(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, SourceError> {
        // libpq accepts a URL without a host (`postgresql:///db`, `postgresql://user@/db`): the host then
        // comes from PGHOST or the default socket. tokio-postgres does not, so stand a placeholder in.
        // sslmode is read below with all six libpq values; tokio-postgres would reject verify-ca/-full.
        let with_host = fill_empty_host(&without_param(&without_param(url, "sslmode"), "sslrootcert"));
        let cfg = postgres::Config::from_str(&with_host).map_err(|e| {
            SourceError::Config(format!(
                "cannot parse the PostgreSQL URL ({e}); expected postgresql://USER@HOST:PORT/DB"
            ))
        })?;
        let host = match cfg.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) if h == NO_HOST => {
                env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into())
            }
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".to_string()),
        };
        // tokio-postgres reports 5432 when the URL names no port; libpq then takes PGPORT.
        let port = match explicit_port(url).or_else(|| env("PGPORT")) {
            Some(p) => p.parse().map_err(|_| SourceError::Config(format!("port {p:?} is not a port number")))?,
            None => 5432,
        };
        let user = cfg
            .get_user()
            .map(str::to_string)
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        let dbname = cfg.get_dbname().map(str::to_string).or_else(|| env("PGDATABASE")).unwrap_or_else(|| user.clone());
        // tokio-postgres parses sslmode but knows only three values; read libpq's six ourselves.
        let sslmode = match query_param(url, "sslmode").or_else(|| env("PGSSLMODE")) {
            Some(m) => SslMode::parse(&m)?,
            None => SslMode::Prefer,
        };
        let password = cfg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .or_else(|| env("PGPASSWORD"))
            .or_else(|| pgpass_lookup(env, &host, port, &dbname, &user));
        let sslrootcert =
            query_param(url, "sslrootcert").or_else(|| env("PGSSLROOTCERT")).map(PathBuf::from).or_else(|| {
                let default = PathBuf::from(env("HOME")?).join(".postgresql/root.crt");
                default.exists().then_some(default)
            });
        Ok(ConnInfo { host, port, user, dbname, password, sslmode, sslrootcert })
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> ConnInfo {
        ConnInfo { dbname: dbname.to_string(), ..self.clone() }
    }

    /// `user@host:port/db`, for messages: no password.
    pub fn display(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// A keyword conninfo for libpq tools, without the password.
    pub fn libpq_conninfo(&self) -> String {
        let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut info = format!(
            "host={} port={} user={} dbname={} sslmode={}",
            q(&self.host),
            self.port,
            q(&self.user),
            q(&self.dbname),
            self.sslmode.as_str()
        );
        if let Some(root) = &self.sslrootcert {
            info.push_str(&format!(" sslrootcert={}", q(&root.display().to_string())));
        }
        info
    }

    /// A libpq tool (`pg_dump`, `pg_restore`, `psql`…) aimed at this database: `--dbname` without the
    /// password, which goes through the environment (never the command line); never prompts; no stdin.
    pub fn tool(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        bunker_engine::child::scrub_secrets(&mut cmd)
            .arg("--no-password")
            .arg(format!("--dbname={}", self.libpq_conninfo()))
            .env_remove("PGPASSWORD")
            .stdin(std::process::Stdio::null());
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd
    }

    #[cfg(test)]
    fn child_env(&self) -> Vec<(&'static str, String)> {
        self.password.iter().map(|p| ("PGPASSWORD", p.clone())).collect()
    }

    /// Opens bunker's own connection.
    pub fn connect(&self) -> Result<postgres::Client, SourceError> {
        let mut cfg = postgres::Config::new();
        cfg.host(&self.host).port(self.port).user(&self.user).dbname(&self.dbname).application_name("bunker");
        cfg.connect_timeout(std::time::Duration::from_secs(15));
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        let fail = |e: postgres::Error| SourceError::Connect { target: self.display(), detail: error_text(&e) };
        match self.sslmode {
            SslMode::Disable | SslMode::Allow => cfg.connect(postgres::NoTls).map_err(fail),
            mode => {
                cfg.ssl_mode(if mode == SslMode::Prefer {
                    postgres::config::SslMode::Prefer
                } else {
                    postgres::config::SslMode::Require
                });
                // libpq: require checks nothing about the certificate, verify-ca checks the chain,
                // verify-full also the host name.
                let setup = |detail: String| SourceError::Connect { target: self.display(), detail };
                let mut tls = native_tls::TlsConnector::builder();
                tls.danger_accept_invalid_certs(matches!(mode, SslMode::Prefer | SslMode::Require))
                    .danger_accept_invalid_hostnames(mode != SslMode::VerifyFull);
                if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
                    // As libpq: the server's certificate must chain to sslrootcert's CAs, and only those.
                    let Some(root) = &self.sslrootcert else {
                        return Err(setup(format!(
                            "sslmode={} needs the CA certificate to check the server's against: set sslrootcert=PATH in the URL or PGSSLROOTCERT, or use sslmode=require",
                            mode.as_str()
                        )));
                    };
                    let pem = std::fs::read(root)
                        .map_err(|e| setup(format!("cannot read sslrootcert {}: {e}", root.display())))?;
                    let certs = native_tls::Certificate::stack_from_pem(&pem)
                        .map_err(|e| setup(format!("sslrootcert {} holds no PEM certificate: {e}", root.display())))?;
                    tls.disable_built_in_roots(true);
                    for cert in certs {
                        tls.add_root_certificate(cert);
                    }
                }
                let tls = tls.build().map_err(|e| setup(format!("TLS setup: {e}")))?;
                cfg.connect(postgres_native_tls::MakeTlsConnector::new(tls)).map_err(fail)
            }
        }
    }
}

/// The server's message (or the I/O cause) without the driver's framing.
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                s.push_str(": ");
                s.push_str(&c.to_string());
                cause = c.source();
            }
            s
        }
    }
}

const NO_HOST: &str = "bunker-no-host-given";

/// The port written in the URL (`host:port`) or keyword string (`port=`), if any.
fn explicit_port(url: &str) -> Option<String> {
    let Some((_, rest)) = url.split_once("://") else { return query_param(url, "port") };
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = host.rsplit_once(':').map(|(_, p)| p).filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port.map(str::to_string).or_else(|| query_param(url, "port"))
}

/// The URL or keyword string without `key=…`.
fn without_param(url: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else { return url.to_string() };
        let kept: Vec<&str> = query.split('&').filter(|kv| !kv.starts_with(&prefix)).collect();
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        url.split_whitespace().filter(|kv| !kv.starts_with(&prefix)).collect::<Vec<_>>().join(" ")
    }
}

fn fill_empty_host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if !host.is_empty() {
        return url.to_string();
    }
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{NO_HOST}{tail}"),
        None => format!("{scheme}://{NO_HOST}{tail}"),
    }
}

fn query_param(url: &str, key: &str) -> Option<String> {
    if url.contains("://") {
        let query = url.split_once('?')?.1;
        query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
    } else {
        url.split_whitespace().find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
    }
}

/// `~/.pgpass` lines `host:port:db:user:password`, `*` matching anything, first match wins.
fn pgpass_lookup(env: &dyn Fn(&str) -> Option<String>, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path =
        env("PGPASSFILE").map(PathBuf::from).or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let port = port.to_string();
    let host = if host.starts_with('/') { "localhost" } else { host };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields = split_pgpass(line);
        if fields.len() != 5 {
            continue;
        }
        let matches = |field: &str, value: &str| field == "*" || field == value;
        if matches(&fields[0], host)
            && matches(&fields[1], &port)
            && matches(&fields[2], db)
            && matches(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

/// Splits a .pgpass line on unescaped `:` (`\:` and `\\` are escapes).
fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("non-empty").push(n);
                }
            }
            ':' => out.push(String::new()),
            c => out.last_mut().expect("non-empty").push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn url_then_environment_then_defaults() {
        let c =
            ConnInfo::resolve_with("postgresql://app:s3cret@db.internal:6543/shop?sslmode=verify-full", &env_of(&[]))
                .unwrap();
        assert_eq!((c.host.as_str(), c.port, c.user.as_str(), c.dbname.as_str()), ("db.internal", 6543, "app", "shop"));
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.child_env(), vec![("PGPASSWORD", "s3cret".to_string())]);
        assert!(!format!("{c:?}").contains("s3cret") && !c.libpq_conninfo().contains("s3cret"));

        let env = env_of(&[("PGHOST", "10.0.0.5"), ("PGPORT", "5433"), ("PGUSER", "ops"), ("PGSSLMODE", "require")]);
        let c = ConnInfo::resolve_with("postgresql:///analytics", &env).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str(), c.dbname.as_str()),
            ("10.0.0.5", 5433, "ops", "analytics")
        );
        assert_eq!(c.sslmode, SslMode::Require);
        assert!(ConnInfo::resolve_with("postgresql://h/db?sslmode=bogus", &env_of(&[])).is_err());
    }

    #[test]
    fn pgpass_supplies_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "# comment\nother:5432:*:*:nope\ndb\\:x:*:*:app:from\\:pgpass\ndb:*:*:app:right\n")
            .unwrap();
        let path: &'static str = Box::leak(file.to_str().unwrap().to_string().into_boxed_str());
        let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([("PGPASSFILE", path)]));
        let c = ConnInfo::resolve_with("postgresql://app@db/shop", &env_of(pairs)).unwrap();
        assert_eq!(c.child_env(), vec![("PGPASSWORD", "right".to_string())]);
    }
}
