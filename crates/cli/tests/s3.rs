//! The S3 backend end to end, against moto's S3-compatible server on loopback.
//!
//! Every test starts its own `moto_server` (in-memory, so nothing leaks between tests) on a free port.
//! The server is found through `BUNKER_MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server` (what
//! `scripts/ensure-moto.sh` installs), else `moto_server` on PATH. Without one the tests fail loudly:
//! they are never skipped silently.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::moto::{free_port, Moto};
use common::{mixed_data, random_data, Repo};

// ---------------------------------------------------------------------------------------------------
// bunker against an S3 location

/// A repository on moto: `s3://BUCKET/PREFIX` with test credentials and nothing else from the environment.
fn s3_repo(moto: &Moto, bucket: &str, prefix: &str) -> Repo {
    s3_repo_at(&moto.endpoint(), bucket, prefix)
}

fn s3_repo_at(endpoint: &str, bucket: &str, prefix: &str) -> Repo {
    let url = format!("s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1&path-style=true");
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        // Never look anywhere but the environment for credentials (no metadata service, no profile).
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let remove = vec![
        "BUNKER_S3_PATH_STYLE",
        "BUNKER_RETRY_MIN_DELAY_MS",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ];
    Repo::uninitialised(Some(url), env, remove)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A bunker process in the background whose stderr is drained as it goes (a full pipe would stall it).
struct Background {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Background {
    fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn bunker");
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        Background { child, stderr: Some(stderr) }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits with a bound; returns the exit status and stderr. Past the bound: kills it and panics.
    fn wait(mut self, limit: Duration, what: &str) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, self.stderr.take().unwrap().join().unwrap());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{what} did not finish within {limit:?}; its stderr:\n{}",
                    self.stderr.take().unwrap().join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts two trees hold the same directories, file bytes and symlink targets.
fn assert_same_tree(a: &Path, b: &Path) {
    let names = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let (na, nb) = (names(a), names(b));
    assert_eq!(na, nb, "entries differ between {} and {}", a.display(), b.display());
    for name in na {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (std::fs::symlink_metadata(&pa).unwrap(), std::fs::symlink_metadata(&pb).unwrap());
        let (ta, tb) = (ma.file_type(), mb.file_type());
        if ta.is_symlink() {
            assert!(tb.is_symlink(), "{} is not a symlink", pb.display());
            assert_eq!(std::fs::read_link(&pa).unwrap(), std::fs::read_link(&pb).unwrap(), "{}", pb.display());
        } else if ta.is_dir() {
            assert!(tb.is_dir(), "{} is not a directory", pb.display());
            assert_same_tree(&pa, &pb);
        } else {
            assert!(tb.is_file(), "{} is not a file", pb.display());
            assert!(std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(), "{} differs", pb.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// tests

#[test]
fn s3_round_trip_dedup_check_and_file_tree() {
    let moto = Moto::start();
    moto.create_bucket("bunker-roundtrip");
    let repo = s3_repo(&moto, "bunker-roundtrip", "team/backups");
    repo.ok(&["init"]);

    let data = mixed_data(20 << 20, 1);
    let first = repo.backup_bytes("db", &data);
    assert!(repo.dump("db:latest") == data, "dump differs from the input");
    // From a fresh cache too: everything really comes from the bucket.
    let fresh = repo.root.join("fresh-cache");
    let out = repo.cmd(&["dump", &first]).env("BUNKER_CACHE_DIR", &fresh).output().unwrap();
    assert!(out.status.success(), "dump with a fresh cache failed: {}", stderr(&out));
    assert!(out.stdout == data, "dump with a fresh cache differs from the input");

    let second = repo.backup_bytes("db", &data);
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let new_bytes = |id: &str| {
        let s = snaps.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("snapshot {id} not listed"));
        s["stats"]["bytes_new"].as_u64().expect("stats.bytes_new")
    };
    assert!(new_bytes(&first) > (data.len() / 2) as u64, "first backup stored too little: {}", new_bytes(&first));
    assert!(new_bytes(&second) < 64 * 1024, "unchanged data added {} new bytes", new_bytes(&second));
    assert!(repo.dump(&second) == data);

    let out = repo.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "check --read-data: {}", stderr(&out));

    // A file tree: several files, a subdirectory, an empty file and a relative symlink.
    let src = repo.root.join("site");
    std::fs::create_dir_all(src.join("uploads/2026")).unwrap();
    std::fs::write(src.join("state.bin"), random_data(1 << 20, 7)).unwrap();
    std::fs::write(src.join("settings.toml"), b"[db]\nhost = \"db.internal\"\n").unwrap();
    std::fs::write(src.join("uploads/2026/photo.jpg"), mixed_data(300 << 10, 8)).unwrap();
    std::fs::write(src.join("uploads/empty"), b"").unwrap();
    std::os::unix::fs::symlink("uploads/2026/photo.jpg", src.join("current")).unwrap();
    repo.ok(&["backup", "--path", src.to_str().unwrap(), "--name", "files"]);
    let out_dir = repo.root.join("restored");
    repo.ok(&["restore", "files:latest", "--to", out_dir.to_str().unwrap()]);
    assert_same_tree(&src, &out_dir.join("site"));
    assert_eq!(std::fs::read_link(out_dir.join("site/current")).unwrap(), Path::new("uploads/2026/photo.jpg"));

    let stats = repo.json(&["stats"]);
    assert!(stats.is_object(), "stats --json: {stats}");
}

#[test]
fn s3_forget_and_prune_keep_the_kept_snapshot_whole() {
    let moto = Moto::start();
    moto.create_bucket("bunker-prune");
    let repo = s3_repo(&moto, "bunker-prune", "p");
    repo.ok(&["init", "--pack-size-mib", "1"]);

    let v1 = random_data(4 << 20, 21);
    let mut v2 = v1.clone();
    v2[(3 << 19)..(5 << 19)].copy_from_slice(&random_data(1 << 20, 22));
    let v3 = mixed_data(4 << 20, 23);
    for v in [&v1, &v2, &v3] {
        repo.backup_bytes("db", v);
    }
    assert_eq!(repo.snapshots().len(), 3);

    repo.ok(&["forget", "--keep-last", "1"]);
    assert_eq!(repo.snapshots().len(), 1);
    let report = repo.json(&["prune"]);
    assert!(report["packs_deleted"].as_u64().unwrap() > 0, "prune deleted no pack: {report}");
    assert!(report["bytes_freed"].as_u64().unwrap() > (4 << 20), "prune freed too little: {report}");
    let again = repo.json(&["prune", "--dry-run"]);
    assert_eq!(again["packs_deleted"], 0, "a second prune still finds garbage: {again}");

    assert!(repo.dump("db:latest") == v3, "the kept snapshot no longer dumps its input");
    let out = repo.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "check --read-data after prune: {}", stderr(&out));
}

#[test]
fn s3_errors_have_documented_exit_codes() {
    let moto = Moto::start();
    moto.create_bucket("bunker-errors");
    let repo = s3_repo(&moto, "bunker-errors", "real/repo");
    repo.ok(&["init"]);
    repo.backup_bytes("db", b"some data");

    // Initialising twice is refused.
    let out = repo.run(&["init"]);
    assert_eq!(out.status.code(), Some(1), "second init: {}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    let out = repo.cmd(&["snapshots"]).env("BUNKER_PASSWORD", "not the password").output().unwrap();
    assert_eq!(out.status.code(), Some(12), "wrong password: {}", stderr(&out));

    // Another prefix of the same bucket: no repository there (also not the parent or a sibling).
    for prefix in ["real/other", "real", "elsewhere"] {
        let out = s3_repo(&moto, "bunker-errors", prefix).run(&["snapshots"]);
        assert_eq!(out.status.code(), Some(10), "prefix {prefix}: {}", stderr(&out));
        assert!(stderr(&out).contains("no bunker repository"), "{}", stderr(&out));
    }

    // A bucket that does not exist: exit 10 like a missing repository, at once (no retrying of a
    // persistent error), on one line that names the bucket.
    let missing = s3_repo(&moto, "no-such-bucket", "x");
    for args in [&["snapshots"][..], &["init"][..]] {
        let started = Instant::now();
        let out = missing.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(10), "{args:?} on a missing bucket: {err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", started.elapsed());
        assert!(err.contains("bunker: error"), "{err}");
        assert!(err.contains("NoSuchBucket") || err.contains("no-such-bucket"), "{err}");
        assert!(err.trim_end().lines().count() <= 2, "error is not one line: {err}");
    }
}

/// The exclusive lock relies on `If-None-Match: *`: a second exclusive holder must be refused, not
/// silently overwrite the first one's lock.
#[test]
fn s3_exclusive_lock_is_create_if_absent() {
    let moto = Moto::start();
    moto.create_bucket("bunker-lock");
    let repo = s3_repo(&moto, "bunker-lock", "l");
    repo.ok(&["init"]);
    repo.backup_bytes("db", &random_data(1 << 20, 31));

    let mut holder = repo
        .cmd(&["prune"])
        .env("BUNKER_PAUSE_AT", "prune-after-index")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prune");
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(holder.stderr.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("paused at prune-after-index") => break,
                Some(Ok(_)) => continue,
                _ => panic!("prune ended ({:?}) before holding the lock", holder.wait()),
            }
        }
        std::thread::spawn(move || for _ in lines {});
    }

    let out = repo.run(&["prune"]);
    assert_eq!(out.status.code(), Some(11), "a second exclusive lock was granted: {}", stderr(&out));
    assert!(stderr(&out).contains("prune"), "{}", stderr(&out));
    let out = repo.run(&["backup", "--stdin", "--name", "x"]);
    assert_eq!(out.status.code(), Some(11), "backup under an exclusive lock: {}", stderr(&out));

    // The holder dies without unlocking: its lock is stale (dead pid on this host) and gets cleared.
    holder.kill().unwrap();
    holder.wait().unwrap();
    repo.ok(&["prune"]);
    repo.ok(&["check"]);
}

/// A TCP forwarder in front of moto that can go down (refusing connections and cutting the open ones)
/// and come back, so a test can put an outage exactly where it wants one.
struct Flaky {
    port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Bytes forwarded from clients to the server so far.
    sent: Arc<AtomicU64>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flaky {
    fn new(upstream: u16, up: bool) -> Flaky {
        let port = free_port();
        let up = Arc::new(AtomicBool::new(up));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let thread = {
            let (up, stop, sent, conns) = (up.clone(), stop.clone(), sent.clone(), conns.clone());
            std::thread::spawn(move || {
                let mut listener: Option<TcpListener> = None;
                while !stop.load(Ordering::SeqCst) {
                    let is_up = up.load(Ordering::SeqCst);
                    if is_up && listener.is_none() {
                        let l = TcpListener::bind(("127.0.0.1", port)).expect("rebind the forwarder's port");
                        l.set_nonblocking(true).unwrap();
                        listener = Some(l);
                    } else if !is_up && listener.is_some() {
                        listener = None;
                        for c in conns.lock().unwrap().drain(..) {
                            let _ = c.shutdown(Shutdown::Both);
                        }
                    }
                    let accepted = listener.as_ref().map(|l| l.accept());
                    match accepted {
                        Some(Ok((client, _))) => {
                            client.set_nonblocking(false).unwrap();
                            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                            {
                                let mut cs = conns.lock().unwrap();
                                cs.push(client.try_clone().unwrap());
                                cs.push(server.try_clone().unwrap());
                            }
                            pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), Some(sent.clone()));
                            pipe(server, client, None);
                        }
                        _ => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Flaky { port, up, stop, sent, conns, thread: Some(thread) }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies one direction of a connection on its own thread; closes both ends when either does.
fn pipe(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if let Some(c) = &count {
                        c.fetch_add(n as u64, Ordering::SeqCst);
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Transient failures are retried: `init` started while the server is unreachable succeeds once it
/// comes back, and a backup whose uploads are cut mid-transfer by an outage completes intact.
#[test]
fn s3_transient_outages_are_retried() {
    let moto = Moto::start();
    moto.create_bucket("bunker-flaky");
    let flaky = Flaky::new(moto.port, false);
    let repo = s3_repo_at(&flaky.endpoint(), "bunker-flaky", "f");
    let retrying = |args: &[&str]| {
        let mut c = repo.cmd(args);
        c.env("BUNKER_RETRY_MIN_DELAY_MS", "500");
        c
    };

    // 1. The server is down (connections refused) when init starts; it comes back 1.5 s later.
    let mut init = Background::spawn(retrying(&["init", "--pack-size-mib", "2"]));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(init.running(), "init gave up while the server was down");
    flaky.set_up(true);
    let (status, err) = init.wait(Duration::from_secs(60), "init");
    assert!(status.success(), "init did not survive the outage ({status}): {err}");

    // 2. An outage in the middle of a backup's uploads: open connections are cut, new ones refused.
    let data = mixed_data(12 << 20, 41);
    let input = repo.root.join("input");
    std::fs::write(&input, &data).unwrap();
    let before = flaky.sent.load(Ordering::SeqCst);
    let mut cmd = retrying(&["backup", "--stdin", "--name", "db"]);
    cmd.stdin(std::fs::File::open(&input).unwrap());
    let mut backup = Background::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    while flaky.sent.load(Ordering::SeqCst) < before + (3 << 20) {
        assert!(backup.running(), "backup finished before the outage could start");
        assert!(Instant::now() < deadline, "backup uploaded nothing in 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    flaky.set_up(false);
    std::thread::sleep(Duration::from_millis(1500));
    flaky.set_up(true);
    let (status, err) = backup.wait(Duration::from_secs(120), "backup");
    assert!(status.success(), "backup did not survive the outage ({status}): {err}");

    assert!(repo.dump("db:latest") == data, "dump after the outage differs from the input");
    let out = repo.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "check --read-data after the outage: {}", stderr(&out));
}

/// On S3 with a cold cache: a snapshot object overwritten with garbage and an index object deleted are
/// skipped (exit 3), the other snapshots restore, a new backup works, `check` names the damage, and
/// `repair index` + `repair snapshots` bring back every snapshot whose packs are intact.
#[test]
fn s3_damaged_files_are_skipped_and_repaired() {
    let moto = Moto::start();
    moto.create_bucket("damaged");
    let repo = s3_repo(&moto, "damaged", "r");
    let cold = |args: &[&str]| repo.cmd(args).env("BUNKER_CACHE_DIR", "off").output().unwrap();
    // What a damaged store does, through boto3 (moto wants signed object requests).
    let s3 = |op: &str, key: &str| {
        let script = r#"
import boto3, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
op, key = sys.argv[2], sys.argv[3]
if op == "list":
    print("\n".join(o["Key"] for o in s3.list_objects_v2(Bucket="damaged", Prefix=key).get("Contents", [])))
elif op == "garble":
    s3.put_object(Bucket="damaged", Key=key, Body=b"garbage")
else:
    s3.delete_object(Bucket="damaged", Key=key)
"#;
        let out = Command::new(common::moto::workspace().join(".venv/bin/python"))
            .args(["-c", script, &moto.endpoint(), op, key])
            .output()
            .unwrap();
        assert!(out.status.success(), "{op} {key}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect::<Vec<_>>()
    };
    let index_keys = || s3("list", "r/index/");
    repo.ok(&["init"]);
    let a = mixed_data(400_000, 1);
    let b = random_data(700_000, 2);
    repo.backup_bytes("a", &a);
    let before = index_keys();
    repo.backup_bytes("b", &b);
    let b_index = index_keys().into_iter().find(|k| !before.contains(k)).expect("b's index file");
    let c = repo.backup_bytes("c", &mixed_data(300_000, 3));
    s3("garble", &format!("r/snapshots/{c}"));
    s3("delete", &b_index);

    let listed = cold(&["snapshots", "--json"]);
    assert_eq!(listed.status.code(), Some(3), "{}", stderr(&listed));
    let names: Vec<String> = serde_json::from_slice::<serde_json::Value>(&listed.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let dumped = cold(&["dump", "a:latest"]);
    assert_eq!((dumped.status.code(), dumped.stdout == a), (Some(3), true), "{}", stderr(&dumped));
    let lost = cold(&["dump", "b:latest"]);
    assert!(!lost.status.success() && stderr(&lost).contains("is not in the index"), "{}", stderr(&lost));
    let d = mixed_data(200_000, 4);
    let input = repo.root.join("d");
    std::fs::write(&input, &d).unwrap();
    let o =
        repo.cmd(&["backup", "--stdin", "--name", "d"]).stdin(std::fs::File::open(&input).unwrap()).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "a new backup around the damage: {}", stderr(&o));
    assert_eq!(cold(&["dump", "d:latest"]).stdout, d);
    let check = cold(&["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(stderr(&check).contains(&c), "check names the damaged snapshot: {}", stderr(&check));

    for args in [&["repair", "index"][..], &["repair", "snapshots"], &["check", "--read-data"]] {
        let o = cold(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(cold(&["dump", "b:latest"]).stdout, b);
    assert_eq!(cold(&["dump", "a:latest"]).status.code(), Some(0));
}
