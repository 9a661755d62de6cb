//! systemd's readiness protocol (sd_notify(3)) without libsystemd: one
//! datagram to the unix socket named in `$NOTIFY_SOCKET` (a path, or an
//! abstract name written `@name`). Without the variable nothing is sent,
//! so the same binary runs under `Type=notify`, `Type=simple` or by hand.

use std::os::unix::net::UnixDatagram;

/// Send `state` ("READY=1", "STOPPING=1", "RELOADING=1", "STATUS=...").
/// Failures are logged at debug level only: the service manager not
/// listening must not stop the gateway.
pub fn notify(state: &str) {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let r = (|| -> std::io::Result<usize> {
        let sock = UnixDatagram::unbound()?;
        let b = addr.as_encoded_bytes();
        if let Some(name) = b.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &a)
        } else {
            sock.send_to(state.as_bytes(), std::path::Path::new(&addr))
        }
    })();
    if let Err(e) = r {
        tracing::debug!(error = %e, "sd_notify {state}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_the_socket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let listener = UnixDatagram::bind(&p).unwrap();
        // SAFETY: no other thread of this test reads NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &p) };
        notify("READY=1");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
