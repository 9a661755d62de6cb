//! Parsing server replies (RFC 5321 §4.2) without I/O: feed bytes, take
//! complete replies.

use std::fmt;

/// A reply received from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// Three-digit code.
    pub code: u16,
    /// Text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl ServerReply {
    /// The enhanced status code at the start of the first line, if any.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?;
        let word = first.split(' ').next()?;
        let parts: Vec<&str> = word.split('.').collect();
        let ok = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(word)
    }

    /// 2xx.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The whole reply on one line, as Exim logs it: `550 5.1.1 no such user`.
    pub fn one_line(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }

    /// The first line with its code (`250-first` style for multi-line).
    pub fn first_line(&self) -> String {
        let sep = if self.lines.len() > 1 { '-' } else { ' ' };
        format!(
            "{}{}{}",
            self.code,
            sep,
            self.lines.first().map_or("", |s| s)
        )
    }
}

impl fmt::Display for ServerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// A reply that is not SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError(pub String);

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed reply: {}", self.0)
    }
}

const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 500;

/// Incremental reply parser.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    pos: usize,
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Append received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// True when bytes are buffered that do not yet form a reply.
    pub fn has_partial(&self) -> bool {
        self.pos < self.buf.len() || !self.lines.is_empty()
    }

    /// Take the next complete reply, if one is buffered.
    pub fn next_reply(&mut self) -> Option<Result<ServerReply, ReplyError>> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                if rest.len() > MAX_LINE {
                    self.pos = self.buf.len();
                    return Some(Err(ReplyError("line too long".into())));
                }
                return None;
            };
            let raw = &rest[..nl];
            self.pos += nl + 1;
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text = String::from_utf8_lossy(line).into_owned();
            if line.len() < 3
                || !line[..3].iter().all(u8::is_ascii_digit)
                || !(b'2'..=b'5').contains(&line[0])
            {
                self.reset();
                return Some(Err(ReplyError(text)));
            }
            let code: u16 = text[..3].parse().unwrap();
            let sep = line.get(3).copied();
            if !matches!(sep, None | Some(b' ') | Some(b'-')) {
                self.reset();
                return Some(Err(ReplyError(text)));
            }
            if let Some(c) = self.code
                && c != code
            {
                self.reset();
                return Some(Err(ReplyError(format!(
                    "code changed within a reply: {text}"
                ))));
            }
            self.code = Some(code);
            self.lines.push(text.get(4..).unwrap_or("").to_string());
            if self.lines.len() > MAX_LINES {
                self.reset();
                return Some(Err(ReplyError("too many lines".into())));
            }
            if sep != Some(b'-') {
                let lines = std::mem::take(&mut self.lines);
                self.code = None;
                return Some(Ok(ServerReply { code, lines }));
            }
        }
    }

    fn reset(&mut self) {
        self.code = None;
        self.lines.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_multi_and_split() {
        let mut p = ReplyParser::default();
        p.feed(b"220 mx ESMTP\r\n250-mx hi\r\n250-PIPE");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(r.lines, vec!["mx ESMTP"]);
        assert!(p.next_reply().is_none());
        p.feed(b"LINING\r\n250 SIZE 10\r\n354\r\n");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!(r.lines, vec!["mx hi", "PIPELINING", "SIZE 10"]);
        assert_eq!(r.first_line(), "250-mx hi");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!((r.code, r.lines.clone()), (354, vec![String::new()]));
        assert!(!p.has_partial());
    }

    #[test]
    fn enhanced_codes() {
        let r = ServerReply {
            code: 550,
            lines: vec!["5.1.1 no such user".into()],
        };
        assert_eq!(r.enhanced(), Some("5.1.1"));
        let r = ServerReply {
            code: 550,
            lines: vec!["no such user".into()],
        };
        assert_eq!(r.enhanced(), None);
        assert_eq!(r.one_line(), "550 no such user");
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"600 x\r\n",
            b"250x\r\n",
            b"250-a\r\n251 b\r\n",
        ] {
            let mut p = ReplyParser::default();
            p.feed(bad);
            let mut got_err = false;
            while let Some(r) = p.next_reply() {
                got_err |= r.is_err();
            }
            assert!(got_err, "{:?}", String::from_utf8_lossy(bad));
        }
        let mut p = ReplyParser::default();
        p.feed(&vec![b'2'; 5000]);
        assert!(p.next_reply().unwrap().is_err());
    }
}
