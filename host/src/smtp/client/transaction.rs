//! One message as SMTP commands, without I/O: what may be sent to a server
//! with given capabilities, the MAIL and RCPT lines (SIZE, BODY, SMTPUTF8,
//! DSN parameters only where offered), the content as BDAT or dot-stuffed
//! DATA, and the mapping of the server's replies to recipient outcomes.

use super::caps::Caps;
use super::outcome::{Failure, RcptOutcome, Stage};
use super::reply::ServerReply;
use crate::smtp::command::{Notify, Ret};
use std::sync::Arc;

/// One recipient of a job.
#[derive(Debug, Clone)]
pub struct JobRcpt {
    /// Address.
    pub address: String,
    /// DSN NOTIFY to pass on.
    pub notify: Option<Notify>,
    /// DSN ORCPT to pass on.
    pub orcpt: Option<String>,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Job {
    /// Envelope sender ("" for <>).
    pub sender: String,
    /// Recipients.
    pub rcpts: Vec<JobRcpt>,
    /// Content (CRLF, not dot-stuffed).
    pub data: Arc<Vec<u8>>,
    /// BODY=8BITMIME.
    pub eightbit: bool,
    /// Needs SMTPUTF8.
    pub smtputf8: bool,
    /// DSN RET.
    pub ret: Option<Ret>,
    /// DSN ENVID.
    pub envid: Option<String>,
    /// REQUIRETLS (RFC 8689): only to a server offering it, and passed on.
    pub requiretls: bool,
}

/// Refuse, before sending anything, what this server cannot take: a
/// message needing SMTPUTF8 it does not offer, or one over its SIZE limit.
/// Both are permanent (the message bounces rather than going out damaged).
pub fn check_local(job: &Job, caps: &Caps) -> Result<(), Failure> {
    if job.requiretls && !caps.requiretls {
        return Err(Failure {
            stage: Stage::RequireTls,
            ..Failure::local(
                "REQUIRETLS: the message requires it and the server does not offer REQUIRETLS"
                    .into(),
                true,
            )
        });
    }
    if job.smtputf8 && !caps.smtputf8 {
        return Err(Failure::local(
            "the message needs SMTPUTF8 and the server does not offer it".into(),
            true,
        ));
    }
    if let Some(max) = caps.size.filter(|&m| m > 0)
        && job.data.len() as u64 > max
    {
        return Err(Failure::local(
            format!(
                "message of {} octets is larger than the server's SIZE limit {max}",
                job.data.len()
            ),
            true,
        ));
    }
    Ok(())
}

/// The MAIL FROM line (without CRLF): SIZE when offered, BODY=8BITMIME when
/// the content is 8-bit and the server offers it, SMTPUTF8 when needed, and
/// RET/ENVID only to a server that offers DSN.
pub fn mail_command(job: &Job, caps: &Caps) -> String {
    let mut mail = format!("MAIL FROM:<{}>", job.sender);
    if caps.size.is_some() {
        mail.push_str(&format!(" SIZE={}", job.data.len()));
    }
    if job.eightbit && caps.eightbit {
        mail.push_str(" BODY=8BITMIME");
    }
    if job.smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    if job.requiretls {
        mail.push_str(" REQUIRETLS");
    }
    if caps.dsn {
        if let Some(r) = job.ret {
            mail.push_str(match r {
                Ret::Full => " RET=FULL",
                Ret::Hdrs => " RET=HDRS",
            });
        }
        if let Some(e) = &job.envid {
            mail.push_str(&format!(" ENVID={e}"));
        }
    }
    mail
}

/// The RCPT TO lines (without CRLF), with NOTIFY and ORCPT only to a server
/// that offers DSN.
pub fn rcpt_commands(job: &Job, caps: &Caps) -> Vec<String> {
    job.rcpts
        .iter()
        .map(|r| {
            let mut l = format!("RCPT TO:<{}>", r.address);
            if caps.dsn {
                if let Some(n) = r.notify {
                    l.push_str(&format!(" NOTIFY={}", n.to_param()));
                }
                if let Some(o) = &r.orcpt {
                    l.push_str(&format!(" ORCPT={o}"));
                }
            }
            l
        })
        .collect()
}

/// The content as sent: `BDAT n LAST` and the raw bytes when the server
/// offers CHUNKING (true), else dot-stuffed with its terminator for DATA.
pub fn content(job: &Job, caps: &Caps) -> (Vec<u8>, bool) {
    if caps.chunking {
        let mut v = format!("BDAT {} LAST\r\n", job.data.len()).into_bytes();
        v.extend_from_slice(&job.data);
        (v, true)
    } else {
        (dot_stuff(&job.data), false)
    }
}

/// Dot-stuff content for DATA and append the terminator.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 5);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !data.is_empty() && !data.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Each recipient's outcome from its RCPT reply (`rcpt`: index into
/// `job.rcpts` and reply) and the reply that ended the transaction: a
/// refused RCPT is refused there; an accepted one shares the final reply.
/// `bdat` says whether the final reply answered BDAT (else DATA's 354 was
/// followed by the content, unless DATA itself was refused).
pub fn outcomes(
    job: &Job,
    rcpt: Vec<(usize, ServerReply)>,
    final_r: ServerReply,
    bdat: bool,
) -> Vec<RcptOutcome> {
    let final_stage = if bdat || final_r.code != 354 {
        Stage::Content
    } else {
        Stage::Data
    };
    rcpt.into_iter()
        .map(|(i, r)| {
            if !r.is_ok() {
                RcptOutcome::Refused(Failure::reply(Stage::Rcpt(job.rcpts[i].address.clone()), r))
            } else if final_r.is_ok() {
                RcptOutcome::Delivered(final_r.clone())
            } else {
                RcptOutcome::Refused(Failure::reply(final_stage.clone(), final_r.clone()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(data: &[u8]) -> Job {
        Job {
            sender: "a@x.test".into(),
            rcpts: vec![
                JobRcpt {
                    address: "r1@y.test".into(),
                    notify: Some(Notify {
                        never: true,
                        ..Notify::default()
                    }),
                    orcpt: Some("rfc822;o@y.test".into()),
                },
                JobRcpt {
                    address: "r2@y.test".into(),
                    notify: None,
                    orcpt: None,
                },
            ],
            data: Arc::new(data.to_vec()),
            eightbit: true,
            smtputf8: false,
            ret: Some(Ret::Hdrs),
            envid: Some("E1".into()),
            requiretls: false,
        }
    }

    fn reply(code: u16, text: &str) -> ServerReply {
        ServerReply {
            code,
            lines: vec![text.into()],
        }
    }

    #[test]
    fn parameters_only_where_offered() {
        let j = job(b"x\r\n");
        let bare = Caps::default();
        assert_eq!(mail_command(&j, &bare), "MAIL FROM:<a@x.test>");
        assert_eq!(
            rcpt_commands(&j, &bare),
            vec!["RCPT TO:<r1@y.test>", "RCPT TO:<r2@y.test>"]
        );
        let full = Caps {
            size: Some(0),
            eightbit: true,
            dsn: true,
            ..Caps::default()
        };
        assert_eq!(
            mail_command(&j, &full),
            "MAIL FROM:<a@x.test> SIZE=3 BODY=8BITMIME RET=HDRS ENVID=E1"
        );
        assert_eq!(
            rcpt_commands(&j, &full)[0],
            "RCPT TO:<r1@y.test> NOTIFY=NEVER ORCPT=rfc822;o@y.test"
        );
    }

    #[test]
    fn requiretls_only_where_offered() {
        let mut j = job(b"x\r\n");
        j.requiretls = true;
        let f = check_local(&j, &Caps::default()).unwrap_err();
        assert_eq!(f.stage, Stage::RequireTls);
        let offered = Caps {
            requiretls: true,
            ..Caps::default()
        };
        assert!(check_local(&j, &offered).is_ok());
        assert_eq!(
            mail_command(&j, &offered),
            "MAIL FROM:<a@x.test> REQUIRETLS"
        );
    }

    #[test]
    fn local_refusals_are_permanent() {
        let mut j = job(b"0123456789");
        let small = Caps {
            size: Some(5),
            ..Caps::default()
        };
        let f = check_local(&j, &small).unwrap_err();
        assert!(f.permanent && f.stage == Stage::Local, "{f:?}");
        assert!(check_local(&j, &Caps::default()).is_ok());
        j.smtputf8 = true;
        let f = check_local(&j, &Caps::default()).unwrap_err();
        assert!(f.permanent && f.text.contains("SMTPUTF8"));
        assert!(
            mail_command(
                &j,
                &Caps {
                    smtputf8: true,
                    ..Caps::default()
                }
            )
            .ends_with(" SMTPUTF8")
        );
    }

    #[test]
    fn content_as_bdat_or_stuffed_data() {
        let j = job(b".a\r\nb\r\n");
        let (c, bdat) = content(&j, &Caps::default());
        assert!(!bdat);
        assert_eq!(c, b"..a\r\nb\r\n.\r\n");
        let chunking = Caps {
            chunking: true,
            ..Caps::default()
        };
        let (c, bdat) = content(&j, &chunking);
        assert!(bdat);
        assert_eq!(c, b"BDAT 7 LAST\r\n.a\r\nb\r\n");
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n..\r\n"), b"a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    #[test]
    fn outcomes_follow_rcpt_then_final_reply() {
        let j = job(b"x\r\n");
        let rc = || vec![(0, reply(250, "ok")), (1, reply(550, "5.1.1 no"))];
        let o = outcomes(&j, rc(), reply(250, "queued"), true);
        assert!(matches!(&o[0], RcptOutcome::Delivered(r) if r.code == 250));
        assert!(
            matches!(&o[1], RcptOutcome::Refused(f) if f.stage == Stage::Rcpt("r2@y.test".into()) && f.permanent)
        );
        // A refused end of data refuses every accepted recipient there.
        let o = outcomes(&j, rc(), reply(452, "4.3.1 full"), false);
        assert!(
            matches!(&o[0], RcptOutcome::Refused(f) if f.stage == Stage::Content && !f.permanent)
        );
        // DATA answered 354 but never completed: the failure is DATA's.
        let o = outcomes(&j, rc(), reply(354, "go"), false);
        assert!(matches!(&o[0], RcptOutcome::Refused(f) if f.stage == Stage::Data));
    }
}
