//! `redis://[user:password@]host[:port][/db]` and `rediss://…` (TLS; `?insecure=true` skips certificate
//! checks, for self-signed test servers only).

use crate::SourceError;

#[derive(Clone)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    pub insecure: bool,
    /// The database a URL path names (`/3`), if any.
    pub db: Option<u32>,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, SourceError> {
        let bad = |why: &str| {
            SourceError::Config(format!(
                "Redis URL: {why}; expected redis://[user:password@]host[:port][/db] or rediss://… for TLS"
            ))
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else {
            return Err(bad("it does not start with redis:// or rediss://"));
        };
        // The credentials first (up to the last '@'): a password may hold '/', '?', ':' or '@', and no part
        // of it may end up in a message.
        let (userinfo, after) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (after, query) = after.split_once('?').unwrap_or((after, ""));
        let (hostport, path) = after.split_once('/').unwrap_or((after, ""));
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => ((!user.is_empty()).then(|| decode(user)), Some(decode(pass))),
                None => (None, Some(decode(u))),
            },
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                (h.trim_matches(['[', ']']).to_string(), p.parse().map_err(|_| bad(&format!("port {p:?}")))?)
            }
            _ => (hostport.trim_matches(['[', ']']).to_string(), 6379),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // bunker backs up and restores every database of a server; a database in the URL would suggest
        // otherwise.
        let db: Option<u32> = None;
        if !path.trim_matches('/').is_empty() {
            return Err(bad(
                "a database in the URL (/N) is not supported: a snapshot holds every database of the server; remove it",
            ));
        }
        let insecure = query.split('&').any(|kv| kv == "insecure=true");
        Ok(RedisUrl { host, port, user, password, tls, insecure, db })
    }

    /// Where, for messages: never the password.
    pub fn display(&self) -> String {
        format!(
            "{}://{}{}:{}",
            if self.tls { "rediss" } else { "redis" },
            self.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default(),
            self.host,
            self.port
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = RedisUrl::parse("redis://app:s%40cret@cache.internal:6380").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("cache.internal", 6380, None));
        assert_eq!((u.user.as_deref(), u.password.as_deref()), (Some("app"), Some("s@cret")));
        assert_eq!(u.display(), "redis://app@cache.internal:6380");
        assert!(!format!("{u:?}").contains("cret"));
        let u = RedisUrl::parse("rediss://:pw@127.0.0.1?insecure=true").unwrap();
        assert!(u.tls && u.insecure && u.user.is_none());
        assert_eq!((u.port, u.password.as_deref()), (6379, Some("pw")));
        assert!(RedisUrl::parse("http://x").is_err());
        assert!(RedisUrl::parse("redis://h:port").is_err());
        assert!(RedisUrl::parse("redis://h/2").is_err());
        // A password with '/', '@' or ':' in it parses, and never shows in an error.
        let u = RedisUrl::parse("redis://u:ab/c@d:e@h:7000").unwrap();
        assert_eq!((u.password.as_deref(), u.host.as_str(), u.port), (Some("ab/c@d:e"), "h", 7000));
        let e = RedisUrl::parse("redis://u:se/cret@h:notaport").err().unwrap().to_string();
        assert!(!e.contains("se/cret") && !e.contains("cret"), "{e}");
    }
}
