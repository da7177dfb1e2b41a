//! A minimal DNS client for the tests: one A query over UDP, answered by the
//! cluster DNS (CoreDNS on the real node), so a test can check the names a
//! pod resolves (Services, headless Services' pods) without a resolver
//! library.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

/// Record type A and class IN.
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

/// The query message for `name`'s A records, with id `id`.
pub fn query(id: u16, name: &str) -> Result<Vec<u8>> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // recursion desired
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        ensure!(!label.is_empty() && label.len() < 64, "bad DNS name {name:?}");
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&TYPE_A.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(m)
}

fn u16_at(m: &[u8], i: usize) -> Result<u16> {
    let b = m.get(i..i + 2).context("truncated DNS message")?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

/// Skips a (possibly compressed) name starting at `i`; returns the index after it.
fn skip_name(m: &[u8], mut i: usize) -> Result<usize> {
    for _ in 0..128 {
        let len = *m.get(i).context("truncated DNS name")?;
        if len & 0xc0 == 0xc0 {
            return Ok(i + 2);
        }
        if len == 0 {
            return Ok(i + 1);
        }
        i += 1 + len as usize;
    }
    bail!("DNS name too long")
}

/// The A records of a response to query `id`; an error for any rcode but
/// NOERROR (e.g. NXDOMAIN: 3).
pub fn parse_a(id: u16, m: &[u8]) -> Result<Vec<Ipv4Addr>> {
    ensure!(u16_at(m, 0)? == id, "DNS response for another query");
    let rcode = m.get(3).context("truncated DNS header")? & 0x0f;
    ensure!(rcode == 0, "DNS rcode {rcode}");
    let (qd, an) = (u16_at(m, 4)?, u16_at(m, 6)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(m, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(m, i)?;
        let (ty, class, len) = (u16_at(m, i)?, u16_at(m, i + 2)?, u16_at(m, i + 8)? as usize);
        let data = m.get(i + 10..i + 10 + len).context("truncated DNS record")?;
        if ty == TYPE_A && class == CLASS_IN && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += 10 + len;
    }
    out.sort();
    Ok(out)
}

/// Asks `server` for `name`'s A records (one UDP exchange, bounded by `timeout`).
pub async fn lookup_a(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<Ipv4Addr>> {
    let id: u16 = rand::random();
    let sock = tokio::net::UdpSocket::bind(("0.0.0.0", 0)).await.context("binding a UDP socket")?;
    sock.send_to(&query(id, name)?, server).await.with_context(|| format!("sending a DNS query to {server}"))?;
    let mut buf = vec![0u8; 1500];
    let n = tokio::time::timeout(timeout, sock.recv(&mut buf))
        .await
        .with_context(|| format!("no DNS answer from {server} for {name} within {timeout:?}"))?
        .context("receiving a DNS answer")?;
    parse_a(id, &buf[..n]).with_context(|| format!("DNS answer from {server} for {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_round_trip() {
        let q = query(7, "a.b").unwrap();
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2; // two answers, each a pointer to the question name
        for ip in [[10, 0, 0, 2], [10, 0, 0, 1]] {
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            r.extend_from_slice(&ip);
        }
        assert_eq!(parse_a(7, &r).unwrap(), vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]);
        let mut nx = q.clone();
        nx[3] = 0x83;
        assert!(parse_a(7, &nx).is_err());
        assert!(parse_a(8, &q).is_err());
    }
}
