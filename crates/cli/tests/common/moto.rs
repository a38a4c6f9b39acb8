//! moto's S3-compatible server on loopback, for the S3 tests.
//!
//! Every test starts its own `moto_server` (in-memory, so nothing leaks between tests) on a free port.
//! The server is found through `BUNKER_MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server` (what
//! `scripts/ensure-moto.sh` installs), else `moto_server` on PATH. Without one the tests fail loudly:
//! they are never skipped silently.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const STARTUP: Duration = Duration::from_secs(30);

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn moto_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BUNKER_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "BUNKER_MOTO_SERVER={} does not exist", p.display());
        return p;
    }
    let venv = workspace().join(".venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("moto_server");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "moto_server not found (looked at $BUNKER_MOTO_SERVER, {}, and PATH): run scripts/ensure-moto.sh \
         from the workspace root to install it into .venv",
        venv.display()
    );
}

/// A port free right now, never handed out twice in this process (tests run in parallel), and below the
/// kernel's ephemeral range when possible, so no outgoing connection takes it while a server is down.
pub fn free_port() -> u16 {
    use rand::Rng;
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed = HANDED_OUT.lock().unwrap();
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (lo, hi) = (15000, ephemeral_low.min(32768));
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = if lo < hi {
            rng.gen_range(lo..hi)
        } else {
            TcpListener::bind("127.0.0.1:0").expect("bind a port").local_addr().unwrap().port()
        };
        if !handed.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.push(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// A `moto_server` child on 127.0.0.1, killed on drop.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Moto {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Moto {
        Self::start_with_env(port, &[])
    }

    /// A server with extra environment (`INITIAL_NO_AUTH_ACTION_COUNT` turns on moto's signature and
    /// IAM checks after that many requests). If another process took the port between `free_port` and
    /// the bind, the server starts again on another free port (read `port` afterwards).
    pub fn start_with_env(mut port: u16, env: &[(&str, &str)]) -> Moto {
        for _ in 0..5 {
            let log = tempfile::NamedTempFile::new().expect("moto log file");
            let child = Command::new(moto_server_bin())
                .envs(env.iter().copied())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log"))
                .stderr(log.reopen().expect("log"))
                .spawn()
                .expect("spawn moto_server");
            let mut moto = Moto { child: Some(child), port, log };
            match moto.wait_ready() {
                Ok(()) => return moto,
                Err(text) if text.contains("Address already in use") => port = free_port(),
                Err(text) => panic!("moto_server exited before listening on {port}:\n{text}"),
            }
        }
        panic!("moto_server found no free port in 5 tries");
    }

    /// Ready means this child printed its own "Running on …:PORT" banner (so a connect that reaches
    /// some other process's socket on the port is not mistaken for ours) and the port accepts.
    /// `Err(log)` when the child exited first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        let banner = format!("Running on http://127.0.0.1:{}", self.port);
        loop {
            if self.log_text().contains(&banner) && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if self.child.as_mut().unwrap().try_wait().expect("try_wait").is_some() {
                let _ = self.child.take();
                return Err(self.log_text());
            }
            if Instant::now() > deadline {
                panic!("moto_server did not listen on {} within {STARTUP:?}:\n{}", self.port, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        create_bucket(self.port, bucket);
    }

    /// The keys under `prefix` in `bucket` (unsigned listing: moto without IAM accepts it; up to 1,000).
    #[allow(dead_code)]
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, text) = http(self.port, "GET", &format!("/{bucket}?list-type=2&prefix={prefix}"), b"");
        assert_eq!(status, 200, "listing {bucket}/{prefix}: {text}");
        text.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_string).collect()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain, unsigned HTTP/1.1 request (moto accepts those for bucket creation). Returns status and body.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)).expect("send request");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}

pub fn create_bucket(port: u16, bucket: &str) {
    // A server that has just started can still reset the first connections under load: retry a little.
    for attempt in 1.. {
        match std::panic::catch_unwind(|| http(port, "PUT", &format!("/{bucket}"), b"")) {
            Ok((status, text)) => {
                assert_eq!(status, 200, "creating bucket {bucket}: {text}");
                return;
            }
            Err(e) if attempt >= 10 => std::panic::resume_unwind(e),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// One HTTP/1.1 request, read whole by a test proxy: its request line, its other header lines (less
/// `Connection`: a one-request-per-connection proxy sets its own) and its body.
pub struct Request {
    pub line: String,
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl Request {
    /// Reads one request from `client`; `None` when the client hung up first.
    pub fn read(client: &mut TcpStream) -> std::io::Result<Option<Request>> {
        client.set_nonblocking(false)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = client.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
        let line = lines.next().unwrap_or_default().to_string();
        let mut length = 0usize;
        let mut headers = Vec::new();
        for l in lines {
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if !lower.starts_with("connection:") {
                headers.push(l.to_string());
            }
        }
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let n = client.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Ok(Some(Request { line, headers, body }))
    }

    /// The method and the path (with its query) of the request line.
    pub fn method_and_path(&self) -> (&str, &str) {
        let mut parts = self.line.split(' ');
        (parts.next().unwrap_or_default(), parts.next().unwrap_or_default())
    }

    /// Sends the request to `upstream` on loopback (`Connection: close`) and returns the whole response.
    pub fn forward(&self, upstream: u16) -> std::io::Result<Vec<u8>> {
        let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
        let head = format!("{}\r\n{}\r\nConnection: close\r\n\r\n", self.line, self.headers.join("\r\n"));
        server.write_all(head.as_bytes())?;
        server.write_all(&self.body)?;
        let mut response = Vec::new();
        server.read_to_end(&mut response)?;
        Ok(response)
    }
}

/// An HTTP forwarder in front of moto that answers the requests `refuse(method, path_and_query)` picks
/// with S3's `403 AccessDenied`, as S3 answers a key whose policy lacks the permission: every write for
/// read-only credentials (`s3:GetObject`, `s3:ListBucket`), deletes for append-only ones. moto's own IAM
/// mode rejects the signature of opendal's listings whose prefix holds a '/', unless the query reaches it
/// percent-encoded: [`Gate::start_encoding_queries`] does that, so that moto's real policy checks apply.
/// One request per connection.
#[allow(dead_code)]
pub struct Gate {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How many requests it refused.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Refuses nothing: with [`Gate::start_encoding_queries`], a gate that only fixes the query for moto.
#[allow(dead_code)]
pub fn nothing(_: &str, _: &str) -> bool {
    false
}

/// A DELETE, or S3's batch delete (`POST ?delete`): what append-only credentials may not do.
#[allow(dead_code)]
pub fn is_delete(method: &str, path: &str) -> bool {
    method == "DELETE" || (method == "POST" && path.contains("delete"))
}

#[allow(dead_code)]
impl Gate {
    pub fn start(upstream: u16, refuse: fn(&str, &str) -> bool) -> Gate {
        Self::start_with(upstream, refuse, false)
    }

    /// A gate in front of moto in IAM mode (`INITIAL_NO_AUTH_ACTION_COUNT`), so that moto's policy
    /// checks apply to opendal's requests: it percent-encodes each '/' of the query (opendal sends
    /// `prefix=repo/keys/`, signs it as SigV4 says, `repo%2Fkeys%2F`, and moto checks the signature over the
    /// query as it arrived). The signature stays valid; nothing is refused but what moto's IAM refuses.
    pub fn start_encoding_queries(upstream: u16) -> Gate {
        Self::start_with(upstream, nothing, true)
    }

    fn start_with(upstream: u16, refuse: fn(&str, &str) -> bool, encode_queries: bool) -> Gate {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let (stop2, refused2) = (stop.clone(), refused.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let refused = refused2.clone();
                        std::thread::spawn(move || {
                            let _ = gate(client, upstream, refuse, &refused, encode_queries);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Gate { port, stop, refused }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn gate(
    mut client: TcpStream,
    upstream: u16,
    refuse: fn(&str, &str) -> bool,
    refused: &std::sync::atomic::AtomicU64,
    encode_queries: bool,
) -> std::io::Result<()> {
    let Some(mut request) = Request::read(&mut client)? else { return Ok(()) };
    if encode_queries {
        let mut parts: Vec<String> = request.line.split(' ').map(str::to_string).collect();
        if let Some((path, query)) = parts.get(1).and_then(|t| t.split_once('?')) {
            let fixed = format!("{path}?{}", query.replace('/', "%2F"));
            parts[1] = fixed;
            request.line = parts.join(" ");
        }
    }
    let (method, path) = request.method_and_path();
    if refuse(method, path) {
        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let xml = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        return write!(
            client,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        );
    }
    client.write_all(&request.forward(upstream)?)
}
