//! `type = "files"` targets: several paths (a directory and a single file elsewhere), excludes, and
//! restores that keep owners, modes, mtimes and symlinks, whole or one file at a time.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn chown(path: &std::path::Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

#[test]
fn a_files_target_keeps_owners_modes_mtimes_and_symlinks_and_restores_single_files() {
    let repo = Repo::new();
    let etc = repo.root.join("etc/app");
    std::fs::create_dir_all(etc.join("conf.d")).unwrap();
    std::fs::create_dir_all(etc.join("cache")).unwrap();
    std::fs::write(etc.join("app.env"), "DATABASE_URL=postgres://app@db/app\n").unwrap();
    std::fs::write(etc.join("conf.d/10-web.conf"), "workers = 4\n").unwrap();
    std::fs::write(etc.join("cache/blob.bin"), vec![7u8; 4096]).unwrap();
    std::fs::write(etc.join("conf.d/debug.log"), "noise\n").unwrap();
    std::os::unix::fs::symlink("conf.d/10-web.conf", etc.join("current.conf")).unwrap();
    let state = repo.root.join("infra/terraform.tfstate");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, mixed_data(1 << 20, 9)).unwrap();
    std::fs::set_permissions(etc.join("app.env"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(etc.join("conf.d"), std::fs::Permissions::from_mode(0o2750)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
    let old = filetime::FileTime::from_unix_time(1_650_000_000, 42);
    filetime::set_file_mtime(etc.join("app.env"), old).unwrap();
    // Owners other than the one restoring (root can give files away; others keep their own).
    let owners = if is_root() { Some((1234u32, 2345u32)) } else { None };
    if let Some((uid, gid)) = owners {
        chown(&etc.join("app.env"), uid, gid);
        chown(&etc.join("conf.d"), uid, gid);
        chown(&etc.join("current.conf"), uid, gid);
        chown(&state, 4321, 2345);
    }

    let cfg = repo.root.join("bunker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.config]\ntype = \"files\"\npaths = [\"{}\", \"{}\"]\nexclude = [\"*.log\", \"cache\"]\n",
            repo.path.display(),
            etc.display(),
            state.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &cfg).output().unwrap();
    let o = run(&["backup", "config"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A whole restore: every kept file with its content, mode, owner and mtime; the excluded ones absent.
    let out = repo.root.join("restored");
    let o = run(&["restore", "config", "--to", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (r_etc, r_state) = (out.join("app"), out.join("terraform.tfstate"));
    assert_eq!(std::fs::read_to_string(r_etc.join("app.env")).unwrap(), "DATABASE_URL=postgres://app@db/app\n");
    assert_eq!(std::fs::read(&r_state).unwrap(), mixed_data(1 << 20, 9));
    let m = std::fs::metadata(r_etc.join("app.env")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_650_000_000, 42));
    assert_eq!(std::fs::metadata(r_etc.join("conf.d")).unwrap().mode() & 0o7777, 0o2750);
    assert_eq!(std::fs::metadata(&r_state).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read_link(r_etc.join("current.conf")).unwrap().to_str(), Some("conf.d/10-web.conf"));
    assert!(!r_etc.join("conf.d/debug.log").exists(), "an excluded file was restored");
    assert!(!r_etc.join("cache").exists(), "an excluded directory was restored");
    if let Some((uid, gid)) = owners {
        let m = std::fs::metadata(r_etc.join("app.env")).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid));
        let m = std::fs::metadata(r_etc.join("conf.d")).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid));
        let m = std::fs::symlink_metadata(r_etc.join("current.conf")).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "a symlink's own owner");
        let m = std::fs::metadata(&r_state).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 2345));
    }

    // The same directory again: refused without --force, then allowed with it.
    std::fs::write(r_etc.join("app.env"), "edited\n").unwrap();
    let o = run(&["restore", "config", "--to", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(r_etc.join("app.env")).unwrap(), "edited\n", "a refused restore wrote");
    let o = run(&["restore", "config", "--to", out.to_str().unwrap(), "--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(r_etc.join("app.env")).unwrap(), "DATABASE_URL=postgres://app@db/app\n");

    // One file only, with its mode and owner: the state file, as after a bad `terraform apply`.
    let one = repo.root.join("one");
    let o = run(&["restore", "config", "--to", one.to_str().unwrap(), "--include", "terraform.tfstate"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(one.join("terraform.tfstate")).unwrap(), mixed_data(1 << 20, 9));
    assert_eq!(std::fs::metadata(one.join("terraform.tfstate")).unwrap().mode() & 0o7777, 0o600);
    if owners.is_some() {
        assert_eq!(std::fs::metadata(one.join("terraform.tfstate")).unwrap().uid(), 4321);
    }
    assert!(!one.join("app").exists(), "--include restored more than it names");

    // ls: the tree's paths (a path picks what lies below it), with modes, sizes and mtimes in --long and
    // --json; dump of one file by path; --exclude is refused for a files snapshot, not ignored.
    let ls = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let all = ls(&["ls", "config:latest"]);
    for want in
        ["app/", "app/app.env", "app/conf.d/", "app/conf.d/10-web.conf", "app/current.conf", "terraform.tfstate"]
    {
        assert!(all.lines().any(|l| l == want), "{want} missing from:\n{all}");
    }
    assert!(!all.contains("debug.log"), "{all}");
    assert_eq!(ls(&["ls", "config:latest", "app/conf.d"]).lines().count(), 2);
    let long = ls(&["ls", "--long", "config:latest", "app/current.conf"]);
    assert!(long.contains("symlink") && long.contains("-> conf.d/10-web.conf"), "{long}");
    let listed: serde_json::Value = serde_json::from_str(&ls(&["--json", "ls", "config:latest", "**/*.env"])).unwrap();
    let env = &listed["items"][0];
    assert_eq!((env["path"].as_str(), env["mode"].as_u64()), (Some("app/app.env"), Some(0o640)), "{listed}");
    assert_eq!(env["modified"], "2022-04-15T05:20:00Z", "{listed}");
    let o = run(&["dump", "config:latest", "app/app.env"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "DATABASE_URL=postgres://app@db/app\n");
    let o = run(&["restore", "config", "--to", repo.root.join("x").to_str().unwrap(), "--exclude", "*.env"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--exclude does not apply"), "{err}");
    assert!(!repo.root.join("x").exists(), "a refused restore wrote");
}

/// Names that are not UTF-8 come back byte for byte; named pipes and device nodes come back as what they
/// are; a socket is left out without making the snapshot incomplete.
#[test]
fn odd_names_pipes_devices_and_sockets() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let repo = Repo::new();
    let dir = repo.root.join("odd");
    std::fs::create_dir_all(&dir).unwrap();
    let latin1 = OsStr::from_bytes(b"caf\xe9.txt");
    let other = OsStr::from_bytes(b"caf\xe8.txt");
    std::fs::write(dir.join(latin1), b"latin-1 name").unwrap();
    std::fs::write(dir.join(other), b"another one that renders alike").unwrap();
    let fifo = std::ffi::CString::new(dir.join("pipe").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path; mkfifo only creates a file system entry.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    if is_root() {
        let dev = std::ffi::CString::new(dir.join("null").as_os_str().as_bytes()).unwrap();
        // SAFETY: as above; 1:3 is /dev/null's number.
        assert_eq!(unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }, 0);
    }
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("app.sock")).unwrap();
    let o = repo.run(&["backup", "--path", dir.to_str().unwrap(), "--name", "odd"]);
    assert_eq!(o.status.code(), Some(0), "complete, not incomplete: {}", String::from_utf8_lossy(&o.stderr));
    let to = repo.root.join("restored");
    repo.ok(&["restore", "odd:latest", "--to", to.to_str().unwrap()]);
    let back = to.join("odd");
    assert_eq!(std::fs::read(back.join(latin1)).unwrap(), b"latin-1 name");
    assert_eq!(std::fs::read(back.join(other)).unwrap(), b"another one that renders alike");
    let m = std::fs::symlink_metadata(back.join("pipe")).unwrap();
    assert!(m.file_type().is_fifo() && m.mode() & 0o777 == 0o640, "{m:?}");
    if is_root() {
        let m = std::fs::symlink_metadata(back.join("null")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3), "{m:?}");
    }
    assert!(!back.join("app.sock").exists(), "a socket is not restored");
}

/// A large file that changes while it is read is kept with a warning naming it (exit 3). (A small one is
/// read again first, and only named when it changed during that read too.)
#[test]
fn a_large_file_changing_while_read_is_named() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    let repo = Repo::new();
    let dir = repo.root.join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("app.log");
    std::fs::write(&log, mixed_data(24 << 20, 3)).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"a line of log\n").unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let o = repo.run(&["backup", "--path", dir.to_str().unwrap(), "--name", "live"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("app.log") && err.contains("changed while it was read"), "{err}");
}
