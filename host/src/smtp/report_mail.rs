//! The message that carries a report to a `mailto:` destination (DMARC
//! aggregate reports, RFC 7489 §7.2.1.1; SMTP TLS reports, RFC 8460 §5.3):
//! a short text part and the gzipped report as a base64 attachment.

/// What a report message says.
#[derive(Debug, Clone)]
pub struct ReportMail<'a> {
    /// `From:` (the report's contact).
    pub from: &'a str,
    /// `To:`.
    pub to: &'a str,
    /// `Subject:`.
    pub subject: &'a str,
    /// Our host name, for the Message-ID.
    pub hostname: &'a str,
    /// A unique string (a queue id) for the Message-ID and the boundary.
    pub unique: &'a str,
    /// The Message-ID's tag (`dmarc`, `tlsrpt`).
    pub tag: &'a str,
    /// `Date:` (RFC 2822 form).
    pub date: &'a str,
    /// More header fields, after Message-ID.
    pub headers: &'a [(&'a str, String)],
    /// The multipart type with its parameters, without the boundary
    /// (`multipart/mixed`, `multipart/report; report-type="tlsrpt"`).
    pub multipart: &'a str,
    /// The text part.
    pub text: &'a str,
    /// The attachment's Content-Type.
    pub attachment_type: &'a str,
    /// Its file name.
    pub filename: &'a str,
    /// Its octets (sent in base64).
    pub data: &'a [u8],
}

impl ReportMail<'_> {
    /// The whole message, CRLF line ends, base64 in 76-character lines.
    pub fn build(&self) -> Vec<u8> {
        use base64::Engine as _;
        let boundary = format!("=_{}_{}", self.tag, self.unique);
        let mut m = String::new();
        m.push_str(&format!("From: {}\r\n", self.from));
        m.push_str(&format!("To: {}\r\n", self.to));
        m.push_str(&format!("Subject: {}\r\n", self.subject));
        m.push_str(&format!("Date: {}\r\n", self.date));
        m.push_str(&format!(
            "Message-ID: <{}.{}@{}>\r\n",
            self.unique, self.tag, self.hostname
        ));
        for (n, v) in self.headers {
            m.push_str(&format!("{n}: {v}\r\n"));
        }
        m.push_str("MIME-Version: 1.0\r\n");
        m.push_str(&format!(
            "Content-Type: {};\r\n\tboundary=\"{boundary}\"\r\n\r\n",
            self.multipart
        ));
        m.push_str("This is a MIME-formatted message.\r\n\r\n");
        m.push_str(&format!("--{boundary}\r\n"));
        m.push_str("Content-Type: text/plain; charset=us-ascii\r\n\r\n");
        m.push_str(self.text);
        m.push_str("\r\n\r\n");
        m.push_str(&format!("--{boundary}\r\n"));
        m.push_str(&format!("Content-Type: {}\r\n", self.attachment_type));
        m.push_str("Content-Transfer-Encoding: base64\r\n");
        m.push_str(&format!(
            "Content-Disposition: attachment;\r\n\tfilename=\"{}\"\r\n\r\n",
            self.filename
        ));
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.data);
        for chunk in b64.as_bytes().chunks(76) {
            // base64 is ASCII.
            m.push_str(std::str::from_utf8(chunk).unwrap_or(""));
            m.push_str("\r\n");
        }
        m.push_str(&format!("--{boundary}--\r\n"));
        m.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_message() {
        let data = vec![7u8; 100];
        let m = ReportMail {
            from: "postmaster@mx.test",
            to: "rua@example.test",
            subject: "Report Domain: example.test",
            hostname: "mx.test",
            unique: "ID1",
            tag: "dmarc",
            date: "Wed, 2 Dec 2026 00:00:00 +0000",
            headers: &[("TLS-Required", "No".into())],
            multipart: "multipart/mixed",
            text: "A report.",
            attachment_type: "application/gzip",
            filename: "a!b!1!2.xml.gz",
            data: &data,
        }
        .build();
        let m = String::from_utf8(m).unwrap();
        assert!(m.starts_with("From: postmaster@mx.test\r\nTo: rua@example.test\r\n"));
        assert!(m.contains("Message-ID: <ID1.dmarc@mx.test>\r\nTLS-Required: No\r\n"));
        assert!(m.contains("Content-Type: multipart/mixed;\r\n\tboundary=\"=_dmarc_ID1\"\r\n"));
        assert!(m.contains("filename=\"a!b!1!2.xml.gz\""));
        assert!(m.lines().all(|l| l.len() <= 78));
        assert!(m.ends_with("--=_dmarc_ID1--\r\n"));
    }
}
