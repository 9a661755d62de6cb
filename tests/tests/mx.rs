//! Next-hop lookup through a local nsd zone: MX preference, failover to the
//! second MX, null MX (RFC 7505), no MX (implicit MX), NXDOMAIN.

use mailgate_tests::{Client, EximServer, Nsd, Server, free_port};

const ZONE: &str = "$ORIGIN mgtest.
$TTL 300
@ IN SOA ns.mgtest. admin.mgtest. 1 3600 600 86400 300
@ IN NS ns.mgtest.
ns IN A 127.0.0.1
pref IN MX 20 mx2
pref IN MX 10 mx3
failover IN MX 10 mx1
failover IN MX 20 mx2
nullmx IN MX 0 .
nomx IN A 127.0.0.22
mx1 IN A 127.0.0.21
mx2 IN A 127.0.0.22
mx3 IN A 127.0.0.23
";

#[test]
fn mx_preference_failover_null_mx_no_mx() {
    let nsd = Nsd::start("mgtest", ZONE);
    let port = free_port();
    // Exim answers on mx2 and mx3; nothing listens on mx1 (127.0.0.21).
    let _ex = EximServer::start(port, "; 127.0.0.22 ; 127.0.0.23", "");
    let s = Server::start_with(
        "",
        &format!(
            "nameservers = [\"127.0.0.1:{}\"]\nport = {port}\n",
            nsd.port
        ),
        "",
    );
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    let mut ids = Vec::new();
    for rcpt in [
        "a@pref.mgtest",
        "b@failover.mgtest",
        "c@nullmx.mgtest",
        "d@nomx.mgtest",
        "e@nosuch.mgtest",
    ] {
        assert!(c.cmd("MAIL FROM:<sender@local.test>").starts_with("250"));
        assert!(c.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(format!("Subject: to {rcpt}\r\n\r\nx\r\n.\r\n").as_bytes());
        let r = c.reply();
        ids.push(r.trim().rsplit("id=").next().unwrap().to_string());
    }
    for id in &ids {
        s.wait_log(&format!("{id} Completed"), 1);
    }
    let log = s.mainlog();
    let line = |id: &str, pat: &str| {
        log.lines()
            .find(|l| l.contains(id) && l.contains(pat))
            .unwrap_or_else(|| panic!("no {id} {pat}:\n{log}"))
            .to_string()
    };
    let pref = line(&ids[0], " => a@pref.mgtest");
    assert!(
        pref.contains(&format!(
            "R=dnslookup T=remote_smtp H=mx3.mgtest [127.0.0.23]:{port}"
        )),
        "{pref}"
    );
    let fo = line(&ids[1], " => b@failover.mgtest");
    assert!(
        fo.contains(&format!("H=mx2.mgtest [127.0.0.22]:{port}")),
        "{fo}"
    );
    assert!(
        log.contains(&format!("{} H=mx1.mgtest [127.0.0.21]:{port}: ", ids[1])),
        "mx1 was not tried first:\n{log}"
    );
    let null = line(&ids[2], " ** c@nullmx.mgtest");
    assert!(null.contains("null MX"), "{null}");
    let nomx = line(&ids[3], " => d@nomx.mgtest");
    assert!(
        nomx.contains(&format!("H=nomx.mgtest [127.0.0.22]:{port}")),
        "{nomx}"
    );
    let nx = line(&ids[4], " ** e@nosuch.mgtest");
    assert!(nx.contains("does not exist"), "{nx}");
    // Two bounces went back to the sender.
    s.wait_log("<= <> R=", 2);
}
