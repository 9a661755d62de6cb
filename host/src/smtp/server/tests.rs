//! Byte-level tests of the session state machine.

use super::*;

fn cfg() -> SessionConfig {
    SessionConfig {
        requiretls: true,
        hostname: "mx.test".into(),
        postmaster_domain: "local.test".into(),
        client_display: "[127.0.0.1]".into(),
        max_message_size: 1000,
        max_recipients: 3,
        max_line_length: 100,
        max_errors: 5,
        max_junk_commands: 10,
        max_messages: 2,
        starttls: true,
        pipe_connect: false,
        tls_active: false,
        auth: None,
    }
}

/// Drives a session: accepts every check except RCPTs outside local.test,
/// spools every message as "ID<n>".
struct Harness {
    s: Session,
    messages: Vec<Transaction>,
    out: String,
    closed: Option<CloseReason>,
    starttls: Vec<usize>,
}

impl Harness {
    fn new(cfg: SessionConfig) -> Self {
        let mut s = Session::new(cfg);
        s.start(false);
        let mut h = Harness {
            s,
            messages: vec![],
            out: String::new(),
            closed: None,
            starttls: vec![],
        };
        h.run();
        h
    }

    fn run(&mut self) {
        loop {
            match self.s.poll() {
                Step::NeedInput => break,
                Step::Check(Check::Rcpt { rcpt, .. }) => {
                    if rcpt.domain_lc() == "local.test" {
                        self.s.decide(Verdict::Accept)
                    } else {
                        self.s
                            .decide(Verdict::Reject(Reply::new(550, "5.7.1", "Relaying denied")))
                    }
                }
                Step::Check(Check::Auth(c)) => {
                    if c.password == "secret" {
                        self.s.decide(Verdict::Accept)
                    } else {
                        self.s.decide(Verdict::Reject(Reply::new(
                            535,
                            "5.7.8",
                            "Authentication credentials invalid",
                        )))
                    }
                }
                Step::Check(_) => self.s.decide(Verdict::Accept),
                Step::Message(tx) => {
                    self.messages.push(*tx);
                    let id = format!("ID{}", self.messages.len());
                    self.s.message_done(Ok(id));
                }
                Step::StartTls { discarded } => {
                    self.starttls.push(discarded);
                    self.s.tls_started();
                }
                Step::Close(r) => {
                    self.closed = Some(r);
                    break;
                }
            }
        }
        self.out
            .push_str(&String::from_utf8_lossy(&self.s.take_output()));
    }

    fn send(&mut self, bytes: &[u8]) -> String {
        self.out.clear();
        self.s.feed(bytes);
        self.run();
        self.out.clone()
    }

    fn codes(&mut self, bytes: &[u8]) -> Vec<u16> {
        let out = self.send(bytes);
        out.lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l[..3].parse().unwrap())
            .collect()
    }
}

#[test]
fn banner_and_ehlo() {
    let mut h = Harness::new(cfg());
    assert_eq!(h.out, "220 mx.test ESMTP mailgate ready\r\n");
    let out = h.send(b"EHLO client.test\r\n");
    assert!(out.starts_with("250-mx.test Hello client.test [127.0.0.1]\r\n"));
    for ext in [
        "SIZE 1000",
        "8BITMIME",
        "PIPELINING",
        "CHUNKING",
        "SMTPUTF8",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(out.contains(&format!("250-{ext}\r\n")), "{ext} in {out}");
    }
    assert!(!out.contains("PIPECONNECT"));
}

#[test]
fn pipe_connect_advertised_only_when_allowed_and_after_pipelining() {
    let mut c = cfg();
    c.pipe_connect = true;
    let mut h = Harness::new(c);
    let out = h.send(b"EHLO c\r\n");
    let p = out.find("PIPELINING").unwrap();
    let pc = out.find("PIPECONNECT").unwrap();
    assert!(pc > p);
}

#[test]
fn early_input_is_a_sync_error_without_pipe_connect() {
    let mut s = Session::new(cfg());
    s.feed(b"EHLO early\r\n");
    s.start(true);
    assert_eq!(s.poll(), Step::Close(CloseReason::SyncError));
    assert_eq!(s.take_output(), b"554 5.5.0 SMTP synchronization error\r\n");
}

#[test]
fn early_pipelined_transaction_is_served_with_pipe_connect() {
    let mut c = cfg();
    c.pipe_connect = true;
    let mut s = Session::new(c);
    s.feed(b"EHLO early\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nBDAT 4 LAST\r\nhi\r\nQUIT\r\n");
    s.start(true);
    let mut h = Harness {
        s,
        messages: vec![],
        out: String::new(),
        closed: None,
        starttls: vec![],
    };
    h.run();
    assert_eq!(h.messages.len(), 1);
    assert_eq!(h.messages[0].data, b"hi\r\n");
    assert!(h.messages[0].chunking);
    assert_eq!(h.closed, Some(CloseReason::Quit));
    assert!(h.out.starts_with("220 mx.test"));
    assert!(
        h.out
            .ends_with("250 2.0.0 OK id=ID1\r\n221 2.0.0 mx.test closing connection\r\n")
    );
}

#[test]
fn full_transaction_with_data_and_dsn_params() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    let codes = h.codes(
        b"MAIL FROM:<s@x.test> RET=HDRS ENVID=e1\r\nRCPT TO:<u@local.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;u@local.test\r\nRCPT TO:<v@elsewhere.test>\r\nDATA\r\n",
    );
    assert_eq!(codes, vec![250, 250, 550, 354]);
    let out = h.send(b"Subject: hi\r\n\r\n..x\r\n.\r\n");
    assert_eq!(out, "250 2.0.0 OK id=ID1\r\n");
    let m = &h.messages[0];
    assert_eq!(m.sender.as_ref().unwrap().to_string(), "s@x.test");
    assert_eq!(m.rcpts.len(), 1);
    assert_eq!(m.params.ret, Some(command::Ret::Hdrs));
    assert_eq!(
        m.rcpts[0].params.orcpt.as_deref(),
        Some("rfc822;u@local.test")
    );
    assert!(m.rcpts[0].params.notify.unwrap().delay);
    assert_eq!(m.data, b"Subject: hi\r\n\r\n.x\r\n");
}

#[test]
fn sequence_errors() {
    let mut h = Harness::new(cfg());
    assert_eq!(h.codes(b"MAIL FROM:<a@b>\r\n"), vec![503]);
    h.send(b"HELO c\r\n");
    assert_eq!(h.codes(b"RCPT TO:<u@local.test>\r\n"), vec![503]);
    assert_eq!(h.codes(b"DATA\r\n"), vec![503]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test> SIZE=10\r\n"), vec![555]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), vec![250]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), vec![503]);
}

#[test]
fn data_without_valid_recipients() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    let codes = h.codes(b"MAIL FROM:<>\r\nRCPT TO:<x@remote.test>\r\nDATA\r\n");
    assert_eq!(codes, vec![250, 550, 554]);
}

#[test]
fn postmaster_and_source_route() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    let codes = h.codes(
        b"MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<@local.test:evil@remote.test>\r\n",
    );
    // The source route is ignored: the final domain is what counts.
    assert_eq!(codes, vec![250, 250, 550]);
}

#[test]
fn too_many_recipients() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    let codes = h.codes(b"RCPT TO:<a@local.test>\r\nRCPT TO:<b@local.test>\r\nRCPT TO:<c@local.test>\r\nRCPT TO:<d@local.test>\r\n");
    assert_eq!(codes, vec![250, 250, 250, 452]);
}

#[test]
fn size_limits() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test> SIZE=1001\r\n"), vec![552]);
    h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n");
    let mut big = vec![b'x'; 2000];
    big.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(h.codes(&big), vec![552]);
    assert!(h.messages.is_empty());
    // The session goes on.
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), vec![250]);
}

#[test]
fn bdat_chunks_pipelined() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    let out = h.send(
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nBDAT 4\r\nab\r\nBDAT 3 LAST\r\nc\nd",
    );
    assert!(
        out.ends_with("250 2.0.0 Chunk received\r\n250 2.0.0 OK id=ID1\r\n"),
        "{out}"
    );
    assert_eq!(h.messages[0].data, b"ab\r\nc\r\nd");
    // BDAT without a transaction: the chunk is consumed, then 503.
    assert_eq!(h.codes(b"BDAT 6 LAST\r\nQUIT\r\n"), vec![503]);
    assert_eq!(h.codes(b"NOOP\r\n"), vec![250]);
}

#[test]
fn bdat_split_across_reads() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nBDAT 10 LAST\r\n0123");
    assert!(h.messages.is_empty());
    assert!(h.s.in_content());
    let out = h.send(b"456789NOOP\r\n");
    assert_eq!(out, "250 2.0.0 OK id=ID1\r\n250 2.0.0 OK\r\n");
    assert_eq!(h.messages[0].data, b"0123456789");
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    let out = h.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n");
    assert_eq!(out, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(h.starttls, vec![32]);
    // After TLS the client must EHLO again; the injected MAIL never ran.
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), vec![503]);
    let out = h.send(b"EHLO c\r\n");
    assert!(!out.contains("STARTTLS"));
    assert_eq!(h.codes(b"STARTTLS\r\n"), vec![503]);
}

#[test]
fn smuggled_commands_stay_in_the_message() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n");
    let out = h.send(
        b"Subject: t\r\n\r\nhello\n.\nMAIL FROM:<evil@x.test>\nRCPT TO:<v@local.test>\nDATA\nsmuggled\n.\n\r\n.\r\n",
    );
    assert_eq!(out, "250 2.0.0 OK id=ID1\r\n");
    assert_eq!(h.messages.len(), 1);
    let data = String::from_utf8(h.messages[0].data.clone()).unwrap();
    assert!(data.contains("MAIL FROM:<evil@x.test>\r\n"));
    // Every line ending is CRLF: no bare LF or CR survives in the message.
    let bare = data.replace("\r\n", "");
    assert!(!bare.contains('\n') && !bare.contains('\r'), "{data:?}");
}

#[test]
fn long_lines_and_errors() {
    let mut h = Harness::new(cfg());
    let mut long = vec![b'A'; 150];
    long.extend_from_slice(b"\r\n");
    assert_eq!(h.codes(&long), vec![500]);
    // A long line split over reads is reported once and skipped.
    assert_eq!(h.codes(&[b'B'; 120]), vec![500]);
    assert_eq!(h.codes(b"BBBB\r\nNOOP\r\n"), vec![250]);
    let out = h.send(b"FOO\r\nFOO\r\nFOO\r\nFOO\r\n");
    assert!(out.contains("421 4.7.0"), "{out}");
    assert_eq!(h.closed, Some(CloseReason::TooManyErrors));
}

#[test]
fn junk_limit_and_message_limit() {
    let mut c = cfg();
    c.max_junk_commands = 2;
    let mut h = Harness::new(c);
    assert_eq!(h.codes(b"NOOP\r\nRSET\r\nNOOP\r\n"), vec![250, 250, 421]);
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    for _ in 0..2 {
        h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\nx\r\n.\r\n");
    }
    assert_eq!(h.messages.len(), 2);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), vec![421]);
}

#[test]
fn utf8_addresses_need_smtputf8() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    assert_eq!(h.codes("MAIL FROM:<jöe@b.test>\r\n".as_bytes()), vec![553]);
    assert_eq!(
        h.codes("MAIL FROM:<jöe@b.test> SMTPUTF8\r\n".as_bytes()),
        vec![250]
    );
    assert_eq!(h.codes("RCPT TO:<ü@local.test>\r\n".as_bytes()), vec![250]);
}

#[test]
fn bare_lf_commands_are_accepted() {
    let mut h = Harness::new(cfg());
    assert_eq!(h.codes(b"HELO c\nNOOP\n"), vec![250, 250]);
}

#[test]
fn junk_count_restarts_after_each_message() {
    let mut c = cfg();
    c.max_junk_commands = 2;
    c.max_messages = 10;
    let mut h = Harness::new(c);
    h.send(b"EHLO c\r\n");
    for _ in 0..5 {
        let codes = h.codes(
            b"RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\nx\r\n.\r\nRSET\r\n",
        );
        assert_eq!(codes, vec![250, 250, 250, 354, 250, 250]);
    }
}

#[test]
fn requiretls_only_over_tls() {
    // In clear: not offered, and refused if given anyway.
    let mut h = Harness::new(cfg());
    let out = h.send(b"EHLO c\r\n");
    assert!(!out.contains("REQUIRETLS"), "{out}");
    let out = h.send(b"MAIL FROM:<a@b.test> REQUIRETLS\r\n");
    assert!(out.starts_with("530 5.7.10 "), "{out}");
    // Over TLS: offered and kept with the transaction.
    let mut c = cfg();
    c.tls_active = true;
    let mut h = Harness::new(c);
    let out = h.send(b"EHLO c\r\n");
    assert!(out.contains("250-REQUIRETLS\r\n"), "{out}");
    let out = h.send(
        b"MAIL FROM:<a@b.test> REQUIRETLS\r\nRCPT TO:<u@local.test>\r\nDATA\r\nSubject: x\r\n\r\nx\r\n.\r\n",
    );
    assert!(out.ends_with("250 2.0.0 OK id=ID1\r\n"), "{out}");
    assert!(h.messages[0].params.requiretls);
    // Switched off: not offered even over TLS.
    let mut c = cfg();
    c.tls_active = true;
    c.requiretls = false;
    let mut h = Harness::new(c);
    assert!(!h.send(b"EHLO c\r\n").contains("REQUIRETLS"));
    assert!(
        h.send(b"MAIL FROM:<a@b.test> REQUIRETLS\r\n")
            .starts_with("530 ")
    );
}

fn auth_cfg(plaintext: bool, required: bool) -> SessionConfig {
    let mut c = cfg();
    c.auth = Some(AuthOffer {
        mechanisms: vec![Mechanism::Plain, Mechanism::Login],
        plaintext,
        required,
    });
    c
}

fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn auth_is_offered_only_under_tls_and_refused_before_it() {
    let mut h = Harness::new(auth_cfg(false, false));
    let out = h.send(b"EHLO c\r\n");
    assert!(!out.contains("AUTH"), "{out}");
    let plain = format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0secret"));
    assert!(h.send(plain.as_bytes()).starts_with("538 5.7.11 "));
    h.send(b"STARTTLS\r\n");
    let out = h.send(b"EHLO c\r\n");
    assert!(out.contains("250-AUTH PLAIN LOGIN\r\n"), "{out}");
    assert_eq!(
        h.send(plain.as_bytes()),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(h.s.authenticated(), Some("alice"));
    assert!(h.send(plain.as_bytes()).starts_with("503 5.5.1 Already"));
    h.send(b"MAIL FROM:<alice@local.test> AUTH=<>\r\nRCPT TO:<b@local.test>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.messages[0].auth.as_deref(), Some("alice"));
}

#[test]
fn auth_without_offer_or_ehlo_is_refused() {
    let mut h = Harness::new(cfg());
    h.send(b"EHLO c\r\n");
    assert!(
        h.send(b"AUTH PLAIN\r\n")
            .starts_with("503 5.5.1 AUTH not available")
    );
    let mut h = Harness::new(auth_cfg(true, false));
    assert!(
        h.send(b"AUTH PLAIN\r\n")
            .starts_with("503 5.5.1 EHLO first")
    );
    h.send(b"HELO c\r\n");
    assert!(
        h.send(b"AUTH PLAIN\r\n")
            .starts_with("503 5.5.1 EHLO first")
    );
}

#[test]
fn plain_and_login_exchanges() {
    let mut h = Harness::new(auth_cfg(true, false));
    let out = h.send(b"EHLO c\r\n");
    assert!(
        out.contains("250-AUTH PLAIN LOGIN\r\n"),
        "plaintext allowed: {out}"
    );
    assert_eq!(h.send(b"AUTH PLAIN\r\n"), "334 \r\n");
    let wrong = format!("{}\r\n", b64(b"\0alice\0wrong"));
    assert!(h.send(wrong.as_bytes()).starts_with("535 5.7.8 "));
    assert_eq!(h.s.authenticated(), None);
    assert_eq!(h.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(
        h.send(format!("{}\r\n", b64(b"bob")).as_bytes()),
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert!(
        h.send(format!("{}\r\n", b64(b"secret")).as_bytes())
            .starts_with("235 ")
    );
    assert_eq!(h.s.authenticated(), Some("bob"));
    // LOGIN with the user name as initial response.
    let mut h = Harness::new(auth_cfg(true, false));
    h.send(b"EHLO c\r\n");
    let first = format!("AUTH LOGIN {}\r\n", b64(b"carol"));
    assert_eq!(h.send(first.as_bytes()), "334 UGFzc3dvcmQ6\r\n");
    assert!(
        h.send(format!("{}\r\n", b64(b"secret")).as_bytes())
            .starts_with("235 ")
    );
    assert_eq!(h.s.authenticated(), Some("carol"));
}

#[test]
fn garbled_cancelled_and_unknown_responses() {
    let mut h = Harness::new(auth_cfg(true, false));
    h.send(b"EHLO c\r\n");
    assert!(h.send(b"AUTH CRAM-MD5\r\n").starts_with("504 5.5.4 "));
    assert!(h.send(b"AUTH\r\n").starts_with("501 5.5.4 "));
    assert!(
        h.send(b"AUTH PLAIN !!!notbase64\r\n")
            .starts_with("501 5.5.2 ")
    );
    h.send(b"AUTH PLAIN\r\n");
    assert!(
        h.send(b"*\r\n")
            .starts_with("501 5.0.0 Authentication cancelled")
    );
    h.send(b"AUTH LOGIN\r\n");
    assert!(h.send(b"%%%\r\n").starts_with("501 5.5.2 "));
    // Back in command mode after each.
    assert!(h.send(b"NOOP\r\n").starts_with("250 "));
    // AUTH inside a transaction.
    h.send(b"MAIL FROM:<a@b>\r\n");
    assert!(
        h.send(b"AUTH PLAIN\r\n")
            .starts_with("503 5.5.1 AUTH not permitted")
    );
}

#[test]
fn submission_requires_auth_and_starttls_forgets_it() {
    let mut h = Harness::new(auth_cfg(true, true));
    h.send(b"EHLO c\r\n");
    assert!(
        h.send(b"MAIL FROM:<a@b>\r\n")
            .starts_with("530 5.7.0 Authentication required")
    );
    let plain = format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0secret"));
    assert!(h.send(plain.as_bytes()).starts_with("235 "));
    // RFC 3207 §4.2: an AUTH before STARTTLS is not kept.
    h.send(b"STARTTLS\r\n");
    assert_eq!(h.s.authenticated(), None);
    h.send(b"EHLO c\r\n");
    assert!(h.send(b"MAIL FROM:<a@b>\r\n").starts_with("530 "));
    assert!(h.send(plain.as_bytes()).starts_with("235 "));
    assert!(h.send(b"MAIL FROM:<a@b>\r\n").starts_with("250 "));
}
