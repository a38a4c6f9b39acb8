//! `type = "s3"` targets against moto on loopback: a bucket of ~1000 small objects, multipart objects of
//! tens of MiB, metadata and unicode keys; a second day downloads only what changed; restores into another
//! bucket equal the original (checked here with boto3, an independent client).

mod common;

use std::process::Command;

use common::moto::{workspace, Moto};
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
    for i in range(1000):
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
    assert!(out.status.success(), "helper {args:?}: {}", String::from_utf8_lossy(&out.stderr));
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
        out.contains("write  media/img-0000.jpg")
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
