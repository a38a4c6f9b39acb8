//! Test harness: throwaway repositories driven through the real `bunker` binary.
#![allow(dead_code)]

pub mod moto;
pub mod receiver;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use rand::{RngCore, SeedableRng};

pub const PASSWORD: &str = "correct horse battery staple";

/// A new age identity written to `dir/name` (as `age-keygen` writes it), and its public recipient.
pub struct AgeKey {
    pub identity: PathBuf,
    pub public: String,
}

pub fn age_key_in(dir: &Path, name: &str) -> AgeKey {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let identity = dir.join(name);
    std::fs::write(&identity, format!("# created by the test\n{}\n", id.to_string().expose_secret()))
        .expect("identity");
    AgeKey { identity, public: id.to_public().to_string() }
}

pub struct Repo {
    _dir: tempfile::TempDir,
    /// A scratch directory for inputs and restores.
    pub root: PathBuf,
    /// The repository directory, for local repositories.
    pub path: PathBuf,
    /// What `BUNKER_REPO` is set to.
    pub location: String,
    cache: PathBuf,
    env: Vec<(String, String)>,
    env_remove: Vec<&'static str>,
}

impl Repo {
    /// A fresh local repository with default settings.
    pub fn new() -> Repo {
        Self::with_init_args(&[])
    }

    pub fn with_init_args(args: &[&str]) -> Repo {
        let repo = Self::uninitialised(None, Vec::new(), Vec::new());
        let mut full = vec!["init"];
        full.extend_from_slice(args);
        repo.ok(&full);
        repo
    }

    /// A handle on an S3 repository at `url`, not initialised, whose commands reach it with the test
    /// credentials from the environment alone (no metadata service, no profile, none of the host's
    /// endpoints); `extra` is set after them (it may override them).
    #[allow(dead_code)]
    pub fn s3(url: String, extra: &[(&str, &str)]) -> Repo {
        let mut env: Vec<(String, String)> = [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // The last value of a variable wins.
        let mut seen = std::collections::HashSet::new();
        env.reverse();
        env.retain(|(k, _)| seen.insert(k.clone()));
        env.reverse();
        Self::uninitialised(
            Some(url),
            env,
            vec!["AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"],
        )
    }

    /// A handle on a repository location (local when `location` is None) without running `init`;
    /// `env` is set and `env_remove` cleared for every command.
    pub fn uninitialised(location: Option<String>, env: Vec<(String, String)>, env_remove: Vec<&'static str>) -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let path = root.join("repo");
        let location = location.unwrap_or_else(|| path.to_string_lossy().into_owned());
        Repo { cache: root.join("cache"), path, location, root, env, env_remove, _dir: dir }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bunker"));
        c.args(args)
            .env("BUNKER_REPO", &self.location)
            .env("BUNKER_PASSWORD", PASSWORD)
            .env("BUNKER_CACHE_DIR", &self.cache)
            .env("BUNKER_KDF_MEMORY_KIB", "1024")
            .env_remove("BUNKER_PASSWORD_FILE")
            .env_remove("BUNKER_PAUSE_AT")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        for k in &self.env_remove {
            c.env_remove(k);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run bunker")
    }

    /// [`Repo::cmd`] run as the `nobody` user (through setpriv, so only as root), for tests of what
    /// permissions stop; its scratch directory is opened to everyone first.
    pub fn cmd_as_nobody(&self, args: &[&str]) -> Command {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o777)).expect("chmod root");
        let inner = self.cmd(args);
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.env("HOME", &self.root).current_dir(&self.root).stdin(Stdio::null());
        c
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "bunker {args:?} on {} failed ({}): {}",
            self.location,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = args.to_vec();
        full.push("--json");
        serde_json::from_slice(&self.ok(&full)).expect("json output")
    }

    /// Backs up `data` from stdin; returns the new snapshot's ID.
    pub fn backup_bytes(&self, name: &str, data: &[u8]) -> String {
        let input = self.root.join(format!("input-{name}"));
        std::fs::write(&input, data).expect("write input");
        let out = self
            .cmd(&["backup", "--stdin", "--name", name, "--json"])
            .stdin(std::fs::File::open(&input).expect("input"))
            .output()
            .expect("run backup");
        let _ = std::fs::remove_file(&input);
        assert!(out.status.success(), "backup failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    pub fn dump(&self, selector: &str) -> Vec<u8> {
        self.ok(&["dump", selector])
    }

    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        self.json(&["snapshots"]).as_array().expect("snapshots array").clone()
    }

    pub fn snapshot_count(&self) -> usize {
        self.snapshots().len()
    }

    /// Bytes the repository takes on disk (everything but the temp dir).
    pub fn disk_size(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            let m = e.metadata().expect("meta");
                            if m.is_dir() {
                                walk(&e.path())
                            } else {
                                m.len()
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.path) - walk(&self.path.join("tmp"))
    }

    pub fn packs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in std::fs::read_dir(self.path.join("data")).expect("data dir").flatten() {
            for f in std::fs::read_dir(sub.path()).expect("sub").flatten() {
                out.push(f.path());
            }
        }
        out.sort();
        out
    }

    /// Starts bunker paused at a failpoint, waits until it gets there, and kills it with SIGKILL.
    pub fn kill_at(&self, point: &str, args: &[&str], stdin: Option<&Path>) {
        let mut cmd = self.cmd(args);
        cmd.env("BUNKER_PAUSE_AT", point).stderr(Stdio::piped()).stdout(Stdio::null());
        if let Some(p) = stdin {
            cmd.stdin(std::fs::File::open(p).expect("stdin file"));
        }
        let mut child = cmd.spawn().expect("spawn");
        wait_for_pause(&mut child, point);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Starts bunker paused at a failpoint and returns it, still paused.
    pub fn pause_at(&self, point: &str, args: &[&str]) -> Child {
        let mut child = self
            .cmd(args)
            .env("BUNKER_PAUSE_AT", point)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        wait_for_pause(&mut child, point);
        child
    }
}

fn wait_for_pause(child: &mut Child, point: &str) {
    let name = point.split('#').next().unwrap();
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(&format!("paused at {name}")) => break,
            Some(Ok(_)) => continue,
            _ => {
                let status = child.wait().expect("wait");
                panic!("bunker ended ({status}) before reaching {point}");
            }
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
}

/// Deterministic mixed data: runs of random bytes, text-like rows and zeros.
pub fn mixed_data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(len);
    let mut block = 0u64;
    while out.len() < len {
        let n = (len - out.len()).min(256 * 1024);
        match block % 3 {
            0 => {
                let start = out.len();
                out.resize(start + n, 0);
                rng.fill_bytes(&mut out[start..]);
            }
            1 => {
                let mut s = String::with_capacity(n + 100);
                while s.len() < n {
                    let id = rng.next_u32();
                    s.push_str(&format!(
                        "{id}\tuser{}\tuser{}@example.com\t2026-{:02}-{:02}\n",
                        id % 977,
                        id % 131,
                        id % 12 + 1,
                        id % 28 + 1
                    ));
                }
                out.extend_from_slice(&s.as_bytes()[..n]);
            }
            _ => out.resize(out.len() + n, 0),
        }
        block += 1;
    }
    out
}

/// Random bytes from a seed.
pub fn random_data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Writes `len` bytes of a seeded generator into `w` (mixed random and zeros) and returns their BLAKE3.
pub fn stream_into(w: &mut dyn Write, len: u64, seed: u64) -> blake3::Hash {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut i = 0u64;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        if i % 4 == 3 {
            buf[..n].fill(0);
        } else {
            rng.fill_bytes(&mut buf[..n]);
        }
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).expect("write to bunker");
        left -= n as u64;
        i += 1;
    }
    hasher.finalize()
}

/// Sends inline commands to a Redis server on loopback and waits for one reply line each (commands
/// whose replies are one line: SET, HSET, EXPIRE…).
pub fn redis_commands(port: u16, commands: &[String]) {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    let text: String = commands.iter().map(|c| format!("{c}\r\n")).collect();
    c.write_all(text.as_bytes()).expect("send to redis");
    let mut buf = vec![0u8; 4096];
    let mut seen = 0;
    while seen < commands.len() {
        let n = c.read(&mut buf).expect("read from redis");
        assert!(n > 0, "redis closed the connection after {seen} replies");
        seen += buf[..n].iter().filter(|b| **b == b'\n').count();
    }
}
