//! Logs never carry a secret, at any verbosity: third-party crates' debug output prints credential
//! providers whole (`StaticCredentialProvider { secret_access_key: "…" }` at `-vv`). Every log line
//! goes through [`Redacting`], which blanks the value after a secret-looking field name and every
//! occurrence of the secrets this process holds (from its environment, a password file, a prompt).

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// Field names whose quoted value is a secret, in `name: "v"`, `name: Some("v")`, `name="v"` and
/// `"name": "v"` form; a '-' in the text counts as '_' (`x-amz-security-token`).
const SECRET_FIELDS: &[&str] =
    &["secret_access_key", "session_token", "security_token", "password", "secret", "token", "authorization"];

/// Environment variables (besides every `BUNKER_*PASSWORD*`) whose values must never be printed.
const SECRET_VARS: &[&str] = &["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD", "REDISCLI_AUTH"];

/// The secrets this process holds.
static KNOWN: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Blanks `secret` in every later log line (a value under 4 characters would blank ordinary words:
/// ignored).
pub fn register(secret: &str) {
    if secret.len() >= 4 {
        let mut known = KNOWN.write().expect("known secrets");
        if !known.iter().any(|k| k == secret) {
            known.push(secret.to_string());
        }
    }
}

/// A stderr writer that redacts each event before writing it.
pub struct Redacting;

impl Redacting {
    /// Also registers the secrets of this process's environment.
    pub fn new() -> Redacting {
        for (name, value) in std::env::vars() {
            let bunker_secret = bunker_engine::child::is_secret_var(&name) && !name.ends_with("_FILE");
            if bunker_secret || SECRET_VARS.contains(&name.as_str()) {
                register(&value);
            }
        }
        Redacting
    }
}

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter
    }
}

/// One event's writer: tracing's formatter writes each event whole, so each write is redacted whole.
pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let known = KNOWN.read().map(|k| k.clone()).unwrap_or_default();
        let text = redact(&String::from_utf8_lossy(buf), &known);
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `text` with the quoted values of secret-looking fields and every `known` secret replaced by `***`.
pub fn redact(text: &str, known: &[String]) -> String {
    let mut out = text.to_string();
    for secret in known {
        out = out.replace(secret.as_str(), "***");
    }
    for field in SECRET_FIELDS {
        let mut from = 0;
        loop {
            // ASCII lowercasing and '-' → '_' keep every byte offset as it is.
            let folded = out[from..].to_ascii_lowercase().replace('-', "_");
            let Some(at) = folded.find(field).map(|i| i + from) else { break };
            let after = at + field.len();
            // The separator: `: `, `=`, `: Some(`, after the closing quote of a JSON key.
            let rest = &out[after..];
            let rest = rest.strip_prefix('"').unwrap_or(rest);
            let rest = rest.trim_start_matches([':', ' ', '=']);
            let mut start = out.len() - rest.len();
            if out[start..].starts_with("Some(") {
                start += "Some(".len();
            }
            if !out[start..].starts_with('"') {
                from = after;
                continue;
            }
            let Some(len) = out[start + 1..].find('"') else { break };
            out.replace_range(start + 1..start + 1 + len, "***");
            from = start + 4;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_providers_and_known_secrets_are_blanked() {
        let line = r#"Trying credential provider: StaticCredentialProvider { access_key_id: "testing", secret_access_key: "S3cr3t", session_token: Some("tok"), password="pw" } BUNKERPW"#;
        let out = redact(line, &["BUNKERPW".to_string()]);
        assert_eq!(
            out,
            r#"Trying credential provider: StaticCredentialProvider { access_key_id: "testing", secret_access_key: "***", session_token: Some("***"), password="***" } ***"#
        );
        assert_eq!(redact("no secrets here; token count 3", &[]), "no secrets here; token count 3");
        assert_eq!(redact(r#"{"password": "pw1", "user": "u"}"#, &[]), r#"{"password": "***", "user": "u"}"#);
        assert_eq!(redact(r#"x-amz-security-token: "abc""#, &[]), r#"x-amz-security-token: "***""#);
    }
}
