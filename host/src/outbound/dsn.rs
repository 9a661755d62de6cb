//! Delivery status notifications (RFC 3464 multipart/report), with the
//! extra fields of Exim's DSN_INFO: `Remote-MTA: X-ip; [ip]:port`,
//! `X-Remote-MTA-smtp-greeting`, `X-Remote-MTA-helo-response` and the full
//! diagnostic.

use crate::smtp::command::{Ret, xtext_decode};
use crate::spool::Envelope;

/// What happened to one recipient, for the report.
#[derive(Debug, Clone)]
pub struct RcptReport {
    /// Final recipient.
    pub address: String,
    /// ORCPT, `type;xtext`.
    pub orcpt: Option<String>,
    /// "failed" or "delayed".
    pub action: &'static str,
    /// Enhanced status, e.g. 5.1.1.
    pub status: String,
    /// Remote host name, when a server was involved.
    pub remote_host: Option<String>,
    /// `[ip]:port` of that server.
    pub remote_addr: Option<String>,
    /// Its banner (first line).
    pub greeting: Option<String>,
    /// Its EHLO reply (first line).
    pub helo_response: Option<String>,
    /// The server's reply, `550 5.1.1 ...`.
    pub diagnostic_code: Option<String>,
    /// Our full explanation.
    pub diagnostic: String,
}

fn fold_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Build the report message. `content` is the original message; `now`
/// the report date.
pub fn build(
    hostname: &str,
    env: &Envelope,
    content: &[u8],
    reports: &[RcptReport],
    id: &str,
    now: chrono::DateTime<chrono::Local>,
) -> Vec<u8> {
    let failed = reports.iter().any(|r| r.action == "failed");
    let boundary = format!("{id}=_/{hostname}");
    let subject = if failed {
        "Mail delivery failed: returning message to sender"
    } else {
        "Warning: message delayed"
    };
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <Mailer-Daemon@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: {}\r\n", env.sender));
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Date: {}\r\n", now.to_rfc2822()));
    m.push_str(&format!("Message-Id: <{id}@{hostname}>\r\n"));
    m.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ));
    m.push_str("This message was created automatically by mail delivery software.\r\n\r\n");
    if failed {
        m.push_str("A message that you sent could not be delivered to one or more of its\r\nrecipients. This is a permanent error. The following address(es) failed:\r\n\r\n");
    } else {
        m.push_str("A message that you sent has not yet been delivered to one or more of its\r\nrecipients. Delivery is still being tried; you need not resend it.\r\n\r\n");
    }
    for r in reports {
        m.push_str(&format!(
            "  {}\r\n    {}\r\n",
            r.address,
            fold_safe(&r.diagnostic)
        ));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&format!("Reporting-MTA: dns; {hostname}\r\n"));
    if let Some(e) = &env.envid {
        m.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            fold_safe(&xtext_decode(e))
        ));
    }
    let arrival = chrono::DateTime::from_timestamp(env.received_at, 0)
        .map(|d| d.with_timezone(&chrono::Local).to_rfc2822())
        .unwrap_or_default();
    m.push_str(&format!("Arrival-Date: {arrival}\r\n"));
    for r in reports {
        m.push_str("\r\n");
        if let Some(o) = &r.orcpt
            && let Some((t, v)) = o.split_once(';')
        {
            m.push_str(&format!(
                "Original-Recipient: {t};{}\r\n",
                fold_safe(&xtext_decode(v))
            ));
        }
        m.push_str(&format!("Final-Recipient: rfc822;{}\r\n", r.address));
        m.push_str(&format!("Action: {}\r\nStatus: {}\r\n", r.action, r.status));
        if let Some(h) = &r.remote_host {
            m.push_str(&format!("Remote-MTA: dns; {h}\r\n"));
        }
        if let Some(a) = &r.remote_addr {
            m.push_str(&format!("Remote-MTA: X-ip; {a}\r\n"));
        }
        if let Some(g) = &r.greeting {
            m.push_str(&format!(
                "X-Remote-MTA-smtp-greeting: X-str; {}\r\n",
                fold_safe(g)
            ));
        }
        if let Some(h) = &r.helo_response {
            m.push_str(&format!(
                "X-Remote-MTA-helo-response: X-str; {}\r\n",
                fold_safe(h)
            ));
        }
        if let Some(d) = &r.diagnostic_code {
            m.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", fold_safe(d)));
        }
        m.push_str(&format!(
            "X-Mailgate-Diagnostic: X-str; {}\r\n",
            fold_safe(&r.diagnostic)
        ));
        m.push_str(&format!("Last-Attempt-Date: {}\r\n", now.to_rfc2822()));
    }
    // RFC 8689 §4.3: a REQUIRETLS message is returned with its headers only.
    let hdrs_only = env.ret == Some(Ret::Hdrs) || env.requiretls || !failed;
    let mut out = m.into_bytes();
    if hdrs_only {
        out.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n").as_bytes(),
        );
        let end = memchr::memmem::find(content, b"\r\n\r\n").map_or(content.len(), |i| i + 2);
        out.extend_from_slice(&content[..end]);
    } else {
        out.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(content);
        if !content.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Whether a recipient wants a DSN for `action` ("failed"/"delayed").
/// Without NOTIFY, failures are reported and delays are warned about.
pub fn wanted(notify: Option<crate::smtp::command::Notify>, action: &str) -> bool {
    match notify {
        None => true,
        Some(n) if n.never => false,
        Some(n) => match action {
            "failed" => n.failure,
            "delayed" => n.delay,
            _ => n.success,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::Notify;
    use crate::spool::RecipientEntry;

    fn env(ret: Option<Ret>) -> Envelope {
        Envelope {
            id: "1xVb2N-xWMWIY-5h".into(),
            received_at: 1_795_000_000,
            sender: "s@example.test".into(),
            helo: "c".into(),
            client_ip: "127.0.0.1".into(),
            client_port: 1,
            protocol: "esmtp".into(),
            tls: None,
            body_8bitmime: false,
            smtputf8: false,
            ret,
            envid: Some("QQ+2B314".into()),
            size: 10,
            recipients: vec![RecipientEntry::new(
                "r@x.test".into(),
                None,
                Some("rfc822;R+40x.test".into()),
            )],
            vars: vec![],
            requiretls: false,
            tls_optional: false,
        }
    }

    fn report() -> RcptReport {
        RcptReport {
            address: "r@x.test".into(),
            orcpt: Some("rfc822;R+40x.test".into()),
            action: "failed",
            status: "5.1.1".into(),
            remote_host: Some("mx.x.test".into()),
            remote_addr: Some("[192.0.2.1]:25".into()),
            greeting: Some("220 mx.x.test ESMTP".into()),
            helo_response: Some("250-mx.x.test Hello".into()),
            diagnostic_code: Some("550 5.1.1 no".into()),
            diagnostic: "SMTP error from remote mail server after RCPT TO:<r@x.test>: 550 5.1.1 no"
                .into(),
        }
    }

    #[test]
    fn envid_orcpt_and_ret() {
        let content = b"Subject: s\r\n\r\nsecret body\r\n";
        let now = chrono::Local::now();
        let full = String::from_utf8(build(
            "mg.test",
            &env(None),
            content,
            &[report()],
            "ID",
            now,
        ))
        .unwrap();
        assert!(full.contains("Original-Envelope-Id: QQ+314\r\n"), "{full}");
        assert!(full.contains("Original-Recipient: rfc822;R@x.test\r\n"));
        assert!(
            full.contains(
                "Final-Recipient: rfc822;r@x.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            )
        );
        assert!(
            full.contains("Remote-MTA: dns; mx.x.test\r\nRemote-MTA: X-ip; [192.0.2.1]:25\r\n")
        );
        assert!(
            full.contains("Content-Type: message/rfc822\r\n\r\nSubject: s\r\n\r\nsecret body\r\n")
        );
        let hdrs = String::from_utf8(build(
            "mg.test",
            &env(Some(Ret::Hdrs)),
            content,
            &[report()],
            "ID",
            now,
        ))
        .unwrap();
        assert!(hdrs.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: s\r\n"));
        assert!(!hdrs.contains("secret body"));
    }

    #[test]
    fn notify_rules() {
        assert!(wanted(None, "failed") && wanted(None, "delayed"));
        let never = Notify {
            never: true,
            ..Default::default()
        };
        assert!(!wanted(Some(never), "failed"));
        let success = Notify {
            success: true,
            ..Default::default()
        };
        assert!(!wanted(Some(success), "failed") && !wanted(Some(success), "delayed"));
        let fail = Notify {
            failure: true,
            ..Default::default()
        };
        assert!(wanted(Some(fail), "failed") && !wanted(Some(fail), "delayed"));
    }
}
