//! `[notifications]`: where failures, recoveries and warnings are sent, and which URLs get
//! healthchecks.io-style pings. Every kind of destination is a list (`[[notifications.slack]]`) or, for
//! one, a single table (`[notifications.slack]`). URLs and header values carry tokens, so they are kept as
//! [`Secret`]s: `Debug` never shows them and errors never quote them.
//!
//! ```toml
//! [notifications]
//! on = ["failure", "recovery", "warning"]         # which events are sent (this is the default)
//!
//! [[notifications.webhook]]                       # a JSON POST of the event
//! url = "https://example.com/hook"
//! headers = { Authorization = "Bearer ${TOKEN}" }
//!
//! [[notifications.slack]]                         # Slack-compatible incoming webhook: {"text": "…"}
//! url = "https://hooks.slack.com/services/…"
//!
//! [[notifications.email]]
//! smtp = "smtp://mail.example.com:587"            # STARTTLS; smtps:// for implicit TLS
//! starttls = "required"                           # smtp:// only; "opportunistic": plain text if not offered
//!                                                 # (default: required with a username, else opportunistic)
//! username = "bunker"
//! password = "${SMTP_PASSWORD}"                   # or password_file
//! from = "bunker@example.com"
//! to = ["oncall@example.com"]
//!
//! [[notifications.healthchecks]]                  # start → URL/start, success → URL, failure → URL/CODE
//! url = "https://hc-ping.com/UUID"
//! jobs = ["backup"]                               # the default
//! ```

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::error::{Error, Result};
use crate::repository::{resolve_path, Secret};
use crate::spans::{Document, KeyPath};

/// `smtp://` without a port: the submission port, where STARTTLS is the norm.
pub const SMTP_PORT: u16 = 587;
/// `smtps://` without a port: submission over implicit TLS.
pub const SMTPS_PORT: u16 = 465;

const SECTION_KEYS: &str = "on, webhook, slack, email, healthchecks";
const WEBHOOK_KEYS: &str = "url, headers";
const SLACK_KEYS: &str = "url";
const EMAIL_KEYS: &str = "smtp, starttls, username, password, password_file, from, to";
const HEALTHCHECKS_KEYS: &str = "url, jobs";

/// The job a healthchecks URL pings for when it names none.
pub const DEFAULT_PING_JOB: &str = "backup";

/// Everything `[notifications]` configures. The default sends nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationsConfig {
    /// Which events go to the webhooks, Slack and email (pings are not events and ignore it).
    pub on: Events,
    pub webhooks: Vec<WebhookConfig>,
    pub slack: Vec<SlackConfig>,
    pub email: Vec<EmailConfig>,
    pub healthchecks: Vec<HealthchecksConfig>,
}

/// The `on` list: which kinds of event are sent. All three unless the file says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    pub failure: bool,
    pub recovery: bool,
    pub warning: bool,
}

impl Default for Events {
    fn default() -> Self {
        Events { failure: true, recovery: true, warning: true }
    }
}

/// A generic webhook: the event as JSON, POSTed with the extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: Secret,
    /// Header names and their (secret) values, in name order.
    pub headers: Vec<(String, Secret)>,
}

/// A Slack-compatible incoming webhook (also Mattermost, Rocket.Chat): `{"text": "…"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackConfig {
    pub url: Secret,
}

/// Mail over SMTP.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    /// `smtps://`: TLS from the first byte.
    pub implicit_tls: bool,
    /// `smtp://`: never send without STARTTLS. `starttls = "required"`, and the default when a username is
    /// set (so a password never crosses the network in the clear); otherwise (`"opportunistic"`, the
    /// default without credentials) STARTTLS is used when the server offers it.
    pub require_starttls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Resolved against the config file's directory; read when a mail is sent.
    pub password_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
}

/// A healthchecks.io-style URL pinged when the named jobs start and end.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthchecksConfig {
    pub url: Secret,
    /// Job names (`backup`, or a `[schedules]` job's name); `["backup"]` unless given.
    pub jobs: Vec<String>,
}

impl NotificationsConfig {
    pub(crate) fn from_value(value: &Value, doc: &Document) -> Result<Self> {
        let path = KeyPath::key("notifications");
        let Value::Table(table) = value else {
            return Err(doc.wrong_type(&path, "a table ([notifications])", value));
        };
        let section = Section { table, doc, path: path.clone() };
        section.only(SECTION_KEYS)?;
        let base = doc.path.parent().unwrap_or(Path::new(""));
        Ok(NotificationsConfig {
            on: match table.get("on") {
                Some(v) => events(v, doc, &path.child("on"))?,
                None => Events::default(),
            },
            webhooks: entries(table, doc, &path, "webhook", webhook)?,
            slack: entries(table, doc, &path, "slack", |s| {
                s.only(SLACK_KEYS)?;
                Ok(SlackConfig { url: s.http_url("url")? })
            })?,
            email: entries(table, doc, &path, "email", |s| email(s, base))?,
            healthchecks: entries(table, doc, &path, "healthchecks", healthchecks)?,
        })
    }

    /// Whether anything at all is configured (events or pings).
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && self.slack.is_empty() && self.email.is_empty() && self.healthchecks.is_empty()
    }
}

/// One table of a destination list, with what is needed to report a problem in it.
struct Section<'a, 'd> {
    table: &'a Table,
    doc: &'a Document<'d>,
    path: KeyPath,
}

impl Section<'_, '_> {
    fn only(&self, known: &'static str) -> Result<()> {
        match self.table.keys().find(|k| !known.split(", ").any(|known| known == k.as_str())) {
            Some(key) => {
                let key_path = self.path.child(key);
                Err(Error::UnknownKey {
                    path: self.doc.path.clone(),
                    line: self.doc.key_line(&key_path),
                    key: key_path.to_string(),
                    expected: known,
                })
            }
            None => Ok(()),
        }
    }

    /// A string key: absent is `None`; another type or an empty string is an error.
    fn string(&self, key: &str) -> Result<Option<String>> {
        let key_path = self.path.child(key);
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(Error::Empty {
                path: self.doc.path.clone(),
                line: self.doc.value_line(&key_path),
                key: key_path.to_string(),
            }),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.doc.wrong_type(&key_path, "a string", other)),
        }
    }

    fn required(&self, key: &str, hint: &'static str) -> Result<String> {
        self.string(key)?.ok_or_else(|| Error::MissingKey {
            path: self.doc.path.clone(),
            line: self.doc.key_line(&self.path),
            key: self.path.child(key).to_string(),
            hint,
        })
    }

    /// A required `http://` or `https://` URL.
    fn http_url(&self, key: &str) -> Result<Secret> {
        let url = self.required(key, "add url = \"https://…\"")?;
        match url.split_once("://") {
            Some((scheme, rest)) if is_http(scheme) && has_host(rest) && !url.contains(char::is_whitespace) => {
                Ok(Secret::new(url))
            }
            _ => Err(self.invalid(key, "must be an http:// or https:// URL with a host")),
        }
    }

    /// A list of non-empty strings (or one string); an empty list is an error.
    fn strings(&self, key: &str, expected: &'static str) -> Result<Option<Vec<String>>> {
        let key_path = self.path.child(key);
        let items = match self.table.get(key) {
            None => return Ok(None),
            Some(Value::String(_)) => return Ok(self.string(key)?.map(|s| vec![s])),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.doc.wrong_type(&key_path, expected, other)),
        };
        if items.is_empty() {
            let line = self.doc.value_line(&key_path);
            return Err(Error::Empty { path: self.doc.path.clone(), line, key: key_path.to_string() });
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut item_path = key_path.clone();
            item_path.push_index(i);
            match item {
                Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
                Value::String(_) => {
                    let line = self.doc.value_line(&item_path);
                    return Err(Error::Empty { path: self.doc.path.clone(), line, key: item_path.to_string() });
                }
                other => return Err(self.doc.wrong_type(&item_path, expected, other)),
            }
        }
        Ok(Some(out))
    }

    fn invalid(&self, key: &str, detail: &str) -> Error {
        let key_path = self.path.child(key);
        Error::Invalid {
            path: self.doc.path.clone(),
            line: self.doc.value_line(&key_path),
            key: key_path.to_string(),
            detail: detail.into(),
        }
    }
}

/// The tables of `notifications.KEY`: a list of tables, or one table.
fn entries<T>(
    table: &Table,
    doc: &Document,
    section: &KeyPath,
    key: &str,
    parse: impl Fn(&Section) -> Result<T>,
) -> Result<Vec<T>> {
    let path = section.child(key);
    let expected = "a table or a list of tables ([[notifications.KEY]])";
    match table.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Table(t)) => Ok(vec![parse(&Section { table: t, doc, path })?]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let mut item_path = path.clone();
                item_path.push_index(i);
                match item {
                    Value::Table(t) => parse(&Section { table: t, doc, path: item_path }),
                    other => Err(doc.wrong_type(&item_path, "a table", other)),
                }
            })
            .collect(),
        Some(other) => Err(doc.wrong_type(&path, expected, other)),
    }
}

fn events(value: &Value, doc: &Document, path: &KeyPath) -> Result<Events> {
    let expected = "a list of events: \"failure\", \"recovery\", \"warning\"";
    let Value::Array(items) = value else {
        return Err(doc.wrong_type(path, expected, value));
    };
    let mut on = Events { failure: false, recovery: false, warning: false };
    for (i, item) in items.iter().enumerate() {
        let mut item_path = path.clone();
        item_path.push_index(i);
        let slot = match item {
            Value::String(s) if s == "failure" => &mut on.failure,
            Value::String(s) if s == "recovery" => &mut on.recovery,
            Value::String(s) if s == "warning" => &mut on.warning,
            Value::String(_) => {
                return Err(Error::Invalid {
                    path: doc.path.clone(),
                    line: doc.value_line(&item_path),
                    key: item_path.to_string(),
                    detail: "unknown event; use \"failure\", \"recovery\" or \"warning\"".into(),
                })
            }
            other => return Err(doc.wrong_type(&item_path, expected, other)),
        };
        *slot = true;
    }
    Ok(on)
}

fn webhook(s: &Section) -> Result<WebhookConfig> {
    s.only(WEBHOOK_KEYS)?;
    let url = s.http_url("url")?;
    let headers_path = s.path.child("headers");
    let headers = match s.table.get("headers") {
        None => Vec::new(),
        Some(Value::Table(headers)) => headers
            .iter()
            .map(|(name, value)| {
                let header_path = headers_path.child(name);
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return Err(Error::Invalid {
                        path: s.doc.path.clone(),
                        line: s.doc.key_line(&header_path),
                        key: header_path.to_string(),
                        detail: "not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)".into(),
                    });
                }
                match value {
                    Value::String(v) if !v.contains(['\r', '\n']) => Ok((name.clone(), Secret::new(v.clone()))),
                    Value::String(_) => Err(Error::Invalid {
                        path: s.doc.path.clone(),
                        line: s.doc.value_line(&header_path),
                        key: header_path.to_string(),
                        detail: "a header value cannot contain a line break".into(),
                    }),
                    other => Err(s.doc.wrong_type(&header_path, "a string", other)),
                }
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(s.doc.wrong_type(&headers_path, "a table of header names and values", other));
        }
    };
    Ok(WebhookConfig { url, headers })
}

fn email(s: &Section, base: &Path) -> Result<EmailConfig> {
    s.only(EMAIL_KEYS)?;
    let smtp = s.required("smtp", "add smtp = \"smtp://HOST:PORT\" (STARTTLS) or \"smtps://HOST:PORT\" (TLS)")?;
    let (implicit_tls, host, port) = smtp_server(&smtp).ok_or_else(|| {
        s.invalid(
            "smtp",
            "must be smtp://HOST[:PORT] (STARTTLS when offered) or smtps://HOST[:PORT] (implicit TLS), \
             without a user, password or path; give those as username and password",
        )
    })?;
    let starttls = match s.string("starttls")?.as_deref() {
        None => None,
        Some("opportunistic") if !implicit_tls => Some(false),
        Some("required") if !implicit_tls => Some(true),
        Some("required" | "opportunistic") => {
            return Err(s.invalid("starttls", "smtps:// is TLS from the start; remove starttls"))
        }
        Some(_) => return Err(s.invalid("starttls", "use \"required\" or \"opportunistic\"")),
    };
    let username = s.string("username")?;
    let password = s.string("password")?.map(Secret::new);
    let password_file = s.string("password_file")?.map(|p| resolve_path(Path::new(&p), base));
    if password.is_some() && password_file.is_some() {
        let line = s.doc.key_line(&s.path);
        return Err(Error::BothPasswords { path: s.doc.path.clone(), line, section: s.path.to_string() });
    }
    let has_password = password.is_some() || password_file.is_some();
    if username.is_some() != has_password {
        let (key, hint) = match username {
            Some(_) => ("password", "a username needs password = \"${VAR}\" or password_file = \"PATH\""),
            None => ("username", "a password needs username = \"…\""),
        };
        let line = s.doc.key_line(&s.path);
        return Err(Error::MissingKey { path: s.doc.path.clone(), line, key: s.path.child(key).to_string(), hint });
    }
    // A password is never sent in the clear unless asked for: with credentials, STARTTLS is required.
    let require_starttls = starttls.unwrap_or(!implicit_tls && username.is_some());
    let from = s.required("from", "add from = \"bunker@example.com\"")?;
    if !is_address(&from) {
        return Err(s.invalid("from", "must be a mail address such as bunker@example.com"));
    }
    let Some(to) = s.strings("to", "a list of mail addresses")? else {
        let line = s.doc.key_line(&s.path);
        let key = s.path.child("to").to_string();
        return Err(Error::MissingKey {
            path: s.doc.path.clone(),
            line,
            key,
            hint: "add to = [\"oncall@example.com\"]",
        });
    };
    if let Some(i) = to.iter().position(|a| !is_address(a)) {
        let mut item_path = s.path.child("to");
        item_path.push_index(i);
        return Err(Error::Invalid {
            path: s.doc.path.clone(),
            line: s.doc.value_line(&item_path),
            key: item_path.to_string(),
            detail: "must be a mail address such as oncall@example.com".into(),
        });
    }
    Ok(EmailConfig { host, port, implicit_tls, require_starttls, username, password, password_file, from, to })
}

fn healthchecks(s: &Section) -> Result<HealthchecksConfig> {
    s.only(HEALTHCHECKS_KEYS)?;
    let url = s.http_url("url")?;
    let jobs = s.strings("jobs", "a list of job names")?.unwrap_or_else(|| vec![DEFAULT_PING_JOB.to_string()]);
    Ok(HealthchecksConfig { url, jobs })
}

/// `smtp://HOST[:PORT]` or `smtps://HOST[:PORT]` (a trailing `/` allowed) → (implicit TLS, host, port).
fn smtp_server(url: &str) -> Option<(bool, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let implicit_tls = match scheme.to_ascii_lowercase().as_str() {
        "smtp" => false,
        "smtps" => true,
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) || authority.contains(char::is_whitespace) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 address without a port: [::1]
        Some((_, tail)) if tail.ends_with(']') => (authority, None),
        Some((host, port)) => (host, Some(port.parse::<u16>().ok().filter(|p| *p != 0)?)),
        None => (authority, None),
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((implicit_tls, host.to_string(), port.unwrap_or(if implicit_tls { SMTPS_PORT } else { SMTP_PORT })))
}

fn is_http(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
}

/// Whether what follows `scheme://` starts with a host (possibly after `user@`).
fn has_host(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    !host_port.is_empty() && !host_port.starts_with(':')
}

/// `local@domain`, optionally as `Name <local@domain>`: enough to catch a misplaced value; the mailer
/// checks the rest.
fn is_address(text: &str) -> bool {
    let addr = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => text,
    };
    match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !addr.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::Config;

    use super::*;

    fn parse(text: &str) -> Result<NotificationsConfig> {
        let env: HashMap<&str, &str> =
            [("TOKEN", "tok-s3cret"), ("SMTP_PASSWORD", "pw-s3cret"), ("HOOK", "T000/B000/XXXX")].into();
        Config::parse_with_env(text, Path::new("/etc/bunker/bunker.toml"), &|name| env.get(name).map(|v| v.to_string()))
            .map(|c| c.notifications)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const FULL: &str = r#"[notifications]
on = ["failure", "recovery"]

[[notifications.webhook]]
url = "https://example.com/hook/${TOKEN}"
headers = { Authorization = "Bearer ${TOKEN}", X-Env = "prod" }

[[notifications.webhook]]
url = "http://127.0.0.1:8080/"

[notifications.slack]
url = "https://hooks.slack.com/services/${HOOK}"

[[notifications.email]]
smtp = "smtp://mail.example.com"
starttls = "required"
username = "bunker"
password = "${SMTP_PASSWORD}"
from = "Bunker <bunker@example.com>"
to = ["oncall@example.com", "dba@example.com"]

[[notifications.email]]
smtp = "smtps://[::1]:2465"
username = "bunker"
password_file = "smtp.pw"
from = "bunker@example.com"
to = "oncall@example.com"

[[notifications.healthchecks]]
url = "https://hc-ping.com/${TOKEN}"

[[notifications.healthchecks]]
url = "https://hc-ping.com/other"
jobs = ["backup", "nightly-check"]
"#;

    #[test]
    fn nothing_configured_sends_nothing() {
        let n = parse("").unwrap();
        assert_eq!(n, NotificationsConfig::default());
        assert!(n.is_empty());
        assert_eq!(n.on, Events { failure: true, recovery: true, warning: true });
        assert_eq!(parse("[notifications]\n").unwrap(), NotificationsConfig::default());
    }

    #[test]
    fn every_kind_of_destination_loads() {
        let n = parse(FULL).unwrap();
        assert_eq!(n.on, Events { failure: true, recovery: true, warning: false });
        assert_eq!(n.webhooks.len(), 2);
        assert_eq!(n.webhooks[0].url.expose(), "https://example.com/hook/tok-s3cret");
        let headers: Vec<_> = n.webhooks[0].headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        assert_eq!(headers, [("Authorization", "Bearer tok-s3cret"), ("X-Env", "prod")]);
        assert!(n.webhooks[1].headers.is_empty());
        assert_eq!(n.slack.len(), 1, "a single table is a list of one");
        assert_eq!(n.slack[0].url.expose(), "https://hooks.slack.com/services/T000/B000/XXXX");

        let mail = &n.email[0];
        assert_eq!(
            (mail.host.as_str(), mail.port, mail.implicit_tls, mail.require_starttls),
            ("mail.example.com", 587, false, true)
        );
        assert_eq!(
            (mail.username.as_deref(), mail.password.as_ref().map(Secret::expose)),
            (Some("bunker"), Some("pw-s3cret"))
        );
        assert_eq!(mail.to, ["oncall@example.com", "dba@example.com"]);
        let tls = &n.email[1];
        assert_eq!((tls.host.as_str(), tls.port, tls.implicit_tls, tls.require_starttls), ("::1", 2465, true, false));
        assert_eq!(tls.password_file.as_deref(), Some(Path::new("/etc/bunker/smtp.pw")));
        assert_eq!(tls.to, ["oncall@example.com"], "one address may be a plain string");

        assert_eq!(n.healthchecks[0].jobs, ["backup"], "backup by default");
        assert_eq!(n.healthchecks[1].jobs, ["backup", "nightly-check"]);
        assert!(!n.is_empty());
    }

    #[test]
    fn starttls_is_required_once_there_is_a_password() {
        let mail = |extra: &str| {
            let text = format!("[notifications.email]\nsmtp = \"smtp://mail\"\nfrom = \"b@x\"\nto = \"a@x\"\n{extra}");
            parse(&text).unwrap().email[0].require_starttls
        };
        assert!(!mail(""), "no credentials: STARTTLS when offered");
        assert!(mail("username = \"u\"\npassword = \"p\"\n"), "credentials: STARTTLS required");
        assert!(!mail("username = \"u\"\npassword = \"p\"\nstarttls = \"opportunistic\"\n"), "unless waived");
        assert!(mail("starttls = \"required\"\n"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let n = parse(FULL).unwrap();
        for shown in [format!("{n:?}"), format!("{n:#?}")] {
            for secret in ["tok-s3cret", "pw-s3cret", "XXXX", "hc-ping.com", "/hook"] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
        }
    }

    #[test]
    fn smtp_servers_parse_strictly() {
        assert_eq!(smtp_server("smtp://mail:25"), Some((false, "mail".into(), 25)));
        assert_eq!(smtp_server("SMTPS://mail/"), Some((true, "mail".into(), 465)));
        assert_eq!(smtp_server("smtp://[::1]"), Some((false, "::1".into(), 587)));
        assert_eq!(smtp_server("smtp://127.0.0.1:2525"), Some((false, "127.0.0.1".into(), 2525)));
        for bad in ["http://mail", "smtp://", "smtp://:25", "smtp://mail:0", "smtp://mail:x", "smtp://u:p@mail"] {
            assert_eq!(smtp_server(bad), None, "{bad}");
        }
        assert_eq!(smtp_server("smtp://mail/path"), None);
    }

    #[test]
    fn addresses_and_hosts() {
        assert!(is_address("a@b") && is_address("Bunker <a@b.c>"));
        assert!(!is_address("ab") && !is_address("@b") && !is_address("a@") && !is_address("a b@c"));
        assert!(has_host("h/x") && has_host("user@h:1") && !has_host("/x") && !has_host(":80/"));
    }

    #[test]
    fn errors_name_the_line_and_key_but_not_the_value() {
        let e = error("[notifications]\non = [\"failure\", \"sometimes\"]\n");
        assert!(e.starts_with("/etc/bunker/bunker.toml:2: notifications.on[1]: unknown event"), "{e}");
        let e = error("[notifications]\non = \"failure\"\n");
        assert!(e.contains(":2:") && e.contains("notifications.on must be a list"), "{e}");
        let e = error("[notifications]\nwebhooks = []\n");
        assert!(e.contains(":2:") && e.contains("unknown key notifications.webhooks"), "{e}");

        let e = error("[notifications]\n\n[[notifications.slack]]\nurl = \"ftp://h/${TOKEN}\"\n");
        assert!(e.contains(":4:") && e.contains("notifications.slack[0].url") && e.contains("http"), "{e}");
        assert!(!e.contains("tok-s3cret") && !e.contains("ftp://"), "{e}");
        let e = error("[notifications.slack]\nurl = \"https://h\"\ncolour = \"red\"\n");
        assert!(e.contains(":3:") && e.contains("unknown key notifications.slack.colour"), "{e}");
        let e = error("[notifications.slack]\nchannel = \"x\"\n");
        assert!(e.contains("unknown key notifications.slack.channel"), "{e}");
        let e = error("[[notifications.webhook]]\nheaders = {}\n");
        assert!(e.contains(":1:") && e.contains("notifications.webhook[0].url is missing"), "{e}");
        let e = error("[notifications]\nwebhook = [\"https://h\"]\n");
        assert!(e.contains(":2:") && e.contains("notifications.webhook[0] must be a table"), "{e}");
        let e = error("[notifications]\nslack = 3\n");
        assert!(e.contains(":2:") && e.contains("notifications.slack must be a table or a list"), "{e}");
        let e = error("[[notifications.webhook]]\nurl = \"https://h\"\nheaders = { \"Bad Name\" = \"x\" }\n");
        assert!(e.contains(":3:") && e.contains("notifications.webhook[0].headers.Bad Name"), "{e}");
        let e = error("[[notifications.webhook]]\nurl = \"https://h\"\nheaders = { A = 1 }\n");
        assert!(e.contains(":3:") && e.contains("headers.A must be a string"), "{e}");

        let mail = "[[notifications.email]]\nsmtp = \"smtp://mail\"\nfrom = \"b@example.com\"\n";
        let e = error(&format!("{mail}to = []\n"));
        assert!(e.contains(":4:") && e.contains("notifications.email[0].to is empty"), "{e}");
        let e = error(mail);
        assert!(e.contains(":1:") && e.contains("notifications.email[0].to is missing"), "{e}");
        let e = error(&format!("{mail}to = [\"oncall\"]\n"));
        assert!(e.contains(":4:") && e.contains("notifications.email[0].to[0]: must be a mail address"), "{e}");
        let e = error(&format!("{mail}to = [1]\n"));
        assert!(e.contains(":4:") && e.contains("to[0] must be a list of mail addresses"), "{e}");
        let e = error("[notifications.email]\nsmtp = \"https://mail\"\nfrom = \"b@x\"\nto = [\"a@x\"]\n");
        assert!(e.contains(":2:") && e.contains("notifications.email.smtp: must be smtp://"), "{e}");
        let e = error("[notifications.email]\nsmtp = \"smtp://u:${TOKEN}@mail\"\nfrom = \"b@x\"\nto = [\"a@x\"]\n");
        assert!(e.contains(":2:") && !e.contains("tok-s3cret"), "{e}");
        let e = error(&format!("{mail}to = [\"a@x\"]\nstarttls = \"maybe\"\n"));
        assert!(e.contains(":5:") && e.contains("starttls: use \"required\""), "{e}");
        let e = error(
            "[notifications.email]\nsmtp = \"smtps://m\"\nstarttls = \"required\"\nfrom = \"b@x\"\nto = \"a@x\"\n",
        );
        assert!(e.contains(":3:") && e.contains("remove starttls"), "{e}");
        let e = error(&format!("{mail}to = [\"a@x\"]\npassword = \"${{SMTP_PASSWORD}}\"\n"));
        assert!(e.contains("notifications.email[0].username is missing") && !e.contains("pw-s3cret"), "{e}");
        let e = error(&format!("{mail}to = [\"a@x\"]\nusername = \"u\"\n"));
        assert!(e.contains("notifications.email[0].password is missing"), "{e}");
        let e = error(&format!("{mail}to = [\"a@x\"]\nusername = \"u\"\npassword = \"p\"\npassword_file = \"f\"\n"));
        assert!(e.contains("sets both password and password_file"), "{e}");
        let e = error("[notifications.email]\nsmtp = \"smtp://m\"\nfrom = \"bunker\"\nto = \"a@x\"\n");
        assert!(e.contains(":3:") && e.contains("notifications.email.from: must be a mail address"), "{e}");

        let e = error("[[notifications.healthchecks]]\nurl = \"https://hc/x\"\njobs = []\n");
        assert!(e.contains(":3:") && e.contains("notifications.healthchecks[0].jobs is empty"), "{e}");
        let e = error("[[notifications.healthchecks]]\nurl = \"hc-ping.com/x\"\n");
        assert!(e.contains(":2:") && e.contains("healthchecks[0].url: must be an http"), "{e}");
        let e = error("[[notifications.healthchecks]]\nurl = \"\"\n");
        assert!(e.contains(":2:") && e.contains("healthchecks[0].url is empty"), "{e}");
    }
}
