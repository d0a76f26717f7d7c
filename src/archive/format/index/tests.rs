//! The segment index's tests: what it holds, its codec, its rebuild.

use super::*;
use crate::archive::format;
use crate::domain::frame::Priority;

fn sample() -> SegmentIndex {
    let mut index = SegmentIndex {
        len: 4096,
        ..SegmentIndex::default()
    };
    index.add(8, (SourceKind::LiveUplink, 7), 2_000, 0..10);
    index.add(900, (SourceKind::LiveUplink, 7), 1_000, [12, 13]);
    index.add(1_000, (SourceKind::ArchivedReplay, 1), 3_000, [5]);
    index.add_station((SourceKind::LiveUplink, 7), "Kiruna", 0..10);
    index.add_station((SourceKind::LiveUplink, 7), "Svalbard", [12, 13]);
    let event = ClockEvent {
        kind: ClockEventKind::Start,
        archive_ns: 2_500,
        wall_ns: 2_500,
        jump_ns: -6_000_000_000,
    };
    index.add_clock(1_200, event);
    index
}

#[test]
fn the_time_index_finds_every_frame_of_a_range_out_of_order_or_not() {
    // Records of 10 KiB, received out of order: a block every 7 records.
    let mut index = SegmentIndex::default();
    let received = |record: u64| 1_000 + (record * 37) % 100;
    let record_len = 10 * 1024;
    for record in 0..100u64 {
        let offset = 8 + record * record_len;
        index.add(
            offset,
            (SourceKind::LiveUplink, 1),
            received(record),
            [record],
        );
    }
    index.len = 8 + 100 * record_len;
    assert_eq!(index.times.len(), 15);
    for (from, to) in [
        (0, 999),
        (1_000, 1_099),
        (1_040, 1_040),
        (1_050, 1_060),
        (2_000, 3_000),
    ] {
        let ranges = index.ranges_between(from, to, u64::MAX);
        for record in 0..100 {
            let offset = 8 + record * record_len;
            let inside = ranges.iter().any(|&(a, b)| a <= offset && offset < b);
            if (from..=to).contains(&received(record)) {
                assert!(inside, "record {record} of {from}..={to} not in {ranges:?}");
            }
        }
        let outside = (0..100).all(|r| !(from..=to).contains(&received(r)));
        assert_eq!(ranges.is_empty(), outside, "{from}..={to}: {ranges:?}");
    }
    // Blocks that meet the range and follow each other make one range, to the segment's end.
    assert_eq!(
        index.ranges_between(0, u64::MAX, u64::MAX),
        [(8, index.len)]
    );
}

/// A reader of one source passes over the blocks that hold only others; one of every source
/// reads them all.
#[test]
fn the_time_index_passes_over_blocks_of_other_sources() {
    let (a, b) = ((SourceKind::LiveUplink, 3), (SourceKind::LiveUplink, 4));
    let mask = |source: SourceKey| sources_mask(&[source]);
    assert_ne!(mask(a), mask(b), "the test needs sources of two bits");
    // Records of 64 KiB, a block each, alternating sources; the last holds both.
    let mut index = SegmentIndex::default();
    let record_len = TIME_BLOCK_BYTES;
    for record in 0..6u64 {
        let source = if record % 2 == 0 { a } else { b };
        index.add(8 + record * record_len, source, 1_000, [record]);
    }
    index.add(8 + 5 * record_len + 100, a, 1_000, [6]);
    index.len = 8 + 6 * record_len;
    let of_a = index.ranges_between(0, u64::MAX, mask(a));
    let block = |n: u64| (8 + n * record_len, 8 + (n + 1) * record_len);
    assert_eq!(of_a, [block(0), block(2), (block(4).0, index.len)]);
    assert_eq!(
        index.ranges_between(0, u64::MAX, mask(b)),
        [block(1), block(3), block(5)]
    );
    assert_eq!(
        index.ranges_between(0, u64::MAX, sources_mask(&[])),
        [(8, index.len)]
    );
}

/// A station's records between the uplinks' get blocks of their own: a reader of the station's
/// source reads its records, not the 66 KiB records between them.
#[test]
fn a_stations_frames_are_read_without_the_uplinks_records_between_them() {
    let (uplink, station) = ((SourceKind::LiveUplink, 1), (SourceKind::LiveUplink, 9));
    assert_ne!(sources_mask(&[uplink]), sources_mask(&[station]));
    let mut index = SegmentIndex::default();
    let (uplink_len, station_len) = (66 * 1024, 1_100);
    let mut offset = 8;
    let mut stations = Vec::new();
    for second in 0..20u64 {
        index.add(offset, uplink, second, [second]);
        offset += uplink_len;
        index.add_delivered(offset, station, second, "Kiruna", || [second]);
        stations.push((offset, offset + station_len));
        offset += station_len;
    }
    index.len = offset;
    let read = index.ranges_between(0, u64::MAX, sources_mask(&[station]));
    assert_eq!(read, stations);
    assert_eq!(index.stations[&(0, 9)]["Kiruna"].len(), 20);
}

/// However a station's and the uplinks' records alternate, small, the time index keeps at most a
/// block per 8 KiB of records (and one per 64 KiB), so that an index stays small.
#[test]
fn alternating_small_records_keep_the_blocks_few() {
    let (uplink, station) = ((SourceKind::LiveUplink, 1), (SourceKind::LiveUplink, 9));
    let mut index = SegmentIndex::default();
    let mut offset = 8;
    for record in 0..40_000u64 {
        let sequence = record / 2;
        match record % 2 {
            0 => index.add(offset, uplink, record, [sequence]),
            _ => index.add_delivered(offset, station, record, "Kiruna", || [sequence]),
        }
        offset += 200;
    }
    index.len = offset;
    let most = 2 * index.len / STATIONS_APART_BYTES + index.len / TIME_BLOCK_BYTES + 3;
    assert!(
        index.times.len() as u64 <= most,
        "{} blocks",
        index.times.len()
    );
    // A station's block after each 16 KiB of the uplinks'.
    assert!(index.times.len() > 900, "{} blocks", index.times.len());
}

#[test]
fn an_index_reads_back_as_written() {
    let index = sample();
    assert_eq!(index.frames, 13);
    assert_eq!(index.received, Some((1_000, 3_000)));
    let mut bytes = Vec::new();
    index.encode(&mut bytes);
    assert_eq!(decode(&bytes), Some(index.clone()));
    let live = &index.sources[&(0, 7)];
    assert_eq!(live.frames, 12);
    assert_eq!(
        live.sequences.runs().collect::<Vec<_>>(),
        [(0, 9), (12, 13)]
    );
}

/// An earlier build's index (`TLMIDX03`: no CLOCK records) is read, not rebuilt.
#[test]
fn an_index_of_the_build_before_reads_without_clock_records() {
    let index = SegmentIndex {
        clock: Vec::new(),
        ..sample()
    };
    let mut bytes = Vec::new();
    index.encode(&mut bytes);
    // What the earlier build wrote: its magic, and no count of CLOCK records.
    let mut earlier = MAGIC_03.to_vec();
    earlier.extend_from_slice(&bytes[8..bytes.len() - 8]);
    let crc = crc32fast::hash(&earlier);
    earlier.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(decode(&earlier), Some(index));
}

proptest::proptest! {
    /// Any index, of any sources and blocks, reads back as written.
    #[test]
    fn any_index_reads_back_as_written(
        frames in proptest::collection::vec(
            (0u64..4, 0u32..5, 0u64..1_000, 0u64..u64::MAX / 2, 1u64..200_000),
            0..60,
        ),
    ) {
        let mut index = SegmentIndex::default();
        let mut offset = 8;
        for (kind, id, sequence, received, len) in frames {
            let kind = match kind % 2 {
                0 => SourceKind::LiveUplink,
                _ => SourceKind::ArchivedReplay,
            };
            index.add(offset, (kind, id), received, [sequence]);
            offset += len;
        }
        index.len = offset;
        let mut bytes = Vec::new();
        index.encode(&mut bytes);
        proptest::prop_assert_eq!(decode(&bytes), Some(index));
    }
}

#[test]
fn a_damaged_or_cut_index_is_refused_never_trusted() {
    let mut bytes = Vec::new();
    sample().encode(&mut bytes);
    for cut in 0..bytes.len() {
        assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
    }
    for at in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        assert_eq!(decode(&flipped), None, "byte {at} flipped");
    }
}

/// A span is trusted only for the segment and length it was read at, and only by the cache that
/// read it; a deleted segment is forgotten.
#[test]
fn a_known_span_is_of_the_length_it_was_read_at() {
    let dir = Path::new("/nonexistent/spans");
    let spans = SpanCache::default();
    spans.remember(dir, 9, &sample());
    assert_eq!(spans.known(dir, 9, 4096), Some(Some((1_000, 3_000))));
    assert_eq!(spans.known(dir, 9, 4097), None, "another length: stale");
    assert_eq!(spans.known(dir, 8, 4096), None);
    assert_eq!(
        SpanCache::default().known(dir, 9, 4096),
        None,
        "another archive's"
    );
    assert_eq!(
        spans.clone().known(dir, 9, 4096),
        Some(Some((1_000, 3_000)))
    );
    spans.forget(dir, 9);
    assert_eq!(spans.known(dir, 9, 4096), None);
}

#[test]
fn names_pair_an_index_with_its_segment() {
    let dir = Path::new("/a");
    let path = index_path(dir, 42);
    assert_eq!(path, dir.join("segment-00000000000000000042.index"));
    assert_eq!(indexed_segment(&path), Some(42));
    assert_eq!(indexed_segment(&dir.join(format::segment_name(42))), None);
}

#[test]
fn a_stale_index_is_rebuilt_from_its_segment() {
    let dir = std::env::temp_dir().join(format!("index-rebuild-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format::segment_name(3));
    let mut bytes = format::MAGIC.to_vec();
    for sequence in 0..5 {
        let kind = SourceKind::LiveUplink;
        format::encode_frame(&mut bytes, kind, Priority::Routine, 9, sequence, 77, b"x");
    }
    fs::write(&path, &bytes).unwrap();
    // An index of another length: what a repair or a crash leaves.
    sample().write(&index_path(&dir, 3)).unwrap();
    let index = SegmentIndex::read_or_rebuild(&dir, 3, &path, &SpanCache::default()).unwrap();
    assert_eq!(index.len, bytes.len() as u64);
    assert_eq!(index.frames, 5);
    assert_eq!(index.received, Some((77, 77)));
    // Written again, and read from its file the next time.
    let again = fs::read(index_path(&dir, 3)).unwrap();
    assert_eq!(decode(&again), Some(index));
    fs::remove_dir_all(&dir).unwrap();
}
