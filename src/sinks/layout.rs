//! How a stream lays frames out in messages (`docs/scale-out.md`, "Layouts"): named in the
//! stream's description when the sink creates it, so that every sink and reader of the stream
//! finds it there, and kept for the stream's life. `records/2` differs from `records/1` only in
//! its bodies ([`super::pack`]): where a comment of the sink says `records/1`, it means both.

use crate::config::StreamLayout;

/// How a stream lays frames out in messages, chosen when the sink creates it and kept for its
/// life (`docs/scale-out.md`): the stream's description names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One message per frame, its fields in headers: streams that builds before `records/1`
    /// created, or that an operator created.
    Frame,
    /// Several frames of one source per message, as the archive's frame records: streams that
    /// builds before `records/2` created.
    Records,
    /// `records/1`'s messages, each body compressed where that pays (`super::pack`).
    Compressed,
}

/// What a stream's description starts with when the sink created it; the layout's name follows.
const DESCRIBED: &str = "aggregator frames, layout ";

impl Layout {
    /// Its name, with its version.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Frame => "frame/1",
            Layout::Records => "records/1",
            Layout::Compressed => "records/2",
        }
    }

    /// The layout of the streams the sink creates by default (`sinks.nats.layout`).
    pub const NEW: Layout = Layout::created(StreamLayout::Records2);

    /// The layout of a stream the sink creates with `sinks.nats.layout` `layout`.
    pub const fn created(layout: StreamLayout) -> Layout {
        match layout {
            StreamLayout::Records2 => Layout::Compressed,
            StreamLayout::Records1 => Layout::Records,
        }
    }

    /// Whether a message holds frame records of one source (`records/1` and `records/2`).
    pub fn batches(self) -> bool {
        self != Layout::Frame
    }

    /// The description of a stream the sink creates with this layout.
    pub fn description(self) -> String {
        format!("{DESCRIBED}{}", self.name())
    }

    /// The layout of a stream of `description`: `frame/1` where the sink did not describe it;
    /// `Err` with the name of a layout this build does not know.
    pub fn of_stream(description: Option<&str>) -> Result<Layout, String> {
        let Some(name) = description.and_then(|d| d.strip_prefix(DESCRIBED)) else {
            return Ok(Layout::Frame);
        };
        Layout::named(name).ok_or_else(|| name.to_string())
    }

    /// The layout named `name` (`records/1`, say), if this build knows it.
    pub fn named(name: &str) -> Option<Layout> {
        [Layout::Frame, Layout::Records, Layout::Compressed]
            .into_iter()
            .find(|layout| layout.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_s_layout_is_its_description_s_and_an_unknown_one_is_named() {
        assert_eq!(Layout::of_stream(None), Ok(Layout::Frame));
        assert_eq!(
            Layout::of_stream(Some("telemetry of north")),
            Ok(Layout::Frame)
        );
        let described = Layout::Records.description();
        assert_eq!(described, "aggregator frames, layout records/1");
        assert_eq!(Layout::of_stream(Some(&described)), Ok(Layout::Records));
        let described = Layout::NEW.description();
        assert_eq!(described, "aggregator frames, layout records/2");
        assert_eq!(Layout::of_stream(Some(&described)), Ok(Layout::Compressed));
        let unknown = Layout::of_stream(Some("aggregator frames, layout records/9"));
        assert_eq!(unknown, Err("records/9".to_string()));
    }
}
