//! DKIM helpers for tests: keys from `mailgate dkim keygen` and dkimpy
//! (Debian's python3-dkim, run with /usr/bin/python3) to sign and verify.

use crate::mailgate_bin;
use std::path::Path;
use std::process::{Command, Stdio};

/// A key made by `mailgate dkim keygen`: its file and TXT record value.
pub struct Key {
    /// The PEM file.
    pub pem: std::path::PathBuf,
    /// The TXT record's text.
    pub record: String,
}

pub fn keygen(dir: &Path, domain: &str, selector: &str, ed25519: bool) -> Key {
    let pem = dir.join(format!("{domain}.{selector}.pem"));
    let mut c = Command::new(mailgate_bin());
    c.args(["dkim", "keygen", domain, selector, "--out"])
        .arg(&pem);
    if ed25519 {
        c.arg("--ed25519");
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // `sel._domainkey.dom. IN TXT ( "part" "part" )`: join the strings.
    let line = text
        .lines()
        .find(|l| l.contains("._domainkey."))
        .unwrap_or_else(|| panic!("{text}"));
    let record: String = line
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, p)| p)
        .collect();
    assert!(record.starts_with("v=DKIM1; k="), "{record}");
    Key { pem, record }
}

/// Zone lines for `keys`: (owner name relative to the zone, e.g.
/// `sel._domainkey`, key).
pub fn key_records(keys: &[(&str, &Key)]) -> String {
    keys.iter()
        .map(|(sel, k)| {
            let parts: Vec<String> = k
                .record
                .as_bytes()
                .chunks(200)
                .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                .collect();
            format!("{sel} IN TXT ( {} )\n", parts.join(" "))
        })
        .collect()
}

/// dkimpy: sign `msg` (CRLF) and return the signed message; `opts` are
/// `canon=simple`, `length`, `ed25519`, `subject-only`.
pub const SIGN: &str = r#"
import sys, base64, dkim
key, sel, dom, opts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
msg = sys.stdin.buffer.read()
pem = open(key, "rb").read()
alg = b"rsa-sha256"
if "ed25519" in opts:
    der = base64.b64decode(b"".join(l for l in pem.splitlines() if not l.startswith(b"-----")))
    pem = base64.b64encode(der[-32:])
    alg = b"ed25519-sha256"
canon = (b"simple", b"simple") if "canon=simple" in opts else (b"relaxed", b"relaxed")
sig = dkim.sign(msg, sel.encode(), dom.encode(), pem, canonicalize=canon,
                include_headers=[b"from", b"to", b"subject"], length="length" in opts,
                signature_algorithm=alg)
sys.stdout.buffer.write(sig + msg)
"#;

/// dkimpy: verify every signature of the message on stdin with keys from
/// argv (name=record ...); prints one line per signature, True or False.
pub const VERIFY: &str = r#"
import sys, dkim
keys = dict(a.split("=", 1) for a in sys.argv[1:])
def dns(name, timeout=5):
    return keys.get(name.decode().rstrip("."), "").encode()
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = len([h for h in d.headers if h[0].lower() == b"dkim-signature"])
for i in range(n):
    try:
        print(d.verify(idx=i, dnsfunc=dns))
    except dkim.ValidationError as e:
        print(False, e)
"#;

pub fn python(script: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (python3-dkim)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn dkimpy_sign(k: &Key, sel: &str, dom: &str, opts: &str, msg: &str) -> String {
    let pem = k.pem.display().to_string();
    String::from_utf8(python(SIGN, &[&pem, sel, dom, opts], msg.as_bytes())).unwrap()
}

/// dkimpy: add an ARC set to the message on stdin (argv: key, selector,
/// domain, authserv-id; the message must carry an Authentication-Results
/// field with that id); prints the new fields and the message.
pub const ARC_SIGN: &str = r#"
import sys, dkim
key, sel, dom, srv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
msg = sys.stdin.buffer.read()
fields = dkim.arc_sign(msg, sel.encode(), dom.encode(), open(key, "rb").read(), srv.encode(),
                       include_headers=[b"from", b"to", b"subject"])
assert fields, "dkimpy added no ARC set"
sys.stdout.buffer.write(b"".join(fields) + msg)
"#;

/// dkimpy: validate the ARC chain of the message on stdin with keys from
/// argv (name=record ...); prints the cv and the reason.
pub const ARC_VERIFY: &str = r#"
import sys, dkim
keys = dict(a.split("=", 1) for a in sys.argv[1:])
def dns(name, timeout=5):
    return keys.get(name.decode().rstrip("."), "").encode()
cv, results, reason = dkim.arc_verify(sys.stdin.buffer.read(), dnsfunc=dns)
print(cv.decode(), len(results), reason)
"#;

/// dkimpy seals `msg` as `dom` (selector `sel`, authserv-id `srv`).
pub fn dkimpy_arc_seal(k: &Key, sel: &str, dom: &str, srv: &str, msg: &str) -> String {
    let pem = k.pem.display().to_string();
    String::from_utf8(python(ARC_SIGN, &[&pem, sel, dom, srv], msg.as_bytes())).unwrap()
}

/// dkimpy's verdict on the ARC chain of `msg`: "cv instances reason".
pub fn dkimpy_arc_verify(keys: &[(&str, &Key)], msg: &str) -> String {
    let args: Vec<String> = keys
        .iter()
        .map(|(name, k)| format!("{name}={}", k.record))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    String::from_utf8(python(ARC_VERIFY, &args, msg.as_bytes()))
        .unwrap()
        .trim()
        .to_string()
}
