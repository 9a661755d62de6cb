//! A pool of gateways sharing a real redis-server (`[store] redis`): TLS
//! session tickets that one node issued resume at another (Exim 4.96 as
//! the client, over a TLS connection to Redis with a password), greylisting
//! triples and rate-limit counters seen by every node, and Redis stopped
//! mid-run: `on_outage = "defer"` answers 4xx where the shared state is
//! needed, `on_outage = "local"` goes on with the node's own state, and
//! both recover when Redis is back.

use mailgate_tests::exim_client;
use mailgate_tests::redis::RedisServer;
use mailgate_tests::{Client, Server, plugin_wasm};
use std::time::Duration;

/// A node's config listening on `port` (STARTTLS) and `tls_port` instead
/// of the ports it was given.
fn move_to(s: &mut Server, port: u16, tls_port: u16) {
    s.config = s
        .config
        .replace(
            &format!("127.0.0.1:{}\"", s.port),
            &format!("127.0.0.1:{port}\""),
        )
        .replace(
            &format!("127.0.0.1:{}\"", s.tls_port),
            &format!("127.0.0.1:{tls_port}\""),
        );
    std::fs::write(s.config_path(), &s.config).unwrap();
    s.port = port;
    s.tls_port = tls_port;
}

fn received(s: &Server, n: usize) -> Vec<String> {
    s.wait_log(" <= sender@exim-client.test", n)
        .lines()
        .filter(|l| l.contains(" <= sender@exim-client.test"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_ticket_from_one_node_resumes_at_another() {
    let redis = RedisServer::start(true);
    let store = redis.store_section("");
    let mut a = Server::start("", &store);
    let ex = tempfile::tempdir().unwrap();
    exim_client::setup(ex.path(), a.port);

    exim_client::send(ex.path(), 1);
    let first = &received(&a, 1)[0];
    assert!(!first.contains(":256* "), "nothing to resume yet: {first}");
    assert!(
        a.mainlog()
            .contains("store: shared state in redis at 127.0.0.1:"),
        "{}",
        a.mainlog()
    );
    // The key node A sealed with is in Redis, under the pool's prefix.
    let keys = redis.cli(&["--raw", "KEYS", "pool:tls:ticket-key:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");

    // Node A goes away; node B, with its own data directory and spool,
    // takes its address. Exim resumes the session A gave it.
    let (port, tls_port) = (a.port, a.tls_port);
    assert!(a.sigterm(Duration::from_secs(10)));
    let mut b = Server::configure("", "", &store);
    move_to(&mut b, port, tls_port);
    b.run();
    exim_client::send(ex.path(), 2);
    let at_b = &received(&b, 1)[0];
    assert!(at_b.contains(" X=TLS1.3:"), "{at_b}");
    assert!(
        at_b.contains(":256* "),
        "node B did not resume A's session: {at_b}"
    );
    let d = exim_client::deliveries(ex.path());
    assert!(d[1].contains("* CV="), "Exim did not resume at B: {d:?}");

    b.wait_log(" => alice@local.test", 1);

    // A node outside the pool (its own ticket keys) cannot resume it.
    assert!(b.sigterm(Duration::from_secs(10)));
    let mut c = Server::configure("", "", "");
    move_to(&mut c, port, tls_port);
    c.run();
    exim_client::send(ex.path(), 3);
    let at_c = &received(&c, 1)[0];
    assert!(!at_c.contains(":256* "), "resumed outside the pool: {at_c}");
    c.wait_log(" => alice@local.test", 1);
    assert_eq!(c.maildir("local.test", "alice").len(), 1);
    assert_eq!(b.maildir("local.test", "alice").len(), 1);
}

const DELAY: u64 = 3;

/// A node with the greylisting plugin and a rate limit on messages per
/// sender, both in the shared store under `policy`; 127.0.0.2 is exempt
/// from the rate limit. The plugin lets recipients through when kv fails:
/// only the host's policy stands between an outage and an unchecked
/// recipient.
fn node(redis: &RedisServer, policy: &str) -> Server {
    let extra = format!(
        "{store}\n[[rate_limit]]\ncount = \"messages\"\nper = \"sender\"\nlimit = 2\nwindow = \"1h\"\nexempt = [\"127.0.0.2\"]\n\n[[plugin]]\nname = \"greylist\"\npath = \"{wasm}\"\ncapabilities = [\"kv\", \"clock\", \"log\"]\n[plugin.config]\ndelay = {DELAY}\nretry_window = 600\non_kv_error = \"accept\"\n",
        store = redis.store_section(&format!(
            "on_outage = \"{policy}\"\ntimeout_ms = 300\nretry_interval = \"1s\""
        )),
        wasm = plugin_wasm("greylist.wasm").display(),
    );
    Server::start("", &extra)
}

/// MAIL and RCPT from `source`; the two replies.
fn attempt(s: &Server, source: &str, from: &str, to: &str) -> (String, String, Client) {
    let mut c = Client::connect_from(source, s.port);
    c.cmd("EHLO client.test");
    let mail = c.cmd(&format!("MAIL FROM:<{from}>"));
    let rcpt = if mail.starts_with("250") {
        c.cmd(&format!("RCPT TO:<{to}>"))
    } else {
        String::new()
    };
    (mail, rcpt, c)
}

#[test]
fn greylisting_and_limits_are_shared_and_an_outage_follows_the_policy() {
    let mut redis = RedisServer::start(false);
    let a = node(&redis, "defer");
    let b = node(&redis, "local");

    // A first attempt at A is greylisted; the triple is in Redis.
    let (m, r, _c) = attempt(&a, "127.0.0.2", "s@remote.example", "user@local.test");
    assert!(m.starts_with("250"), "{m}");
    assert!(r.starts_with("451 4.7.1 Greylisted"), "{r}");
    let keys = redis.cli(&["--raw", "KEYS", "pool:kv:greylist:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(
        keys.contains("127.0.0.0/24 s@remote.example user@local.test"),
        "{keys}"
    );

    // B never saw the client, yet after the delay the retry passes there.
    std::thread::sleep(Duration::from_millis(DELAY * 1000 + 300));
    let (_, r, mut c) = attempt(&b, "127.0.0.2", "s@remote.example", "user@local.test");
    assert!(r.starts_with("250"), "B did not know A's triple: {r}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: greylisted once\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 OK id="));
    let m = b.delivered("greylisted once");
    assert!(m.contains("X-Greylist: delayed "), "{m}");
    // And at A too, now that it has passed.
    let (_, r, _c) = attempt(&a, "127.0.0.2", "s@remote.example", "user@local.test");
    assert!(r.starts_with("250"), "{r}");

    // The rate limit counts at both: two messages at A, the third at B
    // is over the limit.
    for _ in 0..2 {
        let (m, _, _c) = attempt(&a, "127.0.0.1", "flood@remote.example", "user@local.test");
        assert!(m.starts_with("250"), "{m}");
    }
    let (m, _, _c) = attempt(&b, "127.0.0.1", "flood@remote.example", "user@local.test");
    assert!(
        m.starts_with("451 4.7.1"),
        "B did not count A's messages: {m}"
    );

    // Redis goes away mid-run.
    redis.stop();

    // A (defer): the limit cannot be checked, so MAIL defers; an exempt
    // client passes MAIL, and the greylisting hook that needs kv defers
    // although the plugin would let the recipient through.
    let (m, _, _c) = attempt(&a, "127.0.0.1", "other@remote.example", "user@local.test");
    assert!(m.starts_with("451 4.3.0"), "{m}");
    let (m, r, _c) = attempt(&a, "127.0.0.2", "new@remote.example", "user@local.test");
    assert!(m.starts_with("250"), "{m}");
    assert!(r.starts_with("451 4.3.0"), "{r}");
    let log = a.wait_log("store: redis at 127.0.0.1:", 1);
    assert!(
        log.lines()
            .any(|l| l.contains("store: redis at") && l.contains("checks that need it defer")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("greylist") && l.contains("store.on_outage = defer")),
        "{log}"
    );
    // The passed triple is not waved through either.
    let (_, r, _c) = attempt(&a, "127.0.0.2", "s@remote.example", "user@local.test");
    assert!(r.starts_with("451 4.3.0"), "{r}");

    // B (local): its own counters and its own (empty) triples.
    let (m, r, _c) = attempt(&b, "127.0.0.1", "other@remote.example", "user@local.test");
    assert!(m.starts_with("250"), "{m}");
    assert!(r.starts_with("451 4.7.1 Greylisted"), "{r}");
    let log = b.wait_log("each node uses its own state", 1);
    assert!(log.contains("store: redis at 127.0.0.1:"), "{log}");
    // The operator sees it in `status` and in the metrics.
    let (ok, st) = a.cli(&["status"]);
    assert!(ok, "{st}");
    assert!(
        st.contains(&format!(
            "store: redis at 127.0.0.1:{}, UNAVAILABLE (on_outage defer)",
            redis.port
        )),
        "{st}"
    );

    // Redis is back (empty: it saved nothing): A recovers once its retry
    // interval has passed and the connection is made again.
    redis.restart();
    let start = std::time::Instant::now();
    loop {
        let (m, r, _c) = attempt(&a, "127.0.0.2", "back@remote.example", "user@local.test");
        assert!(m.starts_with("250"), "{m}");
        if !r.starts_with("451 4.3.0") {
            assert!(r.starts_with("451 4.7.1 Greylisted"), "{r}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "A did not recover: {r}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    a.wait_log("available again", 1);
    let (_, st) = a.cli(&["status"]);
    assert!(st.contains(", available (on_outage defer)"), "{st}");
    let keys = redis.cli(&["--raw", "KEYS", "pool:kv:greylist:*"]);
    assert!(keys.contains("back@remote.example"), "{keys}");
    // Nothing accepted before the outage was lost.
    assert_eq!(b.maildir("local.test", "user").len(), 1);
}
