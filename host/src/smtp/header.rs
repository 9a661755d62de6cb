//! Header-block edits on message content (CRLF lines): what plugins ask
//! for at the data and delivery stages.

/// Remove every field `name` (with its continuation lines) from the header.
pub fn remove_header(data: &mut Vec<u8>, name: &str) {
    let end = memchr::memmem::find(data, b"\r\n\r\n").map_or(data.len(), |i| i + 2);
    let mut out = Vec::with_capacity(data.len());
    let mut skipping = false;
    let mut pos = 0;
    while pos < end {
        let nl = memchr::memchr(b'\n', &data[pos..end]).map_or(end, |i| pos + i + 1);
        let line = &data[pos..nl];
        let cont = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !cont {
            skipping = line.len() > name.len()
                && line[name.len()] == b':'
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes());
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        pos = nl;
    }
    out.extend_from_slice(&data[end..]);
    *data = out;
}

/// The value of the first field `name` in the header, unfolded and
/// trimmed; `None` when there is none (or the header is not UTF-8).
pub fn header_value(data: &[u8], name: &str) -> Option<String> {
    let end = memchr::memmem::find(data, b"\r\n\r\n").unwrap_or(data.len());
    let head = std::str::from_utf8(&data[..end]).ok()?;
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if line.starts_with([' ', '\t']) || !n.trim_end().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut v = v.trim().to_string();
        while let Some(next) = lines.peek() {
            if !next.starts_with([' ', '\t']) {
                break;
            }
            v.push(' ');
            v.push_str(next.trim());
            lines.next();
        }
        return Some(v.trim().to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_values() {
        let d = b"Subject: a\r\n b\r\nTLS-Required:  No \r\n\r\nTLS-Required: yes\r\n";
        assert_eq!(super::header_value(d, "subject").as_deref(), Some("a b"));
        assert_eq!(
            super::header_value(d, "tls-required").as_deref(),
            Some("No")
        );
        assert_eq!(super::header_value(d, "x-none"), None);
    }

    #[test]
    fn header_removal() {
        let mut d = b"A: 1\r\nX-Spam: yes\r\n\tmore\r\nB: 2\r\n\r\nX-Spam: body\r\n".to_vec();
        super::remove_header(&mut d, "x-spam");
        assert_eq!(d, b"A: 1\r\nB: 2\r\n\r\nX-Spam: body\r\n");
    }
}
