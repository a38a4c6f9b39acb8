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
}
