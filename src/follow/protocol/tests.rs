//! The follow protocol's messages, byte for byte as `docs/follow-protocol.md` writes them.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use super::*;
use crate::archive::read::{Earliest, FrameRun, Skipped, Start};
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::position::{Position, Positions, ShardPosition};
use crate::domain::reception::{Ax25Addresses, Callsign, Delivery, Received};

fn body(mut encoded: BytesMut) -> Bytes {
    encoded.advance(4);
    encoded.freeze()
}

fn at(shard: usize, segment: u64, offset: u64, index: u32) -> ShardPosition {
    ShardPosition {
        shard,
        position: Position {
            segment,
            offset,
            index,
        },
    }
}

fn after(positions: &[ShardPosition]) -> Start {
    Start::After(positions.iter().copied().collect())
}

/// Hex bytes as the documentation writes them, whitespace between.
fn hex_bytes(documented: &str) -> Vec<u8> {
    documented
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn subscribe_is_byte_exact_and_round_trips() {
    let subscription = Subscription::new(
        after(&[at(0, 1, 8, 2)]),
        vec![(SourceKind::ArchivedReplay, 7)],
        Some(Priority::Emergency),
    );
    let mut encoded = BytesMut::new();
    subscription.encode(&mut encoded);
    let expected: &[u8] = &[
        0, 0, 0, 33, 0x11, 5, 2, 2, 0, 1, 1, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 0, 8, 0, 0, 0, 2,
    ];
    assert_eq!(&encoded[..], expected);
    assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
}

#[test]
fn every_start_round_trips() {
    let starts = [
        Start::Oldest,
        Start::Now,
        after(&[at(0, 3, 8, 1)]),
        after(&[at(0, 3, 8, 1), at(5, 1, 90, 0), at(63, 9, 8, 4)]),
        Start::After(Positions::new()),
    ];
    for start in starts {
        let subscription = Subscription::new(
            start,
            vec![(SourceKind::LiveUplink, 1), (SourceKind::ArchivedReplay, 2)],
            None,
        );
        let mut encoded = BytesMut::new();
        subscription.encode(&mut encoded);
        let decoded = Subscription::decode(&body(encoded)).unwrap();
        assert_eq!(decoded, subscription);
    }
}

#[test]
fn a_time_window_is_byte_exact_round_trips_and_is_checked() {
    let subscription = Subscription::new(Start::Oldest, vec![], None)
        .within(Some(1_700_000_000_000_000_000), None)
        .going_on_past_gaps();
    let mut encoded = BytesMut::new();
    subscription.encode(&mut encoded);
    // Start 0 with bits 7 and 6, since, until u64::MAX (no end): docs/follow-protocol.md's
    // example.
    let documented = "00 00 00 17 11 05 c0 00 00 00 00 \
        17 97 9c fe 36 2a 00 00 ff ff ff ff ff ff ff ff";
    assert_eq!(&encoded[..], &hex_bytes(documented)[..]);
    assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
    let windows = [(None, Some(5)), (Some(5), Some(5)), (Some(1), Some(9))];
    for (since, until) in windows {
        let subscription = Subscription::new(after(&[at(1, 2, 8, 0)]), vec![], None);
        let subscription = subscription.within(since, until);
        let mut encoded = BytesMut::new();
        subscription.encode(&mut encoded);
        assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
    }
    let mut encoded = BytesMut::new();
    Subscription::new(Start::Oldest, vec![], None)
        .within(Some(9), Some(10))
        .encode(&mut encoded);
    let good = body(encoded).to_vec();
    // Since after until; the window cut short; the bit without the window.
    let mut backwards = good.clone();
    backwards[14] = 11;
    let refused = Subscription::decode(&backwards).unwrap_err();
    assert_eq!(
        refused,
        SubscribeError::Window {
            since: 11,
            until: 10
        }
    );
    assert_eq!(refused.reason(), RefuseReason::MalformedSubscribe);
    for bad in [good[..good.len() - 1].to_vec(), good[..7].to_vec()] {
        let refused = Subscription::decode(&bad).unwrap_err();
        assert_eq!(
            refused.reason(),
            RefuseReason::MalformedSubscribe,
            "{refused}"
        );
    }
}

fn kind(byte: u8) -> SourceKind {
    match byte % 2 {
        0 => SourceKind::LiveUplink,
        _ => SourceKind::ArchivedReplay,
    }
}

proptest::proptest! {
    /// Any subscription a consumer can send decodes to itself: every start, sources,
    /// positions in distinct shards, priority, window and choice on gaps.
    #[test]
    fn any_subscription_round_trips(
        start in 0u8..3,
        sources in proptest::collection::vec((0u8..2, proptest::prelude::any::<u32>()), 0..40),
        shards in proptest::collection::btree_map(0usize..64, (0u64..9, 8u64..1 << 40, 0u32..9), 0..8),
        priority in 0u8..3,
        window in proptest::option::of((1u64..u64::MAX / 2, 0u64..u64::MAX / 2)),
        go_on in proptest::prelude::any::<bool>(),
    ) {
        let positions = shards
            .into_iter()
            .map(|(shard, (segment, offset, index))| at(shard, segment, offset, index))
            .collect::<Vec<_>>();
        let start = match start {
            0 => Start::Oldest,
            1 => Start::Now,
            _ => after(&positions),
        };
        let sources = sources.into_iter().map(|(k, id)| (kind(k), id)).collect();
        let priority = match priority {
            0 => None,
            1 => Some(Priority::Routine),
            _ => Some(Priority::Emergency),
        };
        let mut subscription = Subscription::new(start, sources, priority);
        if let Some((since, more)) = window {
            subscription = subscription.within(Some(since), Some(since + more));
        }
        if go_on {
            subscription = subscription.going_on_past_gaps();
        }
        let mut encoded = BytesMut::new();
        subscription.encode(&mut encoded);
        proptest::prop_assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
    }

    /// Any message the daemon sends decodes to itself.
    #[test]
    fn any_daemon_message_round_trips(
        shard in 0usize..64,
        (kind_byte, source_id, received) in (0u8..2, proptest::prelude::any::<u32>(), proptest::prelude::any::<u64>()),
        frames in proptest::collection::vec(
            (proptest::prelude::any::<u64>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
            1..8,
        ),
        (segment, offset, index) in (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(), 0u32..1000),
        skipped in proptest::collection::vec((0u8..2, proptest::prelude::any::<u32>(), proptest::prelude::any::<u64>()), 0..10),
        detail in "[a-z ]{0,40}",
    ) {
        let run = FrameRun {
            shard,
            kind: kind(kind_byte),
            priority: Priority::Routine,
            source_id,
            received_unix_ns: received,
            first: Position { segment, offset, index },
            frames: frames.into_iter().map(|(s, p)| (s, Bytes::from(p))).collect(),
            reception: None,
        };
        let skipped = Skipped {
            shard,
            deleted: segment,
            resumed: segment.saturating_add(1),
            sources: skipped.into_iter().map(|(k, id, n)| ((kind(k), id), n)).collect(),
        };
        let messages = [
            DaemonMessage::Frames(run),
            DaemonMessage::Skipped(skipped),
            DaemonMessage::Earliest(Earliest { shard, oldest: received }),
            DaemonMessage::Catalog { version: offset },
            DaemonMessage::End { reason: EndReason::Until, detail: detail.clone() },
            DaemonMessage::Refused { reason: RefuseReason::MalformedSubscribe, detail },
        ];
        for message in messages {
            let mut encoded = BytesMut::new();
            message.encode(&mut encoded);
            proptest::prop_assert_eq!(DaemonMessage::decode(body(encoded)), Ok(message));
        }
    }
}

/// docs/follow-protocol.md's RECEPTION: a link's frame with its earth-receive time and AX.25
/// addresses, then one played back, before their FRAMES from version 4 on; a version 3
/// subscription gets the FRAMES alone.
#[test]
fn reception_comes_before_its_frames_from_version_4_on() {
    let delivery = Arc::new(Delivery::live("uhf", "svalbard"));
    let received = vec![
        Received {
            earth_unix_ns: Some(1_700_000_000_000_000_000),
            playback: false,
            ax25: Some(Ax25Addresses {
                from: "N0CALL-1".parse().unwrap(),
                to: "CQ".parse().unwrap(),
            }),
        },
        Received {
            playback: true,
            ..Received::default()
        },
    ];
    let run = FrameRun {
        shard: 0,
        kind: SourceKind::LiveUplink,
        priority: Priority::Routine,
        source_id: 500,
        received_unix_ns: 1_700_000_000_001_000_000,
        first: Position {
            segment: 1,
            offset: 8,
            index: 0,
        },
        frames: vec![(1, Bytes::from_static(b"a")), (2, Bytes::from_static(b"b"))],
        reception: Some((Arc::clone(&delivery), received.clone())),
    };
    let (mut v3, mut v4) = (BytesMut::new(), BytesMut::new());
    encode_frames(&run, 3, &mut v3);
    encode_frames(&run, 4, &mut v4);
    let (reception, frames) = v4.split_at(v4.len() - v3.len());
    assert_eq!(frames, &v3[..]);
    let documented = "00 00 00 28 99 03 75 68 66 08 73 76 61 6c 62 61 72 64 00 00 00 02 05 17 97 9c fe 36 2a 00 00 08 4e 30 43 41 4c 4c 2d 31 02 43 51 02";
    assert_eq!(reception, &hex_bytes(documented)[..]);
    let decoded = DaemonMessage::decode(Bytes::copy_from_slice(&reception[4..]));
    assert_eq!(decoded, Ok(DaemonMessage::Reception((delivery, received))));
    for cut in 5..reception.len() - 1 {
        let body = Bytes::copy_from_slice(&reception[4..cut]);
        assert!(DaemonMessage::decode(body).is_err(), "cut at {cut}");
    }
    recorded_reception_from_version_5_on(run, &v4);
}

/// docs/follow-protocol.md's RECORDED RECEPTION: the frames of `run` read from a recording reach
/// a version 5 subscription after the recording's name, a version 4 one after the RECEPTION it
/// got of live frames (`live`, its bytes).
fn recorded_reception_from_version_5_on(mut run: FrameRun, live: &[u8]) {
    let (delivery, received) = run.reception.take().unwrap();
    let recorded = Arc::new(delivery.from_recording("p.kiss"));
    run.reception = Some((Arc::clone(&recorded), received.clone()));
    let (mut v4, mut v5) = (BytesMut::new(), BytesMut::new());
    encode_frames(&run, 4, &mut v4);
    encode_frames(&run, 5, &mut v5);
    assert_eq!(&v4[..], live);
    let len = u32::from_be_bytes(v5[..4].try_into().unwrap()) as usize;
    let documented = "00 00 00 2f 9a 03 75 68 66 08 73 76 61 6c 62 61 72 64 06 70 2e 6b 69 73 73";
    assert_eq!(&v5[..25], &hex_bytes(documented)[..]);
    let decoded = DaemonMessage::decode(Bytes::copy_from_slice(&v5[4..4 + len]));
    assert_eq!(decoded, Ok(DaemonMessage::Reception((recorded, received))));
}

/// A callsign that is no station's (bytes outside printable ASCII, a `-`, lower case: what a
/// damaged or odd AX.25 address gives) reaches a follower as it was received: the daemon writes it
/// as text with escapes, and the client reads that text back, rather than refusing the message.
#[test]
fn a_reception_with_any_callsign_reads_back() {
    let odd = Callsign::from_parts(*b"n0-\x01\xff ", 3);
    let received = vec![Received {
        ax25: Some(Ax25Addresses {
            from: odd,
            to: "CQ".parse().unwrap(),
        }),
        ..Received::default()
    }];
    let delivery = Arc::new(Delivery::live("uhf", "svalbard"));
    let message = DaemonMessage::Reception((delivery, received));
    let mut encoded = BytesMut::new();
    message.encode(&mut encoded);
    assert!(encoded.windows(3).any(|w| w == b"n0\\"), "{encoded:?}");
    let decoded = DaemonMessage::decode(encoded.freeze().slice(4..));
    assert_eq!(decoded, Ok(message));
}

/// The example of `docs/follow-protocol.md`, byte for byte.
#[test]
fn the_documented_example_is_what_is_encoded() {
    let mut encoded = BytesMut::new();
    Subscription::new(
        after(&[at(0, 1, 8, 0), at(2, 4, 8, 1)]),
        vec![(SourceKind::LiveUplink, 7)],
        Some(Priority::Emergency),
    )
    .encode(&mut encoded);
    DaemonMessage::Subscribed { version: VERSION }.encode(&mut encoded);
    let run = FrameRun {
        shard: 2,
        kind: SourceKind::LiveUplink,
        priority: Priority::Emergency,
        source_id: 7,
        received_unix_ns: 1_700_000_000_001_000_000,
        first: Position {
            segment: 4,
            offset: 123,
            index: 2,
        },
        frames: vec![(5, Bytes::from_static(b"ab")), (6, Bytes::new())],
        reception: None,
    };
    encode_frames(&run, VERSION, &mut encoded);
    let documented = "00 00 00 36 11 05 02 02 00 01 02 00 00 00 00 07 \
        00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 08 00 00 00 00 \
        02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 08 00 00 00 01 \
        00 00 00 02 91 05 \
        00 00 00 42 96 00 01 00 00 00 07 17 97 9c fe 36 39 42 40 \
        02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 7b 00 00 00 02 \
        00 00 00 02 00 00 00 00 00 00 00 05 00 00 00 02 61 62 \
        00 00 00 00 00 00 00 06 00 00 00 00";
    assert_eq!(&encoded[..], &hex_bytes(documented)[..]);
}

/// A SUBSCRIBE of versions 1 and 2 (one position, shard 0's, before the filters) is refused
/// with the version it carries and the one spoken, whatever its layout.
#[test]
fn a_subscribe_of_another_version_is_refused_naming_both_versions() {
    let version_1 = hex_bytes(
        "11 01 02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 08 00 00 00 00 \
         02 00 01 00 00 00 00 07",
    );
    for (version, bytes) in [
        (1, version_1.clone()),
        (2, [&[0x11, 2], &version_1[2..]].concat()),
        (6, [&[0x11, 6], &version_1[2..]].concat()),
        (0, vec![0x11, 0]),
    ] {
        let refused = Subscription::decode(&bytes).unwrap_err();
        assert_eq!(refused, SubscribeError::UnsupportedVersion(version));
        assert_eq!(refused.reason(), RefuseReason::UnsupportedVersion);
        assert_eq!(
            refused.to_string(),
            format!("SUBSCRIBE of protocol version {version}; this daemon speaks versions 3 to 5")
        );
    }
}

#[test]
fn a_bad_subscribe_is_refused_with_its_reason() {
    let mut encoded = BytesMut::new();
    Subscription::new(
        after(&[at(0, 1, 8, 0), at(4, 1, 8, 0)]),
        vec![(SourceKind::LiveUplink, 1)],
        None,
    )
    .encode(&mut encoded);
    let good = body(encoded).to_vec();
    assert!(Subscription::decode(&good).is_ok());
    // The start, the priority filter, the first source's kind, the second position's shard.
    let (start, filter, kind, second) = (2, 3, 7, 33);
    let cases: Vec<(Vec<u8>, RefuseReason)> = vec![
        (vec![], RefuseReason::MalformedSubscribe),
        (vec![0x11], RefuseReason::MalformedSubscribe),
        (
            vec![0x01, 1, 0, 0, 0, 0, 7],
            RefuseReason::MalformedSubscribe,
        ),
        (good[..20].to_vec(), RefuseReason::MalformedSubscribe),
        (
            good[..good.len() - 1].to_vec(),
            RefuseReason::MalformedSubscribe,
        ),
        (
            [&good[..1], &[VERSION + 1], &good[2..]].concat(),
            RefuseReason::UnsupportedVersion,
        ),
        (
            [&good[..1], &[0], &good[2..]].concat(),
            RefuseReason::UnsupportedVersion,
        ),
        (
            [&good[..start], &[3], &good[start + 1..]].concat(),
            RefuseReason::MalformedSubscribe,
        ),
        (
            [&good[..filter], &[3], &good[filter + 1..]].concat(),
            RefuseReason::MalformedSubscribe,
        ),
        (
            [&good[..kind], &[9], &good[kind + 1..]].concat(),
            RefuseReason::MalformedSubscribe,
        ),
        // Too short, positions with start "now", a shard out of range, the same shard twice.
        (good[..6].to_vec(), RefuseReason::MalformedSubscribe),
        (
            [&good[..start], &[1], &good[start + 1..]].concat(),
            RefuseReason::MalformedSubscribe,
        ),
        (
            [&good[..second], &[64], &good[second + 1..]].concat(),
            RefuseReason::MalformedSubscribe,
        ),
        (
            [&good[..second], &[0], &good[second + 1..]].concat(),
            RefuseReason::MalformedSubscribe,
        ),
    ];
    for (bytes, reason) in cases {
        let refused = Subscription::decode(&bytes).map_err(|refused| refused.reason());
        assert_eq!(refused, Err(reason), "{bytes:02x?}");
    }
}

/// Two frames of an emergency source in `shard`.
fn run(shard: usize) -> FrameRun {
    FrameRun {
        shard,
        kind: SourceKind::LiveUplink,
        priority: Priority::Emergency,
        source_id: 3,
        received_unix_ns: 42,
        first: Position {
            segment: 2,
            offset: 74,
            index: 1,
        },
        frames: vec![
            (9, Bytes::from_static(b"ab")),
            (10, Bytes::from_static(b"c")),
        ],
        reception: None,
    }
}

#[test]
fn daemon_messages_round_trip() {
    let messages = [
        DaemonMessage::Subscribed { version: VERSION },
        DaemonMessage::Catalog { version: 7 },
        DaemonMessage::Refused {
            reason: RefuseReason::PositionPastEnd,
            detail: "past".into(),
        },
        DaemonMessage::End {
            reason: EndReason::Shutdown,
            detail: "drained".into(),
        },
        DaemonMessage::End {
            reason: EndReason::Until,
            detail: "window".into(),
        },
        DaemonMessage::Earliest(Earliest {
            shard: 63,
            oldest: 1_700_000_000_000_000_000,
        }),
        DaemonMessage::Frames(run(0)),
        DaemonMessage::Frames(run(63)),
    ];
    for message in messages {
        let mut encoded = BytesMut::new();
        message.encode(&mut encoded);
        assert_eq!(DaemonMessage::decode(body(encoded)), Ok(message));
    }
}

#[test]
fn unknown_types_and_codes_and_bad_frames_are_errors() {
    // FRAMES is type 0x96; 0x93 (FRAMES without a shard) is no message of this version.
    let mut frames = BytesMut::new();
    encode_frames(&run(0), VERSION, &mut frames);
    assert_eq!(frames[4], 0x96);
    let mut unsharded = body(frames).to_vec();
    unsharded.remove(15);
    unsharded[0] = 0x93;
    assert!(DaemonMessage::decode(Bytes::from(unsharded)).is_err());
    for bad in [
        &[0x92, 99][..],
        &[0x94, 0],
        &[0x7f],
        &[0x93, 0, 0],
        &[0x98, 1],
    ] {
        assert!(DaemonMessage::decode(Bytes::copy_from_slice(bad)).is_err());
    }
    // FRAMES with no frame, a frame cut short, a byte left over, and a shard out of range.
    let encoded = |frames: Vec<(u64, Bytes)>, shard| {
        let mut encoded = BytesMut::new();
        let run = FrameRun {
            shard,
            kind: SourceKind::ArchivedReplay,
            priority: Priority::Routine,
            source_id: 1,
            received_unix_ns: 0,
            first: Position::default(),
            frames,
            reception: None,
        };
        encode_frames(&run, VERSION, &mut encoded);
        body(encoded).to_vec()
    };
    let one = encoded(vec![(1, Bytes::from_static(b"xyz"))], 0);
    let mut shard_64 = one.clone();
    shard_64[15] = 64;
    let bad = [
        encoded(Vec::new(), 0),
        one[..one.len() - 1].to_vec(),
        [&one[..], &[0]].concat(),
        shard_64,
    ];
    for bad in bad {
        assert!(DaemonMessage::decode(Bytes::from(bad)).is_err());
    }
}

/// Each refusal of a SUBSCRIBE's bytes: its text, byte for byte what REFUSED has always
/// carried, and its code.
#[test]
fn every_subscribe_refusal_says_what_it_always_said() {
    let subscribe = [
        (
            SubscribeError::NotSubscribe(None),
            "expected SUBSCRIBE (0x11), got an empty message",
        ),
        (
            SubscribeError::NotSubscribe(Some(0x01)),
            "expected SUBSCRIBE (0x11), got type 0x01",
        ),
        (
            SubscribeError::NoVersion,
            "SUBSCRIBE of 1 byte, without a version",
        ),
        (
            SubscribeError::Short(6),
            "SUBSCRIBE of 6 bytes, shorter than 7",
        ),
        (
            SubscribeError::Length {
                len: 20,
                sources: 1,
                positions: 2,
                window: false,
                expected: 54,
            },
            "SUBSCRIBE of 20 bytes for 1 sources and 2 positions; expected 54",
        ),
        (
            SubscribeError::Length {
                len: 22,
                sources: 0,
                positions: 0,
                window: true,
                expected: 23,
            },
            "SUBSCRIBE of 22 bytes for 0 sources and 0 positions and a time window; expected 23",
        ),
        (
            SubscribeError::PositionsWithoutAfter {
                positions: 2,
                start: 1,
            },
            "2 positions with start 1: positions go with start 2 only",
        ),
        (
            SubscribeError::Shard(64),
            "a position of shard 64; shards are below 64",
        ),
        (SubscribeError::TwoPositions(0), "two positions of shard 0"),
        (SubscribeError::Start(3), "undefined start 3"),
        (SubscribeError::Priority(3), "undefined priority filter 3"),
        (SubscribeError::SourceKind(9), "undefined source kind 9"),
    ];
    for (refused, text) in subscribe {
        assert_eq!(refused.to_string(), text);
        assert_eq!(refused.reason(), RefuseReason::MalformedSubscribe);
        let refusal = Refusal::from(refused);
        assert_eq!(refusal.to_string(), text);
        assert_eq!(refusal.reason(), RefuseReason::MalformedSubscribe);
    }
}

/// Each of the daemon's own refusals: its text, byte for byte what REFUSED has always carried,
/// and its code.
#[test]
fn the_daemons_refusals_say_what_they_always_said() {
    use std::time::Duration;

    use crate::net::Refused;

    let daemon = [
        (
            Refusal::TooManyConnections(Refused::Full { limit: 2 }),
            RefuseReason::TooManyConnections,
            "the follow listener: the listener is at its limit of 2 connections",
        ),
        (
            Refusal::HandshakeTimeout(Duration::from_millis(250)),
            RefuseReason::HandshakeTimeout,
            "no SUBSCRIBE within 250 ms",
        ),
        (
            Refusal::ShuttingDown,
            RefuseReason::ShuttingDown,
            "the daemon is draining; subscribe again later",
        ),
        (
            Refusal::NoArchive,
            RefuseReason::NoArchive,
            "this daemon keeps no archive files (archive.kind = \"count\")",
        ),
    ];
    for (refusal, reason, text) in daemon {
        let message = DaemonMessage::from(&refusal);
        let detail = text.to_string();
        assert_eq!(message, DaemonMessage::Refused { reason, detail });
    }
}

/// Each END's text, byte for byte what it has always carried, and its code.
#[test]
fn every_end_says_what_it_always_said() {
    let ends = [
        (
            End::Drained,
            EndReason::Shutdown,
            "the daemon drained; every durable frame was sent",
        ),
        (
            End::WindowEnded,
            EndReason::Until,
            "every frame received until the window's end was sent",
        ),
        (
            End::SentAfterSubscribe,
            EndReason::UnexpectedMessage,
            "a consumer sends nothing after SUBSCRIBE",
        ),
        (
            End::BufferedAfterSubscribe(3),
            EndReason::UnexpectedMessage,
            "a consumer sends nothing after SUBSCRIBE; 3 bytes came",
        ),
    ];
    for (end, reason, text) in ends {
        let detail = text.to_string();
        assert_eq!(
            DaemonMessage::from(&end),
            DaemonMessage::End { reason, detail }
        );
    }
}
