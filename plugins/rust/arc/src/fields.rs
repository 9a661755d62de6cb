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

impl Field {
    /// The value unfolded and trimmed.
    pub fn value(&self) -> String {
        self.raw_value
            .replace("\r\n", "")
            .trim_matches([' ', '\t'])
            .to_string()
    }

    /// The field in canonical form, CRLF-terminated.
    pub fn canonical(&self, relaxed: bool) -> Vec<u8> {
        if !relaxed {
            return format!("{}:{}\r\n", self.name, self.raw_value).into_bytes();
        }
        let mut out = self.name.trim_end().to_ascii_lowercase();
        out.push(':');
        let unfolded = self.raw_value.replace("\r\n", "");
        let mut space = false;
        let mut value = String::new();
        for c in unfolded.chars() {
            if c == ' ' || c == '\t' {
                space = true;
            } else {
                if space && !value.is_empty() {
                    value.push(' ');
                }
                space = false;
                value.push(c);
            }
        }
        out.push_str(&value);
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// The header fields of a message's header block (CRLF lines; parsing
/// stops at the empty line).
pub fn parse(head: &[u8]) -> Vec<Field> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<Field> = vec![];
    for line in text.split("\r\n") {
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
        let name = part.split('=').next().unwrap_or("").replace("\r\n", "");
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
    let unfolded = value.replace("\r\n", "");
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
    let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
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
    fn tag_lists() {
        let t = tags(" i=1 ; a = rsa-sha256;\r\n\tb=x y;").unwrap();
        assert_eq!(tag(&t, "a"), Some("rsa-sha256"));
        assert_eq!(tag(&t, "b"), Some("x y"));
        assert!(tags("i=1; i=2").is_err());
        assert!(tags("i").is_err());
        assert_eq!(base64("YW Jj\r\n").unwrap(), b"abc");
    }
}
