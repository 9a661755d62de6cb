//! CLI behaviour that needs no server (this file also makes cargo build the
//! `mailgate` binary that the workspace's integration tests start).

use std::process::Command;

fn mailgate(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn config_check_reports_file_line_column_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let (ok, out) = mailgate(&["config", "default"]);
    assert!(ok);
    std::fs::write(&good, &out).unwrap();
    let (ok, text) = mailgate(&["config", "check", good.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.ends_with("OK\n"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        out.replace("max_recipients = 1000", "max_recipients = \"lots\""),
    )
    .unwrap();
    let (ok, text) = mailgate(&["config", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    let line = out
        .lines()
        .position(|l| l.starts_with("max_recipients"))
        .unwrap()
        + 1;
    assert!(
        text.starts_with(&format!(
            "mailgate: {}:{line}:18: invalid type",
            bad.display()
        )),
        "{text}"
    );
}

#[test]
fn missing_config_file_is_reported() {
    let (ok, text) = mailgate(&["config", "check", "/nonexistent/m.toml"]);
    assert!(!ok);
    assert!(text.contains("/nonexistent/m.toml: cannot read"), "{text}");
}
