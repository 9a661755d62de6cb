//! The spamc/spamd protocol (SpamAssassin's `spamd/PROTOCOL`), free of
//! I/O: the `SYMBOLS` request for one user and the parse of its reply
//! (`SPAMD/1.1 0 EX_OK`, a `Spam: True ; 1000.0 / 5.0` header, the names
//! of the rules that fired as the body).

use std::fmt;

/// What spamd said about a message for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// The score reached the user's `required_score`.
    pub spam: bool,
    /// The score.
    pub score: f64,
    /// The user's threshold (`required_score`).
    pub required: f64,
    /// The rules that fired.
    pub rules: Vec<String>,
}

/// Why a reply is not a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// spamd answered with an error code (e.g. `76 Bad header line`).
    Refused(String),
    /// The reply does not follow the protocol.
    Garbled(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Refused(s) => write!(f, "spamd refused the scan: {s}"),
            ReplyError::Garbled(s) => write!(f, "spamd's reply is garbled: {s}"),
        }
    }
}

/// A spamd user name that can go into the `User:` header: printable,
/// without white space, at most 128 octets.
pub fn user_ok(user: &str) -> bool {
    !user.is_empty() && user.len() <= 128 && user.bytes().all(|b| (33..=126).contains(&b))
}

/// The request header for scanning a message of `len` octets as `user`;
/// the message follows it as it is.
pub fn request_head(user: &str, len: usize) -> Vec<u8> {
    format!("SYMBOLS SPAMC/1.5\r\nContent-length: {len}\r\nUser: {user}\r\n\r\n").into_bytes()
}

/// Parse spamd's whole reply to a `SYMBOLS` request.
pub fn parse_reply(reply: &[u8]) -> Result<Scan, ReplyError> {
    let garbled = |s: &str| ReplyError::Garbled(s.to_string());
    let text = std::str::from_utf8(reply).map_err(|_| garbled("not UTF-8"))?;
    let (status, rest) = text
        .split_once("\r\n")
        .ok_or_else(|| garbled("no status line"))?;
    let mut words = status.splitn(3, ' ');
    let proto = words.next().unwrap_or("");
    if !proto.starts_with("SPAMD/") {
        return Err(garbled(&format!("status line {status:?}")));
    }
    let code = words.next().unwrap_or("");
    let what = words.next().unwrap_or("").trim();
    match code.parse::<u32>() {
        Ok(0) => {}
        Ok(n) => return Err(ReplyError::Refused(format!("{n} {what}"))),
        Err(_) => return Err(garbled(&format!("status line {status:?}"))),
    }
    let (head, body) = rest
        .split_once("\r\n\r\n")
        .or_else(|| rest.strip_suffix("\r\n").map(|h| (h, "")))
        .ok_or_else(|| garbled("no end of the reply headers"))?;
    let mut verdict = None;
    let mut length = None;
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| garbled(&format!("header line {line:?}")))?;
        match name.trim().to_ascii_lowercase().as_str() {
            "spam" => verdict = Some(parse_spam(value.trim())?),
            "content-length" => {
                length = Some(
                    value
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| garbled("Content-length"))?,
                )
            }
            _ => {}
        }
    }
    let (spam, score, required) = verdict.ok_or_else(|| garbled("no Spam header"))?;
    if let Some(n) = length
        && n != body.len()
    {
        return Err(garbled(&format!(
            "Content-length {n} but {} octets of rules",
            body.len()
        )));
    }
    let rules = body
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Scan {
        spam,
        score,
        required,
        rules,
    })
}

/// `True ; 1000.0 / 5.0` (or `Yes`/`False`/`No`, as older spamd wrote).
fn parse_spam(v: &str) -> Result<(bool, f64, f64), ReplyError> {
    let garbled = || ReplyError::Garbled(format!("Spam header {v:?}"));
    let (flag, scores) = v.split_once(';').ok_or_else(garbled)?;
    let spam = match flag.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => true,
        "false" | "no" => false,
        _ => return Err(garbled()),
    };
    let (score, required) = scores.split_once('/').ok_or_else(garbled)?;
    let num = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(garbled)
    };
    Ok((spam, num(score)?, num(required)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request() {
        assert_eq!(
            request_head("strict", 188),
            b"SYMBOLS SPAMC/1.5\r\nContent-length: 188\r\nUser: strict\r\n\r\n"
        );
        assert!(user_ok("strict"));
        for bad in ["", "a b", "a\r\nX: y", &"u".repeat(129)] {
            assert!(!user_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn replies_as_spamd_4_writes_them() {
        // Bytes observed from Debian 12's spamd 4.0.0.
        let r = parse_reply(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 55\r\nSpam: True ; 1000.0 / 6.0\r\n\r\nGTUBE,MSGID_SHORT,NO_RECEIVED,NO_RELAYS,TVD_SPACE_RATIO").unwrap();
        assert!(r.spam);
        assert_eq!((r.score, r.required), (1000.0, 6.0));
        assert_eq!(r.rules.len(), 5);
        assert_eq!(r.rules[0], "GTUBE");
        let r = parse_reply(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 0.0 / 12.0\r\n\r\n",
        )
        .unwrap();
        assert!(!r.spam);
        assert!(r.rules.is_empty());
        assert_eq!(r.required, 12.0);
    }

    #[test]
    fn errors_and_garbage() {
        assert_eq!(
            parse_reply(b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch)\r\n"),
            Err(ReplyError::Refused(
                "76 Bad header line: (Content-Length mismatch)".into()
            ))
        );
        for bad in [
            &b""[..],
            b"SPAMD/1.1 0 EX_OK",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 3\r\n\r\nabc",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1 / 5\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 10 / 5\r\nContent-length: 9\r\n\r\nGTUBE",
            b"SPAMD/1.1 x EX_OK\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\n\xff\r\n\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad), Err(ReplyError::Garbled(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
