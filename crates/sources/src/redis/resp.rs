//! A small RESP2 client: commands as arrays of bulk strings, replies parsed, pipelining by writing many
//! commands before reading their replies. Hand-written rather than the `redis` crate because the
//! replication handshake (`SYNC`) hands over the raw socket afterwards, to read the RDB payload as it
//! streams; one client then serves everything (snapshots, key dumps, restores, verification).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::url::RedisUrl;
use crate::SourceError;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(b) => b,
            Reply::Status(s) => Some(s.into_bytes()),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// The stream under a connection: TCP, or TLS for `rediss://`.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct Conn {
    reader: BufReader<Box<dyn Stream>>,
    /// Commands queued by [`Conn::send`], written by [`Conn::flush`].
    out: Vec<u8>,
    /// Where the server is, for messages (no password).
    pub display: String,
}

impl Conn {
    /// Connects, and authenticates when the URL has a password (`AUTH [user] pass`).
    pub fn open(url: &RedisUrl, timeout: Duration) -> Result<Conn, SourceError> {
        let display = url.display();
        let fail = |detail: String| SourceError::Connect { target: display.clone(), detail };
        let addr = format!("{}:{}", url.host, url.port);
        let addrs: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(&addr).map_err(|e| fail(e.to_string()))?.collect();
        let tcp = addrs
            .iter()
            .find_map(|a| TcpStream::connect_timeout(a, timeout).ok())
            .ok_or_else(|| fail("connection refused or timed out; is the server up and the port right?".into()))?;
        tcp.set_nodelay(true).ok();
        tcp.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let stream: Box<dyn Stream> = if url.tls {
            let connector = native_tls::TlsConnector::builder()
                .danger_accept_invalid_certs(url.insecure)
                .build()
                .map_err(|e| fail(format!("TLS setup: {e}")))?;
            Box::new(connector.connect(&url.host, tcp).map_err(|e| {
                let e = e.to_string();
                if e.contains("certificate verify failed") {
                    fail(format!(
                        "TLS: the server's certificate is not trusted for {} ({}); add its CA to the system's \
                         trust store or point SSL_CERT_FILE at it, or add ?insecure=true to the URL to skip the check",
                        url.host,
                        e.rsplit(':').next().unwrap_or(&e).trim()
                    ))
                } else {
                    fail(format!("TLS: {e}"))
                }
            })?)
        } else {
            Box::new(tcp)
        };
        let mut conn =
            Conn { reader: BufReader::with_capacity(1 << 20, stream), out: Vec::new(), display: display.clone() };
        if let Some(password) = &url.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &url.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            if let Reply::Error(e) = conn.call(&args)? {
                return Err(fail(format!("authentication failed: {e}; check the user and password in the URL")));
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Reply, SourceError> {
        self.send(args)?;
        self.flush()?;
        self.read_reply()
    }

    /// Sends one command and fails on an error reply, naming the command.
    pub fn call_ok(&mut self, args: &[&[u8]]) -> Result<Reply, SourceError> {
        match self.call(args)? {
            Reply::Error(e) => Err(self.query_error(args, &e)),
            r => Ok(r),
        }
    }

    pub fn query_error(&self, args: &[&[u8]], e: &str) -> SourceError {
        let cmd = String::from_utf8_lossy(args.first().copied().unwrap_or(b"?")).to_uppercase();
        SourceError::Query { target: self.display.clone(), detail: format!("{cmd}: {e}") }
    }

    /// Queues one command (call [`Conn::flush`], then read the replies in order).
    pub fn send(&mut self, args: &[&[u8]]) -> Result<(), SourceError> {
        let buf = &mut self.out;
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        if self.out.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), SourceError> {
        let io = self.io_err();
        let out = std::mem::take(&mut self.out);
        let stream = self.reader.get_mut();
        stream.write_all(&out).and_then(|_| stream.flush()).map_err(io)
    }

    fn io_err(&self) -> impl Fn(std::io::Error) -> SourceError {
        let target = self.display.clone();
        move |e| SourceError::Connect { target: target.clone(), detail: format!("connection lost: {e}") }
    }

    pub fn read_reply(&mut self) -> Result<Reply, SourceError> {
        let io = self.io_err();
        read_reply(&mut self.reader).map_err(io)
    }

    /// The raw reader after a handshake (the replication stream).
    pub fn raw(&mut self) -> &mut BufReader<Box<dyn Stream>> {
        &mut self.reader
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// Redis's own default limit for one bulk string (`proto-max-bulk-len`).
const MAX_BULK: i64 = 512 << 20;
/// Deeper nesting than any command bunker sends can return.
const MAX_DEPTH: usize = 8;

pub fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    read_nested(r, 0)
}

fn read_nested(r: &mut impl BufRead, depth: usize) -> std::io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad("replies nested too deeply (not a Redis server?)".into()));
    }
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.chars().next().map(|c| c.len_utf8()).unwrap_or(0));
    let num = || rest.parse::<i64>().map_err(|_| bad(format!("bad reply line {line:?}")));
    Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(num()?),
        "$" => {
            let n = num()?;
            if n > MAX_BULK {
                return Err(bad(format!("a {n}-byte reply is beyond Redis's limits (not a Redis server?)")));
            }
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        "*" => {
            let n = num()?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    items.push(read_nested(r, depth + 1)?);
                }
                Reply::Array(Some(items))
            }
        }
        _ => return Err(bad(format!("unexpected reply {line:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let input = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n:1\r\n*-1\r\n";
        let mut r = std::io::BufReader::new(&input[..]);
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Status("OK".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Int(42));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(Some(b"a\r\n".to_vec())));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Reply::Array(Some(vec![Reply::Bulk(Some(b"x".to_vec())), Reply::Int(1)]))
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Array(None));
        assert!(read_reply(&mut r).is_err());
        let huge = b"$9223372036854775807\r\n";
        assert!(read_reply(&mut std::io::BufReader::new(&huge[..])).is_err());
        let deep = b"*1\r\n".repeat(100);
        assert!(read_reply(&mut std::io::BufReader::new(&deep[..])).is_err());
    }
}
