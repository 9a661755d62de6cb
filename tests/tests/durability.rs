//! Durability: every message that got a 250 survives kill -9; queued
//! messages survive restarts and can be removed.

use mailgate_tests::{Client, Server};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients send continuously; the server is killed with SIGKILL three times
/// at moments when messages are in flight. Every acknowledged message must
/// then be delivered (local mailbox) or still queued.
#[test]
fn kill_9_loses_no_acknowledged_message() {
    let mut s = Server::start("", "");
    // (Subject token, queue id) of every message that got a 250.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..4 {
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            let port = s.port;
            threads.push(std::thread::spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut c = Client::connect(port);
                    c.cmd("EHLO crash.test");
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let token = format!("r{round}t{t}m{i}");
                        i += 1;
                        c.send(
                            b"MAIL FROM:<a@example.test>\r\nRCPT TO:<alice@local.test>\r\nDATA\r\n",
                        );
                        for _ in 0..3 {
                            c.reply();
                        }
                        c.send(
                            format!("Subject: {token}\r\n\r\nbody of {token}\r\n.\r\n").as_bytes(),
                        );
                        let r = c.reply();
                        if r.starts_with("250 ") {
                            let id = r.trim().rsplit("id=").next().unwrap().to_string();
                            assert_eq!(id.len(), 16, "{r}");
                            acked.lock().unwrap().push((token, id));
                        } else {
                            break;
                        }
                    }
                }));
                drop(result);
            }));
        }
        std::thread::sleep(Duration::from_millis(400 + 150 * round as u64));
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        s.restart();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 30,
        "too few messages got through: {}",
        acked.len()
    );
    // Wait for the queue to deliver everything, then compare.
    let start = Instant::now();
    let (lost, dups) = loop {
        let mut seen: Vec<String> = Vec::new();
        for m in s.maildir("local.test", "alice") {
            if let Some(subj) = m.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                seen.push(subj.to_string());
            }
        }
        let (_, queue) = s.cli(&["queue", "list"]);
        let set: HashSet<&String> = seen.iter().collect();
        let undelivered: Vec<&(String, String)> =
            acked.iter().filter(|(t, _)| !set.contains(t)).collect();
        let dups = seen.len() - set.len();
        if undelivered.is_empty() || start.elapsed() > Duration::from_secs(20) {
            // Not delivered yet is not lost while the queue still holds it.
            let lost: Vec<(String, String)> = undelivered
                .into_iter()
                .filter(|(_, id)| !queue.contains(id.as_str()))
                .cloned()
                .collect();
            break (lost, dups);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "acknowledged {} messages over 3 kills: lost {}, duplicated {dups}",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost after kill -9: {lost:?}");
}

#[test]
fn queued_remote_mail_survives_restart_and_can_be_removed() {
    let mut s = Server::start("", "");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    assert!(c.cmd("RCPT TO:<bob@remote.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: for later\r\n\r\nqueued\r\n.\r\n");
    let r = c.reply();
    let id = r.trim().rsplit("id=").next().unwrap().to_string();
    assert_eq!(id.len(), 16, "{r}");
    s.restart();
    let (ok, list) = s.cli(&["queue", "list"]);
    assert!(ok, "{list}");
    assert!(
        list.contains(&id) && list.contains("queued    bob@remote.test"),
        "{list}"
    );
    assert!(s.mainlog().contains("1 message(s) in the spool"));
    let (ok, show) = s.cli(&["queue", "show", &id]);
    assert!(ok && show.contains("Subject: for later"), "{show}");
    let (ok, out) = s.cli(&["queue", "remove", &id]);
    assert!(ok, "{out}");
    let (_, list) = s.cli(&["queue", "list"]);
    assert!(!list.contains(&id), "{list}");
    let (ok, out) = s.cli(&["queue", "show", &id]);
    assert!(!ok && out.contains("no message"), "{out}");
    // Offline: with the server stopped the CLI reads the spool itself.
    s.kill9();
    let (ok, list) = s.cli(&["queue", "list"]);
    assert!(ok, "{list}");
    assert!(!list.contains(&id));
    assert!(
        s.mainlog()
            .contains(&format!("{id} removed by the administrator"))
    );
}
