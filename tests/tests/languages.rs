//! The example plugins in C, Python (componentize-py) and JavaScript
//! (componentize-js), built by scripts/test.sh, each loaded by the real
//! gateway and driven over SMTP: a listed recipient is refused, the
//! accepted message carries the plugin's header. Each declares itself
//! reusable in its manifest (the 0.1 fixture, which cannot, runs with
//! `reuse = true`): the second transaction is served by the instance the
//! first gave back, and answers the same. They are
//! built on contract 0.2 from a world of their own: `plugin list` shows
//! the contract and only the hooks each exports. The C example as it was
//! on contract 0.1 is kept as a fixture and still behaves the same.

use mailgate_tests::{Client, Server};
use std::path::PathBuf;

fn example(lang: &str, file: &str) -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target")
        .join(lang)
        .join(file);
    assert!(
        p.exists(),
        "{} missing: scripts/test.sh builds the {lang} example",
        p.display()
    );
    p
}

fn run_example(name: &str, wasm: PathBuf, header: &str, refusal: &str) {
    run_example_on(name, wasm, header, refusal, "0.2.0");
}

/// `contract`: the contract version the component was built on (also its
/// version).
fn run_example_on(name: &str, wasm: PathBuf, header: &str, refusal: &str, contract: &str) {
    // A 0.2 manifest says whether instances may be reused.
    let declares = contract != "0.1.0";
    let s = Server::start(
        "",
        &format!(
            "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\ntimeout_ms = 5000\nmemory = \"128M\"\n{}[plugin.config]\nreject = [\"bob@local.test\"]\n",
            wasm.display(),
            if declares { "" } else { "reuse = true\n" }
        ),
    );
    for n in 1..=2 {
        let mut c = Client::connect(s.port);
        c.cmd("EHLO client.test");
        assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
        let r = c.cmd("RCPT TO:<bob@local.test>");
        assert!(r.starts_with(&format!("550 5.7.1 {refusal}")), "{n}: {r}");
        assert!(c.cmd("RCPT TO:<alice@local.test>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(b"Subject: lang\r\n\r\nhello\r\n.\r\n");
        let r = c.reply();
        assert!(r.starts_with("250 2.0.0 OK"), "{r}");
        c.cmd("QUIT");
        s.wait_log(" => alice@local.test", n);
    }
    for m in s.maildir("local.test", "alice") {
        assert!(
            m.contains(&format!("\n{header}: 1 recipients, 7 octets\n")),
            "{m}"
        );
    }
    let (ok, list) = s.cli(&["plugin", "list"]);
    assert!(ok && list.contains(&format!("{name} {contract}")), "{list}");
    assert!(
        list.contains(&format!("contract: mailgate:plugin@{contract}"))
            && list.contains("hooks: rcpt-to, data"),
        "{list}"
    );
    assert!(
        list.contains(", 1 transactions on a reused one")
            && list.contains(if declares {
                "(reuse, as the plugin declares)"
            } else {
                "(reuse)"
            }),
        "the second transaction did not reuse the first one's instance: {list}"
    );
}

#[test]
fn python_example() {
    run_example(
        "reject-list-py",
        example("python", "reject_list_py.wasm"),
        "X-Example-Python",
        "recipient refused by the Python plugin",
    );
}

#[test]
fn javascript_example() {
    run_example(
        "reject-list-js",
        example("js", "reject_list_js.wasm"),
        "X-Example-JS",
        "recipient refused by the JavaScript plugin",
    );
}

#[test]
fn c_example() {
    run_example(
        "reject-list-c",
        example("c", "reject_list_c.wasm"),
        "X-Example-C",
        "recipient refused by the C plugin",
    );
}

/// The C example as it was built on contract 0.1, unchanged: the host
/// adapts it, and it behaves as before.
#[test]
fn c_example_built_on_contract_0_1() {
    run_example_on(
        "reject-list-c-0.1",
        example("c", "reject_list_c_0_1.wasm"),
        "X-Example-C",
        "recipient refused by the C plugin",
        "0.1.0",
    );
}
