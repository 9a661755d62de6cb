//! TCP Fast Open (RFC 7413) socket options, for the listener and the
//! client. The kernel decides whether they take effect: on Linux
//! `net.ipv4.tcp_fastopen` bit 1 enables the client side (the default), bit
//! 2 the server side. Elsewhere both are no-ops that report "unsupported".

use std::io;
use std::os::fd::AsRawFd;

#[cfg(target_os = "linux")]
fn set_tcp_int(fd: &impl AsRawFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid descriptor, a pointer to a c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Let a listening socket accept data in the SYN from clients holding a
/// cookie, with at most `queue` such connections pending.
pub fn listen(fd: &impl AsRawFd, queue: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        set_tcp_int(fd, libc::TCP_FASTOPEN, queue.min(i32::MAX as u32) as i32)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (fd, queue);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Make a client socket's `connect` return at once and send the first write
/// in the SYN when the kernel holds a cookie for the server (otherwise the
/// SYN asks for one and the data follows the handshake). Only for a
/// client-first conversation: until something is written, no SYN leaves.
pub fn connect(fd: &impl AsRawFd) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        set_tcp_int(fd, libc::TCP_FASTOPEN_CONNECT, 1)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(io::ErrorKind::Unsupported.into())
    }
}
