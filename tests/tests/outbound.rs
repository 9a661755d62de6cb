//! Outbound delivery against Debian's Exim 4.96 as the receiving server.

use mailgate_tests::{Client, EximServer, Server, free_port};
use std::time::{Duration, Instant};

fn submit(s: &Server, from: &str, to: &[&str], subject: &str) -> String {
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    for t in to {
        let r = c.cmd(&format!("RCPT TO:<{t}>"));
        assert!(r.starts_with("250"), "{t}: {r}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\r\nbody of {subject}\r\n.\r\n").as_bytes());
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 OK id="), "{r}");
    c.cmd("QUIT");
    r.trim().rsplit("id=").next().unwrap().to_string()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn line_with<'a>(log: &'a str, pat: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(pat))
        .unwrap_or_else(|| panic!("no {pat:?} in:\n{log}"))
}

#[test]
fn second_delivery_uses_early_pipelining_and_resumption() {
    let ex = EximServer::start(free_port(), "", "");
    let s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{}\"\nconnection_idle = \"0s\"\n",
            ex.port
        ),
        "",
    );
    let id1 = submit(&s, "a@local.test", &["one@remote.test"], "first");
    let log = s.wait_log(&format!("{id1} => one@remote.test"), 1);
    let first = line_with(&log, &format!("{id1} => "));
    assert!(
        first.contains(" L K ") && !first.contains(" L* "),
        "{first}"
    );
    assert!(
        first.contains("X=TLS1.3:") && !first.contains(":256* "),
        "{first}"
    );
    let id2 = submit(&s, "a@local.test", &["two@remote.test"], "second");
    let log = s.wait_log(&format!("{id2} => two@remote.test"), 1);
    let second = line_with(&log, &format!("{id2} => "));
    assert!(second.contains(" L* "), "no early pipelining: {second}");
    assert!(second.contains(":256* CV=no"), "not resumed: {second}");
    // Exim decides "early pipelining used" by looking for input when it
    // sends its banner, which races with our (early) EHLO on a loaded
    // machine; so send a few more and require that Exim saw it at least once.
    for n in 3..=5 {
        let id = submit(
            &s,
            "a@local.test",
            &["more@remote.test"],
            &format!("more{n}"),
        );
        let log = s.wait_log(&format!("{id} => more@remote.test"), 1);
        let l = line_with(&log, &format!("{id} => "));
        assert!(l.contains(" L* ") && l.contains(":256* CV=no"), "{l}");
    }
    wait_for("exim's <= lines", || {
        ex.lines(" <= a@local.test").len() == 5
    });
    let e = ex.lines(" <= a@local.test");
    assert!(e[0].contains(" L.") && !e[0].contains(" L*"), "{}", e[0]);
    assert!(
        e[1..].iter().all(|l| l.contains(":256*")),
        "exim did not resume: {e:?}"
    );
    assert!(
        e[1..].iter().any(|l| l.contains(" L*")),
        "exim never saw early pipelining: {e:?}"
    );
    assert!(e[1].contains(" K ") || e[1].contains(" K S="), "{}", e[1]);
    s.wait_log(&format!("{id2} Completed"), 1);
}

#[test]
fn several_messages_share_one_connection() {
    let ex = EximServer::start(free_port(), "", "");
    let s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{}\"\nconnection_idle = \"20s\"\n",
            ex.port
        ),
        "",
    );
    for i in 0..3 {
        let id = submit(
            &s,
            "a@local.test",
            &["x@remote.test", "y@remote.test"],
            &format!("reuse{i}"),
        );
        s.wait_log(&format!("{id} Completed"), 1);
    }
    let log = s.mainlog();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(" => x@remote.test"))
            .count(),
        3
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(" -> y@remote.test"))
            .count(),
        3
    );
    wait_for("three messages at exim", || {
        ex.lines(" <= a@local.test").len() == 3
    });
    let ports: std::collections::HashSet<String> = ex
        .lines(" <= a@local.test")
        .iter()
        .map(|l| {
            l.split("[127.0.0.1]:")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ports.len(),
        1,
        "expected one connection: {:?}",
        ex.lines(" <= ")
    );
}

/// Parse the DSN in a maildir file into (field, value) pairs of the
/// delivery-status part.
fn dsn_fields(m: &str) -> Vec<(String, String)> {
    let start = m
        .find("Content-Type: message/delivery-status")
        .expect("delivery-status part");
    let part = &m[start..];
    let end = part[1..].find("\n--").map_or(part.len(), |e| e + 1);
    part[..end]
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn failures_at_each_stage_retry_then_bounce() {
    let ex = EximServer::start(free_port(), "", "");
    let s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{}\"\nretry_min = \"1s\"\nretry_max = \"1s\"\nmax_age = \"4s\"\n",
            ex.port
        ),
        "",
    );
    // RCPT: 550 and 451; MAIL: 550 and 451; DATA: 550 and 451.
    let rcpt = submit(
        &s,
        "sender@local.test",
        &[
            "ok@remote.test",
            "rejectme@remote.test",
            "deferme@remote.test",
        ],
        "rcpt-stage",
    );
    let mail5 = submit(
        &s,
        "mailreject@local.test",
        &["x@remote.test"],
        "mail-stage",
    );
    let mail4 = submit(&s, "maildefer@local.test", &["x@remote.test"], "mail-defer");
    let data5 = submit(&s, "sender@local.test", &["x@remote.test"], "reject-data");
    let data4 = submit(&s, "sender@local.test", &["x@remote.test"], "defer-data");
    for id in [&rcpt, &mail5, &mail4, &data5, &data4] {
        s.wait_log(&format!("{id} Completed"), 1);
    }
    let log = s.mainlog();
    assert!(line_with(&log, &format!("{rcpt} => ok@remote.test")).contains("C=\"250"));
    assert!(
        line_with(&log, &format!("{rcpt} ** rejectme@remote.test"))
            .contains("after RCPT TO:<rejectme@remote.test>: 550 5.1.1")
    );
    // 4xx: retried (at least twice), then failed when max_age passed.
    for (id, pat) in [
        (&rcpt, "deferme@remote.test"),
        (&mail4, "x@remote.test"),
        (&data4, "x@remote.test"),
    ] {
        let defers = log
            .lines()
            .filter(|l| l.contains(&format!("{id} == {pat}")))
            .count();
        assert!(defers >= 2, "{id}: {defers} deferrals\n{log}");
        assert!(line_with(&log, &format!("{id} ** {pat}")).contains("retry timeout exceeded"));
    }
    assert!(
        line_with(&log, &format!("{mail5} ** x@remote.test"))
            .contains("after MAIL FROM:<mailreject@local.test>: 550 5.7.1")
    );
    assert!(
        line_with(&log, &format!("{data5} ** x@remote.test"))
            .contains("after end of data: 550 5.7.0")
    );

    // The senders got DSNs; parse them back.
    s.wait_log("<= <> R=", 6);
    wait_for("bounces in the maildirs", || {
        s.maildir("local.test", "sender").len() >= 3
    });
    let bounces = s.maildir("local.test", "sender");
    let rcpt_bounce = bounces
        .iter()
        .find(|m| m.contains("Final-Recipient: rfc822;rejectme@remote.test"))
        .expect("bounce for rejectme");
    assert!(rcpt_bounce.contains("Content-Type: multipart/report; report-type=delivery-status;"));
    assert!(
        rcpt_bounce.contains("Subject: rcpt-stage"),
        "original message returned"
    );
    let f = dsn_fields(rcpt_bounce);
    let get = |k: &str| {
        f.iter()
            .filter(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("Reporting-MTA"), vec!["dns; mx.local.test"]);
    assert_eq!(get("Action"), vec!["failed"]);
    assert_eq!(get("Status"), vec!["5.1.1"]);
    assert!(
        get("Remote-MTA").contains(&format!("X-ip; [127.0.0.1]:{}", ex.port)),
        "{f:?}"
    );
    assert!(
        get("X-Remote-MTA-smtp-greeting")[0]
            .starts_with("X-str; 220 exim-server.test ESMTP Exim 4.96"),
        "{f:?}"
    );
    assert!(
        get("X-Remote-MTA-helo-response")[0].starts_with("X-str; 250-exim-server.test Hello"),
        "{f:?}"
    );
    assert_eq!(
        get("Diagnostic-Code"),
        vec!["smtp; 550 5.1.1 no such user here"]
    );
    assert!(get("X-Mailgate-Diagnostic")[0].contains("after RCPT TO:<rejectme@remote.test>"));
    // The deferred recipient of the same message timed out: its own DSN.
    let timeout_bounce = bounces
        .iter()
        .find(|m| m.contains("Final-Recipient: rfc822;deferme@remote.test"))
        .expect("bounce for deferme");
    let f = dsn_fields(timeout_bounce);
    assert!(
        f.iter().any(|(k, v)| k == "Status" && v == "5.4.7"),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|(k, v)| k == "X-Mailgate-Diagnostic" && v.contains("retry timeout exceeded"))
    );
    // No bounce to the null sender of a bounce, and nothing left queued.
    let (_, list) = s.cli(&["queue", "list"]);
    assert!(list.trim().is_empty(), "{list}");
}

#[test]
fn notify_never_and_null_sender_get_no_bounce() {
    let ex = EximServer::start(free_port(), "", "");
    let s = Server::start_with("", &format!("smarthost = \"127.0.0.1:{}\"\n", ex.port), "");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<sender@local.test>");
    assert!(
        c.cmd("RCPT TO:<rejectme@remote.test> NOTIFY=NEVER")
            .starts_with("250")
    );
    c.cmd("DATA");
    c.send(b"Subject: never\r\n\r\nx\r\n.\r\n");
    let id = c.reply().trim().rsplit("id=").next().unwrap().to_string();
    c.cmd("MAIL FROM:<>");
    c.cmd("RCPT TO:<rejectme2@remote.test>");
    c.cmd("DATA");
    c.send(b"Subject: null sender\r\n\r\nx\r\n.\r\n");
    let id2 = c.reply().trim().rsplit("id=").next().unwrap().to_string();
    s.wait_log(&format!("{id} Completed"), 1);
    s.wait_log(&format!("{id2} Completed"), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!s.mainlog().contains("<= <> R="), "{}", s.mainlog());
    assert!(s.maildir("local.test", "sender").is_empty());
}

/// Exim (with these main options) as the smarthost of a gateway that keeps
/// no idle connections and retries after a second.
fn exim_behind_gateway(exim_options: &str) -> (EximServer, Server) {
    let port = free_port();
    let ex = EximServer::start(port, "", exim_options);
    let s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{port}\"\nconnection_idle = \"0s\"\nretry_min = \"1s\"\n"
        ),
        "",
    );
    (ex, s)
}

#[test]
fn server_that_stops_advertising_pipeconnect() {
    let (ex, s) = exim_behind_gateway("");
    let id1 = submit(&s, "a@local.test", &["one@remote.test"], "fill-cache");
    s.wait_log(&format!("{id1} Completed"), 1);
    // Exim no longer offers PIPECONNECT. Our early EHLO+STARTTLS is a
    // synchronization error there, caught either at its banner (we get a
    // 554 greeting: drop the cache entry, defer, retry without early
    // pipelining) or at EHLO (the STARTTLS path: we reconnect at once
    // without early pipelining). Both are Exim's own recovery; either way
    // the message goes through without L*.
    let ex = ex.restart_with("", "pipelining_connect_advertise_hosts =");
    let id2 = submit(&s, "a@local.test", &["two@remote.test"], "after-change");
    let log = s.wait_log(&format!("{id2} => two@remote.test"), 1);
    assert!(
        ex.mainlog().contains("synchronization error"),
        "{}",
        ex.mainlog()
    );
    let l2 = line_with(&log, &format!("{id2} => "));
    assert!(!l2.contains(" L* "), "{l2}");
    // Either way the cache entry is gone: the next delivery does not try
    // early pipelining at all.
    let id3 = submit(&s, "a@local.test", &["three@remote.test"], "third");
    let log = s.wait_log(&format!("{id3} => three@remote.test"), 1);
    let l3 = line_with(&log, &format!("{id3} => "));
    assert!(!l3.contains(" L* "), "{l3}");
    assert!(!log.contains(&format!("{id3} == ")), "{log}");
}

#[test]
fn server_that_changes_its_ehlo_answer() {
    let port = free_port();
    let ex = EximServer::start(port, "", "");
    let s = Server::start_with(
        "",
        &format!("smarthost = \"127.0.0.1:{port}\"\nconnection_idle = \"0s\"\n"),
        "",
    );
    let id1 = submit(&s, "a@local.test", &["one@remote.test"], "chunky");
    let log = s.wait_log(&format!("{id1} => "), 1);
    assert!(line_with(&log, &format!("{id1} => ")).contains(" K "));
    // Still PIPECONNECT, but no CHUNKING now: the cache entry is rewritten
    // and the delivery goes on with early pipelining, using DATA.
    let ex = ex.restart_with("", "chunking_advertise_hosts =");
    let id2 = submit(&s, "a@local.test", &["two@remote.test"], "no-chunks");
    let log = s.wait_log(&format!("{id2} => "), 1);
    let d = line_with(&log, &format!("{id2} => "));
    assert!(d.contains(" L* ") && !d.contains(" K "), "{d}");
    assert!(!log.contains(&format!("{id2} == ")), "{log}");
    wait_for("exim got it", || ex.lines(" <= a@local.test").len() == 2);
    // Exim's own L* is racy under load (see above); CHUNKING is not.
    assert!(
        !ex.lines(" <= a@local.test")[1].contains(" K "),
        "{}",
        ex.mainlog()
    );
}

#[test]
fn cleartext_early_pipelining_and_a_stale_chunking_entry() {
    let (ex, s) = exim_behind_gateway("tls_advertise_hosts =");
    let id1 = submit(&s, "a@local.test", &["one@remote.test"], "fill-cache");
    let log = s.wait_log(&format!("{id1} => "), 1);
    let l1 = line_with(&log, &format!("{id1} => "));
    assert!(l1.contains(" L K ") && !l1.contains(" X="), "{l1}");
    // Early pipelining in clear: EHLO, MAIL, RCPT and BDAT in one flight,
    // the banner and EHLO replies read with the transaction's.
    let id2 = submit(&s, "a@local.test", &["two@remote.test"], "early");
    let log = s.wait_log(&format!("{id2} => "), 1);
    let l2 = line_with(&log, &format!("{id2} => "));
    assert!(l2.contains(" L* K "), "{l2}");
    // Exim stops offering CHUNKING: the cached entry promised it and the
    // BDAT already went out with the EHLO. The attempt is dropped (Exim
    // took the content for commands), deferred without a retry hint, and
    // the rewritten entry makes the retry use DATA, still early.
    let ex = ex.restart_with("", "tls_advertise_hosts =\nchunking_advertise_hosts =");
    let id3 = submit(&s, "a@local.test", &["three@remote.test"], "stale");
    let log = s.wait_log(&format!("{id3} => "), 1);
    let deferred = line_with(&log, &format!("{id3} == "));
    assert!(deferred.contains("capabilities changed"), "{deferred}");
    let l3 = line_with(&log, &format!("{id3} => "));
    assert!(l3.contains(" L* ") && !l3.contains(" K "), "{l3}");
    wait_for("exim got it", || ex.lines(" <= a@local.test").len() == 3);
    // Exactly once, and nothing made of the content.
    let got = ex.lines(" <= ");
    assert_eq!(got.len(), 3, "{}", ex.mainlog());
}

#[test]
fn queue_list_shows_errors_and_retry_delivers_now() {
    let port = free_port();
    // No server yet: the delivery is deferred for an hour.
    let s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{port}\"\nretry_min = \"1h\"\nretry_max = \"2h\"\nconnect_timeout = \"2s\"\n"
        ),
        "",
    );
    let id = submit(&s, "a@local.test", &["later@remote.test"], "held");
    s.wait_log(&format!("{id} == later@remote.test"), 1);
    let (ok, list) = s.cli(&["queue", "list"]);
    assert!(ok, "{list}");
    assert!(list.contains("queued    later@remote.test"), "{list}");
    assert!(
        list.contains("Connection refused"),
        "last error shown: {list}"
    );
    assert!(
        list.contains("next attempt in "),
        "next retry shown: {list}"
    );
    let _ex = EximServer::start(port, "", "");
    let (ok, out) = s.cli(&["queue", "retry", &id]);
    assert!(ok, "{out}");
    s.wait_log(&format!("{id} => later@remote.test"), 1);
    let (ok, out) = s.cli(&["queue", "retry"]);
    assert!(!ok && out.contains("--all"), "{out}");
    let (ok, out) = s.cli(&["queue", "flush"]);
    assert!(ok, "{out}");
}

#[test]
fn delay_warning_is_sent_once() {
    let ex = EximServer::start(free_port(), "", "");
    let s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{}\"\nretry_min = \"1s\"\nretry_max = \"1s\"\ndelay_warning = \"2s\"\n",
            ex.port
        ),
        "",
    );
    let id = submit(&s, "waiting@local.test", &["deferme@remote.test"], "slow");
    s.wait_log("<= <> R=", 1);
    std::thread::sleep(Duration::from_secs(3));
    let log = s.mainlog();
    assert_eq!(
        log.lines().filter(|l| l.contains("<= <> R=")).count(),
        1,
        "{log}"
    );
    wait_for("the warning", || {
        !s.maildir("local.test", "waiting").is_empty()
    });
    let m = &s.maildir("local.test", "waiting")[0];
    assert!(m.contains("Subject: Warning: message delayed"), "{m}");
    let f = dsn_fields(m);
    assert!(
        f.iter().any(|(k, v)| k == "Action" && v == "delayed"),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|(k, v)| k == "Final-Recipient" && v == "rfc822;deferme@remote.test")
    );
    assert!(
        m.contains("Content-Type: text/rfc822-headers"),
        "headers only in a warning"
    );
    let (_, list) = s.cli(&["queue", "list"]);
    assert!(
        list.contains(&id) && list.contains("queued    deferme@remote.test"),
        "{list}"
    );
}

#[test]
fn implicit_tls_and_required_tls_per_destination() {
    // Destination B: another mailgate, reached on its implicit-TLS port.
    let b = Server::start("", "");
    let ex = EximServer::start(free_port(), "", "tls_advertise_hosts =");
    let a = Server::start_with(
        "",
        &format!(
            "retry_min = \"1h\"\n[outbound.domains.\"b.test\"]\nsmarthost = \"127.0.0.1:{bp}\"\n[outbound.domains.\"plain.test\"]\nsmarthost = \"127.0.0.1:{ep}\"\n[outbound.tls_policy]\n\"[127.0.0.1]:{bp}\" = {{ level = \"encrypt\", implicit = true }}\n\"plain.test\" = \"encrypt\"\n",
            bp = b.tls_port,
            ep = ex.port
        ),
        "",
    );
    let id = submit(&a, "a@local.test", &["x@b.test"], "implicit");
    let log = a.wait_log(&format!("{id} => x@b.test"), 1);
    assert!(
        line_with(&log, &format!("{id} => ")).contains(" X=TLS1.3:"),
        "{log}"
    );
    let blog = b.wait_log(" <= a@local.test", 1);
    assert!(
        line_with(&blog, " <= a@local.test").contains(" P=esmtps "),
        "{blog}"
    );
    // Exim offers no STARTTLS: "encrypt" defers instead of sending in clear.
    let id2 = submit(&a, "a@local.test", &["y@plain.test"], "must-encrypt");
    let log = a.wait_log(&format!("{id2} == y@plain.test"), 1);
    assert!(
        line_with(&log, &format!("{id2} == ")).contains("TLS is required"),
        "{log}"
    );
    assert!(ex.lines(" <= a@local.test").is_empty());
}

#[test]
fn smtputf8_message_bounces_when_the_server_lacks_it() {
    let ex = EximServer::start(free_port(), "", "smtputf8_advertise_hosts =");
    let s = Server::start_with("", &format!("smarthost = \"127.0.0.1:{}\"\n", ex.port), "");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(
        c.cmd("MAIL FROM:<sender@local.test> SMTPUTF8")
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<jöe@remote.test>").starts_with("250"));
    c.cmd("DATA");
    c.send("Subject: ünïcode\r\n\r\nx\r\n.\r\n".as_bytes());
    let id = c.reply().trim().rsplit("id=").next().unwrap().to_string();
    let log = s.wait_log(&format!("{id} ** "), 1);
    assert!(
        line_with(&log, &format!("{id} ** ")).contains("needs SMTPUTF8"),
        "{log}"
    );
    wait_for("the bounce", || {
        !s.maildir("local.test", "sender").is_empty()
    });
    assert!(ex.lines(" <= ").is_empty());
}

/// kill -9 while outbound deliveries are running (Exim answers each end of
/// data after a second, so the kill lands after the first delivery and
/// before the last, with transactions open): after a restart every message reaches
/// the server at least once, and the queue empties.
#[test]
fn kill_9_during_outbound_delivery_loses_nothing() {
    let ex = EximServer::start(free_port(), "", "");
    let mut s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{}\"\nretry_min = \"1s\"\n",
            ex.port
        ),
        "",
    );
    let n = 20;
    let delivered = |ex: &EximServer| -> std::collections::HashSet<String> {
        ex.lines(" <= a@local.test")
            .iter()
            .filter_map(|l| l.split("id=crash-").nth(1).map(|x| x.to_string()))
            .collect()
    };
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    for i in 0..n {
        c.send(b"MAIL FROM:<a@local.test>\r\nRCPT TO:<x@remote.test>\r\nDATA\r\n");
        for _ in 0..3 {
            c.reply();
        }
        c.send(
            format!("Subject: slow-data crash-{i}\r\nMessage-ID: <crash-{i}@client.test>\r\n\r\nx\r\n.\r\n")
                .as_bytes(),
        );
        assert!(c.reply().starts_with("250 "));
    }
    let start = Instant::now();
    while delivered(&ex).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no delivery reached exim:\n{}\n{}",
            s.mainlog(),
            ex.mainlog()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    let at_kill = delivered(&ex).len();
    assert!(
        at_kill < n,
        "every message was delivered before the kill: nothing was in flight"
    );
    s.restart();
    wait_for("an empty queue", || {
        s.cli(&["queue", "list"]).1.trim().is_empty()
    });
    wait_for("every message at exim", || delivered(&ex).len() == n);
    println!("{at_kill} of {n} delivered at the kill");
}

#[test]
fn queue_only_waits_for_a_flush() {
    let s = Server::start_with("", "queue_only = true\n", "");
    let id = submit(&s, "a@example.test", &["alice@local.test"], "held");
    // Give a delivery every chance to happen: none must.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.maildir("local.test", "alice").is_empty());
    let (ok, q) = s.cli(&["queue", "list"]);
    assert!(
        ok && q.contains(&id) && q.contains("alice@local.test"),
        "{q}"
    );
    let (ok, out) = s.cli(&["queue", "flush"]);
    assert!(ok, "{out}");
    s.wait_log(&format!("{id} => alice@local.test"), 1);
    assert_eq!(s.maildir("local.test", "alice").len(), 1);
}
