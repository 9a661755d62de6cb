//! The whole server state machine fed arbitrary bytes in arbitrary pieces,
//! with every check accepted and every message spooled: never a panic,
//! output only as SMTP reply lines, and a closed session stays closed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailgate::smtp::server::{AuthOffer, Mechanism, Session, SessionConfig, Step, Verdict};

fuzz_target!(|input: (Vec<u8>, Vec<u8>, bool)| {
    let (data, cuts, starttls) = input;
    let mut s = Session::new(SessionConfig {
        hostname: "mx.test".into(),
        postmaster_domain: "local.test".into(),
        client_display: "[127.0.0.1]".into(),
        max_message_size: 2000,
        max_recipients: 5,
        max_line_length: 200,
        max_errors: 5,
        max_junk_commands: 10,
        max_messages: 3,
        starttls,
        pipe_connect: true,
        tls_active: false,
        requiretls: true,
        // AUTH offered in clear too, so its exchanges are reached.
        auth: Some(AuthOffer {
            mechanisms: vec![Mechanism::Plain, Mechanism::Login],
            plaintext: true,
            required: starttls,
        }),
    });
    s.start(false);
    let mut pos = 0;
    let mut n = 0;
    let mut closed = false;
    let mut piece = cuts.iter().map(|&c| c as usize + 1).cycle();
    while pos < data.len() && !closed {
        let len = piece.next().unwrap_or(data.len()).min(data.len() - pos);
        s.feed(&data[pos..pos + len]);
        pos += len;
        loop {
            match s.poll() {
                Step::NeedInput => break,
                Step::Check(_) => s.decide(Verdict::Accept),
                Step::Message(_) => {
                    n += 1;
                    s.message_done(Ok(format!("ID{n}")));
                }
                Step::StartTls { .. } => s.tls_started(),
                Step::Close(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let out = s.take_output();
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.ends_with(b"\r"), "reply line without CRLF");
            assert!(line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit));
            assert!(line[3] == b' ' || line[3] == b'-');
        }
    }
    if closed {
        assert!(s.is_closed());
    }
});
