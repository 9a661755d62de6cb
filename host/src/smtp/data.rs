//! Message content readers: DATA (dot-stuffed, RFC 5321 §4.5.2) and BDAT
//! chunks (RFC 3030), both with line endings canonicalised to CRLF.
//!
//! SMTP smuggling defence: the end of DATA is recognised only as
//! `<CRLF>.<CRLF>`, where the CRLF before the dot is a real CRLF. Bare LF and
//! bare CR are accepted as line endings inside the content but are rewritten
//! to CRLF, and a lone `.` line that did not end the data is kept as content.
//! The stored message therefore contains only CRLF line endings, so when it is
//! sent on (dot-stuffed again) no receiver can find an end of data in it that
//! this reader did not see.

/// Reader state between two calls to [`DataReader::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// At the start of a line; `strict` when the previous line ended in CRLF.
    LineStart { strict: bool },
    /// Inside a line.
    Mid,
    /// Inside a line, just after a CR.
    Cr,
    /// A `.` at the start of a line.
    Dot { strict: bool },
    /// `.` then CR at the start of a line.
    DotCr { strict: bool },
}

/// Incremental reader for DATA content.
#[derive(Debug)]
pub struct DataReader {
    st: St,
    out: Vec<u8>,
    limit: u64,
    size: u64,
    overflow: bool,
}

impl DataReader {
    /// A reader that keeps at most `limit` octets (0: no limit).
    pub fn new(limit: u64) -> Self {
        DataReader {
            st: St::LineStart { strict: true },
            out: Vec::with_capacity(4096),
            limit,
            size: 0,
            overflow: false,
        }
    }

    /// Consume bytes; returns how many were consumed and whether the end of
    /// data was reached (bytes after the terminator are not consumed).
    pub fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.st {
                St::Mid => {
                    // Fast path: copy up to the next CR or LF.
                    match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                        None => {
                            self.emit(&input[i..]);
                            return (input.len(), false);
                        }
                        Some(off) => {
                            self.emit(&input[i..i + off]);
                            i += off;
                            if input[i] == b'\r' {
                                self.st = St::Cr;
                            } else {
                                self.emit(b"\r\n");
                                self.st = St::LineStart { strict: false };
                            }
                            i += 1;
                        }
                    }
                }
                St::LineStart { strict } => {
                    if b == b'.' {
                        self.st = St::Dot { strict };
                        i += 1;
                    } else {
                        self.st = St::Mid;
                    }
                }
                St::Cr => {
                    if b == b'\n' {
                        self.emit(b"\r\n");
                        self.st = St::LineStart { strict: true };
                        i += 1;
                    } else {
                        // Bare CR: a line ending, not strict; reprocess b.
                        self.emit(b"\r\n");
                        self.st = St::LineStart { strict: false };
                    }
                }
                St::Dot { strict } => match b {
                    b'\r' => {
                        self.st = St::DotCr { strict };
                        i += 1;
                    }
                    b'\n' => {
                        self.emit(b".\r\n");
                        self.st = St::LineStart { strict: false };
                        i += 1;
                    }
                    _ => {
                        // Dot-stuffed line: drop the leading dot.
                        self.st = St::Mid;
                    }
                },
                St::DotCr { strict } => {
                    if b == b'\n' {
                        i += 1;
                        if strict {
                            self.st = St::LineStart { strict: true };
                            return (i, true);
                        }
                        self.emit(b".\r\n");
                        self.st = St::LineStart { strict: true };
                    } else {
                        self.emit(b".\r\n");
                        self.st = St::LineStart { strict: false };
                    }
                }
            }
        }
        (input.len(), false)
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.limit != 0 && self.size > self.limit {
            self.overflow = true;
            self.out = Vec::new();
        }
        if !self.overflow {
            self.out.extend_from_slice(bytes);
        }
    }

    /// True when the content exceeded the limit (its bytes were discarded).
    pub fn overflow(&self) -> bool {
        self.overflow
    }

    /// Octets of content seen (after canonicalisation).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The content read so far.
    pub fn into_content(self) -> Vec<u8> {
        self.out
    }
}

/// Line-ending canonicaliser for BDAT content: CRLF stays, bare CR and bare LF
/// become CRLF; the state carries across chunks.
#[derive(Debug, Default)]
pub struct Normalizer {
    pending_cr: bool,
}

impl Normalizer {
    /// Canonicalise `input`, appending to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        if self.pending_cr && !input.is_empty() {
            out.extend_from_slice(b"\r\n");
            self.pending_cr = false;
            if input[0] == b'\n' {
                i = 1;
            }
        }
        while i < input.len() {
            match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                None => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                Some(off) => {
                    out.extend_from_slice(&input[i..i + off]);
                    i += off;
                    if input[i] == b'\n' {
                        out.extend_from_slice(b"\r\n");
                        i += 1;
                    } else if i + 1 == input.len() {
                        self.pending_cr = true;
                        return;
                    } else {
                        out.extend_from_slice(b"\r\n");
                        i += if input[i + 1] == b'\n' { 2 } else { 1 };
                    }
                }
            }
        }
    }

    /// Flush a CR left pending at the end of the last chunk.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.extend_from_slice(b"\r\n");
            self.pending_cr = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut r = DataReader::new(0);
        let (n, done) = r.feed(input);
        done.then(|| (r.into_content(), n))
    }

    fn read_bytewise(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut r = DataReader::new(0);
        for (i, b) in input.iter().enumerate() {
            let (n, done) = r.feed(std::slice::from_ref(b));
            assert_eq!(n, 1);
            if done {
                return Some((r.into_content(), i + 1));
            }
        }
        None
    }

    #[test]
    fn plain_message_and_unstuffing() {
        let (c, n) = read_all(b"Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n").unwrap();
        assert_eq!(c, b"Subject: x\r\n\r\n.dot\r\nbody\r\n");
        assert_eq!(n, 30);
        assert_eq!(read_all(b".\r\n").unwrap().0, b"");
    }

    #[test]
    fn bare_lf_lines_are_canonicalised_but_never_end_data() {
        // A message whose lines end in bare LF: accepted, stored with CRLF.
        let input = b"a\nb\n.\nc\r\n.\r\n";
        let (c, _) = read_all(input).unwrap();
        assert_eq!(c, b"a\r\nb\r\n.\r\nc\r\n");
    }

    #[test]
    fn smuggling_variants_do_not_end_data() {
        let variants: [&[u8]; 8] = [
            b"x\n.\nMAIL FROM:<e@v>\r\n",
            b"x\n.\r\nMAIL FROM:<e@v>\r\n",
            b"x\r\n.\nMAIL FROM:<e@v>\r\n",
            b"x\r.\rMAIL FROM:<e@v>\r\n",
            b"x\r\n.\rMAIL FROM:<e@v>\r\n",
            b"x\r.\r\nMAIL FROM:<e@v>\r\n",
            b"x\n.\rMAIL FROM:<e@v>\r\n",
            b"x\r\r\n.\r\r\nMAIL FROM:<e@v>\r\n",
        ];
        for v in variants {
            let mut input = v.to_vec();
            assert!(
                read_all(&input).is_none(),
                "{:?}",
                String::from_utf8_lossy(v)
            );
            input.extend_from_slice(b"\r\n.\r\n");
            for (c, n) in [read_all(&input).unwrap(), read_bytewise(&input).unwrap()] {
                assert_eq!(n, input.len());
                // Only CRLF line endings survive, and no line is a lone "."
                // that a later hop could take for the end of data unless
                // it gets dot-stuffed.
                for (i, &b) in c.iter().enumerate() {
                    if b == b'\r' {
                        assert_eq!(c.get(i + 1), Some(&b'\n'));
                    }
                    if b == b'\n' {
                        assert_eq!(c[i - 1], b'\r');
                    }
                }
                assert!(c.ends_with(b"MAIL FROM:<e@v>\r\n\r\n"));
            }
        }
    }

    #[test]
    fn bytewise_equals_whole() {
        let input = b"H: 1\r\n\r\n..a\r\n.b\nc\rd\r\n\r\n.\r\n";
        assert_eq!(read_all(input), read_bytewise(input));
    }

    #[test]
    fn size_limit() {
        let mut r = DataReader::new(10);
        let (_, done) = r.feed(b"0123456789abcdef\r\n.\r\n");
        assert!(done);
        assert!(r.overflow());
        assert_eq!(r.size(), 18);
    }

    #[test]
    fn normalizer_across_chunks() {
        let mut n = Normalizer::default();
        let mut out = Vec::new();
        n.push(b"a\r", &mut out);
        n.push(b"\nb\n", &mut out);
        n.push(b"c\r", &mut out);
        n.push(b"d\r", &mut out);
        n.finish(&mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\nd\r\n");
    }
}
