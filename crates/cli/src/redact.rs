//! Logs never carry a secret, at any verbosity: third-party crates' debug output prints credential
//! providers whole (`StaticCredentialProvider { secret_access_key: "…" }` at `-vv`). Every log line
//! goes through [`Redacting`], which blanks the value after a secret-looking field name and every
//! occurrence of the secrets this process was given through its environment.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// Field names whose quoted value is a secret, in `name: "v"`, `name: Some("v")`, `name="v"` form.
const SECRET_FIELDS: &[&str] =
    &["secret_access_key", "session_token", "security_token", "password", "secret", "token", "authorization"];

/// Environment variables whose values must never be printed.
const SECRET_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "BUNKER_PASSWORD",
    "BUNKER_NEW_PASSWORD",
    "BUNKER_SECONDARY_PASSWORD",
    "PGPASSWORD",
    "REDISCLI_AUTH",
];

/// A stderr writer that redacts each event before writing it.
pub struct Redacting {
    known: Vec<String>,
}

impl Redacting {
    pub fn new() -> Redacting {
        let known = SECRET_VARS.iter().filter_map(|v| std::env::var(v).ok()).filter(|v| v.len() >= 4).collect();
        Redacting { known }
    }
}

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { known: &self.known }
    }
}

pub struct LineWriter<'a> {
    known: &'a [String],
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = redact(&String::from_utf8_lossy(buf), self.known);
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
        while let Some(at) = out[from..].to_ascii_lowercase().find(field).map(|i| i + from) {
            let after = at + field.len();
            // Skip the separator: `: `, `=`, `: Some(`.
            let rest = &out[after..];
            let skipped = rest.len() - rest.trim_start_matches([':', ' ', '=']).len();
            let mut start = after + skipped;
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
    }
}
