//! Exim 4.96's spool format (the specification's chapter "Format of spool
//! files", checked against files Exim 4.96 writes): the `-H` file with the
//! envelope and the header lines, the `-D` file with the body, both with
//! LF line ends and their own name as the first line. Pure functions, so
//! they are tested natively.

/// What goes into a `-H` file besides the header lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The message id, in Exim 4.96's form ([`message_id`]).
    pub id: &'a str,
    /// Login name, uid and gid of the message's originator.
    pub owner: (&'a str, u32, u32),
    /// The envelope sender ("" for the null sender).
    pub sender: &'a str,
    /// Recipients, in order.
    pub recipients: &'a [String],
    /// When the message was received (Unix seconds).
    pub received: u64,
    /// The client's HELO name, if any.
    pub helo: Option<&'a str>,
    /// The client's address and port, if it came over the network.
    pub host: Option<(&'a str, u16)>,
    /// `received_protocol` (`esmtp`, `esmtps`, ...).
    pub protocol: &'a str,
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// An Exim 4.96 message id: the time in six base-62 digits, six more from
/// `unique` where Exim puts its process id, and two from `unique` where
/// Exim puts the sub-second part (`1xYe17-00078s-2Y`).
pub fn message_id(now: u64, unique: u64) -> String {
    format!(
        "{}-{}-{}",
        base62(now, 6),
        base62(unique % 62u64.pow(6), 6),
        base62((unique / 62u64.pow(6)) % (62 * 62), 2)
    )
}

/// True for a string of Exim 4.96's message id form.
pub fn is_message_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[6] == b'-'
        && b[13] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 6 || i == 13 || c.is_ascii_alphanumeric())
}

/// `text` with CRLF line ends as LF.
pub fn lf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// The header block and the body of a raw message (CRLF or LF).
pub fn split(raw: &[u8]) -> (&[u8], &[u8]) {
    for (sep, n) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(i) = raw.windows(n).position(|w| w == sep) {
            return (&raw[..i + n / 2], &raw[i + n..]);
        }
    }
    (raw, &[])
}

/// The flag Exim gives a header line by its name (`P` Received, `F`
/// From, ...; a space for the others).
fn flag(name: &str) -> char {
    match name.to_ascii_lowercase().as_str() {
        "received" => 'P',
        "from" => 'F',
        "to" => 'T',
        "cc" => 'C',
        "bcc" => 'B',
        "reply-to" => 'R',
        "sender" => 'S',
        "message-id" => 'I',
        _ => ' ',
    }
}

/// The header block as Exim's header lines: each field (with its
/// continuation lines) preceded by its length in octets, at least three
/// digits, and its flag.
pub fn header_lines(head: &[u8]) -> Vec<u8> {
    let head = lf(head);
    let mut fields: Vec<Vec<u8>> = vec![];
    for line in head.split_inclusive(|&b| b == b'\n') {
        if line == b"\n" {
            continue;
        }
        match (line[0], fields.last_mut()) {
            (b' ' | b'\t', Some(f)) => f.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    let mut out = vec![];
    for mut f in fields {
        if f.last() != Some(&b'\n') {
            f.push(b'\n');
        }
        let name = f
            .iter()
            .position(|&b| b == b':')
            .map(|i| String::from_utf8_lossy(&f[..i]).trim().to_string())
            .unwrap_or_default();
        out.extend_from_slice(format!("{:03}{} ", f.len(), flag(&name)).as_bytes());
        out.extend_from_slice(&f);
    }
    out
}

/// Lines of a body (LF ends; a last line without one counts too).
pub fn line_count(body: &[u8]) -> usize {
    let n = body.iter().filter(|&&b| b == b'\n').count();
    if body.last().is_some_and(|&b| b != b'\n') {
        n + 1
    } else {
        n
    }
}

/// The `-H` file for `env` and the raw header block `head`; `body` (LF)
/// gives `body_linecount`.
pub fn header_file(env: &Envelope<'_>, head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut s = String::new();
    s.push_str(&format!("{}-H\n", env.id));
    s.push_str(&format!(
        "{} {} {}\n",
        env.owner.0, env.owner.1, env.owner.2
    ));
    s.push_str(&format!("<{}>\n", env.sender));
    s.push_str(&format!("{} 0\n", env.received));
    if let Some(h) = env.helo.filter(|h| !h.is_empty()) {
        s.push_str(&format!("--helo_name {h}\n"));
    }
    if let Some((ip, port)) = env.host {
        s.push_str(&format!("--host_address [{ip}]:{port}\n"));
    }
    s.push_str(&format!("-received_protocol {}\n", env.protocol));
    s.push_str(&format!("-body_linecount {}\n", line_count(body)));
    s.push_str("-deliver_firsttime\n");
    // No non-recipients yet (an empty tree).
    s.push_str("XX\n");
    s.push_str(&format!("{}\n", env.recipients.len()));
    for r in env.recipients {
        s.push_str(r);
        s.push('\n');
    }
    s.push('\n');
    let mut out = s.into_bytes();
    out.extend_from_slice(&header_lines(head));
    out
}

/// The `-D` file: its name, then the body.
pub fn data_file(id: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{id}-D\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// True when a string may go on a line of the `-H` file as it is (no line
/// breaks or NULs: an address, a HELO name).
pub fn line_safe(s: &str) -> bool {
    !s.contains(['\n', '\r', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_exim_496s_form() {
        let id = message_id(1796193637, 123_456_789_012);
        assert!(is_message_id(&id), "{id}");
        // The time part as Exim writes it (compare 1xYe17-... at
        // 1796193637 in a file Exim 4.96 wrote).
        assert_eq!(&id[..6], "1xYe17");
        assert!(!is_message_id("1xYe17-00078s-2"));
        assert!(!is_message_id("1xYe17_00078s-2Y"));
    }

    #[test]
    fn a_header_file_as_exim_writes_it() {
        let rcpts = vec!["b@y.test".to_string()];
        let env = Envelope {
            id: "1xYe17-00078s-2Y",
            owner: ("root", 0, 0),
            sender: "s@x.test",
            recipients: &rcpts,
            received: 1796193637,
            helo: Some("client.test"),
            host: Some(("192.0.2.1", 4567)),
            protocol: "esmtp",
        };
        let raw = b"Received: from [192.0.2.1] (helo=client.test)\r\n\tby exim.test;\r\n\tWed, 02 Dec 2026 06:40:37 +0000\r\nSubject: smtp\r\n\r\nbody\r\n";
        let (head, body) = split(raw);
        let body = lf(body);
        let h = String::from_utf8(header_file(&env, head, &body)).unwrap();
        assert_eq!(
            h,
            "1xYe17-00078s-2Y-H\nroot 0 0\n<s@x.test>\n1796193637 0\n--helo_name client.test\n--host_address [192.0.2.1]:4567\n-received_protocol esmtp\n-body_linecount 1\n-deliver_firsttime\nXX\n1\nb@y.test\n\n\
             094P Received: from [192.0.2.1] (helo=client.test)\n\tby exim.test;\n\tWed, 02 Dec 2026 06:40:37 +0000\n\
             014  Subject: smtp\n"
        );
        assert_eq!(
            data_file("1xYe17-00078s-2Y", &body),
            b"1xYe17-00078s-2Y-D\nbody\n"
        );
    }

    #[test]
    fn bodies_and_lines() {
        assert_eq!(lf(b"a\r\nb\rc\r\n"), b"a\nb\rc\n");
        assert_eq!(line_count(b""), 0);
        assert_eq!(line_count(b"a\nb"), 2);
        assert_eq!(line_count(b"a\n\n"), 2);
        assert_eq!(split(b"A: b\r\n\r\n"), (&b"A: b\r\n"[..], &b""[..]));
        assert_eq!(split(b"A: b\r\n"), (&b"A: b\r\n"[..], &b""[..]));
        assert!(!line_safe("a\nb"));
    }
}
