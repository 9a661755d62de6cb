//! The transaction half of the conversation: one message as a pipelined
//! flight or in lock-step, the replies early pipelining is owed, the check
//! that the flight's assumptions still hold, RSET, and the outcome.

use super::*;
use crate::smtp::client::transaction::{
    check_local, content, mail_command, outcomes, rcpt_commands,
};

/// One message in flight.
#[derive(Debug)]
pub(super) struct Tx {
    job: Job,
    step: TxStep,
    mail_stage: Stage,
    rcpt_lines: Vec<String>,
    content: Vec<u8>,
    bdat: bool,
    /// The commands went out in one flight (PIPELINING).
    pipelined: bool,
    /// Early pipelining's owed replies, read first.
    owed: Option<Owed>,
    /// The capabilities the commands were built from, when the server had
    /// not yet said what it offers.
    assumed: Option<Caps>,
    mail: Option<ServerReply>,
    rcpts: Vec<(usize, ServerReply)>,
    data: Option<ServerReply>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxStep {
    OwedBanner,
    OwedEhlo,
    Mail,
    Rcpt,
    Data,
    /// After the content (DATA's 354 or lock-step BDAT).
    Final,
    /// 354 although no recipient was accepted: an empty message ended.
    EmptyData,
}

impl Conversation {
    /// Send one message; the outcome arrives as [`Action::Sent`]. Only when
    /// the connection is ready (after [`Action::Ready`] or a reusable
    /// [`Action::Sent`]).
    pub fn send(&mut self, job: Job) {
        if !matches!(self.state, State::Ready) || self.broken {
            self.push(Action::Sent(Err(Failure::io(
                Stage::Connect,
                "connection not ready",
            ))));
            return;
        }
        let caps = self.caps;
        if let Err(f) = check_local(&job, &caps) {
            self.push(Action::Sent(Err(f)));
            return;
        }
        let mail = mail_command(&job, &caps);
        let rcpt_lines = rcpt_commands(&job, &caps);
        let (content, bdat) = content(&job, &caps);
        let mut tx = Tx {
            mail_stage: Stage::Mail(job.sender.clone()),
            job,
            step: TxStep::Mail,
            rcpt_lines,
            content,
            bdat,
            pipelined: caps.pipelining,
            owed: None,
            assumed: None,
            mail: None,
            rcpts: Vec::new(),
            data: None,
        };
        if caps.pipelining {
            tx.owed = self.owed.take();
            let mut out = match tx.owed {
                Some(_) => format!("EHLO {}\r\n{mail}\r\n", self.params.helo),
                None => format!("{mail}\r\n"),
            };
            for r in &tx.rcpt_lines {
                out.push_str(r);
                out.push_str("\r\n");
            }
            let mut out = out.into_bytes();
            if bdat {
                out.extend_from_slice(&tx.content);
            } else {
                out.extend_from_slice(b"DATA\r\n");
            }
            self.push(Action::Send(out));
            return self.tx_next(tx);
        }
        self.send_line(&mail);
        self.wait(tx, TxStep::Mail, Wait::Command);
    }

    pub(super) fn wait(&mut self, mut tx: Tx, step: TxStep, w: Wait) {
        tx.step = step;
        self.state = State::Tx(Box::new(tx));
        self.push(Action::Read(w));
    }

    /// After the pipelined first flight: read what is owed, then MAIL.
    pub(super) fn tx_next(&mut self, tx: Tx) {
        match tx.owed {
            Some(o) if o.banner => self.wait(tx, TxStep::OwedBanner, Wait::Command),
            Some(_) => self.wait(tx, TxStep::OwedEhlo, Wait::Command),
            None => self.wait(tx, TxStep::Mail, Wait::Command),
        }
    }

    pub(super) fn tx_input(&mut self, mut tx: Tx, input: Input) {
        let r = match input {
            Input::Reply(r) => r,
            Input::IoFailed(e) => return self.tx_io_failed(tx, e),
            Input::WriteFailed(e) if tx.owed.is_some() && tx.assumed.is_none() => {
                // The first flight did not leave and nothing was read yet:
                // a refused (Fast Open) connect or a reset shows up here;
                // it is about the host.
                self.broken = true;
                return self.finish(Err(Failure::io(Stage::Connect, e)));
            }
            Input::WriteFailed(e) => return self.tx_io_failed(tx, e),
            Input::TlsUp | Input::TlsFailed(_) => {
                self.broken = true;
                return self.finish(Err(Failure::io(Stage::Connect, "conversation out of step")));
            }
        };
        let pipelined = tx.pipelined;
        match tx.step {
            TxStep::OwedBanner => {
                if r.code != 220 {
                    return self.owed_failed(Failure::reply(Stage::Greeting, r));
                }
                self.greeting = r.first_line();
                self.wait(tx, TxStep::OwedEhlo, Wait::Command);
            }
            TxStep::OwedEhlo => {
                if !r.is_ok() {
                    return self.owed_failed(Failure {
                        permanent: false,
                        ..Failure::reply(Stage::Ehlo, r)
                    });
                }
                let owed = tx.owed.expect("owed replies");
                let now = self.check_owed(&r, owed);
                tx.assumed = Some(self.caps);
                self.caps = now;
                self.wait(tx, TxStep::Mail, Wait::Command);
            }
            TxStep::Mail if pipelined => {
                tx.mail = Some(r);
                if tx.job.rcpts.is_empty() {
                    self.wait(tx, TxStep::Data, Wait::Data);
                } else {
                    self.wait(tx, TxStep::Rcpt, Wait::Command);
                }
            }
            TxStep::Mail => {
                if !r.is_ok() {
                    return self.tx_done(Err(Failure::reply(tx.mail_stage.clone(), r)));
                }
                tx.mail = Some(r);
                let line = tx.rcpt_lines[0].clone();
                self.send_line(&line);
                self.wait(tx, TxStep::Rcpt, Wait::Command);
            }
            TxStep::Rcpt => {
                let i = tx.rcpts.len();
                tx.rcpts.push((i, r));
                let more = tx.rcpts.len() < tx.job.rcpts.len();
                if pipelined {
                    let w = if more { Wait::Command } else { Wait::Data };
                    let step = if more { TxStep::Rcpt } else { TxStep::Data };
                    return self.wait(tx, step, w);
                }
                if more {
                    let line = tx.rcpt_lines[tx.rcpts.len()].clone();
                    self.send_line(&line);
                    return self.wait(tx, TxStep::Rcpt, Wait::Command);
                }
                if !tx.rcpts.iter().any(|(_, r)| r.is_ok()) {
                    let none = ServerReply {
                        code: 554,
                        lines: vec![],
                    };
                    let o = outcomes(&tx.job, tx.rcpts, none, false);
                    return self.tx_done(Ok(o));
                }
                if tx.bdat {
                    let c = std::mem::take(&mut tx.content);
                    self.push(Action::Send(c));
                    return self.wait(tx, TxStep::Final, Wait::Data);
                }
                self.send_line("DATA");
                self.wait(tx, TxStep::Data, Wait::Data);
            }
            TxStep::Data if pipelined => self.pipelined_data(tx, r),
            TxStep::Data => {
                if r.code != 354 {
                    return self.tx_done(Err(Failure::reply(Stage::Data, r)));
                }
                let c = std::mem::take(&mut tx.content);
                self.push(Action::Send(c));
                self.wait(tx, TxStep::Final, Wait::Data);
            }
            TxStep::Final => {
                let o = outcomes(&tx.job, std::mem::take(&mut tx.rcpts), r, tx.bdat);
                self.tx_done(Ok(o));
            }
            TxStep::EmptyData => {
                let data = tx.data.take().expect("DATA's reply");
                let o = outcomes(&tx.job, std::mem::take(&mut tx.rcpts), data, false);
                self.tx_done(Ok(o));
            }
        }
    }

    /// All the pipelined replies are in (`data_r` answered DATA or BDAT).
    pub(super) fn pipelined_data(&mut self, mut tx: Tx, data_r: ServerReply) {
        let accepted = tx.rcpts.iter().any(|(_, r)| r.is_ok());
        if let Some(a) = tx.assumed
            && a.transaction_bits() & !self.caps.transaction_bits() != 0
            && !(tx.bdat && accepted && data_r.is_ok())
        {
            // The commands used something a stale cache entry (now fixed)
            // promised and the server no longer offers: its answers say
            // nothing about the message. Drop the connection (an open DATA
            // is abandoned, never ended) and try again later.
            self.broken = true;
            return self.finish(Err(Failure {
                stage: Stage::Ehlo,
                text: "the server's capabilities changed since they were cached; will retry".into(),
                reply: None,
                permanent: false,
            }));
        }
        let mail_r = tx.mail.take().expect("MAIL's reply");
        if !mail_r.is_ok() {
            return self.tx_done(Err(Failure::reply(tx.mail_stage.clone(), mail_r)));
        }
        if tx.bdat || data_r.code != 354 {
            let o = outcomes(&tx.job, std::mem::take(&mut tx.rcpts), data_r, tx.bdat);
            return self.tx_done(Ok(o));
        }
        if accepted {
            let c = std::mem::take(&mut tx.content);
            self.push(Action::Send(c));
            return self.wait(tx, TxStep::Final, Wait::Data);
        }
        // The server wants data although no recipient was accepted: end it
        // at once (an empty message) and ignore the answer.
        self.push(Action::Send(b".\r\n".to_vec()));
        tx.data = Some(data_r);
        self.wait(tx, TxStep::EmptyData, Wait::Data);
    }

    pub(super) fn tx_io_failed(&mut self, tx: Tx, e: String) {
        let stage = match tx.step {
            TxStep::OwedBanner => return self.owed_failed(Failure::io(Stage::Greeting, e)),
            TxStep::OwedEhlo => return self.owed_failed(Failure::io(Stage::Ehlo, e)),
            TxStep::Mail => tx.mail_stage.clone(),
            TxStep::Rcpt => {
                let i = tx.rcpts.len().min(tx.job.rcpts.len().saturating_sub(1));
                Stage::Rcpt(tx.job.rcpts[i].address.clone())
            }
            TxStep::Data => Stage::Data,
            TxStep::Final | TxStep::EmptyData => Stage::Content,
        };
        self.broken = true;
        self.finish(Err(Failure::io(stage, e)));
    }

    /// A failure while reading what early pipelining was owed: the cache
    /// entry goes and the conversation is out of step.
    pub(super) fn owed_failed(&mut self, f: Failure) {
        self.push(Action::Cache(CacheOp::Remove));
        self.broken = true;
        self.finish(Err(f));
    }

    /// The transaction ended with the server in step: RSET unless
    /// something was delivered, then report.
    pub(super) fn tx_done(&mut self, result: Result<Vec<RcptOutcome>, Failure>) {
        let delivered =
            matches!(&result, Ok(v) if v.iter().any(|o| matches!(o, RcptOutcome::Delivered(_))));
        if delivered {
            return self.finish(result);
        }
        // Leave the connection clean for the next message.
        self.send_line("RSET");
        self.state = State::Rset(Some(result));
        self.push(Action::Read(Wait::Command));
    }

    pub(super) fn finish(&mut self, result: Result<Vec<RcptOutcome>, Failure>) {
        self.sent += 1;
        self.state = if self.broken {
            State::Closed
        } else {
            State::Ready
        };
        self.push(Action::Sent(result));
    }
}
