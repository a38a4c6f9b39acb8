//! Notifications: failures, recoveries and warnings sent to JSON webhooks, Slack-compatible webhooks and
//! email, and healthchecks.io-style pings when a job starts and ends (`[notifications]` in the stack file).
//!
//! Everything here is best effort: a notification that cannot be delivered is a `warn!` naming the
//! destination as `scheme://host[:port]/***` (the rest of a webhook URL is its token), and never changes the
//! command's outcome. Each destination gets two attempts at most (the second only after a connection
//! error, a 5xx/429 answer or a transient SMTP error), each limited to 10 s; destinations are served in
//! parallel, so one event delays the command by at most about 20 s. Sending is synchronous on threads of its
//! own, which also keeps reqwest's blocking client away from any async runtime of the caller.
//!
//! Which event a finished run raises is decided by [`event_for`] from the run and the previous run of the
//! same operation on the same target: failed → failure; warning or interrupted → warning; success after a
//! run that was not a success → recovery; anything else → nothing.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bunker_config::{NotificationsConfig, Secret};
use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::Repository;
use chrono::{DateTime, Utc};
use serde::Serialize;

use bunker_sources::size;

/// Per attempt, per destination.
const TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 2;
const BACKOFF: Duration = Duration::from_millis(500);
const USER_AGENT: &str = concat!("bunker/", env!("CARGO_PKG_VERSION"));

/// Operations whose runs are jobs someone waits on. `wal-push` and `wal-fetch` run once per WAL segment
/// (a failing archive_command is PostgreSQL's to retry, and the archive's age is judged by health);
/// `hook` failures are already part of the run they belong to.
const JOBS: &[&str] =
    &["backup", "point", "restore", "verify", "check", "prune", "forget", "copy", "drill", "wal-verify"];

static NOTIFIER: RwLock<Option<Arc<NotificationsConfig>>> = RwLock::new(None);

/// Sets up the process's notifier from the stack file (none, or nothing configured: nothing is sent and
/// nothing is read for it). Called at start, and again by a daemon that reloads its stack file.
pub fn install(config: Option<&bunker_config::Config>) {
    let notifier = config.filter(|c| !c.notifications.is_empty()).map(|c| Arc::new(c.notifications.clone()));
    if let Ok(mut slot) = NOTIFIER.write() {
        *slot = notifier;
    }
}

fn notifier() -> Option<Arc<NotificationsConfig>> {
    NOTIFIER.read().ok().and_then(|slot| slot.clone())
}

/// What happened, as far as someone on call is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Failure,
    Recovery,
    Warning,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Failure => "failure",
            EventKind::Recovery => "recovery",
            EventKind::Warning => "warning",
        }
    }
}

/// The event a finished run raises, given the newest earlier run of the same operation on the same target.
/// Only jobs count (see [`JOBS`]). An interrupted run is a warning, not a failure: someone or something
/// stopped it on purpose (Ctrl-C, a service stop, a timeout), nothing is broken, but the work was not done.
/// A success is a recovery when the run before it was anything but a success (failed, warning,
/// interrupted); the first run ever and a success after a success raise nothing.
pub fn event_for(record: &RunRecord, previous: Option<&RunRecord>) -> Option<EventKind> {
    if !JOBS.contains(&record.operation.as_str()) {
        return None;
    }
    match record.status {
        RunStatus::Failed => Some(EventKind::Failure),
        RunStatus::Warning | RunStatus::Interrupted => Some(EventKind::Warning),
        // Nobody needs telling that they said no.
        RunStatus::Cancelled => None,
        RunStatus::Success => match previous {
            Some(p) if p.status != RunStatus::Success => Some(EventKind::Recovery),
            _ => None,
        },
    }
}

/// The newest run before `record` of the same operation on the same target (not `record` itself).
pub fn previous_run(runs: Vec<RunRecord>, record: &RunRecord) -> Option<RunRecord> {
    runs.into_iter()
        .filter(|r| r.operation == record.operation && r.target == record.target)
        .filter(|r| r.started <= record.started && (r.id.is_none() || r.id != record.id))
        .max_by_key(|r| r.started)
}

/// Called when a run has been recorded: sends its event, if it raises one. The catalog is read only when
/// the answer depends on it (a successful job, with recovery events wanted and somewhere to send them).
pub fn run_finished(repo: &Repository, record: &RunRecord) {
    let Some(config) = notifier() else { return };
    if !has_event_destinations(&config) || !JOBS.contains(&record.operation.as_str()) {
        return;
    }
    let previous = match record.status {
        RunStatus::Success if config.on.recovery => match repo.load_runs_of(&[record.operation.as_str()]) {
            Ok(runs) => previous_run(runs, record),
            Err(e) => {
                tracing::warn!(
                    "cannot read the catalog to tell whether the {} run is a recovery: {e}",
                    record.operation
                );
                return;
            }
        },
        _ => None,
    };
    if let Some(kind) = event_for(record, previous.as_ref()) {
        send(&config, &Event::from_run(kind, record, previous.as_ref()));
    }
}

/// Called (by the daemon) when a target's health level changes: `warning` or `critical` is a warning event,
/// `ok` a recovery.
pub fn health_changed(target: &str, level: &str, reason: &str) {
    let kind = match level {
        "ok" => EventKind::Recovery,
        "warning" | "critical" => EventKind::Warning,
        other => {
            tracing::debug!("health level {other:?} of {target} is not notified");
            return;
        }
    };
    if let Some(config) = notifier() {
        send(&config, &Event::health(kind, target, level, reason));
    }
}

/// A healthchecks.io-style "start" ping for a job (`backup`, a schedule's name…).
pub fn ping_start(job: &str) {
    ping(job, Some("start".to_string()));
}

/// The ping that ends a job: the bare URL for exit code 0, else `URL/<exit code>` (a failure).
pub fn ping_finish(job: &str, exit_code: i32) {
    ping(
        job,
        match exit_code {
            0 => None,
            1..=255 => Some(exit_code.to_string()),
            _ => Some("fail".to_string()),
        },
    );
}

/// One notification, as POSTed to webhooks (and rendered for Slack and email).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `failure`, `recovery` or `warning`.
    pub event: EventKind,
    /// The run's operation (`backup`, `check`…), or `health` for a change of a target's health.
    pub operation: String,
    pub target: Option<String>,
    /// The run's status (`success`, `warning`, `failed`, `interrupted`) or the health level.
    pub status: String,
    /// The run's one-line error, or why the health is what it is.
    pub error: Option<String>,
    /// For a recovery: how the run before it ended.
    pub previous_status: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub ended: DateTime<Utc>,
    pub duration_seconds: Option<f64>,
    pub host: String,
    pub snapshot: Option<String>,
    pub bytes_read: Option<u64>,
    pub bytes_stored: Option<u64>,
    pub bunker_version: String,
    /// A one-line summary for humans.
    pub text: String,
}

impl Event {
    pub fn from_run(kind: EventKind, record: &RunRecord, previous: Option<&RunRecord>) -> Event {
        let mut event = Event {
            event: kind,
            operation: record.operation.clone(),
            target: record.target.clone(),
            status: record.status.as_str().to_string(),
            error: record.error.clone(),
            previous_status: match kind {
                EventKind::Recovery => previous.map(|p| p.status.as_str().to_string()),
                _ => None,
            },
            started: Some(record.started),
            ended: record.ended,
            duration_seconds: Some(record.duration_secs()),
            host: record.host.clone(),
            snapshot: record.snapshot.clone(),
            bytes_read: Some(record.bytes_read),
            bytes_stored: Some(record.bytes_stored),
            bunker_version: record.bunker_version.clone(),
            text: String::new(),
        };
        event.text = event.summary();
        event
    }

    pub fn health(kind: EventKind, target: &str, level: &str, reason: &str) -> Event {
        let mut event = Event {
            event: kind,
            operation: "health".into(),
            target: Some(target.into()),
            status: level.into(),
            error: Some(reason.to_string()).filter(|r| !r.is_empty()),
            previous_status: None,
            started: None,
            ended: Utc::now(),
            duration_seconds: None,
            host: bunker_engine::keys::hostname(),
            snapshot: None,
            bytes_read: None,
            bytes_stored: None,
            bunker_version: env!("CARGO_PKG_VERSION").into(),
            text: String::new(),
        };
        event.text = event.summary();
        event
    }

    /// `backup of app-db failed on HOST`: the mail's subject after `[bunker] `.
    pub fn headline(&self) -> String {
        let target = self.target.as_deref();
        if self.operation == "health" {
            let again = if self.event == EventKind::Recovery { " again" } else { "" };
            return format!("health of {} is {}{again} on {}", target.unwrap_or("?"), self.status, self.host);
        }
        let what = match target {
            Some(t) => format!("{} of {t}", self.operation),
            None => self.operation.clone(),
        };
        let outcome = match (self.event, self.status.as_str()) {
            (EventKind::Failure, _) => "failed",
            (EventKind::Warning, "interrupted") => "was interrupted",
            (EventKind::Warning, _) => "finished with warnings",
            (EventKind::Recovery, _) => "succeeded again",
        };
        format!("{what} {outcome} on {}", self.host)
    }

    fn summary(&self) -> String {
        let mut text = format!("bunker: {}", self.headline());
        if let Some(secs) = self.duration_seconds.filter(|_| self.event != EventKind::Recovery) {
            text.push_str(&format!(" after {secs:.1} s"));
        }
        match (&self.error, &self.previous_status) {
            (Some(error), _) if self.event != EventKind::Recovery => text.push_str(&format!(": {error}")),
            (_, Some(previous)) => text.push_str(&format!(" (the run before it: {previous})")),
            _ => {}
        }
        text
    }

    /// The Slack-compatible body: `{"text": …}` with a status marker first.
    pub fn slack_body(&self) -> serde_json::Value {
        let marker = match self.event {
            EventKind::Failure => ":red_circle:",
            EventKind::Warning => ":warning:",
            EventKind::Recovery => ":large_green_circle:",
        };
        serde_json::json!({ "text": format!("{marker} {}", self.text) })
    }

    pub fn mail_subject(&self) -> String {
        format!("[bunker] {}", self.headline())
    }

    /// The mail's plain-text body: the summary, then every field on a line of its own.
    pub fn mail_body(&self) -> String {
        let mut lines = vec![self.text.clone(), String::new()];
        let mut field = |name: &str, value: String| lines.push(format!("{name:<16}{value}"));
        field("event:", self.event.as_str().into());
        field("operation:", self.operation.clone());
        if let Some(target) = &self.target {
            field("target:", target.clone());
        }
        field("status:", self.status.clone());
        if let Some(error) = &self.error {
            field(if self.operation == "health" { "reason:" } else { "error:" }, error.clone());
        }
        if let Some(previous) = &self.previous_status {
            field("previous run:", previous.clone());
        }
        if let Some(started) = self.started {
            field("started:", started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        field(
            if self.started.is_some() { "ended:" } else { "time:" },
            self.ended.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        if let Some(secs) = self.duration_seconds {
            field("duration:", format!("{secs:.1} s"));
        }
        if let Some(snapshot) = &self.snapshot {
            field("snapshot:", snapshot.clone());
        }
        if let (Some(read), Some(stored)) = (self.bytes_read, self.bytes_stored) {
            if read > 0 || stored > 0 {
                field("bytes read:", format!("{} ({read})", size(read)));
                field("bytes stored:", format!("{} ({stored})", size(stored)));
            }
        }
        field("host:", self.host.clone());
        field("bunker:", self.bunker_version.clone());
        lines.join("\n") + "\n"
    }
}

fn has_event_destinations(config: &NotificationsConfig) -> bool {
    !(config.webhooks.is_empty() && config.slack.is_empty() && config.email.is_empty())
}

/// A delivery to one destination, run on a thread of its own.
type Delivery<'a> = Box<dyn FnOnce() + Send + 'a>;

/// Sends `event` to every webhook, Slack webhook and mailbox, if `on` lets it through.
fn send(config: &NotificationsConfig, event: &Event) {
    let wanted = match event.event {
        EventKind::Failure => config.on.failure,
        EventKind::Recovery => config.on.recovery,
        EventKind::Warning => config.on.warning,
    };
    if !wanted {
        return;
    }
    let body = match serde_json::to_value(event) {
        Ok(body) => body,
        Err(e) => return tracing::warn!("cannot encode the notification: {e}"),
    };
    let slack = event.slack_body();
    let (subject, text) = (event.mail_subject(), event.mail_body());
    let mut deliveries: Vec<Delivery> = Vec::new();
    for hook in &config.webhooks {
        let body = &body;
        deliveries.push(Box::new(move || {
            http("webhook", &hook.url, |client| {
                hook.headers.iter().fold(client.post(hook.url.expose()).json(body), |request, (name, value)| {
                    request.header(name.as_str(), value.expose())
                })
            })
        }));
    }
    for hook in &config.slack {
        let slack = &slack;
        deliveries.push(Box::new(move || http("Slack webhook", &hook.url, |c| c.post(hook.url.expose()).json(slack))));
    }
    for mail in &config.email {
        let server = SmtpServer {
            host: &mail.host,
            port: mail.port,
            implicit_tls: mail.implicit_tls,
            require_starttls: mail.require_starttls,
            username: mail.username.as_deref(),
            password: mail.password.as_ref(),
            password_file: mail.password_file.as_deref(),
        };
        let (from, to, subject, text) = (&mail.from, &mail.to, &subject, &text);
        deliveries.push(Box::new(move || {
            if let Err(problem) = send_mail(&server, from, to, subject, text) {
                tracing::warn!("could not send the notification mail through {}: {problem}", server.shown());
            }
        }));
    }
    run_all(deliveries);
}

fn ping(job: &str, suffix: Option<String>) {
    let Some(config) = notifier() else { return };
    let suffix = suffix.as_deref();
    let deliveries: Vec<Delivery> = config
        .healthchecks
        .iter()
        .filter(|check| check.jobs.iter().any(|j| j == job))
        .map(|check| -> Delivery {
            Box::new(move || match ping_url(check.url.expose(), suffix) {
                Some(url) => http("healthchecks ping", &check.url, |c| c.get(url.clone())),
                None => tracing::warn!("cannot ping {}: not a valid URL", redact(check.url.expose())),
            })
        })
        .collect();
    run_all(deliveries);
}

/// Runs the deliveries in parallel and waits for all of them.
fn run_all(deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    std::thread::scope(|scope| {
        let threads: Vec<_> = deliveries
            .into_iter()
            .filter_map(|delivery| {
                match std::thread::Builder::new().name("notify".into()).spawn_scoped(scope, delivery) {
                    Ok(thread) => Some(thread),
                    Err(e) => {
                        tracing::warn!("cannot start a thread to send a notification: {e}");
                        None
                    }
                }
            })
            .collect();
        for thread in threads {
            if thread.join().is_err() {
                tracing::warn!("a notification could not be sent (its sender failed unexpectedly)");
            }
        }
    });
}

/// The URL a ping goes to: `URL/start`, `URL/<code>`, or `URL` itself; the query stays at the end.
fn ping_url(base: &str, suffix: Option<&str>) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(base).ok()?;
    if let Some(suffix) = suffix {
        url.path_segments_mut().ok()?.pop_if_empty().push(suffix);
    }
    Some(url)
}

/// One HTTP request (built anew for each attempt), with the retry and the warning.
fn http(what: &str, url: &Secret, request: impl Fn(&reqwest::blocking::Client) -> reqwest::blocking::RequestBuilder) {
    let shown = redact(url.expose());
    let client = match reqwest::blocking::Client::builder().timeout(TIMEOUT).user_agent(USER_AGENT).build() {
        Ok(client) => client,
        Err(e) => {
            let problem = scrub(&describe(&e.without_url()), url.expose());
            return tracing::warn!("could not notify {what} {shown}: cannot set up HTTP: {problem}");
        }
    };
    for attempt in 1..=ATTEMPTS {
        let (problem, transient) = match request(&client).send() {
            Ok(response) if response.status().is_success() => {
                tracing::info!("notified {what} {shown}");
                return;
            }
            Ok(response) => {
                let status = response.status();
                (format!("it answered {status}"), status.is_server_error() || status.as_u16() == 429)
            }
            Err(e) => {
                let transient = e.is_connect();
                (scrub(&describe(&e.without_url()), url.expose()), transient)
            }
        };
        if transient && attempt < ATTEMPTS {
            tracing::debug!("{what} {shown}: {problem}; trying again");
            std::thread::sleep(BACKOFF);
            continue;
        }
        return tracing::warn!("could not notify {what} {shown}: {problem}");
    }
}

/// Where mail goes, borrowed from the config.
struct SmtpServer<'a> {
    host: &'a str,
    port: u16,
    implicit_tls: bool,
    require_starttls: bool,
    username: Option<&'a str>,
    password: Option<&'a Secret>,
    password_file: Option<&'a Path>,
}

impl SmtpServer<'_> {
    /// `smtp://HOST:PORT`, for messages (no user, no password).
    fn shown(&self) -> String {
        let scheme = if self.implicit_tls { "smtps" } else { "smtp" };
        match self.host.contains(':') {
            true => format!("{scheme}://[{}]:{}", self.host, self.port),
            false => format!("{scheme}://{}:{}", self.host, self.port),
        }
    }

    fn credentials(&self) -> Result<Option<lettre::transport::smtp::authentication::Credentials>, String> {
        let Some(user) = self.username else { return Ok(None) };
        let password = match (self.password, self.password_file) {
            (Some(p), _) => p.expose().to_string(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|text| text.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read its password file {}: {e}", file.display()))?,
            (None, None) => String::new(),
        };
        Ok(Some(lettre::transport::smtp::authentication::Credentials::new(user.to_string(), password)))
    }
}

fn send_mail(server: &SmtpServer, from: &str, to: &[String], subject: &str, body: &str) -> Result<(), String> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};

    let mut message = Message::builder()
        .from(from.parse::<Mailbox>().map_err(|e| format!("the from address is not valid: {e}"))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        message = message.to(address.parse::<Mailbox>().map_err(|e| format!("{address:?} is not valid: {e}"))?);
    }
    let message = message.body(body.to_string()).map_err(|e| format!("cannot build the mail: {e}"))?;

    let tls = TlsParameters::new(server.host.to_string()).map_err(|e| format!("cannot set up TLS: {e}"))?;
    let tls = match (server.implicit_tls, server.require_starttls) {
        (true, _) => Tls::Wrapper(tls),
        (false, true) => Tls::Required(tls),
        (false, false) => Tls::Opportunistic(tls),
    };
    let mut transport = SmtpTransport::builder_dangerous(server.host).port(server.port).tls(tls).timeout(Some(TIMEOUT));
    if let Some(credentials) = server.credentials()? {
        transport = transport.credentials(credentials);
    }
    let transport = transport.build();
    for attempt in 1..=ATTEMPTS {
        match transport.send(&message) {
            Ok(_) => {
                tracing::info!("notification mailed through {}", server.shown());
                return Ok(());
            }
            Err(e) => {
                let final_ = e.is_permanent() || e.is_tls() || e.is_client() || e.is_response();
                if !final_ && attempt < ATTEMPTS {
                    tracing::debug!("mail through {}: {}; trying again", server.shown(), describe(&e));
                    std::thread::sleep(BACKOFF);
                    continue;
                }
                return Err(describe(&e));
            }
        }
    }
    Ok(())
}

/// `scheme://host[:port]/***`: a URL with everything that may be a secret (user, password, path, query)
/// hidden; `***` for what is not a URL.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}/***", parsed.scheme()),
            (Some(host), None) => format!("{}://{host}/***", parsed.scheme()),
            (None, _) => "***".into(),
        },
        Err(_) => "***".into(),
    }
}

/// An error and its causes on one line, each cause once.
fn describe(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out.replace('\n', " ")
}

/// Belt and braces over `without_url`: whatever part of the URL might be secret is cut from a message.
fn scrub(message: &str, url: &str) -> String {
    let mut out = message.replace(url, &redact(url));
    if let Ok(parsed) = reqwest::Url::parse(url) {
        for secret in [parsed.path(), parsed.query().unwrap_or(""), parsed.password().unwrap_or("")] {
            if secret.len() > 1 {
                out = out.replace(secret, "/***");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn run(operation: &str, target: Option<&str>, status: RunStatus, minute: u32) -> RunRecord {
        let started = Utc.with_ymd_and_hms(2026, 11, 21, 1, minute, 0).unwrap();
        let mut r = RunRecord::new(operation, started, status);
        r.target = target.map(str::to_string);
        r.ended = started + chrono::Duration::milliseconds(12_300);
        r.host = "db1".into();
        r
    }

    #[test]
    fn events_for_every_status() {
        use EventKind::{Failure, Recovery};
        use RunStatus::{Failed, Interrupted, Success};
        let prev = |status| run("backup", Some("app-db"), status, 0);
        let now = |status| run("backup", Some("app-db"), status, 5);
        let all_previous =
            [None, Some(prev(Success)), Some(prev(Failed)), Some(prev(RunStatus::Warning)), Some(prev(Interrupted))];
        for previous in &all_previous {
            let p = previous.as_ref();
            assert_eq!(event_for(&now(Failed), p), Some(Failure), "a failure is always sent");
            assert_eq!(event_for(&now(RunStatus::Warning), p), Some(EventKind::Warning));
            assert_eq!(event_for(&now(Interrupted), p), Some(EventKind::Warning), "interrupted is a warning");
            assert_eq!(event_for(&now(RunStatus::Cancelled), p), None, "a declined prompt notifies nobody");
        }
        assert_eq!(event_for(&now(Success), None), None, "the first run ever");
        assert_eq!(event_for(&now(Success), Some(&prev(Success))), None, "success after success");
        assert_eq!(event_for(&now(Success), Some(&prev(Failed))), Some(Recovery));
        assert_eq!(event_for(&now(Success), Some(&prev(RunStatus::Warning))), Some(Recovery));
        assert_eq!(event_for(&now(Success), Some(&prev(Interrupted))), Some(Recovery));
    }

    #[test]
    fn only_jobs_raise_events() {
        for op in JOBS {
            assert_eq!(event_for(&run(op, None, RunStatus::Failed, 0), None), Some(EventKind::Failure), "{op}");
        }
        for op in ["wal-push", "wal-fetch", "hook", "unknown"] {
            assert_eq!(event_for(&run(op, Some("t"), RunStatus::Failed, 0), None), None, "{op}");
            let failed = run(op, Some("t"), RunStatus::Failed, 0);
            assert_eq!(event_for(&run(op, Some("t"), RunStatus::Success, 1), Some(&failed)), None, "{op}");
        }
    }

    #[test]
    fn the_previous_run_is_the_newest_earlier_one_of_the_same_operation_and_target() {
        let mut record = run("backup", Some("app-db"), RunStatus::Success, 30);
        record.id = Some(bunker_engine::FileId::of(b"this run"));
        let mut itself = record.clone();
        itself.status = RunStatus::Success;
        let runs = vec![
            run("backup", Some("app-db"), RunStatus::Failed, 10),
            run("backup", Some("app-db"), RunStatus::Warning, 20),
            run("backup", Some("other"), RunStatus::Interrupted, 25),
            run("restore", Some("app-db"), RunStatus::Failed, 26),
            itself,
            run("backup", Some("app-db"), RunStatus::Failed, 40),
        ];
        let previous = previous_run(runs.clone(), &record).unwrap();
        assert_eq!((previous.status, previous.started.format("%M").to_string()), (RunStatus::Warning, "20".into()));
        assert!(previous_run(runs, &run("backup", Some("new"), RunStatus::Success, 30)).is_none());
        let untargeted = vec![run("check", None, RunStatus::Failed, 1), run("check", Some("x"), RunStatus::Success, 2)];
        assert_eq!(
            previous_run(untargeted, &run("check", None, RunStatus::Success, 3)).unwrap().status,
            RunStatus::Failed
        );
    }

    #[test]
    fn urls_are_redacted_to_scheme_host_and_port() {
        assert_eq!(redact("https://hooks.slack.com/services/T0/B0/SECRET"), "https://hooks.slack.com/***");
        assert_eq!(redact("http://127.0.0.1:8080/hook?token=SECRET"), "http://127.0.0.1:8080/***");
        assert_eq!(redact("https://user:SECRET@example.com/x"), "https://example.com/***");
        assert_eq!(redact("http://[::1]:9/SECRET"), "http://[::1]:9/***");
        assert_eq!(redact("not a url SECRET"), "***");
        let url = "https://example.com/hook/SECRET?key=ALSO";
        let scrubbed = scrub(&format!("error sending request for url ({url}): /hook/SECRET key=ALSO"), url);
        assert!(!scrubbed.contains("SECRET") && !scrubbed.contains("ALSO"), "{scrubbed}");
    }

    #[test]
    fn ping_urls_keep_the_query_last() {
        let url = |base, suffix| ping_url(base, suffix).unwrap().to_string();
        assert_eq!(url("https://hc-ping.com/abc", Some("start")), "https://hc-ping.com/abc/start");
        assert_eq!(url("https://hc-ping.com/abc/", Some("1")), "https://hc-ping.com/abc/1");
        assert_eq!(
            url("https://hc-ping.com/key/slug?create=1", Some("start")),
            "https://hc-ping.com/key/slug/start?create=1"
        );
        assert_eq!(url("https://hc-ping.com/abc", None), "https://hc-ping.com/abc");
        assert!(ping_url("nope", None).is_none());
    }

    #[test]
    fn a_failure_event_carries_the_run() {
        let mut record = run("backup", Some("app-db"), RunStatus::Failed, 0);
        record.error = Some("backup command exited with 1".into());
        record.bytes_read = 2048;
        let event = Event::from_run(EventKind::Failure, &record, None);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], "failure");
        assert_eq!(json["operation"], "backup");
        assert_eq!(json["target"], "app-db");
        assert_eq!(json["status"], "failed");
        assert_eq!(json["error"], "backup command exited with 1");
        assert_eq!(json["started"], "2026-11-21T01:00:00Z");
        assert_eq!(json["duration_seconds"], 12.3);
        assert_eq!((json["bytes_read"].as_u64(), json["host"].as_str()), (Some(2048), Some("db1")));
        assert_eq!(json["bunker_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(event.text, "bunker: backup of app-db failed on db1 after 12.3 s: backup command exited with 1");
        assert_eq!(event.mail_subject(), "[bunker] backup of app-db failed on db1");
        assert_eq!(event.slack_body()["text"], format!(":red_circle: {}", event.text));
        let body = event.mail_body();
        assert!(
            body.contains("target:         app-db\n") && body.contains("bytes read:     2.00 KiB (2048)"),
            "{body}"
        );
    }

    #[test]
    fn headlines_for_each_kind() {
        let interrupted = run("check", None, RunStatus::Interrupted, 0);
        assert_eq!(Event::from_run(EventKind::Warning, &interrupted, None).headline(), "check was interrupted on db1");
        let warned = run("backup", Some("files"), RunStatus::Warning, 0);
        let event = Event::from_run(EventKind::Warning, &warned, None);
        assert_eq!(event.headline(), "backup of files finished with warnings on db1");
        let failed = run("backup", Some("files"), RunStatus::Failed, 0);
        let event =
            Event::from_run(EventKind::Recovery, &run("backup", Some("files"), RunStatus::Success, 1), Some(&failed));
        assert_eq!(event.text, "bunker: backup of files succeeded again on db1 (the run before it: failed)");
        assert_eq!(event.previous_status.as_deref(), Some("failed"));
        let health = Event::health(EventKind::Warning, "app-db", "critical", "no backup for 50 h");
        assert!(
            health.text.starts_with("bunker: health of app-db is critical on ")
                && health.text.ends_with(": no backup for 50 h")
        );
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!((json["operation"].as_str(), json["status"].as_str()), (Some("health"), Some("critical")));
        assert!(json["started"].is_null() && json["duration_seconds"].is_null());
        let ok = Event::health(EventKind::Recovery, "app-db", "ok", "");
        assert!(ok.headline().starts_with("health of app-db is ok again on ") && ok.error.is_none());
    }
}
