//! Raw header fields and their DKIM canonicalization (RFC 6376 §3.4.1,
//! §3.4.2), header selection for `h=` (§5.4.2) and tag lists (§3.2), as
//! ARC uses them (RFC 8617 §4). Pure: fed bytes, no host calls.

/// One header field as it was received, folding included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as written.
    pub name: String,
    /// Everything after the colon up to (not including) the final CRLF,
    /// folding kept.
    pub raw_value: String,
}

/// `s` without its CRLF pairs (unfolded). Byte-wise: `str::replace` with
/// a two-byte pattern runs a substring searcher, the plugin's hottest code
/// before.
pub fn unfold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // `find` of an ASCII char is a memchr.
    while let Some(i) = rest.find('\r') {
        if rest.as_bytes().get(i + 1) == Some(&b'\n') {
            out.push_str(&rest[..i]);
            rest = &rest[i + 2..];
        } else {
            out.push_str(&rest[..=i]);
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// The lines of `s` split at CRLF (a bare CR or LF stays in its line).
fn crlf_lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        let mut from = 0;
        while let Some(i) = r[from..].find('\r').map(|i| i + from) {
            if r.as_bytes().get(i + 1) == Some(&b'\n') {
                rest = Some(&r[i + 2..]);
                return Some(&r[..i]);
            }
            from = i + 1;
        }
        rest = None;
        Some(r)
    })
}

impl Field {
    /// The value unfolded and trimmed.
    pub fn value(&self) -> String {
        unfold(&self.raw_value)
            .trim_matches([' ', '\t'])
            .to_string()
    }

    /// The field in canonical form, CRLF-terminated.
    pub fn canonical(&self, relaxed: bool) -> Vec<u8> {
        if !relaxed {
            return format!("{}:{}\r\n", self.name, self.raw_value).into_bytes();
        }
        let mut out = self.name.trim_end().to_ascii_lowercase().into_bytes();
        out.reserve(self.raw_value.len() + 3);
        out.push(b':');
        let value_start = out.len();
        let b = self.raw_value.as_bytes();
        let mut space = false;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'\r' && b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if c == b' ' || c == b'\t' {
                space = true;
            } else {
                if space && out.len() > value_start {
                    out.push(b' ');
                }
                space = false;
                out.push(c);
            }
            i += 1;
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// The header fields of a message's header block (CRLF lines; parsing
/// stops at the empty line).
pub fn parse(head: &[u8]) -> Vec<Field> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<Field> = vec![];
    for line in crlf_lines(&text) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(f) = out.last_mut() {
                f.raw_value.push_str("\r\n");
                f.raw_value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push(Field {
                name: name.to_string(),
                raw_value: value.to_string(),
            });
        }
    }
    out
}

/// The fields `h=` names, chosen bottom-up: each name takes the last
/// instance not taken yet; a name with none left selects nothing.
pub fn select<'a>(fields: &'a [Field], names: &[String]) -> Vec<&'a Field> {
    let mut used = vec![false; fields.len()];
    let mut out = vec![];
    for n in names {
        if let Some(i) = (0..fields.len())
            .rev()
            .find(|&i| !used[i] && fields[i].name.trim().eq_ignore_ascii_case(n.trim()))
        {
            used[i] = true;
            out.push(&fields[i]);
        }
    }
    out
}

/// A signature field with the value of its `b=` tag emptied (RFC 6376
/// §3.7), canonicalized, without the final CRLF.
pub fn without_b(f: &Field, relaxed: bool) -> Vec<u8> {
    let v = &f.raw_value;
    let mut out = String::new();
    let mut rest = v.as_str();
    loop {
        let (part, next) = match rest.find(';') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let name = unfold(part.split('=').next().unwrap_or(""));
        if name.trim_matches([' ', '\t']) == "b" {
            let eq = part.find('=').map_or(part.len(), |i| i + 1);
            out.push_str(&part[..eq]);
        } else {
            out.push_str(part);
        }
        match next {
            Some(n) => {
                out.push(';');
                rest = n;
            }
            None => break,
        }
    }
    let mut c = Field {
        name: f.name.clone(),
        raw_value: out,
    }
    .canonical(relaxed);
    c.truncate(c.len() - 2);
    c
}

/// Why a tag list is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct BadTags(pub String);

/// A tag list (`a=b; c=d`): names and values with surrounding FWS
/// removed. Duplicate names and tags without `=` are errors.
pub fn tags(value: &str) -> Result<Vec<(String, String)>, BadTags> {
    let unfolded = unfold(value);
    let mut out: Vec<(String, String)> = vec![];
    for part in unfolded.split(';') {
        if part.trim().is_empty() {
            continue;
        }
        let Some((n, v)) = part.split_once('=') else {
            return Err(BadTags(format!("tag without a value: {:?}", part.trim())));
        };
        let n = n.trim_matches([' ', '\t']).to_string();
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(BadTags(format!("bad tag name {n:?}")));
        }
        if out.iter().any(|(k, _)| *k == n) {
            return Err(BadTags(format!("tag {n} twice")));
        }
        out.push((n, v.trim_matches([' ', '\t']).to_string()));
    }
    Ok(out)
}

/// The value of tag `name` in a parsed list.
pub fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Base64 with the whitespace DKIM allows inside it removed.
pub fn base64(v: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let clean: Vec<u8> = v.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalization_unfolds_and_compresses() {
        let f = parse(b"SubJect :  a \t b\r\n\t c  \r\n\r\nbody");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].canonical(true), b"subject:a b c\r\n");
        assert_eq!(f[0].canonical(false), b"SubJect :  a \t b\r\n\t c  \r\n");
    }

    #[test]
    fn selection_is_bottom_up_and_absent_names_select_nothing() {
        let f = parse(b"To: a\r\nTo: b\r\nFrom: c\r\n\r\n");
        let names: Vec<String> = ["to", "to", "to", "from", "cc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s: Vec<String> = select(&f, &names).iter().map(|f| f.value()).collect();
        assert_eq!(s, ["b", "a", "c"]);
    }

    #[test]
    fn b_is_emptied_in_place() {
        let f = parse(b"ARC-Seal: i=1; a=rsa-sha256; b=abc\r\n def; cv=none\r\n\r\n");
        assert_eq!(
            without_b(&f[0], true),
            b"arc-seal:i=1; a=rsa-sha256; b=; cv=none".to_vec()
        );
        // bh= is not b=.
        let f = parse(b"X: bh=aa; b=cc\r\n\r\n");
        assert_eq!(without_b(&f[0], true), b"x:bh=aa; b=".to_vec());
    }

    #[test]
    fn unfolding_removes_crlf_pairs_only() {
        assert_eq!(unfold("a\r\n b\r\n\tc"), "a b\tc");
        assert_eq!(unfold("a\rb\nc\r"), "a\rb\nc\r");
        assert_eq!(unfold("é\r\n ü"), "é ü");
        let lines: Vec<&str> = crlf_lines("a\r\nb\nc\r\n\r\nd").collect();
        assert_eq!(lines, ["a", "b\nc", "", "d"]);
        // Relaxed canonicalization keeps a bare CR, as before.
        let f = Field {
            name: "X".into(),
            raw_value: " a\rb \r\n c".into(),
        };
        assert_eq!(f.canonical(true), b"x:a\rb c\r\n");
    }

    #[test]
    fn tag_lists() {
        let t = tags(" i=1 ; a = rsa-sha256;\r\n\tb=x y;").unwrap();
        assert_eq!(tag(&t, "a"), Some("rsa-sha256"));
        assert_eq!(tag(&t, "b"), Some("x y"));
        assert!(tags("i=1; i=2").is_err());
        assert!(tags("i").is_err());
        assert_eq!(base64("YW Jj\r\n").unwrap(), b"abc");
    }
}
