//! Notifications through the real binary: a webhook, a Slack-compatible webhook, an SMTP server and a
//! healthchecks endpoint, each a tiny receiver on the loopback interface that records what it was sent.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::sync::{Arc, Mutex};

use common::receiver::Receiver;
use common::*;

/// Whatever a receiver got, in order.
struct Received<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Received<T> {
    /// Everything received since the last call.
    fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// An SMTP server on 127.0.0.1 that accepts every mail (no TLS, no authentication) and records its data.
fn smtp_receiver() -> (u16, Received<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sink = sink.clone();
            std::thread::spawn(move || serve_smtp(stream, &sink));
        }
    });
    (port, Received(log))
}

fn serve_smtp(stream: TcpStream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut say = |line: &str| writer.write_all(format!("{line}\r\n").as_bytes());
    if say("220 localhost ESMTP test").is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "DATA" => {
                if say("354 go ahead").is_err() {
                    return;
                }
                let mut message = String::new();
                loop {
                    let mut data = String::new();
                    if reader.read_line(&mut data).unwrap_or(0) == 0 {
                        return;
                    }
                    if data == ".\r\n" {
                        break;
                    }
                    message.push_str(&data);
                }
                log.lock().unwrap().push(message);
                "250 queued"
            }
            "QUIT" => {
                let _ = say("221 bye");
                return;
            }
            _ => "250 ok",
        };
        if say(reply).is_err() {
            return;
        }
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A stack file with one `command` target, `app`, which succeeds while `input` exists and fails otherwise.
struct Stack {
    repo: Repo,
    config: std::path::PathBuf,
    input: std::path::PathBuf,
}

impl Stack {
    fn new(notifications: &str) -> Stack {
        let repo = Repo::new();
        let input = repo.root.join("input");
        let config = repo.root.join("bunker.toml");
        let text = format!(
            "[repository]\nurl = \"{}\"\n\n[targets.app]\ntype = \"command\"\nbackup = \"cat {}\"\n\n{notifications}",
            repo.path.display(),
            input.display()
        );
        std::fs::write(&config, text).unwrap();
        Stack { repo, config, input }
    }

    /// `bunker backup app`, failing (`ok` false: the input is missing) or succeeding.
    fn backup(&self, ok: bool) -> Output {
        if ok {
            std::fs::write(&self.input, b"hi\n").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.input);
        }
        self.repo
            .cmd(&["backup", "app"])
            .env("BUNKER_CONFIG", &self.config)
            .env("NOTIFY_TOKEN", "bearer-s3cret")
            .env("SMTP_PASSWORD", "smtp-s3cret")
            .output()
            .unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn failure_then_recovery_then_nothing() {
    let hook = Receiver::answering(200);
    let hook_port = hook.port;
    let slack = Receiver::answering(200);
    let slack_port = slack.port;
    let (smtp_port, mail) = smtp_receiver();
    let stack = Stack::new(&format!(
        "[notifications]\n\n\
         [[notifications.webhook]]\nurl = \"http://127.0.0.1:{hook_port}/hook/hook-token-1\"\n\
         headers = {{ Authorization = \"Bearer ${{NOTIFY_TOKEN}}\" }}\n\n\
         [notifications.slack]\nurl = \"http://127.0.0.1:{slack_port}/services/T0/B0/slack-token-2\"\n\n\
         [[notifications.email]]\nsmtp = \"smtp://127.0.0.1:{smtp_port}\"\nfrom = \"bunker@example.com\"\n\
         to = [\"oncall@example.com\", \"dba@example.com\"]\n"
    ));

    let out = stack.backup(false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("could not"), "{}", stderr(&out));

    let posts = hook.take();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let post = &posts[0];
    assert_eq!((post.method.as_str(), post.path.as_str()), ("POST", "/hook/hook-token-1"));
    assert_eq!(post.header("authorization"), Some("Bearer bearer-s3cret"));
    assert_eq!(post.header("content-type"), Some("application/json"));
    let event = post.json();
    assert_eq!(event["event"], "failure");
    assert_eq!(event["operation"], "backup");
    assert_eq!(event["target"], "app");
    assert_eq!(event["status"], "failed");
    assert!(!event["error"].as_str().unwrap().is_empty(), "{event}");
    for key in ["started", "ended", "host", "bunker_version"] {
        assert!(event[key].as_str().is_some_and(|v| !v.is_empty()), "{key} in {event}");
    }
    assert!(event["duration_seconds"].as_f64().is_some(), "{event}");
    let text = event["text"].as_str().unwrap();
    assert!(text.contains("backup of app failed on "), "{text}");

    let slack_posts = slack.take();
    assert_eq!(slack_posts.len(), 1);
    assert_eq!(slack_posts[0].path, "/services/T0/B0/slack-token-2");
    let slack_text = slack_posts[0].json()["text"].as_str().unwrap().to_string();
    assert!(slack_text.contains("backup of app failed on ") && slack_text.contains(text), "{slack_text}");

    let mails = mail.take();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("Subject: [bunker] backup of app failed on "), "{}", mails[0]);
    assert!(mails[0].contains("oncall@example.com") && mails[0].contains("dba@example.com"), "{}", mails[0]);
    assert!(mails[0].contains("target:         app"), "{}", mails[0]);

    // The next success is a recovery, sent everywhere.
    let out = stack.backup(true);
    assert!(out.status.success(), "{}", stderr(&out));
    let posts = hook.take();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let event = posts[0].json();
    assert_eq!((event["event"].as_str(), event["status"].as_str()), (Some("recovery"), Some("success")));
    assert_eq!(event["previous_status"], "failed");
    assert!(event["snapshot"].as_str().is_some_and(|s| s.len() == 64), "{event}");
    assert!(slack.take()[0].json()["text"].as_str().unwrap().contains("backup of app succeeded again"));
    assert!(mail.take()[0].contains("Subject: [bunker] backup of app succeeded again on "));

    // Another success says nothing.
    let out = stack.backup(true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((hook.take().len(), slack.take().len(), mail.take().len()), (0, 0, 0));
}

#[test]
fn on_chooses_the_events() {
    let hook = Receiver::answering(200);
    let port = hook.port;
    let stack = Stack::new(&format!(
        "[notifications]\non = [\"recovery\"]\n\n[notifications.webhook]\nurl = \"http://127.0.0.1:{port}/h\"\n"
    ));
    assert_eq!(stack.backup(false).status.code(), Some(1));
    assert!(hook.take().is_empty(), "failures are not wanted");
    assert!(stack.backup(true).status.success());
    let posts = hook.take();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].json()["event"], "recovery");
}

#[test]
fn healthchecks_pings_mark_start_and_end() {
    let pings = Receiver::answering(200);
    let port = pings.port;
    let stack = Stack::new(&format!(
        "[[notifications.healthchecks]]\nurl = \"http://127.0.0.1:{port}/ping/uuid-token-3\"\n\n\
         [[notifications.healthchecks]]\nurl = \"http://127.0.0.1:{port}/other\"\njobs = [\"nightly\"]\n"
    ));
    let paths = || pings.take().into_iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>();

    let out = stack.backup(false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(paths(), ["GET /ping/uuid-token-3/start", "GET /ping/uuid-token-3/1"]);

    let out = stack.backup(true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(paths(), ["GET /ping/uuid-token-3/start", "GET /ping/uuid-token-3"]);
}

#[test]
fn broken_destinations_only_warn_and_never_show_their_tokens() {
    let bad = Receiver::answering(500);
    let bad_port = bad.port;
    let (slack_port, smtp_port) = (closed_port(), closed_port());
    let stack = Stack::new(&format!(
        "[[notifications.webhook]]\nurl = \"http://127.0.0.1:{bad_port}/hook/hook-token-4?key=query-token-5\"\n\
         headers = {{ X-Token = \"${{NOTIFY_TOKEN}}\" }}\n\n\
         [[notifications.slack]]\nurl = \"http://127.0.0.1:{slack_port}/services/slack-token-6\"\n\n\
         [[notifications.email]]\nsmtp = \"smtp://127.0.0.1:{smtp_port}\"\nusername = \"bunker\"\n\
         password = \"${{SMTP_PASSWORD}}\"\nfrom = \"bunker@example.com\"\nto = \"oncall@example.com\"\n\n\
         [[notifications.healthchecks]]\nurl = \"http://127.0.0.1:{slack_port}/ping/uuid-token-7\"\n"
    ));
    let secrets = ["hook-token-4", "query-token-5", "bearer-s3cret", "slack-token-6", "smtp-s3cret", "uuid-token-7"];

    // A failure stays a failure (exit 1), a recovery a success (exit 0): each with warnings only.
    for (ok, code) in [(false, 1), (true, 0)] {
        let out = stack.backup(ok);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(
            err.contains(&format!("could not notify webhook http://127.0.0.1:{bad_port}/***: it answered 500")),
            "{err}"
        );
        assert!(err.contains(&format!("could not notify Slack webhook http://127.0.0.1:{slack_port}/***")), "{err}");
        assert!(err.contains(&format!("notification mail through smtp://127.0.0.1:{smtp_port}")), "{err}");
        assert!(err.contains("WARN"), "{err}");
        for secret in secrets {
            assert!(!err.contains(secret), "{secret} shown: {err}");
        }
        assert_eq!(bad.take().len(), 2, "a 5xx answer is tried twice");
    }
}
