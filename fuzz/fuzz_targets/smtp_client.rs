//! The client conversation, driven as the outbound driver drives it, by a
//! server that answers anything (replies split from fuzz bytes, handshakes
//! and writes that fail at fuzz-chosen moments): never panics, never waits
//! for two things at once, never acts after giving up, and a connection it
//! retired is never offered another message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailgate::smtp::client::conversation::{
    Action, Cached, Conversation, Input, OpenParams, TlsMode,
};
use mailgate::smtp::client::reply::ReplyParser;
use mailgate::smtp::client::{Job, JobRcpt};
use std::sync::Arc;

fn job(n: usize, chunk: bool) -> Job {
    Job {
        sender: "a@x.test".into(),
        rcpts: (0..n.max(1))
            .map(|i| JobRcpt {
                address: format!("r{i}@y.test"),
                notify: None,
                orcpt: None,
            })
            .collect(),
        data: Arc::new(if chunk {
            b".x\r\n".to_vec()
        } else {
            b"x\r\n".to_vec()
        }),
        eightbit: chunk,
        requiretls: n % 2 == 0,
        smtputf8: false,
        ret: None,
        envid: None,
    }
}

fuzz_target!(|input: (u8, u16, u16, Vec<u8>, Vec<u8>)| {
    let (mode, clear, crypted, controls, server) = input;
    let tls = match mode & 3 {
        0 => TlsMode::Opportunistic,
        1 => TlsMode::Required,
        2 => TlsMode::Implicit,
        _ => TlsMode::Off,
    };
    let cached = (mode & 4 != 0).then_some(Cached {
        clear: clear & 0x1ff,
        crypted: (mode & 8 != 0).then_some(crypted & 0x1ff),
    });
    let mut c = Conversation::new(OpenParams {
        helo: "me.test".into(),
        tls,
        pipe_connect: mode & 16 != 0,
        cached,
        login: None,
    });
    let mut parser = ReplyParser::default();
    parser.feed(&server);
    let mut controls = controls.into_iter();
    let mut jobs = 0;
    let mut ended = false;
    c.start();
    // Bounded: every step consumes a reply, a control byte or a job.
    for _ in 0..10_000 {
        let Some(a) = c.poll() else {
            break;
        };
        assert!(!ended, "an action after the conversation ended: {a:?}");
        let ctl = controls.next().unwrap_or(0);
        match a {
            Action::Send(_) => {
                if ctl == 0xff {
                    c.handle(Input::WriteFailed("reset".into()));
                }
            }
            Action::Read(_) => {
                let input = match parser.next_reply() {
                    Some(Ok(r)) if ctl != 0xfe => Input::Reply(r),
                    Some(Err(e)) => Input::IoFailed(e.to_string()),
                    _ => Input::IoFailed("connection closed by the server".into()),
                };
                c.handle(input);
            }
            Action::Handshake => c.handle(if ctl & 1 == 0 {
                Input::TlsUp
            } else {
                Input::TlsFailed("bad certificate".into())
            }),
            Action::Cache(_) => {}
            Action::Ready => {
                assert!(c.reusable());
                jobs += 1;
                c.send(job(usize::from(ctl % 4), ctl & 4 != 0));
            }
            Action::OpenFailed(..) => {
                assert!(!c.reusable());
                ended = true;
            }
            Action::Sent(_) => {
                if c.reusable() && jobs < 3 {
                    jobs += 1;
                    c.send(job(usize::from(ctl % 4), ctl & 4 != 0));
                } else {
                    ended = true;
                }
            }
        }
    }
});
