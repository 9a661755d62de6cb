//! The Public Suffix List (publicsuffix.org; Debian ships it as
//! /usr/share/publicsuffix/public_suffix_list.dat): the Organizational
//! Domain of a name is its public suffix plus one label (RFC 7489 §3.2).

use std::collections::HashSet;

/// The rules of a list.
#[derive(Debug, Default)]
pub struct Psl {
    rules: HashSet<String>,
    wildcards: HashSet<String>,
    exceptions: HashSet<String>,
}

impl Psl {
    /// Parse the list's text (comments `//`, one rule per line, `*.` and
    /// `!` rules; the ICANN and private sections alike).
    pub fn parse(text: &str) -> Psl {
        let mut p = Psl::default();
        for line in text.lines() {
            let rule = line.split_whitespace().next().unwrap_or("");
            if rule.is_empty() || rule.starts_with("//") {
                continue;
            }
            let rule = rule.to_ascii_lowercase();
            if let Some(e) = rule.strip_prefix('!') {
                p.exceptions.insert(e.to_string());
            } else if let Some(w) = rule.strip_prefix("*.") {
                p.wildcards.insert(w.to_string());
            } else {
                p.rules.insert(rule);
            }
        }
        p
    }

    /// How many rules it has.
    pub fn len(&self) -> usize {
        self.rules.len() + self.wildcards.len() + self.exceptions.len()
    }

    /// True when it has no rules.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of labels of `domain`'s public suffix (the unlisted
    /// default rule `*` gives 1).
    fn suffix_labels(&self, labels: &[&str]) -> usize {
        let n = labels.len();
        let mut best = 1;
        for i in 0..n {
            let candidate = labels[i..].join(".");
            let len = n - i;
            if self.exceptions.contains(&candidate) {
                // An exception rule: its suffix is the rule less its
                // leftmost label, and it wins.
                return len - 1;
            }
            if self.rules.contains(&candidate) {
                best = best.max(len);
            }
            // "*.parent" matches one label before "parent".
            if i + 1 < n && self.wildcards.contains(&labels[i + 1..].join(".")) {
                best = best.max(len);
            }
        }
        best
    }

    /// The Organizational Domain of `domain` (lower case, no final dot).
    pub fn org_domain(&self, domain: &str) -> String {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = d.split('.').collect();
        let s = self.suffix_labels(&labels);
        if labels.len() <= s {
            return d;
        }
        labels[labels.len() - s - 1..].join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "// comment\ncom\nuk\nco.uk\n*.ck\n!www.ck\n// private\nblogspot.com\n";

    #[test]
    fn org_domains() {
        let p = Psl::parse(LIST);
        assert_eq!(p.org_domain("mail.example.com"), "example.com");
        assert_eq!(p.org_domain("Example.COM."), "example.com");
        assert_eq!(p.org_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(p.org_domain("x.foo.ck"), "x.foo.ck");
        assert_eq!(p.org_domain("a.x.foo.ck"), "x.foo.ck");
        assert_eq!(p.org_domain("www.ck"), "www.ck");
        assert_eq!(p.org_domain("a.www.ck"), "www.ck");
        assert_eq!(p.org_domain("me.blogspot.com"), "me.blogspot.com");
        // Not listed: the default rule "*".
        assert_eq!(p.org_domain("a.b.example.test"), "example.test");
        assert_eq!(p.org_domain("com"), "com");
    }
}
