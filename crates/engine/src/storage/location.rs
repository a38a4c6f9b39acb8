//! Where a repository lives: a local path, `file://…`, or `s3://bucket/prefix`.

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
}

/// An S3-compatible location. Credentials never live here: they come from the standard AWS environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or the AWS profile chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
    /// `endpoint=` query parameter, else `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`; none means AWS.
    pub endpoint: Option<String>,
    /// `region=` query parameter, else `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`): `path-style=true|false`, else `BUNKER_S3_PATH_STYLE`,
    /// else on whenever a custom endpoint is set (MinIO, R2, moto…) and off for AWS.
    pub path_style: bool,
}

impl Location {
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Error::invalid(
                "repository",
                "empty location; give --repo PATH|file://PATH|s3://BUCKET/PREFIX",
            ));
        }
        if let Some(rest) = spec.strip_prefix("s3://") {
            return parse_s3(rest).map(Location::S3);
        }
        if let Some(path) = spec.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = spec.split_once("://") {
            return Err(Error::invalid(
                "repository",
                format!("unsupported scheme {scheme:?}; use a path, file://PATH or s3://BUCKET/PREFIX"),
            ));
        }
        Ok(Location::Local(PathBuf::from(spec)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3(s) => write!(f, "s3://{}/{}", s.bucket, s.prefix),
        }
    }
}

fn parse_s3(rest: &str) -> Result<S3Location> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.contains('@') {
        // Never echo it: the part before '@' is a key and, likely, its secret.
        return Err(Error::invalid(
            "repository",
            "s3:// location holds credentials (KEY:SECRET@BUCKET); they would end up in logs and process lists: give s3://BUCKET/PREFIX and set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
        ));
    }
    if bucket.is_empty() {
        return Err(Error::invalid("repository", "s3:// location has no bucket; use s3://BUCKET/PREFIX"));
    }
    let mut endpoint = None;
    let mut region = None;
    let mut path_style = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        match k {
            "endpoint" => endpoint = Some(v.to_string()),
            "region" => region = Some(v.to_string()),
            "path-style" => path_style = Some(parse_bool(v)?),
            other => {
                return Err(Error::invalid(
                    "repository",
                    format!("unknown s3 option {other:?}; known: endpoint, region, path-style"),
                ))
            }
        }
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint = endpoint.or_else(|| env("AWS_ENDPOINT_URL_S3")).or_else(|| env("AWS_ENDPOINT_URL"));
    let region = region
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let path_style = match path_style {
        Some(p) => p,
        None => match env("BUNKER_S3_PATH_STYLE") {
            Some(v) => parse_bool(&v)?,
            None => endpoint.is_some(),
        },
    };
    Ok(S3Location {
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
        endpoint,
        region,
        path_style,
    })
}

fn parse_bool(v: &str) -> Result<bool> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid("repository", format!("path-style must be true or false, not {v:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_an_s3_url_are_refused_without_echoing_them() {
        let e = Location::parse("s3://AKIAXX:s3cr3tVALUE@bucket/prefix").unwrap_err().to_string();
        assert!(e.contains("AWS_ACCESS_KEY_ID") && !e.contains("s3cr3tVALUE") && !e.contains("AKIAXX"), "{e}");
    }

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(Location::parse("/tmp/r").unwrap(), Location::Local("/tmp/r".into()));
        assert_eq!(Location::parse("file:///tmp/r").unwrap(), Location::Local("/tmp/r".into()));
        let Location::S3(s) =
            Location::parse("s3://b/some/prefix/?endpoint=http://127.0.0.1:9000&region=eu-west-1").unwrap()
        else {
            panic!("not s3")
        };
        assert_eq!(s.bucket, "b");
        assert_eq!(s.prefix, "some/prefix");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.region, "eu-west-1");
        assert!(s.path_style);
        assert!(Location::parse("ftp://x").is_err());
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("s3://b/p?bogus=1").is_err());
    }
}
