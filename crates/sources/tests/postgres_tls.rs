//! TLS to PostgreSQL, as libpq's sslmode defines it, for bunker's own connection and for pg_dump: against
//! a scratch cluster that accepts TCP connections only over TLS, with a self-signed certificate for
//! `localhost`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::config::InitOptions;
use bunker_engine::storage::{Location, Storage};
use bunker_engine::{lock, Repository};
use bunker_scratch::{PgBinaries, ScratchPostgres};
use bunker_sources::postgres::{ConnInfo, LogicalDatabase};
use bunker_sources::{Source, SourceError};

fn tls_only_cluster() -> (ScratchPostgres, std::path::PathBuf) {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries on this machine");
    let pg = ScratchPostgres::start(&bins).unwrap();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql("app", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)").unwrap();
    let data = pg.data_dir();
    // The key must belong to the server's user: run openssl as that user when we are root.
    let mut openssl = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "openssl"]);
        c
    } else {
        Command::new("openssl")
    };
    let out = openssl
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-keyout", "server.key", "-out", "server.crt"])
        .current_dir(&data)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n";
    std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
    for setting in ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"] {
        pg.psql("postgres", &format!("ALTER SYSTEM SET {setting}")).unwrap();
    }
    pg.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    // The client's copy of the certificate, outside the server's private directory.
    let ca = std::env::temp_dir().join(format!("bunker-tls-test-{}.crt", pg.port()));
    std::fs::copy(data.join("server.crt"), &ca).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    (pg, ca)
}

fn back_up(conn: ConnInfo) -> Result<(), SourceError> {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::create(&Location::Local(dir.path().join("repo"))).unwrap();
    let repo = Repository::init(storage, "pw", &InitOptions::default()).unwrap();
    let guard = lock::acquire(repo.storage(), false, "test", Duration::ZERO)?;
    let (index, _) = repo.load_index()?;
    let backup = Backup::start(&repo, &guard, Arc::new(index));
    let mut source = LogicalDatabase { conn, pg_bin_dir: None };
    let captured = source.backup(&backup)?;
    let draft =
        SnapshotDraft { name: "app".into(), kind: source.kind().into(), meta: captured.meta, ..Default::default() };
    backup.commit(captured.root, draft)?;
    Ok(())
}

#[test]
fn sslmodes_behave_as_libpq_for_our_connection_and_pg_dump() {
    std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
    std::env::set_var("BUNKER_CACHE_DIR", "off");
    std::env::remove_var("PGSSLROOTCERT");
    let (pg, ca) = tls_only_cluster();
    let port = pg.port();
    let url = |host: &str, params: &str| {
        ConnInfo::resolve(&format!("postgresql://postgres@{host}:{port}/app?{params}")).unwrap()
    };

    // Without TLS the server refuses; the error says why.
    let err = url("127.0.0.1", "sslmode=disable").connect().err().expect("refused without TLS");
    assert!(err.to_string().contains("no encryption"), "{err}");

    // require: encrypted, certificate not checked; pg_dump (which the server would refuse in clear) too.
    let mut client = url("127.0.0.1", "sslmode=require").connect().unwrap();
    let ssl: bool = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0);
    assert!(ssl);
    back_up(url("127.0.0.1", "sslmode=require")).unwrap();

    // verify-full: the certificate must chain to sslrootcert and name the host.
    let root = format!("sslrootcert={}", ca.display());
    back_up(url("localhost", &format!("sslmode=verify-full&{root}"))).unwrap();
    let err = url("127.0.0.1", &format!("sslmode=verify-full&{root}")).connect().err().expect("wrong host name");
    assert!(err.to_string().contains("certificate verify failed") && err.to_string().contains("mismatch"), "{err}");
    // verify-ca checks the chain only.
    url("127.0.0.1", &format!("sslmode=verify-ca&{root}")).connect().unwrap();
    // Without a CA to check against, verify modes are refused with what to do.
    if !std::path::Path::new(&std::env::var("HOME").unwrap_or_default()).join(".postgresql/root.crt").exists() {
        let err = url("localhost", "sslmode=verify-full").connect().err().expect("no CA");
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }
    let _ = std::fs::remove_file(&ca);
}
