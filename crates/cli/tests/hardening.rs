//! Secrets stay in bunker, files stay private, output and errors behave as a Unix tool's should.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::moto::Moto;
use common::{mixed_data, Repo, PASSWORD};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn modes(dir: &Path, out: &mut Vec<(String, u32, bool)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        out.push((e.path().display().to_string(), m.permissions().mode() & 0o777, m.is_dir()));
        if m.is_dir() {
            modes(&e.path(), out);
        }
    }
}

#[test]
fn repository_files_are_private_whatever_the_umask() {
    let repo = Repo::uninitialised(None, Vec::new(), Vec::new());
    let bunker = env!("CARGO_BIN_EXE_bunker");
    let input = repo.root.join("in");
    std::fs::write(&input, mixed_data(200_000, 1)).unwrap();
    for args in [vec!["init"], vec!["backup", "--path", input.to_str().unwrap(), "--name", "a"]] {
        let inner = repo.cmd(&args);
        let mut c = Command::new("sh");
        c.arg("-c").arg("umask 000; exec \"$@\"").arg("sh").arg(bunker).args(&args);
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let mut all = Vec::new();
    modes(&repo.path, &mut all);
    assert!(all.len() > 8, "{all:?}");
    for (path, mode, dir) in all {
        assert_eq!(mode, if dir { 0o700 } else { 0o600 }, "{path}");
    }
}

#[test]
fn children_never_inherit_bunker_passwords() {
    let repo = Repo::new();
    let out_file = repo.root.join("hook-env");
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[targets.envdump]\ntype = \"command\"\nbackup = \"env\"\nbefore_backup = \"env > {}\"\n",
            out_file.display()
        ),
    )
    .unwrap();
    let o = repo
        .cmd(&["backup", "envdump"])
        .env("BUNKER_CONFIG", &config)
        .env("BUNKER_SECONDARY_PASSWORD", "second-secret-XYZ")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let hook_env = std::fs::read_to_string(&out_file).unwrap();
    let stream = String::from_utf8(repo.dump("envdump:latest")).unwrap();
    for (what, text) in [("the hook", &hook_env), ("the command target", &stream)] {
        assert!(text.contains("BUNKER_TARGET") || what == "the command target", "{what}: {text}");
        assert!(!text.contains(PASSWORD) && !text.contains("second-secret-XYZ"), "{what} saw a password: {text}");
        assert!(!text.contains("BUNKER_PASSWORD"), "{what}: {text}");
    }
}

#[test]
fn secrets_never_reach_the_debug_log_and_urls_with_credentials_are_refused() {
    let moto = Moto::start();
    moto.create_bucket("media");
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[targets.media]\ntype = \"s3\"\nbucket = \"media\"\nendpoint = \"{}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"ConfigSecret-XYZ\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    for verbosity in ["-v", "-vv"] {
        let o = repo.cmd(&[verbosity, "backup", "media"]).env("BUNKER_CONFIG", &config).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let log = stderr(&o);
        assert!(!log.contains("ConfigSecret-XYZ") && !log.contains(PASSWORD), "{verbosity}: a secret in the log");
    }
    let o =
        repo.cmd(&["snapshots"]).env("BUNKER_REPO", "s3://AKIAEXAMPLE:UrlSecret-XYZ@bucket/prefix").output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID") && !err.contains("UrlSecret-XYZ"), "{err}");
    // A bucket that does not exist is no repository: exit 10, like a missing directory.
    let o = repo
        .cmd(&["snapshots"])
        .env("BUNKER_REPO", format!("s3://no-such-bucket/repo?endpoint={}&region=us-east-1", moto.endpoint()))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(10), "{}", stderr(&o));
}

#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let repo = Repo::new();
    for i in 0..60 {
        repo.backup_bytes(&format!("s{i}"), &mixed_data(2_000, i));
    }
    repo.backup_bytes("big", &mixed_data(8 << 20, 99));
    for args in [&["snapshots"][..], &["history"], &["dump", "big:latest"]] {
        // A pipe of one page: every command here writes more than that, so it is still writing when the
        // reader hangs up, however fast it runs (with the default 64 KiB pipe, a short listing could be
        // written whole before the reader closed it, and end with 0).
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        assert!(unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) } >= 4096);
        let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let child = repo.cmd(args).stdout(Stdio::from(write_end)).stderr(Stdio::piped()).spawn().unwrap();
        let mut reader = std::fs::File::from(read_end);
        // Read one byte, then hang up.
        let mut one = [0u8; 1];
        reader.read_exact(&mut one).unwrap();
        drop(reader);
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("error"), "{args:?}: {err}");
    }
}

#[test]
fn bad_input_is_named() {
    let repo = Repo::new();
    let tree = repo.root.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), b"a").unwrap();
    repo.ok(&["backup", "--path", tree.to_str().unwrap(), "--name", "t"]);
    let to = repo.root.join("out");
    let o = repo.run(&["restore", "t:latest", "--to", to.to_str().unwrap(), "--include", "nothing/like/this"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("\"nothing/like/this\"") && err.contains("matched nothing"), "{err}");

    let file = repo.root.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = repo.cmd(&["init"]).env("BUNKER_REPO", &file).output().unwrap();
    assert!(stderr(&o).contains("is a file, not a directory"), "{}", stderr(&o));

    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        "[retention]\nkeep_dayly = 3\n\n[targets.db]\ntype = \"postgres\"\nurl = \"postgresql://localhost/app\"\nbogus_one = 1\nbogus_two = 2\n\n\
         [targets.cache]\ntype = \"rediss\"\nurl = \"redis://localhost\"\n",
    )
    .unwrap();
    let o = repo.run(&["--config", config.to_str().unwrap(), "config", "check"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for needle in ["keep_dayly", "\"bogus_one\", \"bogus_two\"", "\"rediss\"", "3 errors"] {
        assert!(err.contains(needle), "config check names {needle}: {err}");
    }
}
