//! `GET /metrics`: the counters in the Prometheus text exposition format (version 0.0.4).
//!
//! The pipeline's totals and health come first, one family per field of `PipelineStats`; then a
//! family per figure of each source, shard, link and TM output, one line per item with its labels;
//! then the clock's signed figures and the catalog. The families of items are tables at the end of
//! this file: a name, a kind, a help text and the figure.

use std::fmt::Write as _;
use std::time::Duration;

use crate::catalog::CatalogHandle;
use crate::domain::clock;
use crate::domain::source::SourceSnapshot;
use crate::domain::transfer_frame_counts::TransferFrameCounts;
use crate::ops::catalog::CatalogBody;
use crate::ops::health::Health;
use crate::stats::{
    ClockState, LinkSnapshot, LinkState, MetricKind, PipelineStats, ShardStats, StationState,
    Stats, TmStats,
};

/// The whole answer to a scrape: `snapshot` read first, then every item's counters from `stats`,
/// the clock, and the catalog as `sources` hold it.
pub(crate) fn render_scrape(
    snapshot: &PipelineStats,
    stats: &Stats,
    health: Health,
    sources: &[SourceSnapshot],
    catalog: &CatalogHandle,
) -> String {
    let mut body = render_metrics(snapshot, health, sources);
    render_shard_metrics(&mut body, &stats.shard_snapshots());
    render_link_metrics(&mut body, &stats.links());
    render_tm_metrics(&mut body, &stats.tm_snapshots());
    render_clock_metrics(&mut body, &stats.clock());
    render_catalog_metrics(&mut body, &CatalogBody::of(catalog, sources));
    body
}

/// Renders the Prometheus text exposition format (version 0.0.4).
pub fn render_metrics(stats: &PipelineStats, health: Health, sources: &[SourceSnapshot]) -> String {
    let mut out = String::with_capacity(4096);
    render_pipeline_metrics(&mut out, stats);
    render_health_metrics(&mut out, health);
    let labels = |s: &SourceSnapshot| format!("source=\"{}\",kind=\"{}\"", s.id, s.kind.as_str());
    render_per_item(&mut out, &PER_SOURCE, &labelled(sources, labels));
    out
}

/// Appends every field of the pipeline's totals, and the frames in flight.
fn render_pipeline_metrics(out: &mut String, stats: &PipelineStats) {
    for field in stats.fields() {
        let name = match field.kind {
            MetricKind::Counter => format!("aggregator_{}_total", field.name),
            MetricKind::Gauge => format!("aggregator_{}", field.name),
        };
        family(out, &name, field.kind, field.help);
        let _ = writeln!(out, "{name} {}", field.value);
    }
    family(
        out,
        "aggregator_frames_in_flight",
        MetricKind::Gauge,
        "Frames accepted and not yet archived.",
    );
    let _ = writeln!(out, "aggregator_frames_in_flight {}", stats.in_flight());
}

/// Appends the health family: 1 for the state the daemon is in, 0 for the others.
fn render_health_metrics(out: &mut String, health: Health) {
    family(
        out,
        "aggregator_health",
        MetricKind::Gauge,
        "1 for the daemon's current health state, 0 for the others.",
    );
    for state in [Health::Ready, Health::Draining, Health::Degraded] {
        let name = serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "aggregator_health{{state=\"{name}\"}} {}",
            u8::from(state == health)
        );
    }
}

/// Appends each shard's counters, labelled `shard="K"`, in the Prometheus text format.
fn render_shard_metrics(out: &mut String, shards: &[ShardStats]) {
    let labels = |s: &ShardStats| format!("shard=\"{}\"", s.shard);
    render_per_item(out, &PER_SHARD, &labelled(shards, labels));
}

/// Appends each link's counters, labelled `link="NAME"`, in the Prometheus text format.
fn render_link_metrics(out: &mut String, links: &[LinkSnapshot]) {
    if !links.is_empty() {
        let labels = |l: &LinkSnapshot| format!("link=\"{}\"", l.name);
        render_per_item(out, &PER_LINK, &labelled(links, labels));
        render_station_metrics(out, links);
        render_link_info(out, links);
    }
    render_frame_quality_metrics(out, links);
}

/// A gauge of one time per link: its name, help, and the time in nanoseconds (shown in seconds).
type LinkSeconds = (&'static str, &'static str, fn(&LinkSnapshot) -> u64);

/// Appends whether each link's station is alive: the time of its last packet and its longest
/// silence (seconds, with their fractions: a timestamp as a count would lose them), and its
/// state, one line per state with 1 for the one it is in, as `aggregator_health`.
fn render_station_metrics(out: &mut String, links: &[LinkSnapshot]) {
    let seconds = |ns: u64| Duration::from_nanos(ns).as_secs_f64();
    let gauges: [LinkSeconds; 2] = [
        (
            "aggregator_link_last_frame_timestamp_seconds",
            "When the link last read a packet, by the archive clock, in seconds since the Unix epoch, kept across a restart from the archive; 0 before the first.",
            |l| l.last_seen.unwrap_or(0),
        ),
        (
            "aggregator_link_longest_silence_seconds",
            "The longest time between two of the link's packets since the start, in seconds.",
            |l| l.longest_silence_ns,
        ),
    ];
    for (name, help, get) in gauges {
        family(out, name, MetricKind::Gauge, help);
        for link in links {
            let _ = writeln!(
                out,
                "{name}{{link=\"{}\"}} {}",
                link.name,
                seconds(get(link))
            );
        }
    }
    let name = "aggregator_link_station_state";
    let help = "1 for the state the link's station is in (receiving, quiet, disconnected), 0 for the others.";
    family(out, name, MetricKind::Gauge, help);
    for link in links {
        for state in StationState::ALL {
            let _ = writeln!(
                out,
                "{name}{{link=\"{}\",state=\"{}\"}} {}",
                link.name,
                state.as_str(),
                u8::from(link.station_state == state)
            );
        }
    }
}

/// Appends each link's station and merge group as labels of a series of value 1
/// (`aggregator_link_info`), the Prometheus way to attach names to other series: an operator
/// sums any `aggregator_link_*` per station or per group by joining it on `link`, and the link
/// families keep the one label they have always had.
fn render_link_info(out: &mut String, links: &[LinkSnapshot]) {
    let name = "aggregator_link_info";
    let help = "1 for each link, labelled with its station (its `station`, or its name) and its merge group (empty for none): join other aggregator_link_* series on `link` to sum them per station or per group.";
    family(out, name, MetricKind::Gauge, help);
    for link in links {
        let _ = writeln!(
            out,
            "{name}{{link=\"{}\",station=\"{}\",group=\"{}\"}} 1",
            label_value(&link.name),
            label_value(&link.station),
            label_value(link.group.as_deref().unwrap_or(""))
        );
    }
}

/// `value` as a label value of the text format: backslash, double quote and line feed escaped.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the transfer frames' quality of the links with a frame framing, labelled
/// `link="NAME"`.
fn render_frame_quality_metrics(out: &mut String, links: &[LinkSnapshot]) {
    let framed: Vec<_> = links
        .iter()
        .filter_map(|l| Some((format!("link=\"{}\"", l.name), l.frames.as_ref()?)))
        .collect();
    if !framed.is_empty() {
        render_per_item(out, &FRAME_QUALITY, &framed);
    }
}

/// Appends each TM server's and forward's counters, labelled `name="NAME"`.
fn render_tm_metrics(out: &mut String, outputs: &[TmStats]) {
    if outputs.is_empty() {
        return;
    }
    let labels = |t: &TmStats| format!("name=\"{}\"", t.name);
    render_per_item(out, &PER_TM_OUTPUT, &labelled(outputs, labels));
}

/// Appends the clock's signed figures: the wall clock's offset from the archive clock, and the
/// last step's size.
fn render_clock_metrics(out: &mut String, clock: &ClockState) {
    let gauges = [
        (
            "aggregator_clock_offset_seconds",
            "The wall clock minus the archive clock that stamps frames, in seconds.",
            clock::seconds(clock.offset_ns),
        ),
        (
            "aggregator_clock_last_step_seconds",
            "How far the wall clock moved at its last step (negative: back), in seconds; 0 before the first.",
            clock.last_step.map_or(0.0, |step| clock::seconds(step.jump_ns)),
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, MetricKind::Gauge, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Appends the catalog's gauges: its version and the sources that hold it.
fn render_catalog_metrics(out: &mut String, catalog: &CatalogBody) {
    for (name, help, value) in catalog.gauges() {
        family(out, name, MetricKind::Gauge, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

fn family(out: &mut String, name: &str, kind: MetricKind, help: &str) {
    let kind = match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family of one value per item (a source, a shard, a link, a TM output): its name, kind, help,
/// and the value.
type PerItem<T> = (&'static str, MetricKind, &'static str, fn(&T) -> u64);

/// Each of `items` with its labels.
fn labelled<T>(items: &[T], labels: impl Fn(&T) -> String) -> Vec<(String, &T)> {
    items.iter().map(|item| (labels(item), item)).collect()
}

/// Appends each family of `families` with a line per item of `items`, each with its labels.
fn render_per_item<T>(out: &mut String, families: &[PerItem<T>], items: &[(String, &T)]) {
    for (name, kind, help, get) in families {
        family(out, name, *kind, help);
        for (labels, item) in items {
            let _ = writeln!(out, "{name}{{{labels}}} {}", get(item));
        }
    }
}

/// Each source's figures, labelled `source="ID",kind="KIND"`.
const PER_SOURCE: [PerItem<SourceSnapshot>; 8] = [
    (
        "aggregator_source_frames_total",
        MetricKind::Counter,
        "Frames admitted from the source.",
        |s| s.frames,
    ),
    (
        "aggregator_source_emergency_frames_total",
        MetricKind::Counter,
        "Emergency frames admitted from the source.",
        |s| s.emergency_frames,
    ),
    (
        "aggregator_source_bytes_total",
        MetricKind::Counter,
        "Payload bytes admitted from the source.",
        |s| s.bytes,
    ),
    (
        "aggregator_source_lag_frames",
        MetricKind::Gauge,
        "Frames of the source admitted and not yet stored.",
        |s| s.lag,
    ),
    (
        "aggregator_source_last_acked_sequence",
        MetricKind::Gauge,
        "Highest sequence acknowledged to the source.",
        |s| s.last_acked.unwrap_or(0),
    ),
    (
        "aggregator_source_catalog_version",
        MetricKind::Gauge,
        "Newest catalog version the source acknowledged holding (0 for none).",
        |s| s.catalog_version.unwrap_or(0),
    ),
    (
        "aggregator_source_silence_seconds",
        MetricKind::Gauge,
        "Whole seconds since the connection's last frame (since it connected, before the first), by the monotonic clock.",
        |s| s.silence.as_secs(),
    ),
    (
        "aggregator_source_longest_silence_seconds",
        MetricKind::Gauge,
        "The longest the connection was silent before a frame came, in whole seconds.",
        |s| s.longest_silence.as_secs(),
    ),
];

/// Each shard's figures.
const PER_SHARD: [PerItem<ShardStats>; 5] = [
    (
        "aggregator_shard_frames_processed_total",
        MetricKind::Counter,
        "Frames the shard's processor handled.",
        |s| s.frames_processed,
    ),
    (
        "aggregator_shard_frames_archived_total",
        MetricKind::Counter,
        "Frames the shard's archive stored.",
        |s| s.frames_archived,
    ),
    (
        "aggregator_shard_bytes_archived_total",
        MetricKind::Counter,
        "Payload bytes the shard's archive stored.",
        |s| s.bytes_archived,
    ),
    (
        "aggregator_shard_frames_in_flight",
        MetricKind::Gauge,
        "Frames admitted into the shard and not yet stored.",
        |s| s.in_flight,
    ),
    (
        "aggregator_shard_archive_failing",
        MetricKind::Gauge,
        "1 while the shard's archive is failing, else 0.",
        |s| s.archive_failing,
    ),
];

/// Each link's figures.
const PER_LINK: [PerItem<LinkSnapshot>; 27] = [
    (
        "aggregator_link_connected",
        MetricKind::Gauge,
        "1 while a station is connected to the link (or sends to it), else 0.",
        |l| u64::from(l.state == LinkState::Connected),
    ),
    (
        "aggregator_link_connections_total",
        MetricKind::Counter,
        "Connections the link accepted or dialled.",
        |l| l.connections,
    ),
    (
        "aggregator_link_packets_total",
        MetricKind::Counter,
        "Packets the link stored.",
        |l| l.packets,
    ),
    (
        "aggregator_link_bytes_total",
        MetricKind::Counter,
        "Bytes of the packets the link stored.",
        |l| l.bytes,
    ),
    (
        "aggregator_link_copies_total",
        MetricKind::Counter,
        "Packets dropped as copies of packets already stored (redundant stations).",
        |l| l.copies,
    ),
    (
        "aggregator_link_gaps_total",
        MetricKind::Counter,
        "Packets missing from the link's sequence counts.",
        |l| l.gaps,
    ),
    (
        "aggregator_link_unmatched_total",
        MetricKind::Counter,
        "Packets no rule maps to a source, dropped or stored as the default source, and packets whose source was taken.",
        |l| l.unmatched,
    ),
    (
        "aggregator_link_bad_input_total",
        MetricKind::Counter,
        "Packets and connections refused as malformed.",
        |l| l.bad_input,
    ),
    (
        "aggregator_link_trailing_bytes_total",
        MetricKind::Counter,
        "Bytes after the packet in a KISS data frame (a decoder's newline): not stored.",
        |l| l.trailing_bytes,
    ),
    (
        "aggregator_link_ax25_frames_total",
        MetricKind::Counter,
        "AX.25 UI frames the link read (kiss_payload = \"ax25\").",
        |l| l.ax25_frames,
    ),
    (
        "aggregator_link_other_port_frames_total",
        MetricKind::Counter,
        "KISS data frames of a port other than kiss_port: passed over.",
        |l| l.other_port_frames,
    ),
    (
        "aggregator_link_passes_total",
        MetricKind::Counter,
        "Passes the link's station began: a read after a silence past archive.pass_gap_ms.",
        |l| l.pass.passes,
    ),
    (
        "aggregator_link_passes_incomplete_total",
        MetricKind::Counter,
        "Passes that ended with counts the station missed (another station may have filled them).",
        |l| l.pass.incomplete,
    ),
    (
        "aggregator_link_pass_received_packets",
        MetricKind::Gauge,
        "Packets the station received (stored or copies) in its current or last pass.",
        |l| l.pass.received,
    ),
    (
        "aggregator_link_pass_missed_packets",
        MetricKind::Gauge,
        "Counts missing from the station's sequence in its current or last pass.",
        |l| l.pass.missed,
    ),
    (
        "aggregator_link_pass_ongoing",
        MetricKind::Gauge,
        "1 while the station's pass goes on (heard within archive.pass_gap_ms), else 0.",
        |l| u64::from(l.pass.ongoing),
    ),
    (
        "aggregator_link_backfill_importing",
        MetricKind::Gauge,
        "Recordings of the link's spool directory being imported now.",
        |l| l.backfill.importing,
    ),
    (
        "aggregator_link_backfill_files_done_total",
        MetricKind::Counter,
        "Recordings imported whole from the spool directory (moved to done/).",
        |l| l.backfill.files_done,
    ),
    (
        "aggregator_link_backfill_files_failed_total",
        MetricKind::Counter,
        "Recordings that could not be read to their end (moved to failed/ with the reason).",
        |l| l.backfill.files_failed,
    ),
    (
        "aggregator_link_backfill_bytes_total",
        MetricKind::Counter,
        "Bytes of recordings read (uncompressed).",
        |l| l.backfill.totals.bytes,
    ),
    (
        "aggregator_link_backfill_packets_total",
        MetricKind::Counter,
        "Packets read from recordings.",
        |l| l.backfill.totals.packets,
    ),
    (
        "aggregator_link_backfill_stored_total",
        MetricKind::Counter,
        "Packets of recordings stored: the archive lacked them.",
        |l| l.backfill.totals.stored,
    ),
    (
        "aggregator_link_backfill_held_total",
        MetricKind::Counter,
        "Packets of recordings the link's group held already: not stored again.",
        |l| l.backfill.totals.held,
    ),
    (
        "aggregator_link_backfill_unplaced_total",
        MetricKind::Counter,
        "Packets of recordings of no source that carries their APID's count: not stored.",
        |l| l.backfill.totals.unplaced,
    ),
    (
        "aggregator_link_backfill_damaged_ranges_total",
        MetricKind::Counter,
        "Ranges of recordings that held no frame (garbage, a truncated end).",
        |l| l.backfill.totals.damaged_ranges,
    ),
    (
        "aggregator_link_backfill_rejected_total",
        MetricKind::Counter,
        "Frames and packets of recordings the link's checks refused (not in its live counters).",
        |l| l.backfill.totals.rejected,
    ),
    (
        "aggregator_link_backfill_spool_unreadable",
        MetricKind::Gauge,
        "1 while the link's spool directory cannot be read, else 0.",
        |l| u64::from(l.backfill.spool_unreadable),
    ),
];

/// The transfer frames' quality, of each link with a frame framing.
const FRAME_QUALITY: [PerItem<TransferFrameCounts>; 6] = [
    (
        "aggregator_link_frames_good_total",
        MetricKind::Counter,
        "Transfer frames the link took: of a configured virtual channel, or idle frames of any.",
        |f| f.frames_good,
    ),
    (
        "aggregator_link_frames_bad_fecf_total",
        MetricKind::Counter,
        "Transfer frames dropped because their frame error control field did not match.",
        |f| f.frames_bad_fecf,
    ),
    (
        "aggregator_link_frames_dropped_total",
        MetricKind::Counter,
        "Transfer frames dropped: wrong length, version or spacecraft, virtual channel not configured, first header pointer beyond the data field.",
        |f| f.frames_dropped,
    ),
    (
        "aggregator_link_vc_gaps_total",
        MetricKind::Counter,
        "Transfer frames missing from the virtual channels' frame counts.",
        |f| f.vc_gaps,
    ),
    (
        "aggregator_link_packets_extracted_total",
        MetricKind::Counter,
        "Packets taken out of transfer frames (idle packets not counted).",
        |f| f.packets_extracted,
    ),
    (
        "aggregator_link_packets_dropped_incomplete_total",
        MetricKind::Counter,
        "Packets in reassembly dropped because a frame was lost or the first header pointer disagreed.",
        |f| f.packets_dropped_incomplete,
    ),
];

/// Each TM server's and forward's figures.
const PER_TM_OUTPUT: [PerItem<TmStats>; 7] = [
    (
        "aggregator_tm_connections",
        MetricKind::Gauge,
        "Connections to the TM server open now.",
        |t| t.connections,
    ),
    (
        "aggregator_tm_packets_sent_total",
        MetricKind::Counter,
        "Space packets the TM server or forward sent.",
        |t| t.packets_sent,
    ),
    (
        "aggregator_tm_bytes_sent_total",
        MetricKind::Counter,
        "Bytes the TM server or forward sent, the framing included.",
        |t| t.bytes_sent,
    ),
    (
        "aggregator_tm_frames_not_packets_total",
        MetricKind::Counter,
        "Selected frames skipped for not being one whole space packet.",
        |t| t.frames_not_packets,
    ),
    (
        "aggregator_tm_frames_skipped_total",
        MetricKind::Counter,
        "Frames of its sources the TM output skipped: retention deleted them before it read them.",
        |t| t.frames_skipped,
    ),
    (
        "aggregator_tm_connections_refused_total",
        MetricKind::Counter,
        "Connections the TM server closed at once, at its max_connections.",
        |t| t.connections_refused,
    ),
    (
        "aggregator_tm_send_errors_total",
        MetricKind::Counter,
        "Datagrams the TM forward could not send.",
        |t| t.send_errors,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{LinkNames, StationBounds};

    const BOUNDS: StationBounds = StationBounds {
        quiet_after: Duration::from_secs(60),
        pass_gap: Duration::from_secs(60),
    };

    /// Each link has its last packet's time (0 before the first), one state line per state, 1
    /// for the one its station is in, and its passes.
    #[test]
    fn each_station_shows_its_last_packet_and_its_state() {
        let stats = Stats::new();
        stats.add_link(LinkNames::alone("never"), "tcp-listen", false, BOUNDS);
        let heard = stats.add_link(LinkNames::alone("heard"), "udp", false, BOUNDS);
        heard.connected();
        heard.seen(1_700_000_000_250_000_000);
        heard.stored(4, 40);
        heard.gaps(3);
        let mut text = String::new();
        render_link_metrics(&mut text, &stats.links());
        let line = |series: &str| {
            text.lines()
                .find(|l| l.starts_with(series))
                .map(str::to_owned)
        };
        assert_eq!(
            line("aggregator_link_last_frame_timestamp_seconds{link=\"heard\"}").as_deref(),
            Some("aggregator_link_last_frame_timestamp_seconds{link=\"heard\"} 1700000000.25")
        );
        assert!(text.contains("aggregator_link_last_frame_timestamp_seconds{link=\"never\"} 0\n"));
        assert!(text
            .contains("aggregator_link_station_state{link=\"never\",state=\"disconnected\"} 1\n"));
        assert!(
            text.contains("aggregator_link_station_state{link=\"never\",state=\"receiving\"} 0\n")
        );
        // Its last packet is older than a minute: connected, quiet.
        assert!(text.contains("aggregator_link_station_state{link=\"heard\",state=\"quiet\"} 1\n"));
        assert!(
            text.contains("aggregator_link_station_state{link=\"heard\",state=\"receiving\"} 0\n")
        );
        // Its one pass ended (silent past the gap) with 3 counts missed.
        for (series, value) in [
            ("passes_total", 1),
            ("passes_incomplete_total", 1),
            ("pass_received_packets", 4),
            ("pass_missed_packets", 3),
            ("pass_ongoing", 0),
        ] {
            let line = format!("aggregator_link_{series}{{link=\"heard\"}} {value}\n");
            assert!(text.contains(&line), "{line}");
        }
        assert!(text.contains("aggregator_link_passes_total{link=\"never\"} 0\n"));
        assert_eq!(
            text.matches("# TYPE aggregator_link_station_state gauge")
                .count(),
            1
        );
    }

    /// Each link names its station and group on `aggregator_link_info`, so that its stored
    /// packets and bytes sum per station and per group; a link of no group has an empty one.
    #[test]
    fn each_link_names_its_station_and_group_for_the_sums() {
        let stats = Stats::new();
        for (name, station, group, packets) in [
            ("kiruna-s", "Kiruna", Some("sat-a"), 80),
            ("kiruna-x", "Kiruna", None, 5),
            ("svalbard", "Svalbard", Some("sat-a"), 30),
        ] {
            let names = LinkNames {
                name,
                station,
                group,
            };
            let link = stats.add_link(names, "tcp-listen", false, BOUNDS);
            link.stored(packets, packets * 106);
        }
        stats.add_link(LinkNames::alone("odd\"name"), "udp", false, BOUNDS);
        let mut text = String::new();
        render_link_metrics(&mut text, &stats.links());
        for line in [
            "aggregator_link_info{link=\"kiruna-s\",station=\"Kiruna\",group=\"sat-a\"} 1\n",
            "aggregator_link_info{link=\"kiruna-x\",station=\"Kiruna\",group=\"\"} 1\n",
            "aggregator_link_info{link=\"svalbard\",station=\"Svalbard\",group=\"sat-a\"} 1\n",
            "aggregator_link_info{link=\"odd\\\"name\",station=\"odd\\\"name\",group=\"\"} 1\n",
            "aggregator_link_packets_total{link=\"kiruna-s\"} 80\n",
            "aggregator_link_bytes_total{link=\"svalbard\"} 3180\n",
        ] {
            assert!(text.contains(line), "{line}{text}");
        }
        assert_eq!(text.matches("# TYPE aggregator_link_info gauge").count(), 1);
        // The names go to /stats too.
        let links = stats.links();
        assert_eq!(
            (links[1].station.as_str(), links[1].group.as_deref()),
            ("Kiruna", None)
        );
    }

    /// A link of transfer frames shows its frame quality, one line per family with its own
    /// counts; a link of packets shows none.
    #[test]
    fn frame_quality_is_rendered_for_links_of_frames_only() {
        let stats = Stats::new();
        stats.add_link(LinkNames::alone("packets"), "tcp-listen", false, BOUNDS);
        let framed = stats.add_link(LinkNames::alone("frames"), "udp", true, BOUNDS);
        framed.frames(&TransferFrameCounts {
            frames_good: 7,
            vc_gaps: 2,
            bad_packets: 1,
            ..TransferFrameCounts::default()
        });
        let mut text = String::new();
        render_link_metrics(&mut text, &stats.links());
        assert!(text.contains("aggregator_link_frames_good_total{link=\"frames\"} 7\n"));
        assert!(text.contains("aggregator_link_vc_gaps_total{link=\"frames\"} 2\n"));
        assert!(text.contains("aggregator_link_bad_input_total{link=\"frames\"} 1\n"));
        assert_eq!(
            text.matches("# HELP aggregator_link_frames_good_total")
                .count(),
            1
        );
        assert!(!text.contains("frames_good_total{link=\"packets\"}"));
    }
}
