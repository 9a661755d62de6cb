//! Exim 4.96 (Debian's exim4-daemon-heavy, private config) as the sending
//! client with `hosts_pipe_connect = *` and `tls_resumption_hosts = *`.
//! Its second delivery must use early pipelining and TLS resumption, seen
//! in both Exim's log and ours; resumption must survive a mailgate restart
//! because the ticket keys are kept in the cache database.

use mailgate_tests::Server;
use mailgate_tests::exim_client::{deliveries as exim_deliveries, send as send_with_exim, setup};

#[test]
fn exim_second_delivery_uses_early_pipelining_and_resumption() {
    let mut s = Server::start("", "");
    let ex = tempfile::tempdir().unwrap();
    setup(ex.path(), s.port);

    // First delivery: fills Exim's EHLO cache and TLS session store.
    send_with_exim(ex.path(), 1);
    let log = s.wait_log(" <= sender@exim-client.test", 1);
    let first: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" <= sender@exim"))
        .collect();
    assert!(first[0].contains(" P=esmtps L. X=TLS1.3:"), "{}", first[0]);
    assert!(
        !first[0].contains(":256* "),
        "first delivery cannot be resumed: {}",
        first[0]
    );
    let d = exim_deliveries(ex.path());
    assert!(!d[0].contains(" L*"), "{}", d[0]);

    // Later deliveries: early pipelining and resumption, both sides. Our
    // server (like Exim) notices early input by looking for it when the
    // banner is due, which can race on a loaded machine; so make several
    // deliveries and require it at least once. Resumption is checked on all.
    for n in 2..=4 {
        send_with_exim(ex.path(), n);
    }
    let log = s.wait_log(" <= sender@exim-client.test", 4);
    let later: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" <= sender@exim"))
        .skip(1)
        .collect();
    assert!(
        later.iter().all(|l| l.contains(":256* ")),
        "mailgate did not resume: {later:?}"
    );
    assert!(
        later.iter().any(|l| l.contains(" L* ")),
        "mailgate never saw early pipelining: {later:?}"
    );
    assert!(later.iter().all(|l| l.contains(" K S=")), "{later:?}");
    let d = exim_deliveries(ex.path());
    assert!(
        d[1..].iter().all(|l| l.contains(" L* ")),
        "Exim did not use early pipelining: {d:?}"
    );
    assert!(
        d[1..].iter().all(|l| l.contains("* CV=")),
        "Exim did not resume: {d:?}"
    );

    // After a restart the ticket keys come back from redb: still resumed.
    s.restart();
    send_with_exim(ex.path(), 5);
    let log = s.wait_log(" <= sender@exim-client.test", 5);
    let fifth = log
        .lines()
        .filter(|l| l.contains(" <= sender@exim"))
        .nth(4)
        .unwrap()
        .to_string();
    assert!(
        fifth.contains(":256* "),
        "no resumption after restart: {fifth}"
    );
    let d = exim_deliveries(ex.path());
    assert!(d[4].contains(" L* ") && d[4].contains("* CV="), "{}", d[4]);

    s.wait_log(" => alice@local.test", 5);
    let m = s.maildir("local.test", "alice");
    assert_eq!(m.len(), 5);
    assert!(m.iter().any(|m| m.contains("Subject: exim delivery 5")));
}
