//! Redis targets against scratch `redis-server`s: an RDB over the replication protocol and a key-by-key
//! dump, each restored into an empty server and compared with `DEBUG DIGEST` (every key, type, value and
//! whether it expires), plus the RDB file written for a data directory.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use bunker_scratch::ScratchRedis;
use common::*;

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends raw commands through `redis-cli --pipe`.
fn pipe(port: u16, password: Option<&str>, commands: &[Vec<u8>]) {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-p", &port.to_string(), "--no-auth-warning", "--pipe"]);
    if let Some(p) = password {
        cmd.args(["-a", p]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for c in commands {
        stdin.write_all(c).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("errors: 0"), "redis-cli --pipe: {text}");
}

fn cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-p", &port.to_string(), "--no-auth-warning"]);
    if let Some(p) = password {
        cmd.args(["-a", p]);
    }
    let out = cmd.args(args).output().unwrap();
    assert!(out.status.success(), "redis-cli {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn digest(port: u16, password: Option<&str>) -> String {
    cli(port, password, &["DEBUG", "DIGEST"])
}

/// Every type, binary keys and values, TTLs, a 20 MiB value, two databases.
fn populate(port: u16, password: &str) {
    let mut c: Vec<Vec<u8>> = vec![
        resp(&[b"SET", b"plain", b"hello"]),
        resp(&[b"SET", b"\x00\xffbinary\r\nkey", b"\x01\x02\x00\xfe value"]),
        resp(&[b"SET", b"counter", b"12345"]),
        resp(&[b"SET", b"session:1", b"alive", b"EX", b"3600"]),
        resp(&[b"SET", b"session:2", b"alive", b"PX", b"7200000"]),
    ];
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    c.push(resp(&[b"SET", b"big", &big]));
    for i in 0..2000u32 {
        c.push(resp(&[b"RPUSH", b"queue", format!("job-{i}").as_bytes()]));
        c.push(resp(&[b"SADD", b"tags", format!("t{}", i % 700).as_bytes()]));
        c.push(resp(&[b"ZADD", b"board", format!("{}", i as f64 * 1.5).as_bytes(), format!("p{i}").as_bytes()]));
        c.push(resp(&[b"HSET", b"user:big", format!("f{i}").as_bytes(), format!("v{i}").as_bytes()]));
    }
    c.push(resp(&[b"HSET", b"user:small", b"name", b"ada", b"plan", b"pro"]));
    c.push(resp(&[b"ZADD", b"tiny", b"1", b"a", b"inf", b"b"]));
    c.push(resp(&[b"EXPIRE", b"queue", b"86400"]));
    for i in 0..50u32 {
        c.push(resp(&[b"XADD", b"events", b"*", b"n", i.to_string().as_bytes()]));
    }
    c.push(resp(&[b"XGROUP", b"CREATE", b"events", b"workers", b"0"]));
    c.push(resp(&[b"XREADGROUP", b"GROUP", b"workers", b"w1", b"COUNT", b"5", b"STREAMS", b"events", b">"]));
    c.push(resp(&[b"SELECT", b"3"]));
    for i in 0..500u32 {
        c.push(resp(&[b"SET", format!("cache:{i}").as_bytes(), format!("{i}").repeat(20).as_bytes()]));
    }
    c.push(resp(&[b"SELECT", b"0"]));
    c.push(resp(&[b"ACL", b"SETUSER", b"backup", b"on", b">backup-pw", b"~*", b"&*", b"+@all"]));
    pipe(port, Some(password), &c);
}

fn write_config(repo: &Repo, port: u16) -> std::path::PathBuf {
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\n\n\
             [targets.cache]\ntype = \"redis\"\nurl = \"redis://backup:backup-pw@127.0.0.1:{port}\"\n\n\
             [targets.cache-keys]\ntype = \"redis\"\nmode = \"keys\"\nurl = \"redis://backup:backup-pw@127.0.0.1:{port}\"\n",
            repo.path.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn rdb_and_key_snapshots_restore_every_key_value_and_ttl() {
    let source =
        ScratchRedis::start_with(None, &["--enable-debug-command", "yes", "--requirepass", "admin-pw"]).unwrap();
    populate(source.port(), "admin-pw");
    let want = digest(source.port(), Some("admin-pw"));
    let repo = Repo::new();
    let config = write_config(&repo, source.port());
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &config).output().unwrap();
    let ok = |args: &[&str]| {
        let out = run(args);
        let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "bunker {args:?}: {e}{o}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    ok(&["backup", "cache"]);
    ok(&["backup", "cache-keys"]);
    let snaps: serde_json::Value = serde_json::from_str(&ok(&["snapshots", "--json"])).unwrap();
    let rdb = snaps.as_array().unwrap().iter().find(|s| s["name"] == "cache").unwrap();
    assert_eq!(rdb["kind"], "redis-rdb");
    assert_eq!(rdb["meta"]["exact_counts"], true, "{rdb}");
    assert_eq!(rdb["meta"]["databases"]["0"]["keys"], 13, "{rdb}");
    assert_eq!(rdb["meta"]["databases"]["0"]["expires"], 3, "{rdb}");
    assert_eq!(rdb["meta"]["databases"]["3"]["keys"], 500, "{rdb}");
    assert!(rdb["meta"]["rdb_version"].as_u64().unwrap() >= 9);
    assert!(rdb["meta"]["redis_version"].as_str().unwrap().starts_with('7'));
    let keys = snaps.as_array().unwrap().iter().find(|s| s["name"] == "cache-keys").unwrap();
    assert_eq!(keys["kind"], "redis-keys");
    assert_eq!(keys["meta"]["databases"], rdb["meta"]["databases"]);

    // Each into an empty server: the same dataset, checked by bunker (counts, sampled values and TTLs)
    // and here by the servers' own digests.
    for name in ["cache", "cache-keys"] {
        let target = ScratchRedis::start_with(None, &["--enable-debug-command", "yes"]).unwrap();
        let out = ok(&["restore", name, "--into", &target.url()]);
        assert!(out.contains("sampled keys compared"), "{out}");
        assert_eq!(digest(target.port(), None), want, "{name}");
        let ttl: i64 = cli(target.port(), None, &["TTL", "session:1"]).parse().unwrap();
        assert!((3500..=3600).contains(&ttl), "{name}: TTL {ttl}");
        // Not into a server that holds keys, unless --force.
        let out = run(&["restore", name, "--into", &target.url()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not empty") && err.contains("--force"), "{err}");
        cli(target.port(), None, &["SET", "plain", "changed"]);
        ok(&["restore", name, "--into", &target.url(), "--force"]);
        assert_eq!(digest(target.port(), None), want, "{name} after --force");
    }

    // One family of keys: ls shows them with their TTLs; --match restores only them, with their TTLs,
    // into a live server that keeps its other keys; --db narrows to one database.
    let ls = ok(&["--json", "ls", "cache:latest", "session:*"]);
    let listed: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    assert!(items.iter().all(|i| i["kind"] == "key" && i["detail"].as_str().unwrap().contains("ttl")), "{listed}");
    for name in ["cache", "cache-keys"] {
        let live = ScratchRedis::start_with(None, &[]).unwrap();
        cli(live.port(), None, &["SET", "live:keep", "mine"]);
        let out = ok(&["restore", name, "--into", &live.url(), "--match", "session:*"]);
        assert!(out.contains("2 keys picked"), "{name}: {out}");
        assert_eq!(cli(live.port(), None, &["DBSIZE"]), "3", "{name}: only the picked keys came back");
        assert_eq!(cli(live.port(), None, &["GET", "session:2"]), "alive");
        let ttl: i64 = cli(live.port(), None, &["TTL", "session:2"]).parse().unwrap();
        assert!((7000..=7200).contains(&ttl), "{name}: TTL {ttl}");
        assert_eq!(cli(live.port(), None, &["GET", "live:keep"]), "mine");
        // A picked key that exists is not replaced without --force.
        let out = run(&["restore", name, "--into", &live.url(), "--match", "session:1"]);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--force"), "{name}");
        let out = ok(&["restore", name, "--into", &live.url(), "--db", "3", "--match", "cache:1*"]);
        assert!(out.contains("111 keys picked"), "{name}: {out}");
        assert_eq!(cli(live.port(), None, &["-n", "3", "DBSIZE"]), "111");
        let out = run(&["restore", name, "--into", &live.url(), "--match", "nothing:*"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("picks no key"), "{name}");
    }

    // The RDB file itself, for a data directory.
    let file = repo.root.join("dump.rdb");
    ok(&["restore", "cache", "--rdb-file", file.to_str().unwrap()]);
    let loaded = ScratchRedis::start_with(Some(&file), &["--enable-debug-command", "yes"]).unwrap();
    assert_eq!(digest(loaded.port(), None), want);
    let out = run(&["restore", "cache", "--rdb-file", file.to_str().unwrap()]);
    assert!(!out.status.success(), "an existing file was replaced without --force");
    let out = run(&["restore", "cache-keys", "--rdb-file", repo.root.join("x.rdb").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode = \"rdb\""));
}

#[test]
fn a_server_that_refuses_replication_gets_a_hint_to_use_keys_mode() {
    let source = ScratchRedis::start_with(None, &["--rename-command", "SYNC", ""]).unwrap();
    cli(source.port(), None, &["SET", "k", "v"]);
    cli(source.port(), None, &["ACL", "SETUSER", "backup", "on", ">backup-pw", "~*", "&*", "+@all"]);
    let repo = Repo::new();
    let config = write_config(&repo, source.port());
    let out = repo.cmd(&["backup", "cache"]).env("BUNKER_CONFIG", &config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mode = \"keys\""), "{err}");
    assert!(!err.contains("backup-pw"), "{err}");
    // Key by key works against the same server.
    let out = repo.cmd(&["backup", "cache-keys"]).env("BUNKER_CONFIG", &config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let history = repo.cmd(&["history", "--failed", "--json"]).env("BUNKER_CONFIG", &config).output().unwrap();
    assert!(String::from_utf8_lossy(&history.stdout).contains("mode = \\\"keys\\\""));
    // A wrong password is named as such, without the password.
    let bad = repo.root.join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[repository]\nurl = \"{}\"\n[targets.cache]\ntype = \"redis\"\nurl = \"redis://backup:WRONG-pw@127.0.0.1:{}\"\n",
            repo.path.display(),
            source.port()
        ),
    )
    .unwrap();
    let out = repo.cmd(&["backup", "cache"]).env("BUNKER_CONFIG", &bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("authentication failed") && !err.contains("WRONG-pw"), "{err}");
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command.
fn tls_files(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bunker test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[test]
fn rediss_urls_back_up_over_tls_and_check_the_server_certificate() {
    let repo = Repo::new();
    let tls = repo.root.join("tls");
    std::fs::create_dir(&tls).unwrap();
    tls_files(&tls);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let file = |name: &str| tls.join(name).to_string_lossy().into_owned();
    let source = ScratchRedis::start_with(
        None,
        &[
            "--enable-debug-command",
            "yes",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "no",
        ],
    )
    .unwrap();
    let mut c = Vec::new();
    for i in 0..500u32 {
        c.push(resp(&[b"SET", format!("k{i}").as_bytes(), format!("value {i}").as_bytes()]));
        c.push(resp(&[b"HSET", format!("h{}", i % 7).as_bytes(), format!("f{i}").as_bytes(), b"v"]));
    }
    c.push(resp(&[b"SET", b"ttl", b"x", b"EX", b"3600"]));
    pipe(source.port(), None, &c);
    let want = digest(source.port(), None);
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\n\n\
             [targets.tls]\ntype = \"redis\"\nurl = \"rediss://127.0.0.1:{tls_port}\"\n\n\
             [targets.tls-keys]\ntype = \"redis\"\nmode = \"keys\"\nurl = \"rediss://127.0.0.1:{tls_port}\"\n\n\
             [targets.tls-insecure]\ntype = \"redis\"\nurl = \"rediss://127.0.0.1:{tls_port}?insecure=true\"\n",
            repo.path.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str], ca: bool| {
        let mut cmd = repo.cmd(args);
        cmd.env("BUNKER_CONFIG", &config);
        if ca {
            cmd.env("SSL_CERT_FILE", tls.join("ca.pem"));
        } else {
            cmd.env_remove("SSL_CERT_FILE");
        }
        cmd.output().unwrap()
    };

    // An untrusted certificate: refused, saying what to do, and no snapshot.
    let o = run(&["backup", "tls"], false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("certificate is not trusted") && err.contains("SSL_CERT_FILE"), "{err}");
    assert!(repo.snapshots().is_empty());

    // Trusted through SSL_CERT_FILE: the RDB over TLS and the key dump over TLS; insecure=true without it.
    for target in ["tls", "tls-keys"] {
        let o = run(&["backup", target], true);
        assert!(o.status.success(), "{target}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let o = run(&["backup", "tls-insecure"], false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for target in ["tls", "tls-keys", "tls-insecure"] {
        let into = ScratchRedis::start_with(None, &["--enable-debug-command", "yes"]).unwrap();
        let o = run(&["restore", target, "--into", &format!("redis://127.0.0.1:{}", into.port())], false);
        assert!(o.status.success(), "{target}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(digest(into.port(), None), want, "{target}: restored data differs");
    }
}
