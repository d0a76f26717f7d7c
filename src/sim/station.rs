//! A CCSDS ground station (`uplink-sim --station ADDR`): what a real station sends into a link
//! (`docs/ground-segment.md`), played beside the simulated uplinks, and a mission-control reader of
//! the TM server (`--tm-reader ADDR`) that counts what comes out.
//!
//! A station hears nothing back, so it cannot account for its packets as the uplinks do for their
//! frames: the reader does, by counting every packet the TM server sends for the station's APIDs
//! and checking that each one was sent once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::ccsds::{self, Framing, Next, PrimaryHeader, MAX_PACKET};

/// What the station plays.
#[derive(Debug, Clone)]
pub struct StationPlan {
    /// The link's address (`tcp-listen`).
    pub address: String,
    pub framing: Framing,
    pub apids: Vec<u16>,
    /// Packets per APID.
    pub packets: u64,
    /// Data bytes per packet (1 to 65,536).
    pub data: usize,
    /// Packets per second per APID; `None` as fast as the link takes them.
    pub rate: Option<f64>,
    /// How long to keep trying to connect before giving up.
    pub connect_for: Duration,
}

/// What the station sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StationReport {
    pub packets: u64,
    pub bytes: u64,
}

/// Packets written at once.
const BURST: u64 = 64;

impl StationPlan {
    /// Connects and sends every packet, APIDs interleaved, counts wrapping at 16,384.
    pub async fn run(&self) -> std::io::Result<StationReport> {
        let mut link = connect(&self.address, self.connect_for).await?;
        let started = Instant::now();
        let mut report = StationReport {
            packets: 0,
            bytes: 0,
        };
        let mut wire = Vec::new();
        let mut next = 0;
        while next < self.packets {
            let end = (next + BURST).min(self.packets);
            wire.clear();
            for index in next..end {
                for &apid in &self.apids {
                    let p = packet(apid, index, self.data);
                    ccsds::encode(&self.framing, &p, &mut wire);
                    report.packets += 1;
                    report.bytes += p.len() as u64;
                }
            }
            if let Some(rate) = self.rate {
                let due = started + Duration::from_secs_f64(next as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            link.write_all(&wire).await?;
            next = end;
        }
        link.shutdown().await?;
        Ok(report)
    }
}

/// The packet of `apid` with index `index`: its count is the index modulo 16,384, and its data
/// names both, so a reader can tell any two apart.
pub fn packet(apid: u16, index: u64, data: usize) -> Vec<u8> {
    let mut body = format!("{apid}:{index}:").into_bytes();
    body.resize(data.clamp(body.len(), 65_536), b'~');
    let count = (index % 16_384) as u16;
    let mut p = PrimaryHeader::telemetry(apid, count, body.len())
        .encode()
        .to_vec();
    p.extend_from_slice(&body);
    p
}

async fn connect(address: &str, patience: Duration) -> std::io::Result<TcpStream> {
    let give_up = Instant::now() + patience;
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(_) if Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => {
                return Err(std::io::Error::new(
                    err.kind(),
                    format!("cannot connect to {address}: {err}"),
                ))
            }
        }
    }
}

/// What a reader of the TM server counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TmCount {
    /// Packets of the awaited APIDs, each once.
    pub packets: u64,
    /// Packets of those APIDs seen more than once.
    pub repeated: u64,
    /// Packets of other APIDs (the TM server serves every packet stored).
    pub others: u64,
}

/// Reads the TM server at `address` until `expect` distinct packets of `apids` arrived or
/// `patience` passed.
pub async fn count_tm(
    address: &str,
    framing: Framing,
    apids: &[u16],
    expect: u64,
    patience: Duration,
) -> std::io::Result<TmCount> {
    let mut stream = connect(address, patience).await?;
    let deadline = tokio::time::Instant::now() + patience;
    let mut count = TmCount::default();
    let mut seen = HashSet::new();
    let mut buf = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0; 1 << 16];
    while count.packets < expect {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        let n = match read {
            Ok(read) => read?,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            let next = framing.next(&buf[at..], MAX_PACKET);
            let next = next.map_err(|err| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, err.to_string())
            })?;
            let Next::Packet { packet, end, .. } = next else {
                break;
            };
            let bytes = &buf[at + packet.start..at + packet.end];
            at += end;
            let Some(header) = PrimaryHeader::parse(bytes) else {
                continue;
            };
            if !apids.contains(&header.apid) {
                count.others += 1;
            } else if seen.insert(identity(bytes)) {
                count.packets += 1;
            } else {
                count.repeated += 1;
            }
        }
        buf.drain(..at);
    }
    Ok(count)
}

/// A station packet's `APID:INDEX:` prefix (its whole bytes for anyone else's packet).
fn identity(packet: &[u8]) -> Vec<u8> {
    let data = packet.get(6..).unwrap_or_default();
    let mut colons = data.iter().enumerate().filter(|(_, &b)| b == b':');
    match colons.nth(1) {
        Some((at, _)) => data[..at].to_vec(),
        None => packet.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_station_packet_names_its_apid_and_index() {
        let p = packet(42, 16_390, 16);
        let h = PrimaryHeader::parse(&p).unwrap();
        assert_eq!((h.apid, h.sequence_count, p.len()), (42, 6, 22));
        assert!(p[6..].starts_with(b"42:16390:"));
        assert_eq!(identity(&p), b"42:16390");
    }
}
