//! The services capability: connections to the unix or TCP endpoints named
//! in a plugin's config (`services = { dccifd = "unix:/var/dcc/dccifd" }`),
//! and to nothing else. Every read, write and connect is bounded by the
//! plugin's time budget, since a host call does not see epoch interrupts.

use crate::config::plugin::{Capability, ServiceAddr};
use crate::plugin::State;
use crate::plugin::bindings::mailgate::plugin::services::{Host, HostConnection};
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::component::Resource;

/// An open service connection (the `connection` resource).
pub enum ServiceConn {
    /// Unix socket.
    Unix(tokio::net::UnixStream),
    /// TCP.
    Tcp(tokio::net::TcpStream),
}

fn failed(e: impl std::fmt::Display) -> CapError {
    CapError::Failed(e.to_string())
}

impl State {
    fn budget(&self) -> Duration {
        Duration::from_millis(self.plugin.cfg.timeout_ms.max(1))
    }
}

async fn bounded<T>(
    d: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, CapError> {
    match tokio::time::timeout(d, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(e)),
        Err(_) => Err(CapError::Failed("timed out".into())),
    }
}

impl Host for State {
    async fn connect(&mut self, name: String) -> Result<Resource<ServiceConn>, CapError> {
        self.granted(Capability::Services)?;
        let Some(addr) = self.plugin.cfg.services.get(&name) else {
            return Err(CapError::NotGranted);
        };
        let addr = ServiceAddr::parse(addr).map_err(failed)?;
        let d = self.budget();
        let conn = match addr {
            ServiceAddr::Unix(p) => {
                ServiceConn::Unix(bounded(d, tokio::net::UnixStream::connect(p)).await?)
            }
            ServiceAddr::Tcp(hp) => {
                let s = bounded(d, tokio::net::TcpStream::connect(hp)).await?;
                let _ = s.set_nodelay(true);
                ServiceConn::Tcp(s)
            }
        };
        self.table.push(conn).map_err(failed)
    }
}

impl HostConnection for State {
    async fn send(&mut self, c: Resource<ServiceConn>, data: Vec<u8>) -> Result<(), CapError> {
        let d = self.budget();
        match self.table.get_mut(&c).map_err(failed)? {
            ServiceConn::Unix(s) => bounded(d, s.write_all(&data)).await,
            ServiceConn::Tcp(s) => bounded(d, s.write_all(&data)).await,
        }
    }

    async fn receive(&mut self, c: Resource<ServiceConn>, max: u32) -> Result<Vec<u8>, CapError> {
        let d = self.budget();
        let mut buf = vec![0u8; max.clamp(1, 1 << 20) as usize];
        let n = match self.table.get_mut(&c).map_err(failed)? {
            ServiceConn::Unix(s) => bounded(d, s.read(&mut buf)).await?,
            ServiceConn::Tcp(s) => bounded(d, s.read(&mut buf)).await?,
        };
        buf.truncate(n);
        Ok(buf)
    }

    async fn shutdown(&mut self, c: Resource<ServiceConn>) -> Result<(), CapError> {
        let d = self.budget();
        match self.table.get_mut(&c).map_err(failed)? {
            ServiceConn::Unix(s) => bounded(d, s.shutdown()).await,
            ServiceConn::Tcp(s) => bounded(d, s.shutdown()).await,
        }
    }

    async fn drop(&mut self, c: Resource<ServiceConn>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            ServiceAddr::parse("unix:/var/dcc/dccifd").unwrap(),
            ServiceAddr::Unix("/var/dcc/dccifd".into())
        );
        assert_eq!(
            ServiceAddr::parse("tcp:127.0.0.1:10030").unwrap(),
            ServiceAddr::Tcp("127.0.0.1:10030".into())
        );
        assert!(ServiceAddr::parse("tcp:[::1]:25").is_ok());
        for bad in ["unix:", "tcp:host", "tcp::25", "http://x", "tcp:h:99999"] {
            assert!(ServiceAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
