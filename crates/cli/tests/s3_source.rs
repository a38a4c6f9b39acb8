//! `type = "s3"` targets against moto on loopback: a bucket of ~1000 small objects, multipart objects of
//! tens of MiB, metadata and unicode keys; a second day downloads only what changed; restores into another
//! bucket equal the original (checked here with boto3, an independent client).

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::moto::{workspace, Moto, Request};
use common::Repo;

/// boto3 against moto: `populate`, `day2` and `dump` (a JSON map of key → md5, size, type, metadata).
const HELPER: &str = r#"
import boto3, hashlib, json, sys
endpoint, action, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
def body(i, n):
    return (("%d:" % i) * (n // 4 + 1)).encode()[:n]
if action == "populate":
    for i in range(int(sys.argv[4]) if len(sys.argv) > 4 else 1000):
        s3.put_object(Bucket=bucket, Key="media/img-%04d.jpg" % i, Body=body(i, 100 + i * 7),
                      ContentType="image/jpeg", Metadata={"owner": "user-%d" % (i % 17)})
    s3.put_object(Bucket=bucket, Key="media/résumé – ünïcödé.pdf", Body=b"%PDF unicode", ContentType="application/pdf")
    from boto3.s3.transfer import TransferConfig
    cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
    import io
    for i in range(2):
        data = bytes((j * 31 + i) % 251 for j in range(25 << 20))
        s3.upload_fileobj(io.BytesIO(data), bucket, "videos/clip-%d.mp4" % i, Config=cfg,
                          ExtraArgs={"ContentType": "video/mp4", "Metadata": {"duration": str(60 + i)}})
    s3.put_object(Bucket=bucket, Key="outside/not-backed-up.txt", Body=b"x")
elif action == "day2":
    for i in range(10):
        s3.put_object(Bucket=bucket, Key="media/img-%04d.jpg" % (i * 50), Body=body(i, 999), ContentType="image/png")
    for i in range(5):
        s3.delete_object(Bucket=bucket, Key="media/img-%04d.jpg" % (i * 50 + 1))
    for i in range(5):
        s3.put_object(Bucket=bucket, Key="media/new-%d.jpg" % i, Body=body(i, 5000), ContentType="image/jpeg")
elif action == "dump":
    out = {}
    prefix = sys.argv[4] if len(sys.argv) > 4 else ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            r = s3.get_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"][len(prefix):]] = [hashlib.md5(r["Body"].read()).hexdigest(), o["Size"], r["ContentType"], r["Metadata"]]
    print(json.dumps(out, sort_keys=True))
elif action == "create":
    s3.create_bucket(Bucket=bucket)
"#;

fn helper(moto: &Moto, args: &[&str]) -> String {
    let python = workspace().join(".venv/bin/python");
    let out = Command::new(python).arg("-c").arg(HELPER).arg(moto.endpoint()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "helper {args:?}: {}\nmoto on {} logged:\n{}",
        String::from_utf8_lossy(&out.stderr),
        moto.port,
        moto.log_text()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_bucket_is_backed_up_incrementally_and_restored_as_of_any_snapshot() {
    let moto = Moto::start();
    helper(&moto, &["create", "uploads"]);
    helper(&moto, &["populate", "uploads"]);
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.uploads]\ntype = \"s3\"\nbucket = \"uploads\"\nprefix = \"\"\n\
             endpoint = \"{ep}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"${{S3_SECRET}}\"\nconcurrency = 8\n\n\
             [targets.missing]\ntype = \"s3\"\nbucket = \"no-such-bucket\"\nendpoint = \"{ep}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
            repo.path.display(),
            ep = moto.endpoint()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        repo.cmd(args)
            .env("BUNKER_CONFIG", &config)
            .env("S3_SECRET", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let o = run(args);
        assert!(
            o.status.success(),
            "bunker {args:?}: {}{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let day1 = helper(&moto, &["dump", "uploads"]);
    let first: serde_json::Value = serde_json::from_str(&ok(&["backup", "uploads", "--json"])).unwrap();
    let snaps = || -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&ok(&["snapshots", "--json"])).unwrap().as_array().unwrap().clone()
    };
    let meta1 = snaps()[0]["meta"].clone();
    assert_eq!(meta1["objects"], 1004, "{meta1}");
    assert_eq!(meta1["downloaded"], 1004);
    assert_eq!(meta1["reused"], 0);
    assert!(first["stats"]["bytes_read"].as_u64().unwrap() > 50 << 20);

    // Day 2: only the 10 changed and 5 new objects are downloaded; the rest is reused.
    helper(&moto, &["day2", "uploads"]);
    let day2 = helper(&moto, &["dump", "uploads"]);
    ok(&["backup", "uploads"]);
    let all = snaps();
    let meta2 = &all.last().unwrap()["meta"];
    assert_eq!(
        (meta2["objects"].as_u64(), meta2["downloaded"].as_u64(), meta2["reused"].as_u64()),
        (Some(1004), Some(15), Some(989)),
        "{meta2}"
    );
    assert!(meta2["downloaded_bytes"].as_u64().unwrap() < 100_000);
    let day1_id = all[0]["id"].as_str().unwrap().to_string();

    // Restores into a new bucket equal the bucket as of each snapshot: bytes, content types, metadata.
    helper(&moto, &["create", "restored"]);
    let into = format!("s3://restored/copy?endpoint={}&region=us-east-1&path-style=true", moto.endpoint());
    let out = ok(&["restore", "uploads", "--into", &into]);
    assert!(out.contains("1004 objects read back and equal"), "{out}");
    assert_eq!(helper(&moto, &["dump", "restored", "copy/"]), day2);
    // As of day 1, into the same place: a dry run lists the changes and changes nothing …
    let out = ok(&["restore", &format!("uploads:{}", &day1_id[..8]), "--into", &into, "--dry-run"]);
    assert!(
        out.contains("replace  media/img-0000.jpg")
            && out.contains("extra (kept; --delete-extra deletes)  media/new-0.jpg"),
        "{out}"
    );
    assert!(out.contains("would write 15 of 1004 objects"), "{out}");
    assert_eq!(helper(&moto, &["dump", "restored", "copy/"]), day2);
    // … without --force it refuses to replace the 10 objects that differ …
    let o = run(&["restore", &format!("uploads:{}", &day1_id[..8]), "--into", &into]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--force"), "{:?}", o);
    // … then the restore writes only those, and deletes extras only when asked.
    ok(&["restore", &format!("uploads:{}", &day1_id[..8]), "--into", &into, "--force"]);
    let kept: serde_json::Value = serde_json::from_str(&helper(&moto, &["dump", "restored", "copy/"])).unwrap();
    assert!(kept.get("media/new-0.jpg").is_some());
    ok(&["restore", &format!("uploads:{}", &day1_id[..8]), "--into", &into, "--delete-extra", "--force"]);
    assert_eq!(helper(&moto, &["dump", "restored", "copy/"]), day1);

    // A missing bucket is named.
    let o = run(&["backup", "missing"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no-such-bucket") && err.contains("does not exist"), "{err}");
    assert!(!err.contains("testing"), "{err}");
}

/// Which fault an HTTP request meets the first time it is seen (a retry of it passes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `503 SlowDown`, as S3 answers when it throttles.
    SlowDown,
    /// The response's body cut off halfway and the connection closed.
    Cut,
    /// No answer at all until the client gives up.
    Stall,
}

/// An HTTP forwarder in front of moto, one request per connection, that gives the first attempt of
/// chosen requests a fault. Deterministic: every request for the same method and path gets the same
/// fault on its first attempt and none after.
struct FaultyProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    /// How many of each fault were served: slow-downs, cuts, stalls.
    served: Arc<[AtomicU64; 3]>,
}

impl FaultyProxy {
    fn start(upstream: u16, choose: fn(&str, &str) -> Option<Fault>) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (stop2, served2) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (served, seen) = (served2.clone(), seen.clone());
                        std::thread::spawn(move || {
                            let _ = forward(client, upstream, choose, &served, &seen);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        FaultyProxy { port, stop, served }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn served(&self, fault: Fault) -> u64 {
        self.served[fault as usize].load(Ordering::SeqCst)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one request from `client`, then answers it with its fault or with upstream's response.
fn forward(
    mut client: TcpStream,
    upstream: u16,
    choose: fn(&str, &str) -> Option<Fault>,
    served: &[AtomicU64; 3],
    seen: &Mutex<HashSet<String>>,
) -> std::io::Result<()> {
    let Some(request) = Request::read(&mut client)? else { return Ok(()) };
    let (method, path) = request.method_and_path();
    let first_time = seen.lock().unwrap().insert(format!("{method} {path}"));
    let fault = if first_time { choose(method, path) } else { None };
    if let Some(f) = fault {
        served[f as usize].fetch_add(1, Ordering::SeqCst);
    }
    match fault {
        Some(Fault::SlowDown) => {
            let xml = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            write!(
                client,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            )?;
            return Ok(());
        }
        Some(Fault::Stall) => {
            std::thread::sleep(Duration::from_secs(4));
            return Ok(());
        }
        _ => {}
    }
    let response = request.forward(upstream)?;
    if fault == Some(Fault::Cut) {
        let body_at = response.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(0);
        let half = body_at + (response.len() - body_at) / 2;
        client.write_all(&response[..half])?;
    } else {
        client.write_all(&response)?;
    }
    Ok(())
}

/// Transient faults on the way to the bucket (throttling on any request, object bodies cut halfway,
/// object reads that stall) are retried: the backup completes with every object intact, and so does a
/// restore through the same faults.
#[test]
fn transient_bucket_faults_are_retried() {
    let moto = Moto::start();
    helper(&moto, &["create", "flaky"]);
    helper(&moto, &["populate", "flaky", "120"]);
    let want = helper(&moto, &["dump", "flaky", "media/"]);
    fn choose(method: &str, path: &str) -> Option<Fault> {
        let object = path.contains("/media/") || path.contains("/videos/");
        let n = path.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
        match (method, object) {
            ("GET", false) if path.contains("list-type") => Some(Fault::SlowDown),
            ("GET", true) if path.contains("clip-1") => Some(Fault::Cut),
            ("GET", true) if path.contains("img-0007") || path.contains("img-0100") => Some(Fault::Stall),
            ("GET", true) if n % 5 == 0 => Some(Fault::Cut),
            (_, true) if n % 3 == 0 => Some(Fault::SlowDown),
            _ => None,
        }
    }
    let proxy = FaultyProxy::start(moto.port, choose);
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.media]\ntype = \"s3\"\nbucket = \"flaky\"\nprefix = \"media\"\n\
             endpoint = \"{ep}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n\n\
             [targets.videos]\ntype = \"s3\"\nbucket = \"flaky\"\nprefix = \"videos\"\n\
             endpoint = \"{ep}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
            repo.path.display(),
            ep = proxy.endpoint()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        repo.cmd(args)
            .env("BUNKER_CONFIG", &config)
            .env("BUNKER_RETRY_MIN_DELAY_MS", "20")
            .env("BUNKER_IO_TIMEOUT_SECS", "1")
            .output()
            .unwrap()
    };
    for target in ["media", "videos"] {
        let o = run(&["backup", target]);
        assert!(o.status.success(), "{target}: {}", String::from_utf8_lossy(&o.stderr));
    }
    for fault in [Fault::SlowDown, Fault::Cut, Fault::Stall] {
        assert!(proxy.served(fault) > 0, "the proxy served no fault of one kind: nothing was tested");
    }
    let snaps = repo.snapshots();
    let media = snaps.iter().find(|s| s["name"] == "media").unwrap();
    assert_eq!(media["meta"]["objects"], 121);

    // The restore meets faults on its writes and its read-backs too, and ends equal to the original.
    helper(&moto, &["create", "again"]);
    let into = format!("s3://again/media?endpoint={}&region=us-east-1&path-style=true", proxy.endpoint());
    let o = run(&["restore", "media", "--into", &into]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(helper(&moto, &["dump", "again", "media/"]), want);
}

/// With moto's signature and IAM checks on, a wrong secret and an unknown key each fail at once (no
/// retrying a refusal) with one line that says to check the credentials, never showing the secret.
#[test]
fn wrong_bucket_credentials_fail_clearly() {
    // moto checks signatures from its fourth request on: the first three make the user and its key.
    let moto = Moto::start_with_env(common::moto::free_port(), &[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
    let setup = r#"
import boto3, json, sys
ep = sys.argv[1]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="backup")
key = iam.create_access_key(UserName="backup")["AccessKey"]
iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket="private")
for i in range(5):
    s3.put_object(Bucket="private", Key="doc-%d.txt" % i, Body=b"private %d" % i)
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
    let out =
        Command::new(workspace().join(".venv/bin/python")).arg("-c").arg(setup).arg(moto.endpoint()).output().unwrap();
    assert!(out.status.success(), "setup: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (key_id, secret) = text.trim().split_once(' ').unwrap();
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    let target = |name: &str, id: &str, secret: &str| {
        format!(
            "[targets.{name}]\ntype = \"s3\"\nbucket = \"private\"\nendpoint = \"{}\"\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\n\n",
            moto.endpoint()
        )
    };
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\n\n{}{}{}",
            repo.path.display(),
            target("good", key_id, secret),
            target("wrong-secret", key_id, "not-the-secret-XYZ"),
            target("unknown-key", "AKIAUNKNOWNKEY000000", "not-the-secret-XYZ"),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &config).output().unwrap();
    let o = run(&["backup", "good"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["wrong-secret", "unknown-key"] {
        let started = std::time::Instant::now();
        let o = run(&["backup", name]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("access denied: check the credentials"), "{name}: {err}");
        assert!(!err.contains("not-the-secret-XYZ") && !err.contains(secret), "{name}: a secret leaked: {err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{name}: a refusal was retried");
    }
    let names: Vec<_> = repo.snapshots().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["good"]);
}

/// A bucket backed up by a write-only host (a recipients repository): it cannot read its last manifest,
/// so it downloads every object again, but the chunks deduplicate; only the identity restores the bucket.
#[test]
fn a_write_only_host_backs_up_a_bucket_and_only_the_identity_restores_it() {
    let moto = Moto::start();
    helper(&moto, &["create", "uploads"]);
    helper(&moto, &["populate", "uploads", "100"]);
    let keys = tempfile::tempdir().unwrap();
    let common::AgeKey { identity, public } = common::age_key_in(keys.path(), "identity.txt");
    let repo = Repo::with_init_args(&["--recipient", &public]);
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.uploads]\ntype = \"s3\"\nbucket = \"uploads\"\nprefix = \"\"\n\
             endpoint = \"{}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
            repo.path.display(),
            moto.endpoint()
        ),
    )
    .unwrap();
    let run = |args: &[&str], identity: Option<&std::path::Path>| {
        let mut c = repo.cmd(args);
        c.env("BUNKER_CONFIG", &config).env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some(i) = identity {
            c.env("BUNKER_IDENTITY_FILE", i);
        }
        c.output().unwrap()
    };
    let ok = |args: &[&str], identity: Option<&std::path::Path>| {
        let o = run(args, identity);
        assert!(o.status.success(), "bunker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["backup", "uploads"], None);
    let before = repo.disk_size();
    let second: serde_json::Value = serde_json::from_str(&ok(&["backup", "uploads", "--json"], None)).unwrap();
    let read = second["stats"]["bytes_read"].as_u64().unwrap();
    assert!(read > 50 << 20, "every object is read again: {second:#}");
    let added = repo.disk_size() - before;
    assert!(added * 100 < read, "the second backup stored {added} of {read} bytes");

    helper(&moto, &["create", "restored"]);
    let into = format!("s3://restored/copy?endpoint={}&region=us-east-1&path-style=true", moto.endpoint());
    let o = run(&["restore", "uploads", "--into", &into], None);
    assert_eq!(o.status.code(), Some(12), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(helper(&moto, &["dump", "restored"]).trim(), "{}", "nothing was written without the identity");
    let out = ok(&["restore", "uploads", "--into", &into], Some(&identity));
    assert!(out.contains("read back and equal"), "{out}");
    let original: serde_json::Value = serde_json::from_str(&helper(&moto, &["dump", "uploads"])).unwrap();
    let restored: serde_json::Value = serde_json::from_str(&helper(&moto, &["dump", "restored", "copy/"])).unwrap();
    assert_eq!(restored, original);
}

/// The same bytes `populate` and `day2` write under a key (at most `n`: `i:` repeated `n / 4 + 1` times).
fn body(i: usize, n: usize) -> Vec<u8> {
    let mut b = format!("{i}:").repeat(n / 4 + 1).into_bytes();
    b.truncate(n);
    b
}

/// One object, the way a user goes after it: `ls` shows what a snapshot holds, `versions` when the
/// object changed, `dump SNAPSHOT KEY` writes one version's bytes, and `restore --include KEY` puts that
/// version back alone (the dry run saying it replaces what is there), leaving every other object as it is.
#[test]
fn one_object_is_listed_followed_across_snapshots_and_restored_alone() {
    let moto = Moto::start();
    helper(&moto, &["create", "uploads"]);
    helper(&moto, &["populate", "uploads", "100"]);
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.media]\ntype = \"s3\"\nbucket = \"uploads\"\nprefix = \"media/\"\n\
             endpoint = \"{}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
            repo.path.display(),
            moto.endpoint()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        repo.cmd(args).env("BUNKER_CONFIG", &config).env("AWS_EC2_METADATA_DISABLED", "true").output().unwrap()
    };
    let ok = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success(), "bunker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    ok(&["backup", "media"]);
    let first = repo.snapshots()[0]["id"].as_str().unwrap().to_string();
    let before = helper(&moto, &["dump", "uploads", "media/"]);
    helper(&moto, &["day2", "uploads"]);
    ok(&["backup", "media"]);

    // ls: every key, a glob, a JSON listing with sizes, ETags and content types.
    let all = String::from_utf8(ok(&["ls", "media:latest"])).unwrap();
    assert!(all.lines().any(|l| l == "img-0050.jpg") && all.lines().any(|l| l == "new-4.jpg"), "{all}");
    assert!(!all.lines().any(|l| l == "img-0001.jpg"), "deleted on day 2: {all}");
    let new = String::from_utf8(ok(&["ls", "media:latest", "new-*"])).unwrap();
    assert_eq!(new.lines().count(), 5, "{new}");
    let listed: serde_json::Value =
        serde_json::from_slice(&ok(&["--json", "ls", &first[..8], "img-0050.jpg"])).unwrap();
    let item = &listed["items"][0];
    assert_eq!((item["size"].as_u64(), item["content_type"].as_str()), (Some(339), Some("image/jpeg")), "{listed}");
    assert!(item["etag"].as_str().is_some_and(|e| !e.is_empty()), "{listed}");
    let o = run(&["ls", "media:latest", "nothing-*"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("matches nothing"));

    // versions: the object changed between the two snapshots; one that did not, once.
    let versions: serde_json::Value =
        serde_json::from_slice(&ok(&["--json", "versions", "media", "img-0050.jpg"])).unwrap();
    let sizes: Vec<u64> = versions.as_array().unwrap().iter().map(|v| v["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [339, 500], "{versions}");
    assert!(versions.as_array().unwrap().iter().all(|v| v["changed"] == true), "{versions}");
    let same: serde_json::Value =
        serde_json::from_slice(&ok(&["--json", "versions", "media", "img-0002.jpg"])).unwrap();
    let changed: Vec<bool> = same.as_array().unwrap().iter().map(|v| v["changed"].as_bool().unwrap()).collect();
    assert_eq!(changed, [true, false], "{same}");

    // dump: one object's bytes, as of either snapshot.
    assert_eq!(ok(&["dump", &first[..8], "img-0050.jpg"]), body(50, 450));
    assert_eq!(ok(&["dump", "media:latest", "img-0050.jpg"]), body(1, 999));
    let o = run(&["dump", "media:latest", "img-0001.jpg"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no object"), "{o:?}");

    // restore --include: the dry run names the one write and that it replaces an object; then only it.
    let into = format!("s3://uploads/media/?endpoint={}&region=us-east-1&path-style=true", moto.endpoint());
    let dry =
        String::from_utf8(ok(&["restore", &first[..8], "--into", &into, "--include", "img-0050.jpg", "--dry-run"]))
            .unwrap();
    assert!(dry.contains("replace  img-0050.jpg") && dry.contains("would write 1 of 1 objects"), "{dry}");
    assert!(
        dry.contains("0 extra") && !dry.contains("extra (kept"),
        "a selection makes the rest of the bucket no extra: {dry}"
    );
    let dry = String::from_utf8(ok(&[
        "restore",
        &first[..8],
        "--into",
        &into,
        "--include",
        "img-00*",
        "--exclude",
        "img-005*",
        "--dry-run",
        "--delete-extra",
    ]))
    .unwrap();
    assert!(!dry.contains("new-") && !dry.contains("img-0050") && dry.contains("img-0000"), "{dry}");
    let day2 = helper(&moto, &["dump", "uploads", "media/"]);
    ok(&["restore", &first[..8], "--into", &into, "--include", "img-0050.jpg", "--force"]);
    let after: serde_json::Value = serde_json::from_str(&helper(&moto, &["dump", "uploads", "media/"])).unwrap();
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    let day2: serde_json::Value = serde_json::from_str(&day2).unwrap();
    assert_eq!(after["img-0050.jpg"], before["img-0050.jpg"], "the old version is back");
    for key in ["img-0100.jpg", "new-0.jpg", "img-0002.jpg"] {
        assert_eq!(after[key], day2[key], "{key} was left as it was");
    }
    assert_eq!(after.as_object().unwrap().len(), day2.as_object().unwrap().len());
    let o = run(&["restore", &first[..8], "--into", &into, "--include", "nope/**"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("picks no object"), "{o:?}");
}
