//! The S3 calls Object Lock needs and opendal 0.59 does not make: a `PutObject` carrying a retention
//! (`x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`, with the `Content-MD5` S3 requires
//! for it), reading an object's retention (`HeadObject`), extending it (`PutObjectRetention`), reading
//! the bucket's lock configuration, and deleting an object's versions (a bucket with Object Lock is
//! always versioned: a plain delete only hides an object behind a delete marker and frees nothing).
//!
//! Requests are signed with reqsign (the AWS SigV4 signer opendal itself uses), with the same credential
//! chain (environment, profile, …) and sent with reqwest. Transient failures (5xx, throttling, timeouts,
//! resets) are retried with jittered backoff like every other storage call; anything else fails at once.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::Digest as _;
use reqsign_core::{Context, OsEnv, Signer};
use reqsign_file_read_tokio::TokioFileRead;

use super::S3Location;
use crate::config::LockMode;

/// An object's retention, as S3 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until: DateTime<Utc>,
}

/// Why a call failed: an HTTP status and S3's error code, or no response at all.
#[derive(Debug)]
pub(super) struct Failure {
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

impl Failure {
    fn transport(e: impl std::fmt::Display) -> Self {
        Failure { status: None, code: "RequestFailed".into(), message: one_line(&e.to_string()) }
    }

    pub fn transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s >= 500 || s == 429 || self.code == "SlowDown" || self.code == "RequestTimeout",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s} {}: {}", self.code, self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

pub(super) struct Client {
    http: reqwest::Client,
    signer: Signer<reqsign_aws_v4::Credential>,
    location: S3Location,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3lock::Client(s3://{}/{})", self.location.bucket, self.location.prefix)
    }
}

impl Client {
    /// `stall`: how long a transfer may make no progress (a 256 MiB pack on a slow link takes minutes
    /// whole, so there is no limit on the whole call).
    pub fn new(location: &S3Location, stall: Duration) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .read_timeout(stall)
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(Failure::transport)?;
        let ctx = Context::new().with_file_read(TokioFileRead).with_env(OsEnv);
        let signer = Signer::new(
            ctx,
            reqsign_aws_v4::DefaultCredentialProvider::new(),
            reqsign_aws_v4::RequestSigner::new("s3", &location.region),
        );
        Ok(Client { http, signer, location: location.clone() })
    }

    /// The URL of `path` (relative to the repository root), or of the bucket when `path` is `None`.
    fn url(&self, path: Option<&str>, query: &str) -> String {
        let l = &self.location;
        let base = match (&l.endpoint, l.path_style) {
            (Some(ep), true) => format!("{}/{}", ep.trim_end_matches('/'), l.bucket),
            (Some(ep), false) => {
                let (scheme, host) = ep.split_once("://").unwrap_or(("https", ep));
                format!("{scheme}://{}.{}", l.bucket, host.trim_end_matches('/'))
            }
            (None, true) => format!("https://s3.{}.amazonaws.com/{}", l.region, l.bucket),
            (None, false) => format!("https://{}.s3.{}.amazonaws.com", l.bucket, l.region),
        };
        let mut url = base;
        url.push('/');
        if let Some(p) = path {
            url.push_str(&encode_key(&self.key(p)));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    fn key(&self, path: &str) -> String {
        let prefix = self.location.prefix.trim_matches('/');
        if prefix.is_empty() {
            path.to_string()
        } else {
            format!("{prefix}/{path}")
        }
    }

    /// One signed request, retried while it fails transiently. Returns the status, headers and body of a
    /// 2xx (or of a 404 / 412 when `tolerate` lists it).
    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
        tolerate: &[u16],
    ) -> Result<(u16, http::HeaderMap, Bytes), Failure> {
        let mut attempt = 0u32;
        loop {
            match self.send_once(&method, &url, &headers, body.clone(), tolerate).await {
                Err(f) if f.transient() && attempt < 6 => {
                    attempt += 1;
                    let base = super::retry_min_delay_ms() as f64 * 2f64.powi(attempt as i32 - 1);
                    let delay = Duration::from_millis((base.min(10_000.0) * (0.5 + rand::random::<f64>())) as u64);
                    tracing::warn!(
                        "storage {method} {} failed ({f}), retry {attempt} in {:.1}s",
                        url_path(&url),
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                }
                r => return r,
            }
        }
    }

    async fn send_once(
        &self,
        method: &reqwest::Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
        tolerate: &[u16],
    ) -> Result<(u16, http::HeaderMap, Bytes), Failure> {
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        builder = builder.header(http::header::CONTENT_LENGTH, body.len().to_string());
        let (mut parts, ()) = builder.body(()).map_err(Failure::transport)?.into_parts();
        self.signer.sign(&mut parts, None).await.map_err(|e| Failure {
            status: None,
            code: "Credentials".into(),
            message: format!(
                "cannot sign the request ({}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
                one_line(&e.to_string())
            ),
        })?;
        let resp = self
            .http
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(Failure::transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(Failure::transport)?;
        if (200..300).contains(&status) || tolerate.contains(&status) {
            return Ok((status, headers, bytes));
        }
        let text = String::from_utf8_lossy(&bytes);
        let code = xml_field(&text, "Code").unwrap_or_else(|| format!("HTTP{status}"));
        let message = xml_field(&text, "Message").map(|m| one_line(&m)).unwrap_or_default();
        Err(Failure { status: Some(status), code, message })
    }

    /// Writes an object locked until `until`; with `if_none_match`, only when none exists (returns false
    /// when one did).
    pub async fn put(
        &self,
        path: &str,
        data: Bytes,
        retention: Retention,
        if_none_match: bool,
    ) -> Result<bool, Failure> {
        let mut headers = vec![
            ("content-md5", content_md5(&data)),
            ("x-amz-object-lock-mode", retention.mode.s3_name().to_string()),
            ("x-amz-object-lock-retain-until-date", iso(retention.until)),
        ];
        if if_none_match {
            headers.push(("if-none-match", "*".to_string()));
        }
        let (status, _, _) = self.send(reqwest::Method::PUT, self.url(Some(path), ""), headers, data, &[412]).await?;
        Ok(status != 412)
    }

    /// An object's retention: `Ok(None)` when it has none, `Err` with status 404 when it is gone.
    pub async fn retention(&self, path: &str) -> Result<Option<Retention>, Failure> {
        let (_, headers, _) =
            self.send(reqwest::Method::HEAD, self.url(Some(path), ""), vec![], Bytes::new(), &[]).await?;
        let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (Some(mode), Some(until)) = (get("x-amz-object-lock-mode"), get("x-amz-object-lock-retain-until-date"))
        else {
            return Ok(None);
        };
        Ok(Some(Retention { mode: LockMode::parse(&mode).map_err(Failure::transport)?, until: parse_time(&until)? }))
    }

    /// Moves an object's retain-until date (S3 allows later dates in either mode).
    pub async fn set_retention(&self, path: &str, retention: Retention) -> Result<(), Failure> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            retention.mode.s3_name(),
            iso(retention.until)
        );
        let body = Bytes::from(body);
        let headers = vec![("content-md5", content_md5(&body)), ("content-type", "application/xml".to_string())];
        self.send(reqwest::Method::PUT, self.url(Some(path), "retention"), headers, body, &[]).await.map(|_| ())
    }

    /// Whether the bucket has Object Lock enabled (which also means versioning is on).
    pub async fn bucket_lock_enabled(&self) -> Result<bool, Failure> {
        let (status, _, body) =
            self.send(reqwest::Method::GET, self.url(None, "object-lock"), vec![], Bytes::new(), &[404]).await?;
        Ok(status != 404
            && xml_field(&String::from_utf8_lossy(&body), "ObjectLockEnabled").as_deref() == Some("Enabled"))
    }

    /// Deletes every version (and delete marker) of one object, so its bytes are gone. A version still
    /// under retention fails with 403 `AccessDenied`, which is returned at once (never retried).
    pub async fn delete_versions(&self, path: &str) -> Result<usize, Failure> {
        let key = self.key(path);
        let query = format!("versions&prefix={}", encode_query(&key));
        let (_, _, body) = self.send(reqwest::Method::GET, self.url(None, &query), vec![], Bytes::new(), &[]).await?;
        let text = String::from_utf8_lossy(&body);
        let versions = version_ids(&text, &key);
        for v in &versions {
            let query = format!("versionId={}", encode_query(v));
            self.send(reqwest::Method::DELETE, self.url(Some(path), &query), vec![], Bytes::new(), &[404]).await?;
        }
        Ok(versions.len())
    }
}

/// `2027-01-31T12:00:00Z`: the form S3 takes in headers and XML.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, Failure> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Failure::transport(format!("retain-until date {s:?} does not parse: {e}")))
}

fn content_md5(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

/// Percent-encodes a key for a URL path (SigV4's rules: everything but unreserved characters and `/`).
fn encode_key(key: &str) -> String {
    encode(key, true)
}

fn encode_query(v: &str) -> String {
    encode(v, false)
}

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn url_path(url: &str) -> &str {
    url.split_once("://").map(|(_, rest)| rest.split_once('/').map_or(rest, |(_, p)| p)).unwrap_or(url)
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 240 {
        format!("{}…", s.chars().take(240).collect::<String>())
    } else {
        s
    }
}

/// The text of the first `<name>…</name>` in an S3 response (error codes, the lock configuration).
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml_unescape(&xml[start..end]))
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The version IDs of `key` itself (not of longer keys sharing its prefix) in a `ListObjectVersions`
/// response: versions and delete markers alike.
fn version_ids(xml: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in ["Version", "DeleteMarker"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut rest = xml;
        while let Some(i) = rest.find(&open) {
            let body_start = i + open.len();
            let Some(j) = rest[body_start..].find(&close) else { break };
            let entry = &rest[body_start..body_start + j];
            if xml_field(entry, "Key").as_deref() == Some(key) {
                if let Some(v) = xml_field(entry, "VersionId") {
                    out.push(v);
                }
            }
            rest = &rest[body_start + j + close.len()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_one_key_only() {
        let xml = "<ListVersionsResult><Version><Key>data/ab</Key><VersionId>v1</VersionId></Version>\
                   <Version><Key>data/abc</Key><VersionId>v2</VersionId></Version>\
                   <DeleteMarker><Key>data/ab</Key><VersionId>m1</VersionId></DeleteMarker></ListVersionsResult>";
        assert_eq!(version_ids(xml, "data/ab"), vec!["v1".to_string(), "m1".to_string()]);
    }

    #[test]
    fn urls_and_keys() {
        let l = S3Location {
            bucket: "b".into(),
            prefix: "repo".into(),
            endpoint: Some("http://127.0.0.1:9000/".into()),
            region: "us-east-1".into(),
            path_style: true,
        };
        let c = Client::new(&l, Duration::from_secs(5)).unwrap();
        assert_eq!(c.url(Some("data/a b"), "retention"), "http://127.0.0.1:9000/b/repo/data/a%20b?retention");
        assert_eq!(c.url(None, "object-lock"), "http://127.0.0.1:9000/b/?object-lock");
        assert_eq!(encode_query("repo/data/x+y"), "repo%2Fdata%2Fx%2By");
        let t = parse_time("2027-01-31T12:00:00.000Z").unwrap();
        assert_eq!(iso(t), "2027-01-31T12:00:00Z");
    }
}
