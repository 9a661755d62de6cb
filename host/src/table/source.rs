//! The text a table is built from, in the form Exim's lsearch files and
//! Postfix's postmap sources share: one `key: value` or `key value` entry
//! per line, `#` comment lines, blank lines, and continuation lines (they
//! start with white space and extend the previous entry's value). The key
//! ends at white space or at a colon followed by white space, so keys like
//! `[relay.test]:587` keep their colons; a key with spaces is written in
//! double quotes (`"a key": value`, with `\"` and `\\` inside). In a CIDR source the key is a network
//! (`192.0.2.0/24`, `2001:db8::/32`, or one address) and ends at white
//! space only, so IPv6 colons need no quotes.

use crate::config::Network;

/// What the keys of a table are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Strings (domains, addresses, host names), compared without case.
    Keys,
    /// IP networks, searched in source order for the first that holds the
    /// address (as Postfix's cidr tables and Exim's iplsearch do).
    Cidr,
}

impl Kind {
    /// As `table list` shows it and the table file records it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Keys => "keys",
            Kind::Cidr => "cidr",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "keys" => Some(Kind::Keys),
            "cidr" => Some(Kind::Cidr),
            _ => None,
        }
    }
}

/// A source line that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct SourceError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// One entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key: lower case for [`Kind::Keys`], the network as written for
    /// [`Kind::Cidr`].
    pub key: String,
    /// The value (may be empty: a key alone is a member of a list).
    pub value: String,
    /// Where it starts in the source.
    pub line: usize,
}

/// A parsed source, first of each key only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The entries: sorted by key for [`Kind::Keys`] (as the table file
    /// stores them), in source order for [`Kind::Cidr`] (the order they
    /// are searched in).
    pub entries: Vec<Entry>,
    /// Lines whose key came earlier (the first entry wins, as in Exim and
    /// Postfix): `(line, key)`.
    pub duplicates: Vec<(usize, String)>,
}

/// Parse `text` as a source of `kind`.
pub fn parse(text: &[u8], kind: Kind) -> Result<Source, SourceError> {
    let mut out = Source::default();
    let mut current: Option<Entry> = None;
    let finish = |e: Option<Entry>, out: &mut Source| out.entries.extend(e);
    for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = n + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| SourceError {
            line: line_no,
            reason: "not UTF-8".into(),
        })?;
        if line.contains('\0') {
            return Err(SourceError {
                line: line_no,
                reason: "a NUL byte".into(),
            });
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match current.as_mut() {
                Some(e) => {
                    if !e.value.is_empty() {
                        e.value.push(' ');
                    }
                    e.value.push_str(trimmed);
                }
                None => {
                    return Err(SourceError {
                        line: line_no,
                        reason: "a continuation line (it starts with white space) before any entry"
                            .into(),
                    });
                }
            }
            continue;
        }
        finish(current.take(), &mut out);
        let (key, value) = split_entry(line, kind).map_err(|reason| SourceError {
            line: line_no,
            reason,
        })?;
        current = Some(Entry {
            key,
            value,
            line: line_no,
        });
    }
    finish(current.take(), &mut out);
    first_of_each_key(&mut out, kind);
    Ok(out)
}

/// Keep the first entry of each key (as Exim and Postfix do), noting the
/// others. Keyed sources are sorted for it (stably: among equal keys the
/// first line stays first), which the table file wants anyway; a source
/// of a million lines then needs no second copy of its keys.
fn first_of_each_key(out: &mut Source, kind: Kind) {
    let entries = std::mem::take(&mut out.entries);
    match kind {
        Kind::Keys => {
            let mut entries = entries;
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            for e in entries {
                match out.entries.last() {
                    Some(last) if last.key == e.key => out.duplicates.push((e.line, e.key)),
                    _ => out.entries.push(e),
                }
            }
            out.duplicates.sort_unstable();
        }
        Kind::Cidr => {
            let mut seen = std::collections::HashSet::new();
            for e in entries {
                if seen.insert(e.key.clone()) {
                    out.entries.push(e);
                } else {
                    out.duplicates.push((e.line, e.key));
                }
            }
        }
    }
}

/// One entry line's key and value.
fn split_entry(line: &str, kind: Kind) -> Result<(String, String), String> {
    let (key, rest) = if let Some(q) = line.strip_prefix('"') {
        let mut key = String::new();
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, c)) => key.push(c),
                    None => break,
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => key.push(c),
            }
        }
        let end = end.ok_or("a quoted key without its closing quote")?;
        (key, &q[end..])
    } else {
        // The key ends at white space, or at a colon that white space (or
        // the end of the line) follows: `[relay.test]:587 encrypt` and
        // `2001:db8::1 OK` keep their colons.
        let b = line.as_bytes();
        let end = (0..b.len())
            .find(|&i| {
                b[i].is_ascii_whitespace()
                    || (kind == Kind::Keys
                        && b[i] == b':'
                        && b.get(i + 1).is_none_or(|c| c.is_ascii_whitespace()))
            })
            .unwrap_or(b.len());
        (line[..end].to_string(), &line[end..])
    };
    let rest = rest.trim_start();
    let rest = rest.strip_prefix(':').unwrap_or(rest).trim();
    if key.is_empty() {
        return Err("an entry without a key".into());
    }
    let key = match kind {
        Kind::Keys => key.to_lowercase(),
        Kind::Cidr => cidr_key(&key)?,
    };
    Ok((key, rest.to_string()))
}

/// A CIDR key as a network (a colon right after it separates the value).
fn cidr_key(key: &str) -> Result<String, String> {
    if let Ok(n) = Network::parse(key) {
        return Ok(n.to_string());
    }
    if let Some(k) = key.strip_suffix(':')
        && let Ok(n) = Network::parse(k)
    {
        return Ok(n.to_string());
    }
    Network::parse(key).map(|n| n.to_string()).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes(), Kind::Keys)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn both_separators_comments_continuations_and_quotes() {
        let t = "# comment\n\nAlice@Example.COM: REJECT go away\nbob@example.com OK\n  continued: here\n  # indented comment\n\t and more\nlonely\n\"a key: with colon\": x\n\"esc\\\"aped\" y\ncrlf: v\r\n[relay.test]:587 encrypt\n2001:db8::1: six\nend:\n";
        let mut want = vec![
            pair("alice@example.com", "REJECT go away"),
            pair("bob@example.com", "OK continued: here and more"),
            pair("lonely", ""),
            pair("a key: with colon", "x"),
            pair("esc\"aped", "y"),
            pair("crlf", "v"),
            pair("[relay.test]:587", "encrypt"),
            pair("2001:db8::1", "six"),
            pair("end", ""),
        ];
        // Keyed sources come out sorted by key.
        want.sort();
        assert_eq!(keys(t), want);
    }

    #[test]
    fn the_first_of_a_key_wins() {
        let s = parse(b"a: 1\nA: 2\nb 3\n", Kind::Keys).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[0].value, "1");
        assert_eq!(s.duplicates, vec![(2, "a".to_string())]);
    }

    #[test]
    fn broken_lines_are_named() {
        let e = |t: &[u8]| parse(t, Kind::Keys).unwrap_err().to_string();
        assert_eq!(
            e(b"  indented first\n"),
            "line 1: a continuation line (it starts with white space) before any entry"
        );
        assert_eq!(e(b"ok: 1\n: value\n"), "line 2: an entry without a key");
        assert_eq!(
            e(b"a 1\n\"open: 2\n"),
            "line 2: a quoted key without its closing quote"
        );
        assert_eq!(e(b"a 1\nb \xff\n"), "line 2: not UTF-8");
        assert_eq!(e(b"a\0b 1\n"), "line 1: a NUL byte");
    }

    #[test]
    fn cidr_keys_are_networks() {
        let s = parse(
            b"192.0.2.0/24 REJECT\n2001:db8::/32: OK\n10.1.2.3: one\n2001:db8:: plain\n",
            Kind::Cidr,
        )
        .unwrap();
        let k: Vec<_> = s.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            k,
            [
                "192.0.2.0/24",
                "2001:db8::/32",
                "10.1.2.3/32",
                "2001:db8::/128"
            ]
        );
        assert_eq!(s.entries[1].value, "OK");
        let e = parse(b"10.0.0.0/8 1\n300.1.1.1/8 x\n", Kind::Cidr).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("invalid IP address"), "{e}");
    }
}
