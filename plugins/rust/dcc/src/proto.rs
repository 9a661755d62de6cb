//! dccifd's ASCII protocol (DCC's `include/dccif.h`, checked against
//! dccifd 2.3.167): the request's lines and the reply's parse, free of I/O
//! so they are tested natively.
//!
//! Request: the options line, the client's IP address (`\r` and its host
//! name), the HELO name, the envelope sender in angle brackets (`<>` for
//! none), one line per recipient (`\r` and a local user name when there is
//! one), a blank line, then the message as received; the client then
//! closes its writing half. Reply: the overall result character, one
//! character per recipient, with the `header` option the `X-DCC-...`
//! header (possibly folded), and a blank line.

/// One recipient as dccifd sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt<'a> {
    /// The address (bare, no angle brackets: dccifd keeps them).
    pub address: &'a str,
    /// The local user whose `userdirs/USER/whiteclnt` applies, if any.
    pub user: Option<&'a str>,
}

/// The envelope part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The options (`header` is always sent).
    pub options: &'a [String],
    /// Client address; empty: dccifd takes it from the first Received.
    pub client_ip: &'a str,
    /// Client host name, if known.
    pub client_name: Option<&'a str>,
    /// HELO name.
    pub helo: &'a str,
    /// Envelope sender ("" for the null sender).
    pub sender: &'a str,
    /// Recipients.
    pub rcpts: &'a [Rcpt<'a>],
}

/// No protocol line may carry a line break of its own (it would start
/// another line): such characters become spaces.
fn clean(s: &str) -> String {
    s.replace(['\r', '\n', '\0'], " ")
}

/// The request's lines up to and including the blank line.
pub fn request_head(r: &Request<'_>) -> Vec<u8> {
    let mut opts: Vec<String> = r.options.iter().map(|o| clean(o)).collect();
    if !opts.iter().any(|o| o == "header") {
        opts.insert(0, "header".into());
    }
    let mut s = opts.join(" ");
    s.push('\n');
    s.push_str(&clean(r.client_ip));
    if let Some(n) = r.client_name.filter(|n| !n.is_empty()) {
        s.push('\r');
        s.push_str(&clean(n));
    }
    s.push('\n');
    s.push_str(&clean(r.helo));
    s.push('\n');
    s.push_str(&format!("<{}>\n", clean(r.sender)));
    for rc in r.rcpts {
        s.push_str(&clean(rc.address));
        if let Some(u) = rc.user.filter(|u| !u.is_empty()) {
            s.push('\r');
            s.push_str(&clean(u));
        }
        s.push('\n');
    }
    s.push('\n');
    s.into_bytes()
}

/// A result character of dccifd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `A`: accept.
    Accept,
    /// `R`: reject.
    Reject,
    /// `G`: greylisted (try again later).
    Greylist,
    /// `S`: accept for some recipients (dccif.h: no longer sent).
    Some,
    /// `T`: temporary failure.
    Temporary,
}

impl Answer {
    fn of(c: char) -> Option<Answer> {
        Some(match c {
            'A' => Answer::Accept,
            'R' => Answer::Reject,
            'G' => Answer::Greylist,
            'S' => Answer::Some,
            'T' => Answer::Temporary,
            _ => return None,
        })
    }
}

/// A parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The overall result.
    pub overall: Answer,
    /// One answer per recipient, in request order (the overall answer for
    /// each when the line did not have one per recipient).
    pub rcpts: Vec<Answer>,
    /// The `X-DCC-...` header, unfolded: (name, value).
    pub header: Option<(String, String)>,
}

impl Reply {
    /// True when the DCC server did not answer: dccifd then says `A` with
    /// a header of an empty brand and server-ID 0 (`X-DCC--Metrics: host
    /// 0; ...`) instead of `T`.
    pub fn server_unavailable(&self) -> bool {
        match &self.header {
            Some((name, value)) => {
                let brandless = name.eq_ignore_ascii_case("X-DCC--Metrics");
                let id0 = value
                    .split(';')
                    .next()
                    .and_then(|h| h.split_whitespace().nth(1))
                    == Some("0");
                brandless || id0
            }
            None => false,
        }
    }
}

/// Why a reply cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbled(pub String);

/// Parse dccifd's reply to a request with `n` recipients.
pub fn parse_reply(bytes: &[u8], n: usize) -> Result<Reply, Garbled> {
    let text = std::str::from_utf8(bytes).map_err(|_| Garbled("not UTF-8".into()))?;
    if text.is_empty() {
        return Err(Garbled(
            "an empty reply (dccifd refused the request)".into(),
        ));
    }
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next().unwrap_or("");
    let mut chars = first.chars();
    let overall = match (chars.next().and_then(Answer::of), chars.next()) {
        (Some(a), None) => a,
        _ => return Err(Garbled(format!("result line {first:?}"))),
    };
    let second = lines
        .next()
        .ok_or_else(|| Garbled("no recipient line".into()))?;
    let each: Option<Vec<Answer>> = second.chars().map(Answer::of).collect();
    let rcpts = match each {
        Some(v) if v.len() == n => v,
        Some(v) if v.is_empty() || n == 0 => vec![overall; n],
        Some(v) => {
            return Err(Garbled(format!(
                "{} recipient answers for {n} recipients",
                v.len()
            )));
        }
        None => return Err(Garbled(format!("recipient line {second:?}"))),
    };
    let mut header: Option<(String, String)> = None;
    for l in lines {
        if l.is_empty() {
            break;
        }
        if l.starts_with([' ', '\t']) {
            if let Some((_, v)) = header.as_mut() {
                v.push(' ');
                v.push_str(l.trim());
            }
            continue;
        }
        if header.is_none()
            && let Some((name, value)) = l.split_once(':')
            && name.to_ascii_lowercase().starts_with("x-dcc-")
        {
            header = Some((name.trim().to_string(), value.trim().to_string()));
        }
    }
    Ok(Reply {
        overall,
        rcpts,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_as_dccifd_reads_it() {
        let opts = vec!["grey-off".to_string()];
        let rcpts = [
            Rcpt {
                address: "alice@peer.example",
                user: Some("alice"),
            },
            Rcpt {
                address: "bob@x.test",
                user: None,
            },
        ];
        let r = Request {
            options: &opts,
            client_ip: "192.0.2.25",
            client_name: Some("mail.sender.example"),
            helo: "mail.sender.example",
            sender: "sender@sender.example",
            rcpts: &rcpts,
        };
        assert_eq!(
            request_head(&r),
            b"header grey-off\n192.0.2.25\rmail.sender.example\nmail.sender.example\n<sender@sender.example>\nalice@peer.example\ralice\nbob@x.test\n\n"
        );
        let none = Request {
            sender: "",
            helo: "evil\nRCPT",
            ..r
        };
        let head = request_head(&none);
        assert!(head.windows(6).any(|w| w == b"\n<>\nal"), "{head:?}");
        assert!(head.windows(10).any(|w| w == b"evil RCPT\n"));
    }

    #[test]
    fn replies_seen_from_dccifd() {
        let a = parse_reply(
            b"A\nA\nX-DCC-PEER-Metrics: vm 1000; Body=1 Fuz1=1 Fuz2=1\n\n",
            1,
        )
        .unwrap();
        assert_eq!(a.overall, Answer::Accept);
        assert_eq!(
            a.header,
            Some((
                "X-DCC-PEER-Metrics".into(),
                "vm 1000; Body=1 Fuz1=1 Fuz2=1".into()
            ))
        );
        assert!(!a.server_unavailable());
        let mixed =
            parse_reply(b"A\nRA\nX-DCC-PEER-Metrics: vm 1000; bulk Body=many\n\n", 2).unwrap();
        assert_eq!(mixed.rcpts, [Answer::Reject, Answer::Accept]);
        let g = parse_reply(b"G\nGG\n", 2).unwrap();
        assert_eq!(g.overall, Answer::Greylist);
        assert_eq!(g.header, None);
        let down = parse_reply(b"A\nA\nX-DCC--Metrics: vm 0; Body=1 Fuz1=1 Fuz2=1\n\n", 1).unwrap();
        assert!(down.server_unavailable());
        let t = parse_reply(b"T\nR\nX-DCC--Metrics: vm 0; Body=1\n\n", 1).unwrap();
        assert_eq!(t.overall, Answer::Temporary);
        let folded = parse_reply(b"A\nA\nX-DCC-B-Metrics: vm 1000;\n\tBody=1\n\n", 1).unwrap();
        assert_eq!(folded.header.unwrap().1, "vm 1000; Body=1");
    }

    #[test]
    fn garbled_replies_are_errors() {
        for bad in [
            &b""[..],
            b"X\nA\n\n",
            b"AA\nA\n\n",
            b"A",
            b"A\nQ\n\n",
            b"\xff\n",
        ] {
            assert!(parse_reply(bad, 1).is_err(), "{bad:?}");
        }
        assert!(parse_reply(b"A\nAAA\n\n", 2).is_err());
    }
}
