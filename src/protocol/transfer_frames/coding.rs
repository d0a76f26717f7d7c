//! What is left of the channel coding on a frame the station delivers: the pseudo-randomiser
//! (CCSDS 131.0-B) it may not have undone, and the frame error control field's CRC.

/// The FECF's CRC, sixteen bytes a step (the `crc` crate's slice-by-16 tables): a byte at a time
/// it took most of a `tm-frames` link's CPU (`docs/bench/links.md`).
const FECF: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_IBM_3740);

/// CRC-16-CCITT as the FECF uses it: polynomial 0x1021, initial value 0xFFFF, not reflected
/// (the catalogue's CRC-16/IBM-3740).
pub(crate) fn crc16(bytes: &[u8]) -> u16 {
    FECF.checksum(bytes)
}

/// One period of the pseudo-randomiser's sequence, in bytes: h(x) = x^8+x^7+x^5+x^3+1 from all
/// ones, that is s[n+8] = s[n+7] ^ s[n+5] ^ s[n+3] ^ s[n], first bit the most significant. Its
/// period is 255 bits, so 255 bytes repeat.
const PSEUDO_RANDOM: [u8; 255] = {
    let mut out = [0u8; 255];
    // Bit 7 - k of `reg` is s[n + k].
    let mut reg: u8 = 0xFF;
    let mut i = 0;
    while i < 255 {
        let mut byte = 0u8;
        let mut bit = 0;
        while bit < 8 {
            let oldest = reg >> 7;
            byte = (byte << 1) | oldest;
            let next = (reg ^ (reg >> 2) ^ (reg >> 4) ^ oldest) & 1;
            reg = (reg << 1) | next;
            bit += 1;
        }
        out[i] = byte;
        i += 1;
    }
    out
};

/// XORs the pseudo-randomiser's sequence over a frame (everything after the marker): the
/// spacecraft's randomising and the ground's derandomising are this same step.
pub fn randomize(frame: &mut [u8]) {
    for (byte, random) in frame.iter_mut().zip(PSEUDO_RANDOM.iter().cycle()) {
        *byte ^= random;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fecf_is_crc_16_ccitt_from_all_ones() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }

    /// The sequence's first 40 bits as CCSDS 131.0-B gives them, its period of 255 bits, and
    /// randomising twice giving the frame back.
    #[test]
    fn the_pseudo_randomiser_is_the_standard_sequence() {
        assert_eq!(PSEUDO_RANDOM[..5], [0xFF, 0x48, 0x0E, 0xC0, 0x9A]);
        let bit = |n: usize| PSEUDO_RANDOM[(n / 8) % 255] >> (7 - n % 8) & 1;
        assert!((0..255).all(|n| bit(n) == bit(n + 255)));
        assert!((1..255).all(|p| (0..255).any(|n| bit(n) != bit(n + p))));
        let mut frame: Vec<u8> = (0..600).map(|i| i as u8).collect();
        randomize(&mut frame);
        assert_eq!(frame[..2], [0xFF, 0x49]);
        randomize(&mut frame);
        assert!(frame.iter().enumerate().all(|(i, &b)| b == i as u8));
    }
}
