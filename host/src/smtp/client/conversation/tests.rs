//! Byte-level tests of the client conversation: each recovery and
//! fallback it implements, fed server replies as bytes.

use super::*;
use crate::smtp::client::reply::ReplyParser;
use crate::smtp::client::transaction::JobRcpt;
use std::sync::Arc;

/// Drives a conversation the way the outbound driver does, recording what
/// it sends and asks for.
struct H {
    c: Conversation,
    sent: Vec<u8>,
    cache: Vec<CacheOp>,
    /// Ready / OpenFailed / Sent, in order.
    done: Vec<Action>,
    /// What the machine waits for now (a Read or a Handshake).
    waiting: Option<Action>,
}

const HELO: &str = "me.test";

fn params(tls: TlsMode, pipe_connect: bool, cached: Option<Cached>) -> OpenParams {
    OpenParams {
        helo: HELO.into(),
        tls,
        pipe_connect,
        cached,
        login: None,
    }
}

fn with_login(mut p: OpenParams, needs_tls: bool) -> OpenParams {
    p.login = Some(Login {
        user: "relayuser".into(),
        password: "s3cret".into(),
        needs_tls,
    });
    p
}

/// Up to the EHLO after STARTTLS, the clear EHLO offering `clear`.
fn tls_then(h: &mut H, clear: &[&str]) {
    h.server("220 x\r\n");
    h.server(&ehlo(clear));
    assert!(!h.sent().contains("AUTH"), "no AUTH before TLS");
    h.server("220 go\r\n");
    h.input(Input::TlsUp);
    assert_eq!(h.sent(), "EHLO me.test\r\n");
}

fn caps(words: &[&str]) -> Caps {
    let mut lines = vec!["mx.test hello".to_string()];
    lines.extend(words.iter().map(|w| w.to_string()));
    Caps::parse(&ServerReply { code: 250, lines })
}

/// An EHLO reply offering `words`.
fn ehlo(words: &[&str]) -> String {
    let mut s = String::new();
    let mut lines = vec!["mx.test hello"];
    lines.extend_from_slice(words);
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        s.push_str(&format!("250{sep}{l}\r\n"));
    }
    s
}

fn job(rcpts: &[&str], data: &[u8]) -> Job {
    Job {
        sender: "a@x.test".into(),
        rcpts: rcpts
            .iter()
            .map(|r| JobRcpt {
                address: r.to_string(),
                notify: None,
                orcpt: None,
            })
            .collect(),
        data: Arc::new(data.to_vec()),
        eightbit: false,
        smtputf8: false,
        ret: None,
        envid: None,
        requiretls: false,
    }
}

impl H {
    fn open(p: OpenParams) -> H {
        let mut h = H {
            c: Conversation::new(p),
            sent: Vec::new(),
            cache: Vec::new(),
            done: Vec::new(),
            waiting: None,
        };
        h.c.start();
        h.run();
        h
    }

    fn run(&mut self) {
        self.waiting = None;
        while let Some(a) = self.c.poll() {
            match a {
                Action::Send(b) => self.sent.extend_from_slice(&b),
                Action::Cache(op) => self.cache.push(op),
                Action::Read(_) | Action::Handshake => {
                    assert!(self.waiting.is_none(), "two waits at once");
                    self.waiting = Some(a);
                }
                other => self.done.push(other),
            }
        }
    }

    /// Feed the server's bytes: one reply per read the machine asked for.
    fn server(&mut self, bytes: &str) {
        let mut p = ReplyParser::default();
        p.feed(bytes.as_bytes());
        while let Some(r) = p.next_reply() {
            assert!(
                matches!(self.waiting, Some(Action::Read(_))),
                "a reply while not reading: {:?}",
                self.waiting
            );
            self.c.handle(Input::Reply(r.unwrap()));
            self.run();
        }
    }

    fn input(&mut self, i: Input) {
        self.c.handle(i);
        self.run();
    }

    /// What went out since the last call, as text.
    fn sent(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.sent)).unwrap()
    }

    fn last(&self) -> &Action {
        self.done.last().expect("a result")
    }

    fn ready(&self) -> bool {
        matches!(self.last(), Action::Ready)
    }

    fn open_failed(&self) -> (&Failure, Retry) {
        match self.last() {
            Action::OpenFailed(f, r) => (f, *r),
            other => panic!("expected OpenFailed, got {other:?}"),
        }
    }

    fn outcome(&self) -> &Result<Vec<RcptOutcome>, Failure> {
        match self.last() {
            Action::Sent(r) => r,
            other => panic!("expected Sent, got {other:?}"),
        }
    }

    fn reading(&self, w: Wait) -> bool {
        self.waiting == Some(Action::Read(w))
    }
}

fn delivered(r: &Result<Vec<RcptOutcome>, Failure>) -> usize {
    r.as_ref()
        .unwrap()
        .iter()
        .filter(|o| matches!(o, RcptOutcome::Delivered(_)))
        .count()
}

fn early_entry(clear: &[&str], crypted: Option<&[&str]>) -> Cached {
    Cached {
        clear: caps(clear).bits(),
        crypted: crypted.map(|c| caps(c).bits()),
    }
}

#[test]
fn banner_ehlo_then_one_pipelined_flight_with_bdat() {
    let mut h = H::open(params(TlsMode::Off, false, None));
    assert!(h.reading(Wait::Command) && h.sent().is_empty());
    h.server("220 mx.test ESMTP\r\n");
    assert_eq!(h.sent(), "EHLO me.test\r\n");
    h.server(&ehlo(&["PIPELINING", "CHUNKING", "SIZE 1000"]));
    assert!(h.ready() && h.c.greeting == "220 mx.test ESMTP");
    assert!(h.cache.is_empty(), "no cache without pipe_connect");
    h.c.send(job(&["r@y.test"], b"hi\r\n"));
    h.run();
    assert_eq!(
        h.sent(),
        "MAIL FROM:<a@x.test> SIZE=4\r\nRCPT TO:<r@y.test>\r\nBDAT 4 LAST\r\nhi\r\n"
    );
    h.server("250 ok\r\n250 ok\r\n");
    assert!(
        h.reading(Wait::Data),
        "BDAT's reply runs under the data timeout"
    );
    h.server("250 queued\r\n");
    assert_eq!(delivered(h.outcome()), 1);
    assert!(
        h.c.reusable() && h.sent().is_empty(),
        "no RSET after a delivery"
    );
}

#[test]
fn helo_fallback_and_lockstep_data() {
    let mut h = H::open(params(TlsMode::Opportunistic, false, None));
    h.server("220 old.test\r\n");
    h.sent();
    h.server("500 what\r\n");
    assert_eq!(h.sent(), "HELO me.test\r\n");
    h.server("250 old.test\r\n");
    assert!(h.ready());
    h.c.send(job(&["r1@y.test", "r2@y.test"], b".dot\r\n"));
    h.run();
    assert_eq!(h.sent(), "MAIL FROM:<a@x.test>\r\n");
    h.server("250 ok\r\n");
    assert_eq!(h.sent(), "RCPT TO:<r1@y.test>\r\n");
    h.server("550 5.1.1 no\r\n");
    assert_eq!(h.sent(), "RCPT TO:<r2@y.test>\r\n");
    h.server("250 ok\r\n");
    assert_eq!(h.sent(), "DATA\r\n");
    h.server("354 go\r\n");
    assert_eq!(h.sent(), "..dot\r\n.\r\n");
    h.server("250 queued\r\n");
    let o = h.outcome().as_ref().unwrap();
    assert!(matches!(&o[0], RcptOutcome::Refused(f) if f.permanent));
    assert!(matches!(&o[1], RcptOutcome::Delivered(_)));
}

#[test]
fn ehlo_421_and_bad_banners_fail_without_retry() {
    let mut h = H::open(params(TlsMode::Opportunistic, false, None));
    h.server("220 x\r\n");
    h.server("421 go away\r\n");
    let (f, r) = h.open_failed();
    assert_eq!((f.stage.clone(), r), (Stage::Ehlo, Retry::No));
    let mut h = H::open(params(TlsMode::Opportunistic, false, None));
    h.server("554 no service\r\n");
    let (f, r) = h.open_failed();
    assert!(f.permanent && f.stage == Stage::Greeting && r == Retry::No);
    assert!(!h.c.reusable());
    let mut h = H::open(params(TlsMode::Opportunistic, false, None));
    h.server("220 x\r\n");
    h.server("500 no\r\n");
    h.server("550 no HELO either\r\n");
    assert_eq!(h.open_failed().0.stage, Stage::Ehlo);
}

#[test]
fn starttls_then_a_second_ehlo() {
    let mut h = H::open(params(TlsMode::Opportunistic, false, None));
    h.server("220 x\r\n");
    h.sent();
    h.server(&ehlo(&["STARTTLS", "PIPELINING"]));
    assert_eq!(h.sent(), "STARTTLS\r\n");
    h.server("220 go ahead\r\n");
    assert_eq!(h.waiting, Some(Action::Handshake));
    h.input(Input::TlsUp);
    assert_eq!(h.sent(), "EHLO me.test\r\n");
    h.server(&ehlo(&["PIPELINING", "8BITMIME"]));
    assert!(h.ready() && h.c.caps.eightbit && !h.c.caps.starttls);
}

#[test]
fn refused_or_failed_starttls_retries_in_clear_unless_required() {
    for (mode, want) in [
        (TlsMode::Opportunistic, Retry::InClear),
        (TlsMode::Required, Retry::No),
    ] {
        let mut h = H::open(params(mode, false, None));
        h.server("220 x\r\n");
        h.server(&ehlo(&["STARTTLS"]));
        h.server("454 TLS not available\r\n");
        assert_eq!(h.open_failed().1, want, "{mode:?} refused");
        let mut h = H::open(params(mode, false, None));
        h.server("220 x\r\n");
        h.server(&ehlo(&["STARTTLS"]));
        h.server("220 go\r\n");
        h.input(Input::TlsFailed("bad certificate".into()));
        let (f, r) = h.open_failed();
        assert_eq!(r, want, "{mode:?} handshake");
        assert!(
            f.text.contains("TLS handshake failed: bad certificate"),
            "{}",
            f.text
        );
    }
}

#[test]
fn required_tls_without_starttls_is_a_temporary_failure() {
    let mut h = H::open(params(TlsMode::Required, false, None));
    h.server("220 x\r\n");
    h.server(&ehlo(&["PIPELINING"]));
    let (f, r) = h.open_failed();
    assert!(!f.permanent && f.stage == Stage::Local && r == Retry::No);
    assert!(f.text.contains("TLS is required"));
}

#[test]
fn stripped_starttls_is_not_followed_in_off_mode_and_implicit_tls_starts_with_a_handshake() {
    let mut h = H::open(params(TlsMode::Off, false, None));
    h.server("220 x\r\n");
    h.sent();
    h.server(&ehlo(&["STARTTLS"]));
    assert!(h.ready() && h.sent().is_empty());
    let mut h = H::open(params(TlsMode::Implicit, true, None));
    assert_eq!(h.waiting, Some(Action::Handshake));
    h.input(Input::TlsUp);
    h.server("220 x\r\n");
    h.server(&ehlo(&["PIPELINING", "PIPECONNECT"]));
    assert!(h.ready());
    assert!(
        h.cache.is_empty(),
        "implicit TLS never caches for early pipelining"
    );
}

#[test]
fn an_ehlo_offering_pipeconnect_is_cached_in_clear_and_after_tls() {
    let mut h = H::open(params(TlsMode::Opportunistic, true, None));
    h.server("220 x\r\n");
    h.server(&ehlo(&["PIPELINING", "PIPECONNECT", "STARTTLS"]));
    h.server("220 go\r\n");
    h.input(Input::TlsUp);
    h.server(&ehlo(&["PIPELINING", "PIPECONNECT", "CHUNKING"]));
    assert!(h.ready());
    assert_eq!(
        h.cache,
        vec![CacheOp::Put(early_entry(
            &["PIPELINING", "PIPECONNECT", "STARTTLS"],
            Some(&["PIPELINING", "PIPECONNECT", "CHUNKING"])
        ))]
    );
    let mut h = H::open(params(TlsMode::Off, true, None));
    h.server("220 x\r\n");
    h.server(&ehlo(&["PIPELINING", "PIPECONNECT"]));
    assert_eq!(
        h.cache,
        vec![CacheOp::Put(early_entry(
            &["PIPELINING", "PIPECONNECT"],
            None
        ))]
    );
}

#[test]
fn early_pipelining_in_clear_sends_ehlo_with_the_transaction() {
    let words = ["PIPELINING", "PIPECONNECT", "CHUNKING"];
    let entry = early_entry(&words, None);
    let mut h = H::open(params(TlsMode::Opportunistic, true, Some(entry)));
    assert!(
        h.c.early() && h.ready() && h.sent().is_empty(),
        "nothing waits for the banner"
    );
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    assert_eq!(
        h.sent(),
        "EHLO me.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<r@y.test>\r\nBDAT 3 LAST\r\nx\r\n"
    );
    let reply = format!(
        "220 x\r\n{}250 ok\r\n250 ok\r\n250 queued\r\n",
        ehlo(&words)
    );
    h.server(&reply);
    assert_eq!(delivered(h.outcome()), 1);
    assert!(h.cache.is_empty(), "an unchanged answer leaves the entry");
    assert!(h.c.reusable() && h.c.early_pipe);
    // The next message on the connection owes nothing.
    h.c.send(job(&["s@y.test"], b"y\r\n"));
    h.run();
    assert!(h.sent().starts_with("MAIL FROM:"));
}

#[test]
fn a_changed_answer_that_still_offers_pipeconnect_rewrites_the_entry() {
    let entry = early_entry(&["PIPELINING", "PIPECONNECT"], None);
    let mut h = H::open(params(TlsMode::Off, true, Some(entry)));
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.sent();
    let now = ["PIPELINING", "PIPECONNECT", "8BITMIME"];
    h.server(&format!(
        "220 x\r\n{}250 ok\r\n250 ok\r\n354 go\r\n",
        ehlo(&now)
    ));
    assert_eq!(h.cache, vec![CacheOp::Put(early_entry(&now, None))]);
    assert_eq!(h.sent(), "x\r\n.\r\n", "content after DATA's 354");
    h.server("250 queued\r\n");
    assert_eq!(delivered(h.outcome()), 1);
}

#[test]
fn an_answer_without_a_capability_the_flight_used_abandons_the_transaction() {
    let entry = early_entry(&["PIPELINING", "PIPECONNECT", "CHUNKING"], None);
    let mut h = H::open(params(TlsMode::Off, true, Some(entry)));
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.sent();
    // No PIPECONNECT, no CHUNKING: the BDAT was a bad command there.
    h.server(&format!(
        "220 x\r\n{}250 ok\r\n250 ok\r\n500 unknown command\r\n",
        ehlo(&["PIPELINING"])
    ));
    assert_eq!(h.cache, vec![CacheOp::Remove]);
    let f = h.outcome().as_ref().unwrap_err();
    assert!(!f.permanent && f.stage == Stage::Ehlo && f.text.contains("changed"));
    assert!(!h.c.reusable());
    assert!(
        h.sent().is_empty(),
        "no RSET, no end of data on an abandoned connection"
    );
}

#[test]
fn a_bad_banner_owed_to_early_pipelining_deletes_the_entry() {
    let entry = early_entry(&["PIPELINING", "PIPECONNECT"], None);
    let mut h = H::open(params(TlsMode::Off, true, Some(entry)));
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.server("554 go away\r\n");
    assert_eq!(h.cache, vec![CacheOp::Remove]);
    let f = h.outcome().as_ref().unwrap_err();
    assert_eq!(f.stage, Stage::Greeting);
    assert!(!h.c.reusable());
    // A refused EHLO is temporary whatever its code.
    let mut h = H::open(params(TlsMode::Off, true, Some(entry)));
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.server("220 x\r\n550 no EHLO\r\n");
    let f = h.outcome().as_ref().unwrap_err();
    assert!(f.stage == Stage::Ehlo && !f.permanent);
    assert_eq!(h.cache, vec![CacheOp::Remove]);
}

#[test]
fn a_first_flight_that_cannot_leave_is_a_connect_failure() {
    let entry = early_entry(&["PIPELINING", "PIPECONNECT"], None);
    let mut h = H::open(params(TlsMode::Off, true, Some(entry)));
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.input(Input::WriteFailed("connection refused".into()));
    let f = h.outcome().as_ref().unwrap_err();
    assert_eq!(f.stage, Stage::Connect);
    assert!(h.cache.is_empty() && !h.c.reusable());
}

#[test]
fn early_pipelining_with_starttls_sends_ehlo_and_starttls_before_the_banner() {
    let clear = ["PIPELINING", "PIPECONNECT", "STARTTLS"];
    let crypted = ["PIPELINING", "PIPECONNECT", "CHUNKING"];
    let entry = early_entry(&clear, Some(&crypted));
    let mut h = H::open(params(TlsMode::Opportunistic, true, Some(entry)));
    assert_eq!(h.sent(), "EHLO me.test\r\nSTARTTLS\r\n");
    h.server(&format!("220 x\r\n{}220 go\r\n", ehlo(&clear)));
    assert_eq!(h.waiting, Some(Action::Handshake));
    h.input(Input::TlsUp);
    assert!(
        h.ready() && h.sent().is_empty(),
        "the second EHLO waits for the transaction"
    );
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    assert_eq!(
        h.sent(),
        "EHLO me.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<r@y.test>\r\nBDAT 3 LAST\r\nx\r\n"
    );
    h.server(&format!(
        "{}250 ok\r\n250 ok\r\n250 queued\r\n",
        ehlo(&crypted)
    ));
    assert_eq!(delivered(h.outcome()), 1);
    assert!(h.cache.is_empty());
}

#[test]
fn early_starttls_path_without_the_encrypted_half_asks_and_caches_it() {
    let clear = ["PIPELINING", "PIPECONNECT", "STARTTLS"];
    let entry = early_entry(&clear, None);
    let mut h = H::open(params(TlsMode::Opportunistic, true, Some(entry)));
    h.sent();
    h.server(&format!("220 x\r\n{}220 go\r\n", ehlo(&clear)));
    h.input(Input::TlsUp);
    assert_eq!(h.sent(), "EHLO me.test\r\n");
    h.server(&ehlo(&["PIPELINING", "PIPECONNECT"]));
    assert!(h.ready());
    assert_eq!(
        h.cache,
        vec![CacheOp::Put(early_entry(
            &clear,
            Some(&["PIPELINING", "PIPECONNECT"])
        ))]
    );
}

#[test]
fn a_failure_on_the_early_starttls_path_retries_without_early_pipelining() {
    let clear = ["PIPELINING", "PIPECONNECT", "STARTTLS"];
    let entry = early_entry(&clear, None);
    let mut h = H::open(params(TlsMode::Opportunistic, true, Some(entry)));
    h.server(&format!("220 x\r\n{}454 no TLS today\r\n", ehlo(&clear)));
    assert_eq!(h.cache, vec![CacheOp::Remove]);
    assert_eq!(h.open_failed().1, Retry::WithoutEarlyPipe);
    let mut h = H::open(params(TlsMode::Opportunistic, true, Some(entry)));
    h.server("220 x\r\n");
    h.input(Input::IoFailed("connection closed by the server".into()));
    assert_eq!(h.cache, vec![CacheOp::Remove]);
    let (f, r) = h.open_failed();
    assert_eq!((f.stage.clone(), r), (Stage::Ehlo, Retry::WithoutEarlyPipe));
}

#[test]
fn required_tls_ignores_an_entry_that_does_not_promise_starttls() {
    let entry = early_entry(&["PIPELINING", "PIPECONNECT"], None);
    let h = H::open(params(TlsMode::Required, true, Some(entry)));
    assert!(!h.c.early() && h.reading(Wait::Command));
    let h = H::open(params(TlsMode::Opportunistic, false, Some(entry)));
    assert!(!h.c.early(), "pipe_connect off ignores the cache");
}

fn ready_pipelined() -> H {
    let mut h = H::open(params(TlsMode::Off, false, None));
    h.server("220 x\r\n");
    h.server(&ehlo(&["PIPELINING"]));
    h.sent();
    h
}

#[test]
fn pipelined_data_with_no_recipient_accepted_ends_an_empty_message_and_resets() {
    let mut h = ready_pipelined();
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    assert_eq!(
        h.sent(),
        "MAIL FROM:<a@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n"
    );
    h.server("250 ok\r\n550 no\r\n354 go\r\n");
    assert_eq!(h.sent(), ".\r\n");
    h.server("554 no valid recipients\r\n");
    assert_eq!(h.sent(), "RSET\r\n");
    h.server("250 reset\r\n");
    let o = h.outcome().as_ref().unwrap();
    assert!(matches!(&o[0], RcptOutcome::Refused(f) if f.stage == Stage::Rcpt("r@y.test".into())));
    assert!(h.c.reusable());
}

#[test]
fn refused_mail_is_a_failure_for_all_and_a_refused_rset_retires_the_connection() {
    let mut h = ready_pipelined();
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.sent();
    h.server("550 5.7.1 sender refused\r\n503 no MAIL\r\n503 no valid recipients\r\n");
    assert_eq!(h.sent(), "RSET\r\n");
    h.server("500 RSET what\r\n");
    let f = h.outcome().as_ref().unwrap_err();
    assert!(f.permanent && f.stage == Stage::Mail("a@x.test".into()));
    assert!(!h.c.reusable());
}

#[test]
fn data_refused_in_lockstep_and_a_temporary_final_reply() {
    let mut h = H::open(params(TlsMode::Off, false, None));
    h.server("220 x\r\n");
    h.server(&ehlo(&[]));
    h.sent();
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.server("250 ok\r\n250 ok\r\n");
    assert_eq!(
        h.sent(),
        "MAIL FROM:<a@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n"
    );
    h.server("451 not now\r\n");
    assert_eq!(h.sent(), "RSET\r\n");
    h.server("250 reset\r\n");
    assert_eq!(h.outcome().as_ref().unwrap_err().stage, Stage::Data);
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.server("250 ok\r\n250 ok\r\n354 go\r\n452 4.3.1 full\r\n");
    assert!(h.sent().ends_with("x\r\n.\r\nRSET\r\n"));
    h.server("250 reset\r\n");
    let o = h.outcome().as_ref().unwrap();
    assert!(matches!(&o[0], RcptOutcome::Refused(f) if !f.permanent && f.stage == Stage::Content));
}

#[test]
fn lockstep_with_no_recipient_accepted_sends_no_data() {
    let mut h = H::open(params(TlsMode::Off, false, None));
    h.server("220 x\r\n");
    h.server(&ehlo(&["CHUNKING"]));
    h.sent();
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.server("250 ok\r\n550 no\r\n");
    assert_eq!(
        h.sent(),
        "MAIL FROM:<a@x.test>\r\nRCPT TO:<r@y.test>\r\nRSET\r\n"
    );
    h.server("250 ok\r\n");
    assert!(matches!(
        &h.outcome().as_ref().unwrap()[0],
        RcptOutcome::Refused(_)
    ));
}

#[test]
fn what_the_server_cannot_take_is_refused_before_anything_is_sent() {
    let mut h = ready_pipelined();
    let mut j = job(&["r@y.test"], b"x\r\n");
    j.smtputf8 = true;
    h.c.send(j);
    h.run();
    let f = h.outcome().as_ref().unwrap_err();
    assert!(f.permanent && f.stage == Stage::Local);
    assert!(h.sent().is_empty() && h.c.reusable());
}

#[test]
fn a_connection_lost_mid_transaction_is_not_reused() {
    let mut h = ready_pipelined();
    h.c.send(job(&["r1@y.test", "r2@y.test"], b"x\r\n"));
    h.run();
    h.server("250 ok\r\n250 ok\r\n");
    h.input(Input::IoFailed("connection closed by the server".into()));
    let f = h.outcome().as_ref().unwrap_err();
    assert_eq!(f.stage, Stage::Rcpt("r2@y.test".into()));
    assert!(!f.permanent && !h.c.reusable());
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    assert!(
        h.outcome().is_err(),
        "a retired connection takes no message"
    );
}

#[test]
fn out_of_step_input_retires_the_connection() {
    let mut h = ready_pipelined();
    h.c.send(job(&["r@y.test"], b"x\r\n"));
    h.run();
    h.input(Input::TlsUp);
    assert!(h.outcome().is_err() && !h.c.reusable());
}

#[test]
fn login_with_plain_after_starttls_and_with_login_where_only_that_is_offered() {
    let mut h = H::open(with_login(params(TlsMode::Required, false, None), true));
    tls_then(&mut h, &["STARTTLS", "AUTH PLAIN LOGIN"]);
    h.server(&ehlo(&["PIPELINING", "AUTH LOGIN PLAIN"]));
    // base64("\0relayuser\0s3cret")
    assert_eq!(h.sent(), "AUTH PLAIN AHJlbGF5dXNlcgBzM2NyZXQ=\r\n");
    assert!(h.done.is_empty(), "not ready before 235");
    h.server("235 2.7.0 Authentication succeeded\r\n");
    assert!(h.ready() && h.c.authenticated == Some("PLAIN"));

    let mut h = H::open(with_login(
        params(TlsMode::Opportunistic, false, None),
        true,
    ));
    tls_then(&mut h, &["STARTTLS"]);
    h.server(&ehlo(&["AUTH=LOGIN", "AUTH CRAM-MD5 LOGIN"]));
    assert_eq!(h.sent(), "AUTH LOGIN\r\n");
    h.server("334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.sent(), "cmVsYXl1c2Vy\r\n");
    h.server("334 UGFzc3dvcmQ6\r\n");
    assert_eq!(h.sent(), "czNjcmV0\r\n");
    h.server("235 ok\r\n");
    assert!(h.ready() && h.c.authenticated == Some("LOGIN"));
}

#[test]
fn a_refused_login_defers_with_the_reply_and_without_the_password() {
    for refusal in ["535 5.7.8 Incorrect authentication data", "334 \r\n"] {
        let mut h = H::open(with_login(params(TlsMode::Required, false, None), true));
        tls_then(&mut h, &["STARTTLS"]);
        h.server(&ehlo(&["AUTH PLAIN"]));
        h.sent();
        h.server(&format!("{}\r\n", refusal.trim_end()));
        let (f, r) = h.open_failed();
        assert!(!f.permanent && r == Retry::No, "{f:?}");
        assert_eq!(f.stage, Stage::Auth("PLAIN"));
        assert!(
            f.text
                .starts_with("SMTP error from remote mail server after AUTH PLAIN: ")
        );
        assert!(
            !f.text.contains("s3cret") && !f.text.contains("AHJl"),
            "{}",
            f.text
        );
        assert!(!h.c.reusable());
    }
    // LOGIN refused at the user name.
    let mut h = H::open(with_login(params(TlsMode::Required, false, None), true));
    tls_then(&mut h, &["STARTTLS"]);
    h.server(&ehlo(&["AUTH LOGIN"]));
    h.server("334 VXNlcm5hbWU6\r\n");
    h.sent();
    h.server("535 no such user\r\n");
    assert_eq!(h.open_failed().0.stage, Stage::Auth("LOGIN"));
    assert!(
        h.sent().is_empty(),
        "the password is not sent after a refusal"
    );
}

#[test]
fn credentials_never_go_in_clear_or_to_a_server_without_plain_or_login() {
    // A stripped STARTTLS (or the retry in clear after a failed
    // handshake): AUTH is offered, but the password stays here.
    for mode in [TlsMode::Opportunistic, TlsMode::Off] {
        let mut h = H::open(with_login(params(mode, false, None), true));
        h.server("220 x\r\n");
        h.server(&ehlo(&["PIPELINING", "AUTH PLAIN LOGIN"]));
        assert!(!h.sent().contains("AUTH"));
        let (f, _) = h.open_failed();
        assert!(
            !f.permanent && f.text.contains("not encrypted"),
            "{}",
            f.text
        );
        assert!(
            !f.text.contains("STARTTLS"),
            "not counted as a TLS report failure"
        );
    }
    // Configured to allow clear text: then it goes.
    let mut h = H::open(with_login(params(TlsMode::Off, false, None), false));
    h.server("220 x\r\n");
    h.server(&ehlo(&["AUTH PLAIN"]));
    assert!(
        h.sent()
            .ends_with("AUTH PLAIN AHJlbGF5dXNlcgBzM2NyZXQ=\r\n")
    );
    // Only CRAM-MD5, or no AUTH at all after TLS.
    for offer in [&["AUTH CRAM-MD5"][..], &["PIPELINING"][..]] {
        let mut h = H::open(with_login(params(TlsMode::Required, false, None), true));
        tls_then(&mut h, &["STARTTLS", "AUTH PLAIN"]);
        h.server(&ehlo(offer));
        let (f, _) = h.open_failed();
        assert!(
            f.text.contains("offers no AUTH PLAIN or LOGIN"),
            "{}",
            f.text
        );
        assert!(h.sent().is_empty());
    }
}

#[test]
fn a_login_early_pipelines_only_up_to_starttls() {
    let entry = early_entry(
        &["PIPELINING", "PIPECONNECT", "STARTTLS"],
        Some(&["PIPELINING", "PIPECONNECT", "AUTH PLAIN"]),
    );
    let mut h = H::open(with_login(
        params(TlsMode::Required, true, Some(entry)),
        true,
    ));
    assert_eq!(h.sent(), "EHLO me.test\r\nSTARTTLS\r\n");
    h.server("220 x\r\n");
    h.server(&ehlo(&["PIPELINING", "PIPECONNECT", "STARTTLS"]));
    h.server("220 go\r\n");
    h.input(Input::TlsUp);
    assert_eq!(
        h.sent(),
        "EHLO me.test\r\n",
        "the EHLO after TLS is not owed"
    );
    h.server(&ehlo(&["PIPELINING", "PIPECONNECT", "AUTH PLAIN"]));
    assert!(h.sent().starts_with("AUTH PLAIN "));
    h.server("235 ok\r\n");
    assert!(h.ready());
    // Without TLS there is nothing to early-pipeline before the login.
    let clear = early_entry(&["PIPELINING", "PIPECONNECT", "AUTH PLAIN"], None);
    let h = H::open(with_login(params(TlsMode::Off, true, Some(clear)), false));
    assert!(!h.c.early() && h.reading(Wait::Command));
}
