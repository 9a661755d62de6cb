//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 2034, RFC 3463).

use std::fmt;

/// One SMTP reply: a three-digit code, an optional enhanced status code and
/// one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The basic reply code, 200..=599.
    pub code: u16,
    /// The enhanced status code (`class.subject.detail`), when one applies.
    pub enhanced: Option<&'static str>,
    /// Text lines; never empty.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: if enhanced.is_empty() {
                None
            } else {
                Some(enhanced)
            },
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply without enhanced code (used for EHLO and the banner).
    pub fn multiline(code: u16, lines: Vec<String>) -> Self {
        debug_assert!(!lines.is_empty());
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    /// True for 2xx and 3xx replies.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// True for 4xx replies.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Append the wire form (CRLF-terminated lines) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(e) = self.enhanced {
                out.extend_from_slice(e.as_bytes());
                out.push(b' ');
            }
            // A reply line must never carry a line break of its own.
            for &b in line.as_bytes() {
                out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }

    /// The first line, for logs: `550 5.7.1 Relaying denied`.
    pub fn first_line(&self) -> String {
        match self.enhanced {
            Some(e) => format!("{} {} {}", self.code, e, self.lines[0]),
            None => format!("{} {}", self.code, self.lines[0]),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.first_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        let r = Reply::new(250, "2.1.0", "OK");
        assert_eq!(r.to_bytes(), b"250 2.1.0 OK\r\n");
        let r = Reply::multiline(250, vec!["a".into(), "b".into()]);
        assert_eq!(r.to_bytes(), b"250-a\r\n250 b\r\n");
    }

    #[test]
    fn line_breaks_in_text_are_neutralised() {
        let r = Reply::new(550, "5.0.0", "x\r\n250 fake");
        assert_eq!(r.to_bytes(), b"550 5.0.0 x  250 fake\r\n");
    }
}
