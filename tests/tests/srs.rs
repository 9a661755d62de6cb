//! The SRS plugin end to end, against the reference implementations:
//! Perl's Mail::SRS (Debian's libmail-srs-perl) and Exim 4.96's native
//! `${srs_encode}` / `inbound_srs`. mailgate forwards through an alias to
//! an Exim server, whose log shows the envelope sender it got; addresses
//! made by the other implementations are sent back to mailgate as bounces.

use mailgate_tests::{Client, EximServer, Server, free_port, plugin_wasm, require};
use std::process::Command;
use std::time::{Duration, Instant};

const SECRET: &str = "s3cret";

fn gateway(ex: &EximServer, scheme: &str) -> Server {
    Server::start_with(
        "",
        &format!("smarthost = \"127.0.0.1:{}\"\n", ex.port),
        &format!(
            "[local]\nusers = [\"alice\"]\n\n[aliases]\nfwd = [\"carol@remote.test\"]\nboth = [\"alice\", \"dave@remote.test\"]\n\n[[plugin]]\nname = \"srs\"\npath = \"{}\"\ncapabilities = [\"log\", \"clock\"]\non_failure = \"tempfail\"\n[plugin.config]\ndomain = \"local.test\"\nsecrets = [\"{SECRET}\", \"older\"]\nscheme = \"{scheme}\"\n",
            plugin_wasm("srs.wasm").display()
        ),
    )
}

fn send(s: &Server, from: &str, to: &str) -> String {
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    if !r.starts_with("250") {
        c.cmd("QUIT");
        return r;
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: srs\r\n\r\nforwarded\r\n.\r\n");
    let r = c.reply();
    c.cmd("QUIT");
    r
}

/// The envelope sender of the first message in Exim's log whose `<=`
/// line contains `pat` (waiting for it).
fn exim_sender_where(ex: &EximServer, pat: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(l) = ex.lines(" <= ").into_iter().find(|l| l.contains(pat)) {
            let after = l.split(" <= ").nth(1).unwrap();
            return after.split(' ').next().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Exim got nothing matching {pat:?}:\n{}",
            ex.mainlog()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The envelope sender of the message Exim received for `rcpt`.
fn exim_sender(ex: &EximServer, rcpt: &str) -> String {
    exim_sender_where(ex, &format!(" for {rcpt}"))
}

fn perl(script: &str, args: &[&str]) -> String {
    let out = Command::new(require("perl"))
        .arg("-e")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "perl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn perl_reverse(addr: &str) -> String {
    perl(
        "use Mail::SRS; my $s = Mail::SRS->new(Secret => $ARGV[1]); print $s->reverse($ARGV[0]);",
        &[addr, SECRET],
    )
}

/// Mail::SRS forward, `days_ago` days in the past.
fn perl_forward(sender: &str, days_ago: u64) -> String {
    perl(
        "BEGIN { my $d = $ARGV[3]; *CORE::GLOBAL::time = sub { CORE::time() - $d * 86400 } } use Mail::SRS; my $s = Mail::SRS->new(Secret => $ARGV[2]); print $s->forward($ARGV[0], $ARGV[1]);",
        &[sender, "local.test", SECRET, &days_ago.to_string()],
    )
}

fn exim_expand(ex: &EximServer, expr: &str) -> String {
    let conf = ex.dir.path().join("be.conf");
    std::fs::write(
        &conf,
        format!("spool_directory = {}/spool\n", ex.dir.path().display()),
    )
    .unwrap();
    let out = Command::new(require("exim4"))
        .arg("-C")
        .arg(&conf)
        .arg("-be")
        .arg(expr)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn mail_srs_forward_is_verified_by_perl() {
    let ex = EximServer::start(free_port(), "", "");
    let s = gateway(&ex, "mail-srs");
    assert!(send(&s, "Alice@Orig.test", "fwd@local.test").starts_with("250"));
    let srs0 = exim_sender(&ex, "carol@remote.test");
    assert!(
        srs0.starts_with("SRS0=") && srs0.ends_with("=Orig.test=Alice@local.test"),
        "{srs0}"
    );
    assert_eq!(perl_reverse(&srs0), "Alice@Orig.test");

    // An SRS0 sender from another forwarder becomes SRS1 (Mail::SRS::Guarded).
    let first = perl_forward("bob@orig.test", 0).replace("@local.test", "@first.test");
    assert!(send(&s, &first, "fwd@local.test").starts_with("250"));
    let srs1 = exim_sender_where(&ex, " <= SRS1=");
    assert!(
        srs1.ends_with("@local.test") && srs1.contains("=first.test=="),
        "{srs1}"
    );
    assert_eq!(perl_reverse(&srs1), first);

    // Relayed mail (no alias) and the null sender keep their senders; the
    // local half of an alias is delivered with the original sender.
    assert!(send(&s, "eve@orig.test", "direct@remote.test").starts_with("250"));
    assert_eq!(exim_sender(&ex, "direct@remote.test"), "eve@orig.test");
    assert!(send(&s, "", "both@local.test").starts_with("250"));
    assert_eq!(exim_sender(&ex, "dave@remote.test"), "<>");
    s.wait_log(" => alice@local.test", 1);
}

#[test]
fn mail_srs_bounces_made_by_perl_come_home() {
    let ex = EximServer::start(free_port(), "", "");
    let s = gateway(&ex, "mail-srs");
    let addr = perl_forward("dave@orig.test", 0);
    assert!(addr.starts_with("SRS0="), "{addr}");
    let r = send(&s, "", &addr);
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(exim_sender(&ex, "dave@orig.test"), "<>");
    // Case smashed in transit: still accepted, as Mail::SRS does.
    let r = send(&s, "", &addr.to_lowercase());
    assert!(r.starts_with("250"), "{r}");

    // A tampered hash and an expired address are refused, saying which.
    let local = addr.split('@').next().unwrap();
    let mut parts: Vec<String> = local.split('=').map(str::to_string).collect();
    parts[1] = if parts[1] == "AAAA" {
        "BBBB".into()
    } else {
        "AAAA".into()
    };
    let bad = format!("{}@local.test", parts.join("="));
    let r = send(&s, "", &bad);
    assert!(
        r.starts_with("550 5.1.1 Invalid SRS recipient: the SRS hash does not match"),
        "{r}"
    );
    let old = perl_forward("dave@orig.test", 30);
    let r = send(&s, "", &old);
    assert!(
        r.starts_with("550 5.1.1 Invalid SRS recipient: the SRS address has expired"),
        "{r}"
    );
    // Unknown users that are not SRS addresses are still unknown.
    let r = send(&s, "", "nobody@local.test");
    assert!(r.starts_with("550 5.1.1 Unknown user"), "{r}");
    let log = s.mainlog();
    assert!(log.contains("rejected RCPT <SRS0="), "{log}");
}

#[test]
fn exim_native_srs_both_ways() {
    let ex = EximServer::start(free_port(), "", "");
    let s = gateway(&ex, "exim");
    assert!(send(&s, "Frank@Orig.test", "fwd@local.test").starts_with("250"));
    let srs0 = exim_sender(&ex, "carol@remote.test");
    assert!(
        srs0.starts_with("SRS0=") && srs0.ends_with("=Orig.test=Frank@local.test"),
        "{srs0}"
    );
    let local = srs0.split('@').next().unwrap();
    assert_eq!(
        exim_expand(
            &ex,
            &format!("${{if inbound_srs {{{local}}}{{{SECRET}}}{{$srs_recipient}}{{fail}}}}")
        ),
        "frank@orig.test"
    );
    let made = exim_expand(
        &ex,
        &format!("${{srs_encode {{{SECRET}}}{{gina@orig.test}}{{local.test}}}}"),
    );
    assert!(
        made.starts_with("SRS0=") && made.ends_with("@local.test"),
        "{made}"
    );
    let r = send(&s, "", &made);
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(exim_sender(&ex, "gina@orig.test"), "<>");
    let wrong = exim_expand(&ex, "${srs_encode {other}{gina@orig.test}{local.test}}");
    let r = send(&s, "", &wrong);
    assert!(r.starts_with("550 5.1.1 Invalid SRS recipient"), "{r}");
}
