//! The SMTP command parser and the MAIL/RCPT parameter parsers: any line
//! must parse to some command or error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailgate::smtp::command::{Command, parse_mail_params, parse_rcpt_params};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let _ = Command::parse(&line);
    for esmtp in [false, true] {
        let _ = parse_mail_params(&line, esmtp);
        let _ = parse_rcpt_params(&line, esmtp);
    }
});
