//! Ground-segment links (`[[links]]`, `docs/ground-segment.md`): ground stations feed the daemon
//! CCSDS space packets as they already send them, with no adapter of ours in front.
//!
//! A link takes packets from a TCP connection it accepts or dials, or from UDP datagrams, and
//! delimits them as the station frames them ([`crate::protocol::ccsds`],
//! [`crate::protocol::kiss`]), or takes them out of transfer frames
//! ([`crate::protocol::transfer_frames`]). Each packet becomes a frame of a source the link's rules pick from
//! its APID, in the lane its priority rule picks, and from there it goes where every frame goes:
//! the fan-in, the archive, followers, the feed, sinks. Unlike the ingest protocol, a station hears
//! no acknowledgement: what a link received is stored exactly once; what a station sent into a
//! connection that died is the station's (docs/guarantees.md).
//!
//! Links of one `group` are redundant stations of one spacecraft, merged by [`merge`]: each packet
//! is stored once, whichever station delivered it, and neither station's losses lose a packet the
//! other received.
//!
//! A station's recordings, the files it wrote while it could not reach the daemon, are read by
//! [`recording`] with the same decoders, frame by frame with their places in the file.
//!
//! The binary binds the links' sockets before the daemon starts ([`LinkSockets::bind`]), so that
//! an address in use is a startup error; the daemon serves them until the drain.

mod backfill;
pub(crate) use backfill::{on_disk, place, takes_name, Crcs, FrameAt, Holdings, Window, UPLOADING};
mod frames;
mod merge;
pub mod recording;
mod station;
mod stream;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{LinkConfig, Transport};
use crate::domain::frame::SourceKey;
use crate::ingest::router::RouterHandle;
use crate::stats::{LinkNames, StationBounds, Stats};
use merge::MergeGroup;
use station::Link;

/// The links' sockets, bound.
#[derive(Debug, Default)]
pub struct LinkSockets {
    links: Vec<(LinkConfig, Socket)>,
}

#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
    /// tcp-connect: nothing to bind.
    Dial,
}

/// A link's socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the link {link:?} on {address}: {source}")]
pub struct BindError {
    pub link: String,
    pub address: String,
    pub source: std::io::Error,
}

impl LinkSockets {
    /// Binds every tcp-listen and udp link's address.
    pub async fn bind(links: &[LinkConfig]) -> Result<LinkSockets, BindError> {
        let mut bound = Vec::with_capacity(links.len());
        for link in links {
            let failed = |source| BindError {
                link: link.name.clone(),
                address: link.address.clone(),
                source,
            };
            let address = link.address.as_str();
            let socket = match link.transport {
                Transport::TcpListen => {
                    Socket::Tcp(TcpListener::bind(address).await.map_err(failed)?)
                }
                Transport::Udp => Socket::Udp(UdpSocket::bind(address).await.map_err(failed)?),
                Transport::TcpConnect => Socket::Dial,
            };
            if let Some(addr) = socket.local_addr() {
                tracing::info!(link = %link.name, transport = link.transport.as_str(), address = %addr, "link listening");
            }
            bound.push((link.clone(), socket));
        }
        Ok(LinkSockets { links: bound })
    }

    /// The address the link `name` is bound to (none for tcp-connect).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        let (_, socket) = self.links.iter().find(|(link, _)| link.name == name)?;
        socket.local_addr()
    }
}

impl Socket {
    fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Socket::Tcp(listener) => listener.local_addr().ok(),
            Socket::Udp(socket) => socket.local_addr().ok(),
            Socket::Dial => None,
        }
    }
}

/// What the links need of the daemon.
pub(crate) struct LinkServices {
    pub router: RouterHandle,
    pub stats: Stats,
    pub max_batch: usize,
    pub read_buffer: usize,
    /// `archive.pass_gap_ms`: a station's silence past it ends its pass.
    pub pass_gap: std::time::Duration,
    pub drain: CancellationToken,
    /// What the archive holds of given sources, which a backfill asks of its link's group;
    /// `None` when the archive keeps no files (no spool directory is watched then).
    pub holdings: Option<Arc<dyn backfill::Holdings>>,
}

/// Serves every link until the drain, each task tracked by `tracker`.
pub(crate) fn serve(sockets: LinkSockets, services: LinkServices, tracker: &TaskTracker) {
    // A group's merge remembers as many counts as the most any of its links asks for.
    let mut windows: HashMap<&str, usize> = HashMap::new();
    for (config, _) in &sockets.links {
        let window = windows.entry(config.group_name()).or_default();
        *window = config.merge_window.max(*window);
    }
    let mut groups: HashMap<String, Arc<MergeGroup>> = windows
        .into_iter()
        .map(|(name, window)| (name.to_owned(), Arc::new(MergeGroup::new(window))))
        .collect();
    let counted = counted_sources(&sockets.links);
    let mut turns: HashMap<String, Arc<tokio::sync::Mutex<()>>> = HashMap::new();
    for (config, socket) in sockets.links {
        let group = groups
            .entry(config.group_name().to_owned())
            .or_insert_with(|| Arc::new(MergeGroup::new(config.merge_window)));
        let framed = config.frame_format().is_some();
        let names = LinkNames {
            name: &config.name,
            station: config.station_name(),
            group: config.group.as_deref(),
        };
        let bounds = StationBounds {
            quiet_after: config.quiet_after,
            pass_gap: services.pass_gap,
        };
        let counters = (services.stats).add_link(names, config.transport.as_str(), framed, bounds);
        let link = Arc::new(Link::new(
            config,
            counters,
            Arc::clone(group),
            services.router.clone(),
            services.stats.clone(),
            services.max_batch,
            services.read_buffer,
        ));
        let drain = services.drain.clone();
        if let Some(dir) = link.config.spool_dir.clone() {
            let turn = turns
                .entry(link.config.group_name().to_owned())
                .or_default();
            spool(&link, dir, &services, (&counted, turn), tracker);
        }
        match socket {
            Socket::Tcp(listener) => {
                tracker.spawn(stream::listen(link, listener, drain, tracker.clone()));
            }
            Socket::Udp(socket) => {
                tracker.spawn(udp::receive(link, socket, drain));
            }
            Socket::Dial => {
                tracker.spawn(stream::dial(link, drain));
            }
        }
    }
}

/// The sources that carry an APID's count, by merge group and APID: what a backfill into a
/// link of the group asks the archive about.
type CountedSources = HashMap<String, HashMap<u16, Vec<SourceKey>>>;

/// [`CountedSources`] of `links`.
fn counted_sources(
    links: &[(LinkConfig, Socket)],
) -> HashMap<String, HashMap<u16, Vec<SourceKey>>> {
    let mut groups: HashMap<String, HashMap<u16, Vec<SourceKey>>> = HashMap::new();
    for (link, _) in links {
        let group = groups.entry(link.group_name().to_owned()).or_default();
        for (apid, id) in link.count_sources() {
            group.entry(apid).or_default().push((link.kind, id));
        }
    }
    groups
}

/// Watches the link's spool directory ([`backfill`]), with the archive's files to ask.
fn spool(
    link: &Arc<Link>,
    dir: std::path::PathBuf,
    services: &LinkServices,
    (counted, turn): (&CountedSources, &Arc<tokio::sync::Mutex<()>>),
    tracker: &TaskTracker,
) {
    let Some(holdings) = services.holdings.clone() else {
        tracing::warn!(link = %link.config.name, "spool_dir is not watched: the archive keeps no files to tell what it holds");
        return;
    };
    let group = counted
        .get(link.config.group_name())
        .cloned()
        .unwrap_or_default();
    let backfill = backfill::Backfill {
        holdings,
        group: Arc::new(group),
        drain: services.drain.clone(),
        group_turn: Arc::clone(turn),
    };
    tracker.spawn(backfill::watch(Arc::clone(link), dir, backfill));
}
