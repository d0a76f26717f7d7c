//! A TNC the tests play to a KISS link: CCSDS packets to carry, and KISS time frames (command
//! `09`, docs/ground-segment.md) that give the next packet its earth-receive time.

use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::protocol::kiss;

/// Packet `i` of APID 100.
pub fn packet(i: u16) -> Vec<u8> {
    let data = format!("packet {i}").into_bytes();
    let mut p = PrimaryHeader::telemetry(100, i, data.len())
        .encode()
        .to_vec();
    p.extend_from_slice(&data);
    p
}

/// A KISS time frame of `port` holding `body`, appended to `wire`.
pub fn kiss_time_frame(port: u8, body: &[u8], wire: &mut Vec<u8>) {
    let start = wire.len();
    kiss::encode(0, body, wire);
    wire[start + 1] = (port << 4) | kiss::TIME;
}
