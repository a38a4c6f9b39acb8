//! Recipients repositories through the binary: a write-only backup host backs up, deduplicates and
//! reports, but cannot read what it wrote; an identity reads everything, with or without a password.

mod common;

use std::path::Path;
use std::process::Output;

use common::{age_key_in as identity_in, AgeKey, Repo};

const WRITE_ONLY: i32 = 12;

fn recipients_repo() -> (Repo, AgeKey) {
    let repo = Repo::uninitialised(None, Vec::new(), Vec::new());
    let keys = identity_in(&repo.root, "identity.txt");
    let out = repo.ok(&["init", "--recipient", &keys.public]);
    assert!(String::from_utf8_lossy(&out).contains("write-only"), "{}", String::from_utf8_lossy(&out));
    (repo, keys)
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs with the identity and no password at all: what the offline restore host has.
fn with_identity(repo: &Repo, identity: &Path, args: &[&str]) -> Output {
    repo.cmd(args).env_remove("BUNKER_PASSWORD").env("BUNKER_IDENTITY_FILE", identity).output().unwrap()
}

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), b"alpha\n".repeat(1000)).unwrap();
    let noise: Vec<u8> = (0..600_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    std::fs::write(dir.join("sub/b.bin"), noise).unwrap();
}

#[test]
fn a_write_only_host_backs_up_and_reports_but_reads_nothing_back() {
    let (repo, keys) = recipients_repo();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(40503) >> 7) as u8).collect();
    let first = repo.backup_bytes("db", &data);
    let src = repo.root.join("src");
    tree(&src);
    repo.ok(&["backup", "--path", src.to_str().unwrap(), "--name", "files"]);

    // Deduplication works without reading anything back: a second backup stores under 1% of the data.
    let before = repo.disk_size();
    let second = repo.backup_bytes("db", &data);
    let added = repo.disk_size() - before;
    assert!(added * 100 < data.len() as u64, "the second backup added {added} bytes");

    // Listing, history and health work with the write key alone.
    assert_eq!(repo.snapshot_count(), 3);
    repo.ok(&["history"]);
    let status = repo.run(&["status"]);
    assert!(code(&status) != WRITE_ONLY && code(&status) != 1, "{}", stderr(&status));
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("1 age recipient(s); this host's key is write-only"), "{shown}");
    let json = repo.json(&["status"]);
    assert_eq!(json["repository"]["protection"]["recipients"], 1, "{json:#}");
    assert_eq!(json["repository"]["protection"]["write_only"], true, "{json:#}");
    let keys_listed = String::from_utf8_lossy(&repo.ok(&["key", "list"])).into_owned();
    assert!(keys_listed.contains("write-only") && keys_listed.contains("identity"), "{keys_listed}");

    // Content does not open: one clear line, exit 12, and the restore target is never touched.
    for args in [
        vec!["dump", first.as_str()],
        vec!["check", "--read-data"],
        vec!["restore", "files:latest", "--to", repo.root.join("out").to_str().unwrap()],
    ] {
        let out = repo.run(&args);
        assert_eq!(code(&out), WRITE_ONLY, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--identity"), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{args:?}: {}", stderr(&out));
    }
    assert!(!repo.root.join("out").exists() || std::fs::read_dir(repo.root.join("out")).unwrap().next().is_none());

    // The identity opens everything, without a password: byte for byte.
    for id in [&first, &second] {
        let out = with_identity(&repo, &keys.identity, &["dump", id]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(out.stdout == data, "dump {id} differs");
    }
    let to = repo.root.join("restored");
    let out = with_identity(&repo, &keys.identity, &["restore", "files:latest", "--to", to.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(to.join("src/sub/b.bin")).unwrap(), std::fs::read(src.join("sub/b.bin")).unwrap());
    let out = with_identity(&repo, &keys.identity, &["check", "--read-data"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // With the password too (a host that has both).
    let out = repo.cmd(&["dump", &first]).env("BUNKER_IDENTITY_FILE", &keys.identity).output().unwrap();
    assert!(out.status.success() && out.stdout == data, "{}", stderr(&out));
}

#[test]
fn wrong_damaged_and_locked_identities_are_clear_errors() {
    let (repo, keys) = recipients_repo();
    let id = repo.backup_bytes("db", b"some rows\n");

    let other = identity_in(&repo.root, "other.txt");
    let out = with_identity(&repo, &other.identity, &["dump", &id]);
    assert_eq!(code(&out), WRITE_ONLY, "{}", stderr(&out));
    assert!(stderr(&out).contains("not one of the recipients"), "{}", stderr(&out));

    let damaged = repo.root.join("damaged.txt");
    let text = std::fs::read_to_string(&keys.identity).unwrap();
    std::fs::write(&damaged, text.replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1X")).unwrap();
    let out = with_identity(&repo, &damaged, &["dump", &id]);
    assert_eq!(code(&out), WRITE_ONLY, "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged.txt") && stderr(&out).contains("line 2"), "{}", stderr(&out));
    let secret = text.lines().nth(1).unwrap();
    assert!(!stderr(&out).contains(&secret["AGE-SECRET-KEY-1".len()..]), "a secret is never echoed: {}", stderr(&out));

    // Passphrase-protected (as `age -p` writes it).
    let enc = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from("open sesame".to_string()));
    let mut locked = Vec::new();
    {
        use std::io::Write;
        let mut w = enc.wrap_output(&mut locked).unwrap();
        w.write_all(text.as_bytes()).unwrap();
        w.finish().unwrap();
    }
    let locked_path = repo.root.join("identity.age");
    std::fs::write(&locked_path, locked).unwrap();
    let out = with_identity(&repo, &locked_path, &["dump", &id]);
    assert_eq!(code(&out), WRITE_ONLY, "{}", stderr(&out));
    assert!(stderr(&out).contains("BUNKER_IDENTITY_PASSPHRASE"), "{}", stderr(&out));
    let out = repo
        .cmd(&["dump", &id])
        .env_remove("BUNKER_PASSWORD")
        .env("BUNKER_IDENTITY_FILE", &locked_path)
        .env("BUNKER_IDENTITY_PASSPHRASE", "not it")
        .output()
        .unwrap();
    assert_eq!(code(&out), WRITE_ONLY, "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong passphrase"), "{}", stderr(&out));
    let out = repo
        .cmd(&["dump", &id])
        .env_remove("BUNKER_PASSWORD")
        .env("BUNKER_IDENTITY_FILE", &locked_path)
        .env("BUNKER_IDENTITY_PASSPHRASE", "open sesame")
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout == b"some rows\n", "{}", stderr(&out));
    assert!(!stderr(&out).contains("open sesame"));
}

#[test]
fn write_only_slots_are_for_recipients_repositories() {
    let plain = Repo::new();
    let out = plain.cmd(&["key", "add", "--write-only"]).env("BUNKER_NEW_PASSWORD", "second").output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("init --recipient"), "{}", stderr(&out));

    let (repo, keys) = recipients_repo();
    let out = repo.cmd(&["key", "add", "--write-only"]).env("BUNKER_NEW_PASSWORD", "second host").output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("write-only"), "{}", stderr(&out));
    // The new slot writes as the first does: sealed for the same recipients.
    let input = repo.root.join("in");
    std::fs::write(&input, b"from the second host").unwrap();
    let out = repo
        .cmd(&["backup", "--stdin", "--name", "db", "--json"])
        .env("BUNKER_PASSWORD", "second host")
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = with_identity(&repo, &keys.identity, &["dump", snap["id"].as_str().unwrap()]);
    assert_eq!(out.stdout, b"from the second host", "{}", stderr(&out));
    let out = repo.run(&["dump", snap["id"].as_str().unwrap()]);
    assert_eq!(code(&out), WRITE_ONLY, "{}", stderr(&out));

    // A bad recipient is refused before anything is created.
    let fresh = Repo::uninitialised(None, Vec::new(), Vec::new());
    let out = fresh.run(&["init", "--recipient", "age1notakey"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("recipient"), "{}", stderr(&out));
    assert!(!fresh.path.join("config").exists());
}

/// Migration: `copy --to NAME --recipient …` moves a password repository's history into a new
/// recipients repository, re-sealed, where the backup host's password then opens a write key only.
#[test]
fn copy_moves_a_password_history_into_a_recipients_repository() {
    let old = Repo::new();
    let data = b"years of dumps\n".repeat(40_000);
    let id = old.backup_bytes("db", &data);
    let keys = identity_in(&old.root, "identity.txt");
    let new_dir = old.root.join("sealed");
    let cfg = old.root.join("bunker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nurl = \"{}\"\n\n[repositories.sealed]\nurl = \"{}\"\npassword = \"new host pw\"\n",
            old.path.display(),
            new_dir.display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = old.ok(&["--config", cfg, "copy", "--to", "sealed", "--recipient", &keys.public]);
    assert!(String::from_utf8_lossy(&out).contains("created sealed"), "{}", String::from_utf8_lossy(&out));
    // Run again: nothing to copy; a different recipient for the existing secondary is refused.
    let again: serde_json::Value =
        serde_json::from_slice(&old.ok(&["--config", cfg, "--json", "copy", "--to", "sealed"])).unwrap();
    assert_eq!(again["snapshots"], 0, "{again:#}");
    let other = identity_in(&old.root, "other.txt");
    let out = old.run(&["--config", cfg, "copy", "--to", "sealed", "--recipient", &other.public]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    let sealed = Repo::uninitialised(
        Some(new_dir.to_string_lossy().into_owned()),
        vec![("BUNKER_PASSWORD".into(), "new host pw".into())],
        Vec::new(),
    );
    let out = sealed.run(&["dump", &id]);
    assert_eq!(code(&out), WRITE_ONLY, "the new repository's password reads nothing: {}", stderr(&out));
    let out = with_identity(&sealed, &keys.identity, &["dump", &id]);
    assert!(out.status.success() && out.stdout == data, "{}", stderr(&out));
    let out = with_identity(&sealed, &keys.identity, &["check", "--read-data"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// An SSH key pair as age allows it: the public key in a recipients file, the passphrase-protected
/// private key as the identity.
#[test]
fn an_ssh_key_is_a_recipient_and_its_private_key_the_identity() {
    let repo = Repo::uninitialised(None, Vec::new(), Vec::new());
    let key = repo.root.join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "ssh pass phrase", "-C", "dr@example", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(made.success());
    let public = std::fs::read_to_string(repo.root.join("id_ed25519.pub")).unwrap();
    let file = repo.root.join("recipients.txt");
    std::fs::write(&file, format!("# the DR team\n\n{public}")).unwrap();
    repo.ok(&["init", "--recipients-file", file.to_str().unwrap()]);
    let id = repo.backup_bytes("db", b"rows sealed for an ssh key\n");

    let out = with_identity(&repo, &key, &["dump", &id]);
    assert_eq!(code(&out), WRITE_ONLY, "{}", stderr(&out));
    assert!(stderr(&out).contains("passphrase-protected"), "{}", stderr(&out));
    let out = repo
        .cmd(&["dump", &id])
        .env_remove("BUNKER_PASSWORD")
        .env("BUNKER_IDENTITY_FILE", &key)
        .env("BUNKER_IDENTITY_PASSPHRASE", "ssh pass phrase")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"rows sealed for an ssh key\n");
}

/// A damaged snapshot file elsewhere, read from a fresh host: the identity still restores the others.
#[test]
fn a_damaged_file_elsewhere_does_not_stop_the_identity_on_a_cold_host() {
    let (repo, keys) = recipients_repo();
    let data = b"kept rows\n".repeat(10_000);
    let kept = repo.backup_bytes("db", &data);
    let other = repo.backup_bytes("cache", b"another target");
    let path = repo.path.join("snapshots").join(&other);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let out = repo
        .cmd(&["dump", &kept])
        .env_remove("BUNKER_PASSWORD")
        .env("BUNKER_IDENTITY_FILE", &keys.identity)
        .env("BUNKER_CACHE_DIR", "off")
        .output()
        .unwrap();
    assert!(matches!(code(&out), 0 | 3), "{}", stderr(&out));
    assert!(out.stdout == data, "{}", stderr(&out));
}
