//! What a link's transfer frames gave and what became of them: counted by the frame layer
//! (`protocol::transfer_frames`), shown per link on `/stats`, `/metrics` and the dashboard. One
//! type for both, here below them, because the frame layer and the counters sit side by side and
//! neither imports the other.

/// A link's transfer-frame counts, added up over frames.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransferFrameCounts {
    /// Frames taken: of a configured virtual channel, or idle frames of any.
    pub frames_good: u64,
    /// Frames whose frame error control field did not match: dropped.
    pub frames_bad_fecf: u64,
    /// Frames of the wrong length, version or spacecraft, of a channel not configured, or
    /// whose first header pointer is beyond the data field: dropped.
    pub frames_dropped: u64,
    /// Frames missing from the virtual channels' frame counts.
    pub vc_gaps: u64,
    /// Packets taken out of frames (idle packets not counted).
    pub packets_extracted: u64,
    /// Packets in reassembly when their channel lost a frame, disagreed with its first header
    /// pointer or ended: dropped, never stored half.
    pub packets_dropped_incomplete: u64,
    /// Packet headers inside frames of another version, or longer than the link's largest
    /// packet (counted in the link's `bad_input`, not shown apart).
    #[serde(skip)]
    pub bad_packets: u64,
}

impl TransferFrameCounts {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &TransferFrameCounts) {
        self.frames_good += other.frames_good;
        self.frames_bad_fecf += other.frames_bad_fecf;
        self.frames_dropped += other.frames_dropped;
        self.vc_gaps += other.vc_gaps;
        self.packets_extracted += other.packets_extracted;
        self.packets_dropped_incomplete += other.packets_dropped_incomplete;
        self.bad_packets += other.bad_packets;
    }
}
