//! A DNS server on loopback answering from a [`Zone`]: `mailgate auth check
//! --dns ZONEFILE` points the host's own resolver at it, so SPF, iprev and
//! DKIM run exactly as live, against the file's records. Authoritative
//! answers over UDP (EDNS up to 1232 octets, truncated beyond) and TCP;
//! CNAMEs in the zone are followed; a name the zone does not have is
//! NXDOMAIN, a type it does not have is NODATA, both with the zone's SOA.

use super::zone::Zone;
use hickory_resolver::proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running server; it stops when dropped.
pub struct ZoneServer {
    /// Where it listens (UDP and TCP, 127.0.0.1).
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ZoneServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Start serving `zone` on a free loopback port (UDP and TCP alike).
pub async fn start(zone: Arc<Zone>) -> std::io::Result<ZoneServer> {
    let mut last = None;
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = udp.local_addr()?;
        // We hold the UDP port; the TCP one of the same number is usually
        // free too, else try another.
        let tcp = match tokio::net::TcpListener::bind(addr).await {
            Ok(t) => t,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let z = Arc::clone(&zone);
        let u = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(out) = answer(&z, &buf[..n], true) {
                    let _ = udp.send_to(&out, peer).await;
                }
            }
        });
        let z = Arc::clone(&zone);
        let t = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    return;
                };
                let z = Arc::clone(&z);
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        let Some(out) = answer(&z, &q, false) else {
                            return;
                        };
                        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        if s.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        return Ok(ZoneServer {
            addr,
            tasks: vec![u, t],
        });
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free loopback port")))
}

/// The answer to one query message; none for what is not a query.
pub fn answer(zone: &Zone, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    if q.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.authoritative = true;
    let limit = match &q.edns {
        Some(e) => {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            r.set_edns(edns);
            e.max_payload().clamp(512, 1232) as usize
        }
        None => 512,
    };
    let Some(question) = q.queries.first().cloned() else {
        r.metadata.response_code = ResponseCode::FormErr;
        return r.to_vec().ok();
    };
    r.add_query(question.clone());
    let mut name = question.name().to_string();
    let qtype = question.query_type();
    // Follow CNAMEs within the zone (a few, never in a loop).
    for _ in 0..8 {
        let direct = zone.records(&name, qtype);
        if !direct.is_empty() || qtype == RecordType::CNAME {
            r.add_answers(direct.iter().cloned());
            break;
        }
        let Some(c) = zone.records(&name, RecordType::CNAME).first() else {
            break;
        };
        r.add_answer(c.clone());
        name = c.data.to_string();
    }
    if r.answers.is_empty() || r.answers.iter().all(|a| a.record_type() != qtype) {
        if !zone.has_name(&name) {
            r.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Some(soa) = soa_for(zone, &name) {
            r.add_authority(soa);
        }
    }
    let out = match r.to_vec() {
        Ok(o) => o,
        // A record the zone file allowed but DNS cannot carry (a TXT
        // string over 255 octets, say): say so rather than stay silent.
        Err(e) => {
            tracing::warn!(name = %question.name(), error = %e, "zone answer does not encode");
            let mut f =
                Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::ServFail);
            f.add_query(question);
            return f.to_vec().ok();
        }
    };
    if udp && out.len() > limit {
        // Too big for UDP: the client asks again over TCP.
        let mut t = Message::response(q.metadata.id, q.metadata.op_code);
        t.metadata.truncation = true;
        t.metadata.authoritative = true;
        t.metadata.recursion_desired = q.metadata.recursion_desired;
        t.add_query(question);
        return t.to_vec().ok();
    }
    Some(out)
}

/// The SOA of the zone `name` is in: the nearest enclosing owner of one.
fn soa_for(zone: &Zone, name: &str) -> Option<hickory_resolver::proto::rr::Record> {
    let mut n: Name = name.parse().ok()?;
    loop {
        if let Some(s) = zone.records(&n.to_string(), RecordType::SOA).first() {
            return Some(s.clone());
        }
        if n.is_root() {
            return None;
        }
        n = n.base_name();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::Query;

    const ZONE: &str = "$ORIGIN z.test.\n$TTL 60\n@ IN SOA ns admin 1 60 60 60 60\nwww IN CNAME host\nhost IN A 192.0.2.1\nsel._domainkey IN TXT \"v=DKIM1; \" \"p=abc\"\nbig IN TXT \"{}\"\n";

    fn ask(z: &Zone, name: &str, t: RecordType, udp: bool) -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(name.parse().unwrap(), t));
        Message::from_vec(&answer(z, &q.to_vec().unwrap(), udp).unwrap()).unwrap()
    }

    #[test]
    fn answers_nodata_nxdomain_cname_truncation() {
        let z = Zone::parse(&ZONE.replace("{}", &"x".repeat(250)), "t").unwrap();
        let a = ask(&z, "www.z.test.", RecordType::A, true);
        assert_eq!(a.answers.len(), 2);
        assert_eq!(a.answers[1].data.to_string(), "192.0.2.1");
        let n = ask(&z, "host.z.test.", RecordType::MX, true);
        assert_eq!(n.metadata.response_code, ResponseCode::NoError);
        assert!(n.answers.is_empty() && n.authorities.len() == 1);
        let x = ask(&z, "nope.z.test.", RecordType::A, true);
        assert_eq!(x.metadata.response_code, ResponseCode::NXDomain);
        // An empty non-terminal exists.
        let e = ask(&z, "_domainkey.z.test.", RecordType::TXT, true);
        assert_eq!(e.metadata.response_code, ResponseCode::NoError);
        let t = ask(&z, "sel._domainkey.z.test.", RecordType::TXT, true);
        assert_eq!(t.answers[0].data.to_string(), "v=DKIM1; p=abc");
        let big = Zone::parse(
            &format!(
                "{}big IN TXT \"{}\"\n",
                ZONE.replace("{}", &"x".repeat(250)),
                "y".repeat(250)
            ),
            "t",
        )
        .unwrap();
        let tr = ask(&big, "big.z.test.", RecordType::TXT, true);
        assert!(tr.metadata.truncation && tr.answers.is_empty());
        let full = ask(&big, "big.z.test.", RecordType::TXT, false);
        assert_eq!(full.answers.len(), 2);
    }
}
