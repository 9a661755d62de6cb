//! Authentication-Results headers (RFC 8601) that claim to be ours: a
//! message arriving with one carrying our authserv-id is a forgery (or a
//! loop) and the header goes before we add our own (§5), so nobody
//! downstream mistakes the sender's words for our verdict.

/// The authserv-id of an Authentication-Results value: the first token,
/// after any comment, before `;`, whitespace or an optional version.
pub fn authserv_id(value: &str) -> &str {
    let mut v = value.trim_start();
    // Leading comments: "(comment) example.com; ...".
    while let Some(rest) = v.strip_prefix('(') {
        let mut depth = 1usize;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        v = rest[end.min(rest.len())..].trim_start();
    }
    let end = v
        .find(|c: char| c == ';' || c.is_whitespace() || c == '(')
        .unwrap_or(v.len());
    &v[..end]
}

/// The message with every Authentication-Results header whose authserv-id
/// is `id` (case-insensitively) removed, and how many went. Only the
/// header block is touched; the body stays byte for byte.
pub fn strip_own(data: &[u8], id: &str) -> (Vec<u8>, usize) {
    let end = memchr::memmem::find(data, b"\r\n\r\n").map_or(data.len(), |i| i + 2);
    let (head, body) = data.split_at(end);
    let mut out = Vec::with_capacity(data.len());
    let mut removed = 0;
    let mut i = 0;
    while i < head.len() {
        // One field: its first line and the continuation lines after it.
        let mut j = next_line(head, i);
        while j < head.len() && (head[j] == b' ' || head[j] == b'\t') {
            j = next_line(head, j);
        }
        let field = &head[i..j];
        let own = field
            .iter()
            .position(|&b| b == b':')
            .filter(|&c| {
                field[..c]
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"Authentication-Results")
            })
            .is_some_and(|c| {
                let value = String::from_utf8_lossy(&field[c + 1..]).replace(['\r', '\n'], " ");
                authserv_id(&value).eq_ignore_ascii_case(id)
            });
        if own {
            removed += 1;
        } else {
            out.extend_from_slice(field);
        }
        i = j;
    }
    out.extend_from_slice(body);
    (out, removed)
}

fn next_line(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| from + p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(authserv_id(" mx.example.net; spf=pass"), "mx.example.net");
        assert_eq!(authserv_id("mx.example.net 1; none"), "mx.example.net");
        assert_eq!(
            authserv_id("(forged?) (x (y)) mx.example.net;dkim=pass"),
            "mx.example.net"
        );
        assert_eq!(authserv_id("mx.example.net"), "mx.example.net");
        assert_eq!(authserv_id(""), "");
    }

    #[test]
    fn forged_headers_go() {
        let msg = b"Received: from x\r\n\
Authentication-Results: MX.Example.NET;\r\n\tspf=pass smtp.mailfrom=a@b\r\n\
Subject: hi\r\n\
Authentication-Results: other.example; dkim=pass\r\n\
authentication-results: (c) mx.example.net 1; dmarc=pass\r\n\
\r\n\
Authentication-Results: mx.example.net; in the body\r\n";
        let (out, n) = strip_own(msg, "mx.example.net");
        assert_eq!(n, 2);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "Received: from x\r\nSubject: hi\r\nAuthentication-Results: other.example; dkim=pass\r\n\r\nAuthentication-Results: mx.example.net; in the body\r\n"
        );
        let (same, n) = strip_own(msg, "elsewhere.example");
        assert_eq!((same.as_slice(), n), (&msg[..], 0));
    }
}
