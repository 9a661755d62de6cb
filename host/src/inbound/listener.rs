//! Listening sockets and the accept loops, with the connection limits
//! (in total and per client IP, and `[[rate_limit]]` connection rates)
//! enforced before a session starts.

use crate::config::ratelimit::Counted;
use crate::config::{Config, ListenerMode};
use crate::inbound::ratelimit::{Limited, Subject};
use crate::inbound::session::{self, ConnInfo, Shared, canonical_ip};
use crate::log::{Event, Peer, SessionNote};
use socket2::{Domain, Socket, Type};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::Instrument;

/// Bind a listening socket (SO_REUSEADDR; IPv6 sockets are IPv6-only so an
/// IPv4 listener on the same port can coexist).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Counts of open connections.
#[derive(Default)]
pub struct ConnCounts {
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Releases a connection slot when dropped.
pub struct Slot {
    counts: Arc<ConnCounts>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.counts.inner.lock().unwrap();
        g.0 -= 1;
        if let Some(n) = g.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many in total.
    Total,
    /// Too many from this IP.
    PerIp,
    /// Too many from this IP within a `[[rate_limit]]` window, or the
    /// shared counters could not be read (`on_outage = "defer"`).
    Rate(Limited),
}

impl ConnCounts {
    /// Take a slot, or say why not.
    pub fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        per_ip: usize,
    ) -> Result<Slot, Refusal> {
        let mut g = self.inner.lock().unwrap();
        if g.0 >= max {
            return Err(Refusal::Total);
        }
        let n = g.1.entry(ip).or_insert(0);
        if *n >= per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        g.0 += 1;
        Ok(Slot {
            counts: Arc::clone(self),
            ip,
        })
    }

    /// Open connections.
    pub fn total(&self) -> usize {
        self.inner.lock().unwrap().0
    }
}

/// Accept connections until the shutdown flag is raised.
pub async fn accept_loop(
    listener: TcpListener,
    mode: ListenerMode,
    auth: crate::config::smtp_auth::ListenerAuth,
    shared: Arc<Shared>,
    counts: Arc<ConnCounts>,
) {
    let cfg: Arc<Config> = Arc::clone(&shared.cfg);
    let mut shutdown = shared.shutdown.clone();
    let name: Arc<str> = listener
        .local_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string().into());
    let metrics = crate::metrics::get();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|v| *v) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = canonical_ip(peer.ip());
        let local = tcp.local_addr().unwrap_or(peer);
        let acquired = counts.acquire(
            ip,
            cfg.limits.max_connections,
            cfg.limits.max_connections_per_ip,
        );
        let shared = Arc::clone(&shared);
        match acquired {
            Ok(slot) => {
                let name = Arc::clone(&name);
                // Every trace line of the session names its client.
                let span = tracing::info_span!("session", client = %peer);
                tokio::spawn(
                    async move {
                        // Only a connection that is served counts towards
                        // the rate (off the accept loop: with shared
                        // counters this asks Redis).
                        let subject = Subject {
                            ip,
                            auth_user: None,
                            sender: None,
                        };
                        let tables = shared.router.tables();
                        let rate = shared
                            .rate_limits
                            .take(Counted::Connections, &subject, tables);
                        if let Err(e) = rate.await {
                            drop(slot);
                            refuse(&shared, tcp, peer, mode, Refusal::Rate(e)).await;
                            return;
                        }
                        metrics.connections.inc(&[&name]);
                        metrics.connections_open.add(&[&name], 1.0);
                        let info = ConnInfo {
                            peer,
                            local,
                            mode,
                            auth,
                        };
                        session::handle(shared, tcp, info).await;
                        drop(slot);
                        metrics.connections_open.add(&[&name], -1.0);
                    }
                    .instrument(span),
                );
            }
            Err(why) => {
                tokio::spawn(async move { refuse(&shared, tcp, peer, mode, why).await });
            }
        }
    }
}

/// Log a refused connection and tell the client (a 421 greeting; on an
/// implicit-TLS listener just close).
async fn refuse(
    shared: &Shared,
    mut tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    mode: ListenerMode,
    why: Refusal,
) {
    let host = &shared.cfg.server.hostname;
    let (reply, text) = match why {
        Refusal::Total => (
            format!("421 4.3.2 {host} Too many connections, try again later\r\n"),
            "too many connections".to_string(),
        ),
        Refusal::PerIp => (
            format!("421 4.7.0 {host} Too many connections from your host\r\n"),
            "too many connections from that IP address".to_string(),
        ),
        Refusal::Rate(e) => (e.greeting(host), e.log_text()),
    };
    shared.log.event(&Event::Session {
        peer: Peer::client(None, canonical_ip(peer.ip()), peer.port()),
        note: SessionNote::Refused(text),
    });
    if mode == ListenerMode::ImplicitTls {
        // No TLS for a refused client: just close.
        return;
    }
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.write_all(reply.as_bytes()),
    )
    .await;
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let c = Arc::new(ConnCounts::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = c.acquire(a, 3, 2).unwrap();
        let _s2 = c.acquire(a, 3, 2).unwrap();
        assert_eq!(c.acquire(a, 3, 2).err(), Some(Refusal::PerIp));
        let _s3 = c.acquire(b, 3, 2).unwrap();
        assert_eq!(c.acquire(b, 3, 2).err(), Some(Refusal::Total));
        drop(s1);
        assert_eq!(c.total(), 2);
        assert!(c.acquire(a, 3, 2).is_ok());
    }
}
