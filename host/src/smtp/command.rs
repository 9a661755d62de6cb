//! Command-line parsing: verbs, arguments and ESMTP parameters
//! (RFC 5321 §4.1, RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8,
//! RFC 3461 DSN, RFC 3030 CHUNKING).

use super::reply::Reply;
use serde::{Deserialize, Serialize};

/// A parsed command verb with its raw argument text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO domain`
    Helo(String),
    /// `EHLO domain`
    Ehlo(String),
    /// `MAIL FROM:` with the rest of the line.
    Mail(String),
    /// `RCPT TO:` with the rest of the line.
    Rcpt(String),
    /// `DATA`
    Data,
    /// `BDAT size [LAST]`
    Bdat {
        /// Chunk size in octets.
        size: u64,
        /// True for the last chunk.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY`
    Vrfy,
    /// `EXPN`
    Expn,
    /// `HELP`
    Help,
    /// `STARTTLS` (with any argument text, which is an error)
    StartTls(String),
    /// `AUTH mechanism [initial-response]` with the rest of the line.
    Auth(String),
    /// A verb that needs an argument came without one, or the BDAT
    /// arguments were malformed; carries the error reply.
    Invalid(Reply),
    /// Anything else.
    Unknown(String),
}

impl Command {
    /// Parse one command line (without its line ending).
    pub fn parse(line: &str) -> Command {
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim_end()),
            None => (line.trim_end(), ""),
        };
        let verb_uc = verb.to_ascii_uppercase();
        match verb_uc.as_str() {
            "HELO" | "EHLO" => {
                let dom = arg.trim();
                if dom.is_empty() {
                    return Command::Invalid(Reply::new(
                        501,
                        "5.5.4",
                        format!("{verb_uc} requires a domain or address literal"),
                    ));
                }
                let dom = dom.split(' ').next().unwrap_or(dom).to_string();
                if verb_uc == "HELO" {
                    Command::Helo(dom)
                } else {
                    Command::Ehlo(dom)
                }
            }
            "MAIL" => match strip_prefix_ci(arg, "FROM:") {
                Some(rest) => Command::Mail(rest.to_string()),
                None => Command::Invalid(Reply::new(501, "5.5.2", "Syntax: MAIL FROM:<address>")),
            },
            "RCPT" => match strip_prefix_ci(arg, "TO:") {
                Some(rest) => Command::Rcpt(rest.to_string()),
                None => Command::Invalid(Reply::new(501, "5.5.2", "Syntax: RCPT TO:<address>")),
            },
            "DATA" if arg.is_empty() => Command::Data,
            "DATA" => Command::Invalid(Reply::new(501, "5.5.4", "DATA takes no parameters")),
            "BDAT" => parse_bdat(arg),
            "RSET" => Command::Rset,
            "NOOP" => Command::Noop,
            "QUIT" => Command::Quit,
            "VRFY" => Command::Vrfy,
            "EXPN" => Command::Expn,
            "HELP" => Command::Help,
            "STARTTLS" => Command::StartTls(arg.to_string()),
            "AUTH" => Command::Auth(arg.to_string()),
            _ => Command::Unknown(verb.to_string()),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let s = s.trim_start();
    if s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) {
        let (a, b) = s.split_at(prefix.len());
        if a.eq_ignore_ascii_case(prefix) {
            return Some(b);
        }
    }
    None
}

fn parse_bdat(arg: &str) -> Command {
    let mut it = arg.split_ascii_whitespace();
    let size = it.next().and_then(|s| {
        if s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 19 {
            s.parse::<u64>().ok()
        } else {
            None
        }
    });
    let last = match it.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => {
            return Command::Invalid(Reply::new(501, "5.5.4", "Syntax: BDAT size [LAST]"));
        }
    };
    match (size, it.next()) {
        (Some(size), None) => Command::Bdat { size, last },
        _ => Command::Invalid(Reply::new(501, "5.5.4", "Syntax: BDAT size [LAST]")),
    }
}

/// RET parameter of MAIL (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    /// Return the full message in a DSN.
    Full,
    /// Return only the headers.
    Hdrs,
}

/// BODY parameter of MAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// BODY=7BIT
    SevenBit,
    /// BODY=8BITMIME
    EightBitMime,
}

/// ESMTP parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailParams {
    /// SIZE= declared by the client.
    pub size: Option<u64>,
    /// BODY= as declared.
    pub body: Option<Body>,
    /// SMTPUTF8 was given.
    pub smtputf8: bool,
    /// DSN RET=.
    pub ret: Option<Ret>,
    /// DSN ENVID=, still xtext-encoded.
    pub envid: Option<String>,
    /// REQUIRETLS (RFC 8689): deliver only over verified TLS.
    #[serde(default)]
    pub requiretls: bool,
}

/// NOTIFY parameter of RCPT (RFC 3461 §4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// NOTIFY=NEVER.
    pub never: bool,
    /// SUCCESS requested.
    pub success: bool,
    /// FAILURE requested.
    pub failure: bool,
    /// DELAY requested.
    pub delay: bool,
}

impl Notify {
    /// The parameter value as it appears on the wire.
    pub fn to_param(&self) -> String {
        if self.never {
            return "NEVER".into();
        }
        let mut v = Vec::new();
        if self.success {
            v.push("SUCCESS");
        }
        if self.failure {
            v.push("FAILURE");
        }
        if self.delay {
            v.push("DELAY");
        }
        v.join(",")
    }
}

/// ESMTP parameters of RCPT TO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcptParams {
    /// DSN NOTIFY=.
    pub notify: Option<Notify>,
    /// DSN ORCPT=, as `addr-type;xtext`.
    pub orcpt: Option<String>,
}

/// True when `s` is valid xtext (RFC 3461 §4).
pub fn is_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                if i + 2 >= b.len() {
                    return false;
                }
                let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
                if !(hex(b[i + 1]) && hex(b[i + 2])) {
                    return false;
                }
                i += 3;
            }
            33..=126 if b[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    true
}

/// Decode xtext into a string (invalid UTF-8 is replaced).
pub fn xtext_decode(s: &str) -> String {
    unescape_hex(s, b'+')
}

/// Replace each `escape` followed by two hex digits (xtext's `+2B`, a
/// URI's `%40`) by that octet; anything else stays as it is (invalid
/// UTF-8 in the result is replaced).
pub fn unescape_hex(s: &str, escape: u8) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == escape
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("x"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Split a parameter string into (KEYWORD uppercased, value).
fn params(s: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    s.split_ascii_whitespace().map(|p| match p.find('=') {
        Some(i) => (p[..i].to_ascii_uppercase(), Some(&p[i + 1..])),
        None => (p.to_ascii_uppercase(), None),
    })
}

fn bad_param(text: impl Into<String>) -> Reply {
    Reply::new(501, "5.5.4", text)
}

/// Parse MAIL FROM parameters. `esmtp` is false after HELO.
pub fn parse_mail_params(s: &str, esmtp: bool) -> Result<MailParams, Reply> {
    let mut p = MailParams::default();
    if !s.is_empty() && !esmtp {
        return Err(Reply::new(555, "5.5.4", "ESMTP parameters need EHLO"));
    }
    let mut auth_seen = false;
    for (k, v) in params(s) {
        match (k.as_str(), v) {
            // RFC 4954 §5: the identity a relaying client vouches for. We
            // do not pass it on (we trust only our own AUTH), so it is
            // checked for syntax and dropped.
            ("AUTH", Some(v)) if !auth_seen && (v == "<>" || is_xtext(v)) && !v.is_empty() => {
                auth_seen = true;
            }
            ("SIZE", Some(v)) if p.size.is_none() => {
                p.size = Some(
                    v.parse()
                        .map_err(|_| bad_param(format!("Bad SIZE value: {v}")))?,
                )
            }
            ("BODY", Some(v)) if p.body.is_none() => {
                p.body = Some(match v.to_ascii_uppercase().as_str() {
                    "7BIT" => Body::SevenBit,
                    "8BITMIME" => Body::EightBitMime,
                    _ => {
                        return Err(Reply::new(
                            555,
                            "5.5.4",
                            format!("Unsupported BODY type: {v}"),
                        ));
                    }
                })
            }
            ("SMTPUTF8", None) if !p.smtputf8 => p.smtputf8 = true,
            ("REQUIRETLS", None) if !p.requiretls => p.requiretls = true,
            ("RET", Some(v)) if p.ret.is_none() => {
                p.ret = Some(match v.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Hdrs,
                    _ => return Err(bad_param(format!("Bad RET value: {v}"))),
                })
            }
            ("ENVID", Some(v)) if p.envid.is_none() => {
                if v.is_empty() || v.len() > 100 || !is_xtext(v) {
                    return Err(bad_param("Bad ENVID value"));
                }
                p.envid = Some(v.to_string());
            }
            ("SIZE" | "BODY" | "SMTPUTF8" | "RET" | "ENVID" | "REQUIRETLS" | "AUTH", _) => {
                return Err(bad_param(format!("Bad or repeated parameter {k}")));
            }
            _ => {
                return Err(Reply::new(
                    555,
                    "5.5.4",
                    format!("Unsupported parameter {k}"),
                ));
            }
        }
    }
    Ok(p)
}

/// Parse RCPT TO parameters.
pub fn parse_rcpt_params(s: &str, esmtp: bool) -> Result<RcptParams, Reply> {
    let mut p = RcptParams::default();
    if !s.is_empty() && !esmtp {
        return Err(Reply::new(555, "5.5.4", "ESMTP parameters need EHLO"));
    }
    for (k, v) in params(s) {
        match (k.as_str(), v) {
            ("NOTIFY", Some(v)) if p.notify.is_none() => {
                let mut n = Notify::default();
                for w in v.split(',') {
                    match w.to_ascii_uppercase().as_str() {
                        "NEVER" => n.never = true,
                        "SUCCESS" => n.success = true,
                        "FAILURE" => n.failure = true,
                        "DELAY" => n.delay = true,
                        _ => return Err(bad_param(format!("Bad NOTIFY value: {w}"))),
                    }
                }
                if n.never && (n.success || n.failure || n.delay) {
                    return Err(bad_param("NOTIFY=NEVER cannot be combined"));
                }
                p.notify = Some(n);
            }
            ("ORCPT", Some(v)) if p.orcpt.is_none() => {
                let ok = match v.find(';') {
                    Some(i) => {
                        let t = &v[..i];
                        !t.is_empty()
                            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                            && is_xtext(&v[i + 1..])
                            && v.len() <= 500
                    }
                    None => false,
                };
                if !ok {
                    return Err(bad_param("Bad ORCPT value"));
                }
                p.orcpt = Some(v.to_string());
            }
            ("NOTIFY" | "ORCPT", _) => {
                return Err(bad_param(format!("Bad or repeated parameter {k}")));
            }
            _ => {
                return Err(Reply::new(
                    555,
                    "5.5.4",
                    format!("Unsupported parameter {k}"),
                ));
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(
            Command::parse("ehlo client.test"),
            Command::Ehlo("client.test".into())
        );
        assert_eq!(
            Command::parse("MAIL FROM:<a@b> SIZE=5"),
            Command::Mail("<a@b> SIZE=5".into())
        );
        assert_eq!(
            Command::parse("mail from: <a@b>"),
            Command::Mail(" <a@b>".into())
        );
        assert_eq!(
            Command::parse("BDAT 100 LAST"),
            Command::Bdat {
                size: 100,
                last: true
            }
        );
        assert_eq!(
            Command::parse("BDAT 0"),
            Command::Bdat {
                size: 0,
                last: false
            }
        );
        assert!(matches!(Command::parse("BDAT -1"), Command::Invalid(_)));
        assert!(matches!(
            Command::parse("BDAT 1 LAST x"),
            Command::Invalid(_)
        ));
        assert!(matches!(Command::parse("EHLO"), Command::Invalid(_)));
        assert_eq!(Command::parse("XYZZY"), Command::Unknown("XYZZY".into()));
    }

    #[test]
    fn mail_params() {
        let p = parse_mail_params("SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb", true)
            .unwrap();
        assert_eq!(p.size, Some(100));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(xtext_decode(p.envid.as_deref().unwrap()), "a+b");
        assert_eq!(parse_mail_params("FOO=1", true).unwrap_err().code, 555);
        assert_eq!(parse_mail_params("SIZE=x", true).unwrap_err().code, 501);
        assert_eq!(
            parse_mail_params("SIZE=1 SIZE=2", true).unwrap_err().code,
            501
        );
        assert_eq!(
            parse_mail_params("BODY=BINARYMIME", true).unwrap_err().code,
            555
        );
        assert_eq!(parse_mail_params("SIZE=1", false).unwrap_err().code, 555);
    }

    #[test]
    fn rcpt_params() {
        let p = parse_rcpt_params("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b", true).unwrap();
        let n = p.notify.unwrap();
        assert!(n.success && n.failure && !n.delay && !n.never);
        assert_eq!(n.to_param(), "SUCCESS,FAILURE");
        assert_eq!(p.orcpt.as_deref(), Some("rfc822;a+40b"));
        assert!(parse_rcpt_params("NOTIFY=NEVER,DELAY", true).is_err());
        assert!(parse_rcpt_params("ORCPT=nosemicolon", true).is_err());
        assert!(parse_rcpt_params("ORCPT=rfc822;a+4", true).is_err());
    }

    #[test]
    fn xtext() {
        assert!(is_xtext("abc+2B"));
        assert!(!is_xtext("a=b"));
        assert!(!is_xtext("a+2"));
        assert!(!is_xtext("a+zz"));
        assert!(!is_xtext("a b"));
    }
}
