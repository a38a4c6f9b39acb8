//! Data goes in and comes back out identical; unchanged and slightly changed data cost (almost) nothing.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::*;

#[test]
fn streams_of_edge_sizes_round_trip() {
    let repo = Repo::new();
    let k = 1024;
    // Empty, one byte, and each side of the default chunk bounds (512 KiB min, 4 MiB max).
    for (i, len) in [0, 1, 512 * k - 1, 512 * k, 512 * k + 1, 4096 * k - 1, 4096 * k, 4096 * k + 1, 8192 * k + 7]
        .into_iter()
        .enumerate()
    {
        let data = mixed_data(len, i as u64);
        let id = repo.backup_bytes(&format!("s{i}"), &data);
        assert_eq!(repo.dump(&id), data, "size {len}");
    }
    repo.ok(&["check", "--read-data"]);
}

#[test]
fn one_gib_stream_round_trips() {
    let repo = Repo::new();
    let len = 1u64 << 30;
    let mut child = repo
        .cmd(&["backup", "--stdin", "--name", "big", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let written = stream_into(&mut stdin, len, 7);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["bytes_read"], len);

    let mut dump = repo.cmd(&["dump", "big:latest"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = dump.stdout.take().unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    assert!(dump.wait().unwrap().success());
    assert_eq!(total, len);
    assert_eq!(hasher.finalize(), written);
}

#[test]
fn unchanged_data_adds_under_1_percent_and_an_edit_costs_the_edit_plus_two_chunks() {
    let repo = Repo::new();
    let len = 200 << 20;
    let mut data = mixed_data(len, 42);
    repo.backup_bytes("db", &data);
    let first = repo.disk_size();
    assert!(first > 0);

    repo.backup_bytes("db", &data);
    let again = repo.disk_size() - first;
    assert!((again as f64) < 0.01 * first as f64, "unchanged re-backup added {again} bytes to {first}");

    // Overwrite 1% in the middle with other bytes.
    let edit = len / 100;
    let mid = len / 2;
    data[mid..mid + edit].copy_from_slice(&random_data(edit, 99));
    let before = repo.disk_size();
    let id = repo.backup_bytes("db", &data);
    let added = repo.disk_size() - before;
    // Content-defined chunking re-stores the edited bytes and the chunk on each side of the edit, at most
    // 4 MiB each (the default maximum); the chunker's seed is per repository, so where those boundaries fall
    // (and so the exact figure) varies from run to run. 64 KiB covers the snapshot, tree and index files.
    let bound = edit + 2 * (4 << 20) + (64 << 10);
    assert!(added < bound as u64, "a {edit}-byte edit added {added} bytes (bound {bound}) to {first}");
    assert!((added as f64) < 0.10 * first as f64, "1% edit added {added} bytes to {first}");
    assert_eq!(repo.dump(&id), data);

    let stats = repo.json(&["stats"]);
    assert_eq!(stats["snapshots"], 3);
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 2.5, "{stats}");
}

#[test]
fn file_trees_keep_content_modes_mtimes_and_symlinks() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let repo = Repo::new();
    let src = repo.root.join("src");
    std::fs::create_dir_all(src.join("conf/nested")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("terraform.tfstate"), mixed_data(3 << 20, 1)).unwrap();
    std::fs::write(src.join("conf/.env"), b"SECRET=1\n").unwrap();
    std::fs::write(src.join("conf/nested/app.log"), b"log\n").unwrap();
    std::fs::write(src.join("zero"), b"").unwrap();
    std::fs::set_permissions(src.join("conf/.env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("conf/.env", src.join("link")).unwrap();
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(src.join("terraform.tfstate"), old).unwrap();

    repo.ok(&["backup", "--path", src.to_str().unwrap(), "--name", "files", "--exclude", "*.log"]);
    let out = repo.root.join("out");
    repo.ok(&["restore", "files:latest", "--to", out.to_str().unwrap()]);
    let dst = out.join("src");
    assert_eq!(std::fs::read(dst.join("terraform.tfstate")).unwrap(), mixed_data(3 << 20, 1));
    assert_eq!(std::fs::read(dst.join("conf/.env")).unwrap(), b"SECRET=1\n");
    assert_eq!(std::fs::metadata(dst.join("conf/.env")).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_link(dst.join("link")).unwrap().to_str(), Some("conf/.env"));
    assert!(dst.join("empty").is_dir());
    assert_eq!(std::fs::read(dst.join("zero")).unwrap(), b"");
    assert!(!dst.join("conf/nested/app.log").exists(), "excluded file was restored");
    let m = std::fs::metadata(dst.join("terraform.tfstate")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));

    // Refuses a non-empty target without --force; --include restores single files.
    let again = repo.run(&["restore", "files:latest", "--to", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let one = repo.root.join("one");
    repo.ok(&["restore", "files:latest", "--to", one.to_str().unwrap(), "--include", "src/conf/.env"]);
    assert!(one.join("src/conf/.env").exists());
    assert!(!one.join("src/terraform.tfstate").exists());
    // A single file of a tree can be dumped.
    assert_eq!(repo.dump_path("files:latest", "src/conf/.env"), b"SECRET=1\n");
}

trait DumpPath {
    fn dump_path(&self, sel: &str, path: &str) -> Vec<u8>;
}
impl DumpPath for Repo {
    fn dump_path(&self, sel: &str, path: &str) -> Vec<u8> {
        self.ok(&["dump", sel, path])
    }
}

#[test]
fn concurrent_backups_both_land() {
    let repo = Repo::new();
    let a = repo.root.join("a");
    let b = repo.root.join("b");
    std::fs::write(&a, mixed_data(30 << 20, 1)).unwrap();
    std::fs::write(&b, mixed_data(30 << 20, 2)).unwrap();
    let spawn = |name: &str, input: &std::path::Path| {
        repo.cmd(&["backup", "--stdin", "--name", name])
            .stdin(std::fs::File::open(input).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ca = spawn("a", &a);
    let cb = spawn("b", &b);
    for c in [ca, cb] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(repo.dump("a:latest"), std::fs::read(&a).unwrap());
    assert_eq!(repo.dump("b:latest"), std::fs::read(&b).unwrap());
    repo.ok(&["check", "--read-data"]);
}

#[test]
fn thousands_of_small_files_round_trip() {
    let repo = Repo::new();
    let src = repo.root.join("many");
    for d in 0..30 {
        let dir = src.join(format!("d{d:02}/nested"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let body = mixed_data(f * 37 + d, (d * 1000 + f) as u64);
            std::fs::write(dir.join(format!("f{f:03}")), body).unwrap();
        }
    }
    repo.ok(&["backup", "--path", src.to_str().unwrap(), "--name", "many"]);
    let out = repo.root.join("out");
    repo.ok(&["restore", "many:latest", "--to", out.to_str().unwrap()]);
    for d in 0..30 {
        for f in 0..100 {
            let rel = format!("d{d:02}/nested/f{f:03}");
            assert_eq!(
                std::fs::read(out.join("many").join(&rel)).unwrap(),
                mixed_data(f * 37 + d, (d * 1000 + f) as u64),
                "{rel}"
            );
        }
    }
    let snap = &repo.json(&["snapshots"])[0];
    assert_eq!(snap["stats"]["files"], 3000);
}
