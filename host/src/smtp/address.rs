//! Envelope addresses (RFC 5321 §4.1.2, RFC 6531 for UTF-8).

use std::fmt;

/// A mailbox `local@domain` as given in the envelope, with any source route
/// removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Address {
    /// The local part, unquoted (the quotes and backslash escapes of a quoted
    /// string removed).
    pub local: String,
    /// The domain, as given (an address literal keeps its brackets).
    pub domain: String,
    /// True when the local part was written as a quoted string.
    #[serde(default)]
    pub quoted: bool,
}

impl Address {
    /// Build an address from parts (no validation).
    pub fn new(local: &str, domain: &str) -> Self {
        Address {
            local: local.to_string(),
            domain: domain.to_string(),
            quoted: needs_quotes(local),
        }
    }

    /// Parse `local@domain` (no angle brackets). `utf8` allows non-ASCII.
    pub fn parse(s: &str, utf8: bool) -> Result<Self, AddressError> {
        let (local, quoted, rest) = parse_local(s)?;
        let domain = rest.strip_prefix('@').ok_or(AddressError::Syntax)?;
        if domain.is_empty() {
            return Err(AddressError::Syntax);
        }
        check_domain(domain)?;
        if !utf8 && (!local.is_ascii() || !domain.is_ascii()) {
            return Err(AddressError::NeedsUtf8);
        }
        if local.len() > 64 && !quoted || local.len() > 256 {
            return Err(AddressError::TooLong);
        }
        if domain.len() > 255 {
            return Err(AddressError::TooLong);
        }
        Ok(Address {
            local,
            domain: domain.to_string(),
            quoted,
        })
    }

    /// The domain in lower case, for comparisons.
    pub fn domain_lc(&self) -> String {
        self.domain.to_lowercase()
    }

    /// True when any part is non-ASCII (the message then needs SMTPUTF8).
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }

    /// True when the local part carries routing characters (`%`, `!`, `@`)
    /// that old mailers interpreted as a relay instruction.
    pub fn has_routing_chars(&self) -> bool {
        self.local.contains(['%', '!', '@'])
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted || needs_quotes(&self.local) {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"@{}", self.domain)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// Not a valid path or mailbox.
    Syntax,
    /// Non-ASCII without SMTPUTF8.
    NeedsUtf8,
    /// A part exceeds the RFC 5321 §4.5.3.1 limits.
    TooLong,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Syntax => "address syntax error",
            AddressError::NeedsUtf8 => "non-ASCII address requires SMTPUTF8",
            AddressError::TooLong => "address too long",
        })
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn needs_quotes(local: &str) -> bool {
    local.is_empty()
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local.chars().all(|c| c == '.' || is_atext(c))
}

/// Parse a local part at the start of `s`; returns (unquoted, was_quoted, rest).
fn parse_local(s: &str) -> Result<(String, bool, &str), AddressError> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((out, true, &body[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, e)) if (' '..='~').contains(&e) || !e.is_ascii() => out.push(e),
                    _ => return Err(AddressError::Syntax),
                },
                c if (' '..='~').contains(&c) || !c.is_ascii() => out.push(c),
                _ => return Err(AddressError::Syntax),
            }
        }
        Err(AddressError::Syntax)
    } else {
        let end = s.find('@').ok_or(AddressError::Syntax)?;
        let local = &s[..end];
        if local.is_empty()
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local.chars().all(|c| c == '.' || is_atext(c))
        {
            return Err(AddressError::Syntax);
        }
        Ok((local.to_string(), false, &s[end..]))
    }
}

fn check_domain(d: &str) -> Result<(), AddressError> {
    if let Some(lit) = d.strip_prefix('[') {
        let inner = lit.strip_suffix(']').ok_or(AddressError::Syntax)?;
        let ok = if let Some(v6) = inner.strip_prefix("IPv6:") {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            inner.parse::<std::net::Ipv4Addr>().is_ok()
        };
        return if ok {
            Ok(())
        } else {
            Err(AddressError::Syntax)
        };
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(AddressError::Syntax);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::Syntax);
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        {
            return Err(AddressError::Syntax);
        }
    }
    Ok(())
}

/// A path argument of MAIL or RCPT after it was split from its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `<>`: the null reverse path.
    Null,
    /// `<postmaster>` without a domain (allowed for RCPT only).
    Postmaster,
    /// A mailbox; any source route was dropped.
    Mailbox(Address),
}

/// Split `<path> params...` (or a bare path, leniently) into the path text
/// and the parameter text.
pub fn split_path(arg: &str) -> Result<(&str, &str), AddressError> {
    let arg = arg.trim_start();
    if let Some(rest) = arg.strip_prefix('<') {
        // Find the closing '>' outside of a quoted string.
        let mut in_quote = false;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if in_quote => escaped = true,
                '"' => in_quote = !in_quote,
                '>' if !in_quote => return Ok((&rest[..i], rest[i + 1..].trim())),
                _ => {}
            }
        }
        Err(AddressError::Syntax)
    } else {
        let end = arg.find(' ').unwrap_or(arg.len());
        Ok((&arg[..end], arg[end..].trim()))
    }
}

/// Parse the text between the angle brackets of a path.
pub fn parse_path(inner: &str, utf8: bool) -> Result<Path, AddressError> {
    if inner.is_empty() {
        return Ok(Path::Null);
    }
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok(Path::Postmaster);
    }
    // RFC 5321 §4.1.2 / appendix C: a source route "@a,@b:" is accepted and ignored.
    let mailbox = if inner.starts_with('@') {
        let colon = inner.find(':').ok_or(AddressError::Syntax)?;
        for hop in inner[..colon].split(',') {
            let d = hop.strip_prefix('@').ok_or(AddressError::Syntax)?;
            check_domain(d)?;
        }
        &inner[colon + 1..]
    } else {
        inner
    };
    Address::parse(mailbox, utf8).map(Path::Mailbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_quoted() {
        let a = Address::parse("Fred.Bloggs@Example.COM", false).unwrap();
        assert_eq!(a.local, "Fred.Bloggs");
        assert_eq!(a.domain_lc(), "example.com");
        let q = Address::parse("\"a b@c\"@x.test", false).unwrap();
        assert_eq!(q.local, "a b@c");
        assert!(q.quoted);
        assert!(q.has_routing_chars());
        assert_eq!(q.to_string(), "\"a b@c\"@x.test");
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "a", "@x", "a@", "a..b@x", ".a@x", "a@-x", "a@x..y", "a b@x", "\"a@x",
        ] {
            assert!(Address::parse(bad, false).is_err(), "{bad}");
        }
        assert_eq!(
            Address::parse("jöe@x.test", false),
            Err(AddressError::NeedsUtf8)
        );
        assert!(Address::parse("jöe@bücher.test", true).is_ok());
    }

    #[test]
    fn literals() {
        assert!(Address::parse("a@[127.0.0.1]", false).is_ok());
        assert!(Address::parse("a@[IPv6:::1]", false).is_ok());
        assert!(Address::parse("a@[999.0.0.1]", false).is_err());
    }

    #[test]
    fn paths_and_source_routes() {
        assert_eq!(parse_path("", false), Ok(Path::Null));
        assert_eq!(parse_path("Postmaster", false), Ok(Path::Postmaster));
        let p = parse_path("@relay.test,@b.test:user@final.test", false).unwrap();
        assert_eq!(p, Path::Mailbox(Address::new("user", "final.test")));
        assert_eq!(split_path("<a@b> SIZE=10").unwrap(), ("a@b", "SIZE=10"));
        assert_eq!(split_path("<\"x>y\"@b>").unwrap(), ("\"x>y\"@b", ""));
        assert_eq!(
            split_path("a@b BODY=8BITMIME").unwrap(),
            ("a@b", "BODY=8BITMIME")
        );
        assert!(split_path("<a@b").is_err());
    }
}
