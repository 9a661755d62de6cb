//! Answers for the dns capability from a zone file, for offline plugin
//! tests (`mailgate plugin test --dns ZONEFILE`). Records are printed in
//! the same presentation form as the live resolver's.

use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::proto::serialize::txt::Parser;
use std::collections::BTreeMap;
use std::str::FromStr;

/// The records of one zone file, by owner name and type.
#[derive(Debug, Default)]
pub struct Zone {
    records: BTreeMap<(String, RecordType), Vec<String>>,
}

fn key(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

impl Zone {
    /// Parse zone-file text (RFC 1035 master format; `$ORIGIN` and `$TTL`
    /// are understood; without `$ORIGIN` names must be absolute).
    pub fn parse(text: &str, file: &str) -> Result<Zone, super::PluginError> {
        Zone::parse_text(text, file).map_err(super::PluginError::Offline)
    }

    fn parse_text(text: &str, file: &str) -> Result<Zone, String> {
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
        let mut records: BTreeMap<(String, RecordType), Vec<String>> = BTreeMap::new();
        for (k, set) in sets {
            let name = key(&k.name.to_string());
            for r in set.records_without_rrsigs() {
                records
                    .entry((name.clone(), k.record_type))
                    .or_default()
                    .push(r.data.to_string());
            }
        }
        Ok(Zone { records })
    }

    /// The records of `name` of type `rtype`; no records is an empty list.
    pub fn lookup(&self, name: &str, rtype: RecordType) -> Result<Vec<String>, String> {
        Ok(self
            .records
            .get(&(key(name), rtype))
            .cloned()
            .unwrap_or_default())
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
}
