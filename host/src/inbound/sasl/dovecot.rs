//! Delegating SMTP AUTH to a running Dovecot through its authentication
//! protocol (version 1.2, the one Postfix's `smtpd_sasl_type = dovecot`
//! speaks) on its `auth-client` unix socket. One connection per attempt:
//! handshake, one `AUTH` with the whole PLAIN response, one answer.

use super::Outcome;
use crate::smtp::server::Mechanism;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How long Dovecot has to answer (its own failure delay included).
const TIMEOUT: Duration = Duration::from_secs(15);

/// One attempt to pass on.
#[derive(Debug)]
pub struct Request<'a> {
    /// What the client used (Dovecot is always asked with PLAIN: the
    /// gateway has the password in clear either way).
    pub mechanism: Mechanism,
    /// The login.
    pub user: &'a str,
    /// The password.
    pub password: &'a str,
    /// The client's address (`rip`), for Dovecot's own logs and limits.
    pub client: IpAddr,
    /// Our address (`lip`).
    pub local: IpAddr,
    /// The SMTP session is under TLS (`secured`).
    pub secured: bool,
}

/// Dovecot's tab-escaping (`\x01` introduces an escaped character).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// The client's half of the handshake and the request, as sent.
pub fn request_lines(req: &Request<'_>, pid: u32, id: u32) -> String {
    let mut resp = Vec::with_capacity(req.user.len() + req.password.len() + 2);
    resp.push(0);
    resp.extend_from_slice(req.user.as_bytes());
    resp.push(0);
    resp.extend_from_slice(req.password.as_bytes());
    let mut s = format!(
        "VERSION\t1\t1\nCPID\t{pid}\nAUTH\t{id}\tPLAIN\tservice=smtp\tlip={}\trip={}",
        req.local, req.client
    );
    if req.secured {
        s.push_str("\tsecured");
    }
    s.push_str("\tnologin\tresp=");
    s.push_str(&B64.encode(&resp));
    s.push('\n');
    s
}

/// What one line from the server means.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The handshake's `VERSION` with the major version.
    Version(u32),
    /// Part of the handshake (MECH, SPID, CUID, COOKIE, DONE, ...).
    Handshake,
    /// The final answer to our request.
    Done(Outcome),
    /// A line that is not the protocol, or an answer to another request.
    Bad(String),
}

/// Interpret one server line (without its newline) for request `id`.
pub fn parse_line(line: &str, id: u32, user: &str) -> Line {
    let mut f = line.split('\t');
    let verb = f.next().unwrap_or("");
    match verb {
        "VERSION" => match f.next().and_then(|v| v.parse().ok()) {
            Some(v) => Line::Version(v),
            None => Line::Bad(format!("bad VERSION line {line:?}")),
        },
        "MECH" | "SPID" | "CUID" | "COOKIE" | "DONE" => Line::Handshake,
        "OK" | "FAIL" | "CONT" => {
            if f.next().and_then(|v| v.parse::<u32>().ok()) != Some(id) {
                return Line::Bad(format!("answer for another request: {line:?}"));
            }
            let args: Vec<String> = f.map(unescape).collect();
            let arg = |k: &str| {
                args.iter()
                    .find_map(|a| a.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                    .map(str::to_string)
            };
            match verb {
                "OK" => Line::Done(Outcome::Success(arg("user").unwrap_or_else(|| user.into()))),
                "FAIL" => {
                    let reason = arg("reason").unwrap_or_else(|| "authentication failed".into());
                    if args.iter().any(|a| a == "temp") {
                        Line::Done(Outcome::Unavailable(format!("dovecot: {reason}")))
                    } else {
                        Line::Done(Outcome::Failed(format!("dovecot: {reason}")))
                    }
                }
                // PLAIN with its initial response needs no second round.
                _ => Line::Bad("dovecot asked for another round of PLAIN".into()),
            }
        }
        _ => Line::Bad(format!("unexpected line {line:?}")),
    }
}

/// Ask the Dovecot at `socket`.
pub async fn authenticate(socket: &Path, req: &Request<'_>) -> Outcome {
    match tokio::time::timeout(TIMEOUT, exchange(socket, req)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => Outcome::Unavailable(format!("dovecot auth {}: {e}", socket.display())),
        Err(_) => Outcome::Unavailable(format!("dovecot auth {}: timed out", socket.display())),
    }
}

async fn exchange(socket: &Path, req: &Request<'_>) -> std::io::Result<Outcome> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (r, mut w) = stream.into_split();
    w.write_all(request_lines(req, std::process::id(), 1).as_bytes())
        .await?;
    let mut lines = BufReader::new(AsyncReadExt::take(r, 64 * 1024)).lines();
    while let Some(line) = lines.next_line().await? {
        match parse_line(&line, 1, req.user) {
            Line::Version(1) | Line::Handshake => {}
            Line::Version(v) => {
                return Ok(Outcome::Unavailable(format!(
                    "dovecot speaks auth protocol version {v}, not 1"
                )));
            }
            Line::Done(o) => return Ok(o),
            Line::Bad(why) => return Ok(Outcome::Unavailable(format!("dovecot: {why}"))),
        }
    }
    Ok(Outcome::Unavailable(
        "dovecot closed the connection without an answer".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request<'static> {
        Request {
            mechanism: Mechanism::Login,
            user: "alice",
            password: "pw",
            client: "192.0.2.1".parse().unwrap(),
            local: "127.0.0.1".parse().unwrap(),
            secured: true,
        }
    }

    #[test]
    fn request_is_one_plain_auth() {
        let s = request_lines(&req(), 42, 7);
        assert_eq!(
            s,
            "VERSION\t1\t1\nCPID\t42\nAUTH\t7\tPLAIN\tservice=smtp\tlip=127.0.0.1\trip=192.0.2.1\tsecured\tnologin\tresp=AGFsaWNlAHB3\n"
        );
    }

    #[test]
    fn answers() {
        assert_eq!(parse_line("VERSION\t1\t2", 1, "a"), Line::Version(1));
        assert_eq!(
            parse_line("MECH\tPLAIN\tplaintext", 1, "a"),
            Line::Handshake
        );
        assert_eq!(
            parse_line("OK\t1\tuser=alice@example.com", 1, "alice"),
            Line::Done(Outcome::Success("alice@example.com".into()))
        );
        assert_eq!(
            parse_line("FAIL\t1\tuser=alice", 1, "alice"),
            Line::Done(Outcome::Failed("dovecot: authentication failed".into()))
        );
        assert_eq!(
            parse_line("FAIL\t1\treason=Temporary\x01tfailure\ttemp", 1, "alice"),
            Line::Done(Outcome::Unavailable("dovecot: Temporary\tfailure".into()))
        );
        assert!(matches!(parse_line("OK\t2", 1, "a"), Line::Bad(_)));
        assert!(matches!(parse_line("CONT\t1\t", 1, "a"), Line::Bad(_)));
        assert!(matches!(parse_line("HELLO", 1, "a"), Line::Bad(_)));
    }
}
