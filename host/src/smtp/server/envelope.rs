//! The envelope commands: MAIL FROM and RCPT TO, with their parameters
//! and limits.

use super::*;

impl Session {
    pub(super) fn mail(&mut self, arg: &str) -> Option<Step> {
        if self.helo.is_none() {
            self.error(Reply::new(503, "5.5.1", "EHLO or HELO first"));
            return None;
        }
        if self.tx.is_some() {
            self.error(Reply::new(503, "5.5.1", "Nested MAIL command"));
            return None;
        }
        if self.auth.is_none() && self.cfg.auth.as_ref().is_some_and(|a| a.required) {
            // RFC 4954 §6: a submission listener serves only its users.
            self.error(Reply::new(530, "5.7.0", "Authentication required"));
            return None;
        }
        if self.messages >= self.cfg.max_messages {
            self.reply(Reply::new(
                421,
                "4.7.0",
                format!("{} Too many messages in one connection", self.cfg.hostname),
            ));
            self.phase = Phase::Closed(CloseReason::LimitReached);
            return None;
        }
        let (path, params) = match address::split_path(arg) {
            Ok(x) => x,
            Err(_) => {
                self.error(Reply::new(501, "5.1.7", "Bad sender address syntax"));
                return None;
            }
        };
        let params = match command::parse_mail_params(params, self.esmtp()) {
            Ok(p) => p,
            Err(r) => {
                self.error(r);
                return None;
            }
        };
        if params.requiretls && !(self.cfg.requiretls && self.tls) {
            // RFC 8689 §4.1: offered only over TLS.
            self.error(Reply::new(
                530,
                "5.7.10",
                "REQUIRETLS needs a TLS session (use STARTTLS first)",
            ));
            return None;
        }
        if let Some(size) = params.size
            && self.cfg.max_message_size != 0
            && size > self.cfg.max_message_size
        {
            self.reply(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
            return None;
        }
        let sender = match address::parse_path(path, params.smtputf8) {
            Ok(Path::Null) => None,
            Ok(Path::Mailbox(a)) => Some(a),
            Ok(Path::Postmaster) | Err(AddressError::Syntax | AddressError::TooLong) => {
                self.error(Reply::new(501, "5.1.7", "Bad sender address syntax"));
                return None;
            }
            Err(AddressError::NeedsUtf8) => {
                self.error(Reply::new(
                    553,
                    "5.6.7",
                    "Non-ASCII sender address requires SMTPUTF8",
                ));
                return None;
            }
        };
        self.pending = Some(Pending::Mail {
            sender: sender.clone(),
            params: params.clone(),
        });
        Some(Step::Check(Check::Mail { sender, params }))
    }

    pub(super) fn rcpt(&mut self, arg: &str) -> Option<Step> {
        let Some(tx) = &self.tx else {
            self.error(Reply::new(503, "5.5.1", "MAIL first"));
            return None;
        };
        let utf8 = tx.params.smtputf8;
        if tx.rcpts.len() >= self.cfg.max_recipients {
            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            return None;
        }
        let sender = tx.sender.clone();
        let (path, params) = match address::split_path(arg) {
            Ok(x) => x,
            Err(_) => {
                self.error(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
                return None;
            }
        };
        let params = match command::parse_rcpt_params(params, self.esmtp()) {
            Ok(p) => p,
            Err(r) => {
                self.error(r);
                return None;
            }
        };
        let rcpt = match address::parse_path(path, utf8) {
            Ok(Path::Mailbox(a)) => a,
            Ok(Path::Postmaster) => Address::new("postmaster", &self.cfg.postmaster_domain),
            Ok(Path::Null) | Err(AddressError::Syntax | AddressError::TooLong) => {
                self.error(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
                return None;
            }
            Err(AddressError::NeedsUtf8) => {
                self.error(Reply::new(
                    553,
                    "5.6.7",
                    "Non-ASCII recipient address requires SMTPUTF8",
                ));
                return None;
            }
        };
        self.pending = Some(Pending::Rcpt(Recipient {
            address: rcpt.clone(),
            params: params.clone(),
        }));
        Some(Step::Check(Check::Rcpt {
            rcpt,
            params,
            sender,
        }))
    }
}
