//! A zone file as answers: for the plugins' dns capability offline
//! (`mailgate plugin test --dns ZONEFILE`), in the same presentation form
//! as the live resolver's, and as DNS messages for [`super::serve`] (the
//! loopback server `mailgate auth check --dns` points the host's resolver
//! at).

use hickory_resolver::proto::rr::{Name, Record, RecordType};
use hickory_resolver::proto::serialize::txt::Parser;
use std::collections::BTreeMap;
use std::str::FromStr;

/// The records of one zone file, by owner name and type.
#[derive(Debug, Default)]
pub struct Zone {
    records: BTreeMap<(String, RecordType), Vec<Record>>,
}

/// A zone file that does not parse: file, line when known, reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ZoneError(pub String);

fn key(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

impl Zone {
    /// Parse zone-file text (RFC 1035 master format; `$ORIGIN` and `$TTL`
    /// are understood; without `$ORIGIN` names must be absolute).
    pub fn parse(text: &str, file: &str) -> Result<Zone, ZoneError> {
        Zone::parse_text(text, file).map_err(ZoneError)
    }

    fn parse_text(text: &str, file: &str) -> Result<Zone, String> {
        let text = &flatten(text);
        let parse = |t: &str| Parser::new(t.to_string(), None, Name::from_str(".").ok()).parse();
        let (_, sets) = parse(text).map_err(|e| {
            // The parser does not say where; the shortest failing prefix
            // does (zone files for tests are small).
            let lines: Vec<&str> = text.lines().collect();
            let at = (1..=lines.len())
                .find(|&n| parse(&(lines[..n].join("\n") + "\n")).is_err())
                .map_or(String::new(), |n| format!(":{n}"));
            format!("{file}{at}: {e}")
        })?;
        let mut records: BTreeMap<(String, RecordType), Vec<Record>> = BTreeMap::new();
        for (k, set) in sets {
            let name = key(&k.name.to_string());
            for r in set.records_without_rrsigs() {
                records
                    .entry((name.clone(), k.record_type))
                    .or_default()
                    .push(r.clone());
            }
        }
        Ok(Zone { records })
    }

    /// The records of `name` of type `rtype`; no records is an empty list.
    pub fn lookup(&self, name: &str, rtype: RecordType) -> Result<Vec<String>, String> {
        Ok(self
            .records(name, rtype)
            .iter()
            .map(|r| r.data.to_string())
            .collect())
    }

    /// The records of `name` of type `rtype` as they are.
    pub fn records(&self, name: &str, rtype: RecordType) -> &[Record] {
        self.records
            .get(&(key(name), rtype))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether `name` exists: it has records, or names below it do (an
    /// empty non-terminal). Otherwise it is NXDOMAIN.
    pub fn has_name(&self, name: &str) -> bool {
        let k = key(name);
        let below = format!(".{k}");
        self.records
            .keys()
            .any(|(n, _)| *n == k || n.ends_with(&below))
    }
}

/// The zone text with comments removed and each parenthesized record on
/// one line (the line breaks it had follow it, so line numbers stay).
/// hickory's lexer takes a `;` inside a quoted string within parentheses
/// for a comment, which breaks the usual DKIM key record
/// (`s._domainkey IN TXT ( "v=DKIM1; k=rsa; " "p=..." )`).
fn flatten(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut quoted, mut escaped, mut depth, mut comment) = (false, false, 0usize, false);
    let mut held = 0usize;
    let (mut digits, mut bytes) = (String::new(), Vec::<u8>::new());
    for c in text.chars() {
        if comment {
            if c == '\n' {
                comment = false;
            } else {
                continue;
            }
        }
        if quoted {
            // Inside \DDD: up to three digits.
            if !digits.is_empty() {
                if c.is_ascii_digit() {
                    digits.push(c);
                    if digits.len() == 3 {
                        bytes.push(digits.parse::<u16>().unwrap_or(0).min(255) as u8);
                        digits.clear();
                    }
                    continue;
                }
                flush(&mut out, &mut bytes);
                out.push('\\');
                out.push_str(&std::mem::take(&mut digits));
            }
            if escaped {
                escaped = false;
                if c.is_ascii_digit() {
                    digits.push(c);
                    continue;
                }
                flush(&mut out, &mut bytes);
                out.push('\\');
                out.push(c);
                continue;
            }
            if c == '\\' {
                escaped = true;
                continue;
            }
            flush(&mut out, &mut bytes);
            out.push(c);
            if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                out.push(c);
            }
            ';' => comment = true,
            '(' => {
                depth += 1;
                out.push(' ');
            }
            ')' if depth > 0 => {
                depth -= 1;
                out.push(' ');
                if depth == 0 {
                    out.extend(std::iter::repeat_n('\n', held));
                    held = 0;
                }
            }
            '\n' if depth > 0 => {
                held += 1;
                out.push(' ');
            }
            c => out.push(c),
        }
    }
    out.extend(std::iter::repeat_n('\n', held));
    out
}

/// \DDD bytes (hickory misreads them) as the UTF-8 text they spell, else
/// as written.
fn flush(out: &mut String, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    match String::from_utf8(std::mem::take(bytes)) {
        Ok(t) if !t.contains(['"', '\\']) && !t.chars().any(|c| c.is_control()) => out.push_str(&t),
        Ok(t) => t.bytes().for_each(|b| out.push_str(&format!("\\{b:03}"))),
        Err(e) => e
            .into_bytes()
            .iter()
            .for_each(|b| out.push_str(&format!("\\{b:03}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_answers() {
        let z = Zone::parse(
            "$ORIGIN example.test.\n$TTL 300\n@ IN MX 10 mx\n_dmarc IN TXT \"v=DMARC1; p=reject\"\nmx IN A 192.0.2.7\n",
            "z",
        )
        .unwrap();
        assert_eq!(
            z.lookup("_dmarc.EXAMPLE.test", RecordType::TXT).unwrap(),
            vec!["v=DMARC1; p=reject".to_string()]
        );
        assert_eq!(
            z.lookup("example.test.", RecordType::MX).unwrap(),
            vec!["10 mx.example.test.".to_string()]
        );
        assert_eq!(
            z.lookup("mx.example.test", RecordType::A).unwrap(),
            vec!["192.0.2.7".to_string()]
        );
        assert!(
            z.lookup("none.example.test", RecordType::A)
                .unwrap()
                .is_empty()
        );
        let e = Zone::parse(
            "$TTL 60\nok.test. IN A 192.0.2.1\nbad line without type\n",
            "z",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("z:3: "), "{e}");
    }

    #[test]
    fn quoted_semicolons_in_lists_and_bytes() {
        let z = Zone::parse(
            "$ORIGIN k.test.\n$TTL 60\ns._domainkey IN TXT ( \"v=DKIM1; k=rsa; \" ; a comment\n  \"p=AB;C\" )\nu IN TXT \"caf\\195\\169\" \"x\"\n@ IN SOA ns admin (\n 1 60 60\n 60 60 )\nbad line without type\n",
            "z",
        )
        .unwrap_err();
        // The error is on the line it is on, after a multi-line record.
        assert!(e_line(&z) == "z:9", "{z}");
        let z = Zone::parse(
            "$ORIGIN k.test.\n$TTL 60\ns._domainkey IN TXT ( \"v=DKIM1; k=rsa; \" ; a comment\n  \"p=AB;C\" )\nu IN TXT \"caf\\195\\169\" \"x\"\n",
            "z",
        )
        .unwrap();
        let r = z.records("s._domainkey.k.test", RecordType::TXT);
        assert_eq!(r[0].data.to_string(), "v=DKIM1; k=rsa; p=AB;C");
        let u = z.records("u.k.test", RecordType::TXT);
        let hickory_resolver::proto::rr::RData::TXT(t) = &u[0].data else {
            panic!("{u:?}")
        };
        let bytes: Vec<u8> = t.txt_data.iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(bytes, "caféx".as_bytes());
    }

    fn e_line(e: &ZoneError) -> String {
        e.0.split(": ").next().unwrap_or("").to_string()
    }
}
