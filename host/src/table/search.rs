//! The keys a lookup tries, most specific first, as mail admins know them
//! from Exim's `lsearch*@`/partial lookups and Postfix's access(5) search
//! order. Domains: the domain itself, then for it and each parent domain
//! `*.parent` (Exim: the parent itself and everything below it) and
//! `.parent` (Postfix: only what is below it). `*` last is the default.

/// Keys for a domain: `a.b.c`, `*.a.b.c`, `.b.c`, `*.b.c`, `.c`, `*.c`, `*`.
pub fn domain_keys(domain: &str) -> Vec<String> {
    let d = domain.trim_end_matches('.').to_lowercase();
    let mut out = vec![d.clone(), format!("*.{d}")];
    let mut rest = d.as_str();
    while let Some((_, parent)) = rest.split_once('.') {
        out.push(format!(".{parent}"));
        out.push(format!("*.{parent}"));
        rest = parent;
    }
    out.push("*".into());
    out
}

/// Keys for an address `local@domain`: `local@domain`, `local@`,
/// `@domain`, then the domain's keys ([`domain_keys`]). The null sender
/// (`<>`) is looked up as `<>`, then `*`.
pub fn address_keys(address: &str) -> Vec<String> {
    if address.is_empty() || address == "<>" {
        return vec!["<>".into(), "*".into()];
    }
    let a = address.to_lowercase();
    let Some((local, domain)) = a.rsplit_once('@') else {
        return vec![a.clone(), format!("{a}@"), "*".into()];
    };
    let mut out = vec![a.clone(), format!("{local}@"), format!("@{domain}")];
    out.extend(domain_keys(domain));
    out
}

/// Keys for a local user of a local domain: `local@domain`, `local`,
/// `local@`, `@domain` (every user of that domain).
pub fn user_keys(local: &str, domain: &str) -> Vec<String> {
    let (l, d) = (local.to_lowercase(), domain.to_lowercase());
    vec![
        format!("{l}@{d}"),
        l.clone(),
        format!("{l}@"),
        format!("@{d}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_go_from_exact_to_parents_to_default() {
        assert_eq!(
            domain_keys("Mail.Example.COM."),
            [
                "mail.example.com",
                "*.mail.example.com",
                ".example.com",
                "*.example.com",
                ".com",
                "*.com",
                "*"
            ]
        );
    }

    #[test]
    fn addresses_go_from_the_whole_address_to_the_domain() {
        let k = address_keys("Bob@Example.com");
        assert_eq!(
            &k[..5],
            [
                "bob@example.com",
                "bob@",
                "@example.com",
                "example.com",
                "*.example.com"
            ]
        );
        assert_eq!(k.last().unwrap(), "*");
        assert_eq!(address_keys(""), ["<>", "*"]);
        assert_eq!(
            user_keys("Alice", "Local.Test"),
            ["alice@local.test", "alice", "alice@", "@local.test"]
        );
    }
}
