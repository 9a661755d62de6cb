//! `[[rate_limit]]` against real clients: Postfix's smtp-source floods
//! from one address and is held to its message rate (451 4.7.1 at MAIL,
//! the rest accepted) while a client at another address is unaffected;
//! recipients per sender across addresses, messages per SMTP AUTH login
//! across addresses, connections per address (421 at the greeting, an
//! exempt address not counted), and a rule that cannot work refused by
//! `config check` with its line.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mailgate_tests::{Client, Server, doveadm_pw, mailgate_bin, postfix_tool, swaks};
use std::process::Stdio;

const RULES: &str = r#"
[smtp_auth]
passwords = "smtp-users"
plaintext = true

[[rate_limit]]
count = "messages"
limit = 10
window = "1h"

[[rate_limit]]
count = "recipients"
per = "sender"
limit = 25
window = "1h"

[[rate_limit]]
count = "messages"
per = "auth_user"
limit = 2
window = "1h"

[[rate_limit]]
count = "connections"
limit = 5
window = "1h"
exempt = ["127.0.0.1"]
"#;

fn server() -> Server {
    let mut s = Server::configure("", "", RULES);
    s.config = s.config.replacen(
        "mode = \"starttls\"\n",
        "mode = \"starttls\"\nauth = \"offered\"\n",
        1,
    );
    std::fs::write(s.config_path(), &s.config).unwrap();
    let users = format!(
        "alice {}\nbob {}\n",
        doveadm_pw("SHA512-CRYPT", "alice-pw"),
        doveadm_pw("SHA512-CRYPT", "bob-pw")
    );
    s.build_table("smtp-users", &users);
    s.run();
    s
}

/// Lines of the main log that contain every one of `pats`.
fn count(s: &Server, pats: &[&str]) -> usize {
    s.mainlog()
        .lines()
        .filter(|l| pats.iter().all(|p| l.contains(p)))
        .count()
}

fn login(c: &mut Client, user: &str, password: &str) {
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        B64.encode(format!("\0{user}\0{password}"))
    ));
    assert!(r.starts_with("235"), "{r}");
}

#[test]
fn a_flooding_client_is_held_to_its_rate_and_others_are_not() {
    let s = server();
    // Three smtp-source processes from 127.0.0.1, each one persistent
    // session of up to 10 messages. smtp-source gives up at its first
    // refusal (a fatal error), so each stops after its 451 while the
    // others finish the transaction they are in: exactly 10 accepted.
    let floods: Vec<_> = (0..3)
        .map(|_| {
            postfix_tool("smtp-source")
                .args(["-d", "-s", "1", "-m", "10", "-c"])
                .args(["-f", "flood@remote.test", "-t", "a@local.test"])
                .arg(format!("127.0.0.1:{}", s.port))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run smtp-source")
        })
        .collect();
    let said: Vec<String> = floods
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            String::from_utf8_lossy(&out.stderr).into_owned()
        })
        .collect();
    for t in &said {
        assert!(
            t.contains("fatal: sender rejected: 451 4.7.1 Too many messages from this client address (limit 10 per 1h); try again later"),
            "smtp-source: {t}"
        );
    }
    let accepted = s.wait_log("<= flood@remote.test H=", 10);
    assert_eq!(count(&s, &["<= flood@remote.test H="]), 10, "{accepted}");
    let refused = count(
        &s,
        &[
            "[127.0.0.1]",
            "temporarily rejected MAIL <flood@remote.test>",
            "Too many messages from this client address (limit 10 per 1h)",
        ],
    );
    assert_eq!(refused, 3, "{}", s.mainlog());
    // The refusal is what the client saw: 451 4.7.1, not a 5xx.
    assert!(
        !s.mainlog().contains("rejected MAIL <flood@remote.test>: 5"),
        "{}",
        s.mainlog()
    );

    // Another client at another address is not affected.
    let (ok, t) = swaks(&[
        "--server",
        &format!("127.0.0.1:{}", s.port),
        "--local-interface",
        "127.0.0.3",
        "--from",
        "b@remote.test",
        "--to",
        "a@local.test",
    ]);
    assert!(ok, "{t}");
    // Nor is the flooder's next connection in any other way: its MAIL is
    // still refused with the same temporary reply.
    let mut c = Client::connect(s.port);
    c.cmd("EHLO flood.test");
    let r = c.cmd("MAIL FROM:<other@remote.test>");
    assert!(r.starts_with("451 4.7.1 Too many messages"), "{r}");
}

#[test]
fn recipients_per_sender_and_messages_per_login_count_across_addresses() {
    let s = server();
    // 25 recipients for one sender, spread over addresses and sessions.
    let mut accepted = 0;
    for (i, from) in ["127.0.0.5", "127.0.0.6", "127.0.0.7"].iter().enumerate() {
        let mut c = Client::connect_from(from, s.port);
        c.cmd("EHLO sender.test");
        assert!(c.cmd("MAIL FROM:<News@Remote.test>").starts_with("250"));
        for n in 0..10 {
            let r = c.cmd(&format!("RCPT TO:<u{i}-{n}@local.test>"));
            if r.starts_with("250") {
                accepted += 1;
            } else {
                assert!(
                    r.starts_with(
                        "451 4.7.1 Too many recipients from this sender (limit 25 per 1h)"
                    ),
                    "{r}"
                );
            }
        }
        c.cmd("RSET");
        // Another sender from the same address is not held back.
        assert!(c.cmd("MAIL FROM:<other@remote.test>").starts_with("250"));
        assert!(
            c.cmd(&format!("RCPT TO:<x{i}@local.test>"))
                .starts_with("250")
        );
        c.cmd("QUIT");
    }
    assert_eq!(accepted, 25);
    assert_eq!(
        count(
            &s,
            &[
                "temporarily rejected RCPT",
                "F=<News@Remote.test>",
                "sender"
            ]
        ),
        5,
        "{}",
        s.mainlog()
    );

    // Two messages per login, wherever the login comes from.
    let send = |from: &str, user: &str| -> String {
        let mut c = Client::connect_from(from, s.port);
        c.cmd("EHLO submit.test");
        login(&mut c, user, &format!("{user}-pw"));
        let r = c.cmd(&format!("MAIL FROM:<{user}@local.test>"));
        if r.starts_with("250") {
            assert!(c.cmd("RCPT TO:<a@local.test>").starts_with("250"));
            assert!(c.cmd("DATA").starts_with("354"));
            let d = c.cmd("Subject: hi\r\n\r\nhello\r\n.");
            assert!(d.starts_with("250"), "{d}");
        }
        c.cmd("QUIT");
        r
    };
    assert!(send("127.0.0.8", "alice").starts_with("250"));
    assert!(send("127.0.0.9", "alice").starts_with("250"));
    let r = send("127.0.0.10", "alice");
    assert!(
        r.starts_with("451 4.7.1 Too many messages from this login (limit 2 per 1h)"),
        "{r}"
    );
    assert!(send("127.0.0.10", "bob").starts_with("250"));
    assert_eq!(count(&s, &["<= alice@local.test", "A=plain:alice"]), 2);
}

#[test]
fn connections_per_address_get_421_and_exempt_addresses_are_not_counted() {
    let s = server();
    for _ in 0..5 {
        let mut c = Client::connect_from("127.0.0.4", s.port);
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    let mut c = Client::connect_raw_from("127.0.0.4", s.port);
    let greeting = c.reply();
    assert!(
        greeting.starts_with(
            "421 4.7.0 mx.local.test Too many connections from your address (limit 5 per 1h)"
        ),
        "{greeting}"
    );
    assert!(c.closed());
    s.wait_log(
        "rate limit: 5 per 1h connections from client address 127.0.0.4",
        1,
    );
    // Another address connects; the exempt one as often as it likes.
    let mut c = Client::connect_from("127.0.0.11", s.port);
    assert!(c.cmd("QUIT").starts_with("221"));
    for _ in 0..8 {
        let mut c = Client::connect(s.port);
        assert!(c.cmd("QUIT").starts_with("221"));
    }
}

#[test]
fn a_rule_that_cannot_work_is_a_config_error_with_its_line() {
    let s = Server::configure(
        "",
        "",
        "[[rate_limit]]\ncount = \"connections\"\nper = \"sender\"\nlimit = 5\nwindow = \"1h\"\n",
    );
    let out = std::process::Command::new(mailgate_bin())
        .args(["config", "check"])
        .arg(s.config_path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = s
        .config
        .lines()
        .position(|l| l == "[[rate_limit]]")
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("mailgate.toml:{line}:"))
            && err.contains("connections can only be counted per client_ip"),
        "{err}"
    );
}
