//! What a server offers in its EHLO reply, and the compact form kept in the
//! EHLO cache for early pipelining.

use super::reply::ServerReply;

/// What a server offers in its EHLO reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// PIPELINING
    pub pipelining: bool,
    /// CHUNKING
    pub chunking: bool,
    /// SIZE (with the limit, 0 for none given)
    pub size: Option<u64>,
    /// 8BITMIME
    pub eightbit: bool,
    /// SMTPUTF8
    pub smtputf8: bool,
    /// DSN
    pub dsn: bool,
    /// STARTTLS
    pub starttls: bool,
    /// PIPECONNECT (or the older X_PIPE_CONNECT / PIPE_CONNECT)
    pub pipe_connect: bool,
    /// ENHANCEDSTATUSCODES
    pub enhanced: bool,
    /// REQUIRETLS (RFC 8689)
    pub requiretls: bool,
    /// AUTH offers PLAIN (RFC 4616)
    pub auth_plain: bool,
    /// AUTH offers LOGIN
    pub auth_login: bool,
}

impl Caps {
    /// From an EHLO reply (the first line is the greeting).
    pub fn parse(r: &ServerReply) -> Caps {
        let mut c = Caps::default();
        for line in r.lines.iter().skip(1) {
            let mut w = line.split_ascii_whitespace();
            let kw = w.next().unwrap_or("").to_ascii_uppercase();
            match kw.as_str() {
                "PIPELINING" => c.pipelining = true,
                "CHUNKING" => c.chunking = true,
                "SIZE" => c.size = Some(w.next().and_then(|v| v.parse().ok()).unwrap_or(0)),
                "8BITMIME" => c.eightbit = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "DSN" => c.dsn = true,
                "STARTTLS" => c.starttls = true,
                "PIPECONNECT" | "X_PIPE_CONNECT" | "PIPE_CONNECT" => c.pipe_connect = true,
                "ENHANCEDSTATUSCODES" => c.enhanced = true,
                "REQUIRETLS" => c.requiretls = true,
                // RFC 4954, and the `AUTH=` form of old clients' servers.
                _ if kw == "AUTH" || kw.starts_with("AUTH=") => {
                    let first = kw.strip_prefix("AUTH=").filter(|m| !m.is_empty());
                    for m in first
                        .into_iter()
                        .map(str::to_string)
                        .chain(w.map(str::to_ascii_uppercase))
                    {
                        match m.as_str() {
                            "PLAIN" => c.auth_plain = true,
                            "LOGIN" => c.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// As a bitmap for the cache (SIZE only as present/absent).
    pub fn bits(&self) -> u16 {
        [
            self.pipelining,
            self.chunking,
            self.size.is_some(),
            self.eightbit,
            self.smtputf8,
            self.dsn,
            self.starttls,
            self.pipe_connect,
            self.enhanced,
            self.requiretls,
            self.auth_plain,
            self.auth_login,
        ]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, &b)| acc | (u16::from(b) << i))
    }

    /// From a cache bitmap.
    pub fn from_bits(b: u16) -> Caps {
        let f = |i: u16| b & (1 << i) != 0;
        Caps {
            pipelining: f(0),
            chunking: f(1),
            size: f(2).then_some(0),
            eightbit: f(3),
            smtputf8: f(4),
            dsn: f(5),
            starttls: f(6),
            pipe_connect: f(7),
            enhanced: f(8),
            requiretls: f(9),
            auth_plain: f(10),
            auth_login: f(11),
        }
    }

    /// The capabilities that shape the commands of a transaction (what
    /// early pipelining took from the cache before the server spoke).
    pub fn transaction_bits(&self) -> u16 {
        const SHAPING: u16 = 0b10_0011_1111; // pipelining ..= dsn, requiretls
        self.bits() & SHAPING
    }

    /// Usable for early pipelining: the server offers PIPECONNECT and
    /// PIPELINING.
    pub fn early(&self) -> bool {
        self.pipe_connect && self.pipelining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_bits() {
        let r = ServerReply {
            code: 250,
            lines: [
                "mx hi",
                "PIPELINING",
                "SIZE 1000",
                "X_PIPE_CONNECT",
                "STARTTLS",
                "CHUNKING",
                "DSN",
                "AUTH CRAM-MD5 login",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        let c = Caps::parse(&r);
        assert!(c.pipelining && c.pipe_connect && c.starttls && c.chunking && c.dsn);
        assert_eq!(c.size, Some(1000));
        assert!(!c.smtputf8);
        assert!(c.auth_login && !c.auth_plain);
        let back = Caps::from_bits(c.bits());
        assert_eq!(back.bits(), c.bits());
        let old = ServerReply {
            code: 250,
            lines: vec!["mx hi".into(), "AUTH=PLAIN LOGIN".into()],
        };
        let c = Caps::parse(&old);
        assert!(c.auth_plain && c.auth_login);
        assert_eq!(Caps::from_bits(c.bits()), Caps { size: None, ..c });
    }
}
