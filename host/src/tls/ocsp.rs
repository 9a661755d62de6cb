//! OCSP responses to staple (RFC 6960, RFC 6066 §8): just enough DER
//! reading to know which certificate a response is about, its status and
//! until when it may be served. rustls staples whatever it is given, so the
//! store checks these before handing a response out; the client checks the
//! responder's signature.

/// What a stapled response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staple {
    /// The response as it goes on the wire.
    pub der: Vec<u8>,
    /// The certificate's status.
    pub status: Status,
    /// `thisUpdate`, Unix seconds.
    pub this_update: i64,
    /// `nextUpdate`, Unix seconds: never served after it.
    pub next_update: i64,
}

/// A certificate's status in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not revoked.
    Good,
    /// Revoked.
    Revoked,
    /// The responder does not know it.
    Unknown,
}

/// Why a response is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    /// Not DER of the expected shape.
    #[error("malformed OCSP response ({0})")]
    Malformed(&'static str),
    /// `responseStatus` is not `successful`.
    #[error("OCSP response status {0} (not successful)")]
    NotSuccessful(u8),
    /// No single response for this certificate's serial number.
    #[error("the OCSP response is not about this certificate")]
    OtherCertificate,
    /// No `nextUpdate`: the response would never expire.
    #[error("the OCSP response has no nextUpdate")]
    NoNextUpdate,
}

/// One DER element: tag, contents, and what follows.
pub(super) fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), OcspError> {
    let bad = OcspError::Malformed("truncated element");
    let (&tag, rest) = input.split_first().ok_or(bad.clone())?;
    let (&first, rest) = rest.split_first().ok_or(bad.clone())?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad);
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), OcspError> {
    let (t, c, rest) = tlv(input)?;
    if t != tag {
        return Err(OcspError::Malformed(what));
    }
    Ok((c, rest))
}

/// A GeneralizedTime (`YYYYMMDDHHMMSSZ`, fractions allowed) as Unix time.
fn generalized_time(c: &[u8]) -> Result<i64, OcspError> {
    let s = std::str::from_utf8(c).map_err(|_| OcspError::Malformed("time"))?;
    let s = s
        .strip_suffix('Z')
        .ok_or(OcspError::Malformed("time zone"))?;
    let s = s.split('.').next().unwrap_or(s);
    chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S")
        .map(|t| t.and_utc().timestamp())
        .map_err(|_| OcspError::Malformed("time"))
}

/// Parse `der` and find the single response for the certificate with
/// serial number `serial` (big-endian, as in the certificate).
pub fn parse(der: &[u8], serial: &[u8]) -> Result<Staple, OcspError> {
    let (resp, _) = expect(der, 0x30, "OCSPResponse")?;
    let (status, rest) = expect(resp, 0x0a, "responseStatus")?;
    let status = status.first().copied().unwrap_or(0xff);
    if status != 0 {
        return Err(OcspError::NotSuccessful(status));
    }
    let (bytes, _) = expect(rest, 0xa0, "responseBytes")?;
    let (bytes, _) = expect(bytes, 0x30, "ResponseBytes")?;
    let (_oid, rest) = expect(bytes, 0x06, "responseType")?;
    let (basic, _) = expect(rest, 0x04, "response")?;
    let (basic, _) = expect(basic, 0x30, "BasicOCSPResponse")?;
    let (tbs, _) = expect(basic, 0x30, "ResponseData")?;
    let mut rest = tbs;
    let (t, _, r) = tlv(rest)?;
    if t == 0xa0 {
        rest = r; // version
    }
    let (t, _, r) = tlv(rest)?;
    if t != 0xa1 && t != 0xa2 {
        return Err(OcspError::Malformed("responderID"));
    }
    let (_produced, r) = expect(r, 0x18, "producedAt")?;
    let (mut responses, _) = expect(r, 0x30, "responses")?;
    let want = strip_zeros(serial);
    while !responses.is_empty() {
        let (single, next) = expect(responses, 0x30, "SingleResponse")?;
        responses = next;
        let (cert_id, r) = expect(single, 0x30, "CertID")?;
        let (_alg, c) = expect(cert_id, 0x30, "hashAlgorithm")?;
        let (_name, c) = expect(c, 0x04, "issuerNameHash")?;
        let (_key, c) = expect(c, 0x04, "issuerKeyHash")?;
        let (sn, _) = expect(c, 0x02, "serialNumber")?;
        if strip_zeros(sn) != want {
            continue;
        }
        let (t, _, r) = tlv(r)?;
        let status = match t {
            0x80 => Status::Good,
            0xa1 => Status::Revoked,
            0x82 => Status::Unknown,
            _ => return Err(OcspError::Malformed("certStatus")),
        };
        let (this, r) = expect(r, 0x18, "thisUpdate")?;
        let next_update = match tlv(r) {
            Ok((0xa0, c, _)) => {
                let (t, _) = expect(c, 0x18, "nextUpdate")?;
                generalized_time(t)?
            }
            _ => return Err(OcspError::NoNextUpdate),
        };
        return Ok(Staple {
            der: der.to_vec(),
            status,
            this_update: generalized_time(this)?,
            next_update,
        });
    }
    Err(OcspError::OtherCertificate)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn el(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 128 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    /// A response (unsigned: only its shape matters here) for `serial`.
    pub(crate) fn response(serial: &[u8], status: u8, next: Option<&str>) -> Vec<u8> {
        let cert_id = [
            el(0x30, &el(0x06, &[0x2b, 0x0e, 0x03, 0x02, 0x1a])),
            el(0x04, &[1; 20]),
            el(0x04, &[2; 20]),
            el(0x02, serial),
        ]
        .concat();
        let mut single = [
            el(0x30, &cert_id),
            el(status, &[]),
            el(0x18, b"20261201000000Z"),
        ]
        .concat();
        if let Some(n) = next {
            single.extend(el(0xa0, &el(0x18, n.as_bytes())));
        }
        let tbs = [
            el(0xa2, &el(0x04, &[3; 20])),
            el(0x18, b"20261201000000Z"),
            el(0x30, &el(0x30, &single)),
        ]
        .concat();
        let basic = el(
            0x30,
            &[el(0x30, &tbs), el(0x30, &[]), el(0x03, &[0])].concat(),
        );
        let bytes = el(
            0x30,
            &[
                el(
                    0x06,
                    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01],
                ),
                el(0x04, &basic),
            ]
            .concat(),
        );
        el(0x30, &[el(0x0a, &[0]), el(0xa0, &bytes)].concat())
    }

    #[test]
    fn parses_status_and_times() {
        let r = response(&[0x01, 0x02], 0x80, Some("20261208000000Z"));
        let s = parse(&r, &[0x00, 0x01, 0x02]).unwrap();
        assert_eq!(s.status, Status::Good);
        assert_eq!(s.next_update - s.this_update, 7 * 86400);
        assert_eq!(parse(&r, &[0x01, 0x03]), Err(OcspError::OtherCertificate));
        let revoked = response(&[5], 0xa1, Some("20261208000000Z"));
        assert_eq!(parse(&revoked, &[5]).unwrap().status, Status::Revoked);
        let never = response(&[5], 0x80, None);
        assert_eq!(parse(&never, &[5]), Err(OcspError::NoNextUpdate));
        assert!(parse(&r[..r.len() - 3], &[1, 2]).is_err());
        assert!(matches!(
            parse(&[0x30, 0x03, 0x0a, 0x01, 0x06], &[1]),
            Err(OcspError::NotSuccessful(6))
        ));
    }
}
