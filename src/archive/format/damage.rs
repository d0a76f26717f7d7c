
#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::archive::format::ArchiveError;

    /// The texts operators read in the tools' output and the daemon's log
    /// (`docs/archive-tools.md`), made from the values.
    #[test]
    fn each_reason_prints_the_words_the_docs_show() {
        let crc = DamageReason::CrcMismatch {
            stored: 0xa24a4b57,
            computed: 0xe7351839,
            len: 1999,
        };
        let cases = [
            (
                crc.clone(),
                "CRC mismatch (stored a24a4b57, computed e7351839) over a 1999-byte body",
            ),
            (
                DamageReason::BadMagic { magic: *b"TLMSEGxx" },
                "bad magic [54, 4c, 4d, 53, 45, 47, 78, 78], expected \"TLMSEG05\"",
            ),
            (
                DamageReason::BadFrame {
                    count: 3,
                    index: 1,
                    fault: FrameFault::UndefinedReceptionFlags(0x85),
                },
                "FRAMES record of 3 frames: frame 1 has undefined reception flags 0x85",
            ),
            (
                DamageReason::NameCut(DeliveryName::Station),
                "RECEIVED FRAMES record cut within its station name",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
        let unrepaired = ArchiveError::Unrepaired {
            path: Path::new("archive/segment-00000000000000000003.seg").to_path_buf(),
            offset: 211,
            reason: crc,
            kept: Kept::Corrupt {
                followed_by: Some(2218),
                dir: "archive".into(),
            },
        };
        assert_eq!(
            unrepaired.to_string(),
            "archive/segment-00000000000000000003.seg: offset 211: corrupt record: CRC mismatch \
             (stored a24a4b57, computed e7351839) over a 1999-byte body; a valid record follows at \
             offset 2218; not repaired: `aggregator archive repair archive` shows the damaged \
             bytes, and with --quarantine moves them aside so that the daemon can start"
        );
        let magic = Kept::Magic.says(&DamageReason::MagicCutShort { held: 3 });
        assert_eq!(
            magic,
            "magic cut short (3 of 8 bytes); repair keeps a segment's magic and does not guess one"
        );
    }

    /// Incomplete writes, and complete ones with a wrong length or CRC, can be a crash's;
    /// impossible contents behind a matching CRC cannot.
    #[test]
    fn only_what_a_crash_can_leave_is_torn() {
        let crash = [
            DamageReason::HeaderCutShort { held: 3 },
            DamageReason::BodyCutShort { held: 3, len: 9 },
            DamageReason::LengthOutside { len: 0 },
            DamageReason::MagicCutShort { held: 2 },
        ];
        assert!(crash.iter().all(DamageReason::crash_can_explain));
        let never = [
            DamageReason::UnknownRecordType(9),
            DamageReason::UndefinedPriority(7),
            DamageReason::NotASegment,
        ];
        assert!(!never.iter().any(DamageReason::crash_can_explain));
    }
}
