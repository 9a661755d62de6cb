//! The login half of opening (SMTP AUTH as a client, RFC 4954): after the
//! last EHLO, PLAIN with an initial response (RFC 4616) when offered, else
//! LOGIN in three steps. Credentials go out only over TLS when the login
//! says so, and only to a server that offers a mechanism we speak; any
//! refusal fails the attempt temporarily (a wrong password is an
//! operator's mistake to fix while the mail waits, as Postfix's
//! `smtp_sasl_auth_soft_bounce`), with the server's reply.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Where a login stands: the reply awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// `AUTH PLAIN <response>` went out; 235 is success.
    Plain,
    /// `AUTH LOGIN` went out; 334 asks for the user name.
    LoginStart,
    /// The user name went out; 334 asks for the password.
    LoginUser,
    /// The password went out; 235 is success.
    LoginPassword,
}

impl Step {
    fn mechanism(self) -> &'static str {
        match self {
            Step::Plain => "PLAIN",
            _ => "LOGIN",
        }
    }
}

impl Conversation {
    /// After the last EHLO: log in if there are credentials, else ready.
    pub(super) fn log_in(&mut self) {
        let Some(login) = self.params.login.clone() else {
            return self.ready();
        };
        if login.needs_tls && !self.tls {
            return self.fail_open(
                Failure::local(
                    format!(
                        "credentials for {} not sent: the connection is not encrypted",
                        login.user
                    ),
                    false,
                ),
                Retry::No,
            );
        }
        if self.caps.auth_plain {
            let response = B64.encode(format!("\0{}\0{}", login.user, login.password));
            self.send_line(&format!("AUTH PLAIN {response}"));
            self.read(State::Auth(Step::Plain));
        } else if self.caps.auth_login {
            self.send_line("AUTH LOGIN");
            self.read(State::Auth(Step::LoginStart));
        } else {
            self.fail_open(
                Failure::local(
                    format!(
                        "credentials for {} are configured, but the server offers no AUTH PLAIN or LOGIN",
                        login.user
                    ),
                    false,
                ),
                Retry::No,
            );
        }
    }

    pub(super) fn auth_input(&mut self, step: Step, input: Input) {
        let stage = Stage::Auth(step.mechanism());
        let r = match input {
            Input::Reply(r) => r,
            Input::IoFailed(e) | Input::WriteFailed(e) => {
                return self.fail_open(Failure::io(stage, e), Retry::No);
            }
            Input::TlsUp | Input::TlsFailed(_) => {
                return self.fail_open(Failure::io(stage, "conversation out of step"), Retry::No);
            }
        };
        let Some(login) = self.params.login.as_ref() else {
            unreachable!("AUTH without credentials")
        };
        let next = match (step, r.code) {
            (Step::Plain | Step::LoginPassword, 235) => {
                self.authenticated = Some(step.mechanism());
                return self.ready();
            }
            (Step::LoginStart, 334) => (B64.encode(&login.user), Step::LoginUser),
            (Step::LoginUser, 334) => (B64.encode(&login.password), Step::LoginPassword),
            _ => {
                // 535 (bad credentials), 454, 534, 538, or a 334 where
                // none belongs (the server ignored PLAIN's initial
                // response): the attempt ends; the mail waits.
                return self.fail_open(
                    Failure {
                        permanent: false,
                        ..Failure::reply(stage, r)
                    },
                    Retry::No,
                );
            }
        };
        self.send_line(&next.0);
        self.read(State::Auth(next.1));
    }
}
