// The dashboard's script. Three inputs, the first two reconnecting by themselves with backoff when
// the daemon goes away (a restart, a network cut):
// - /stats, polled every second: health, uptime, counters and the sources table. The page keeps
//   what the plot and the rates need, since the daemon keeps no history: the plot is the daemon's
//   own frames_per_sec at each poll; a source's rate is the change of its frames over the last
//   few seconds of the daemon's uptime (the daemon's clock, not the browser's timers).
// - the live feed, /feed?priority=emergency, a WebSocket: one JSON object per frame, or
//   {"gap": N} when this subscriber missed N frames; any other shape is ignored.
// - /archive/completeness, every 10 s and when another window is chosen: a bar per source over
//   the window, where frames are held and where sequences are missing (asked again at the next
//   turn when it fails). A daemon without archive files answers 404: the panel is hidden.
"use strict";

const POLL_MS = 1000;
const HISTORY_MS = 5 * 60 * 1000;
const MIN_SPAN_MS = 10 * 1000;
const MAX_EMERGENCIES = 50;
const PAYLOAD_PREVIEW_BYTES = 12;
// A source's rate is over this many seconds of polls: steadier than one poll for a source that
// sends in bursts.
const RATE_WINDOW_S = 5;
const RETRY_FIRST_MS = 500;
const RETRY_MOST_MS = 10000;
// A feed connection open this long was not refused: its close starts the backoff afresh.
const FEED_STABLE_MS = 10000;
// New emergency entries are drawn together, at most this often, whatever the feed's rate.
const EMERGENCY_FLUSH_MS = 100;
// /stats calls the kinds by their protocol names; the page, like the issue, says live and replay.
const KINDS = { live_uplink: "live", archived_replay: "replay" };
const SORT_STORAGE = "aggregator-dashboard-sort";

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en-US");
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact" });

// Exponential backoff with jitter, so that screens reconnecting to a restarted daemon spread out.
class Backoff {
  constructor() { this.reset(); }
  reset() { this.delay = RETRY_FIRST_MS; }
  next() {
    const delay = this.delay * (0.8 + 0.4 * Math.random());
    this.delay = Math.min(this.delay * 2, RETRY_MOST_MS);
    return delay;
  }
}

function setLink(element, state, text) {
  element.dataset.state = state;
  element.textContent = text;
}

const seconds = (ms) => `${Math.max(1, Math.round(ms / 1000))} s`;

// ---------------------------------------------------------------------------------------------
// /stats
// ---------------------------------------------------------------------------------------------

// The daemon's uptime at the previous poll: when it goes back, the daemon restarted.
let previousUptime = null;
// Total rate samples for the plot: { t: performance.now(), v: frames/s or null for a gap }.
const samples = [];

async function pollStats(onRecovered) {
  const backoff = new Backoff();
  let failing = false;
  for (;;) {
    let wait = POLL_MS;
    try {
      const response = await fetch("stats", {
        cache: "no-store",
        signal: AbortSignal.timeout(3 * POLL_MS),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      showStats(await response.json(), performance.now());
      setLink($("stats-status"), "live", "live");
      backoff.reset();
      if (failing) onRecovered();
      failing = false;
    } catch (error) {
      wait = backoff.next();
      if (!failing) showUnreachable(error);
      failing = true;
      setLink($("stats-status"), "retrying", `no answer; retrying in ${seconds(wait)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

function showStats(body, now) {
  const stats = body.stats;
  const uptime = body.uptime_seconds;
  // A restart breaks the line: no rate is drawn across it.
  if (previousUptime !== null && uptime < previousUptime) addSample(now, null);
  addSample(now, body.rates.frames_per_sec);
  previousUptime = uptime;
  document.body.classList.remove("stale");

  showHealth(body.health, stats, body.clock);
  $("uptime").textContent = formatUptime(uptime);
  $("started").textContent = `since ${clock(new Date(Date.now() - uptime * 1000))} UTC`;
  $("in-flight").textContent = number.format(body.frames_in_flight);
  $("archive-bytes").textContent = formatBytes(stats.bytes_archived);
  $("archive-frames").textContent =
    `${number.format(stats.frames_archived)} frames · ${formatBytes(stats.archive_unsynced_bytes)} not yet synced`;
  showArchive(body.archive);
  showClock(body.clock);
  const live = body.sources.filter((s) => s.kind === "live_uplink").length;
  $("source-count").textContent = number.format(body.sources.length);
  $("source-kinds").textContent = `${live} live · ${body.sources.length - live} replay`;
  const catalog = body.catalog;
  $("catalog-version").textContent = catalog.version === null ? "none" : `v${number.format(catalog.version)}`;
  $("catalog-holders").textContent =
    catalog.version === null ? "nothing published" : `held by ${catalog.holding_latest} of ${catalog.sources} sources`;
  showNats(stats);
  showLinks(body.links);
  showShards(body.shards);
  showSources(body.sources, uptime);
  fitValues();
}

// The smallest a tile's figure is shrunk to.
const SMALLEST_VALUE_PX = 14;

/// Shrinks the figures' tiles' figures, all alike, when one is wider than its tile (a long uptime,
/// a large size, a narrow screen), until each fits; a list's tile's figure (the NATS sink's state)
/// on its own. Figures that fit keep the style sheet's size.
function fitValues() {
  fitAlike([...document.querySelectorAll(".figures .value")]);
  for (const value of document.querySelectorAll(".lists .value")) fitAlike([value]);
}

function fitAlike(values) {
  for (const value of values) value.style.fontSize = "";
  const overflows = () => values.some((value) => value.scrollWidth > value.clientWidth);
  if (!overflows()) return;
  // In proportion first, then (text does not scale quite in proportion) a pixel at a time.
  const shown = values.filter((value) => value.clientWidth > 0);
  const ratio = Math.min(...shown.map((value) => value.clientWidth / value.scrollWidth));
  let size = Math.floor(parseFloat(getComputedStyle(values[0]).fontSize) * ratio);
  for (;;) {
    size = Math.max(SMALLEST_VALUE_PX, size);
    for (const value of values) value.style.fontSize = `${size}px`;
    if (size === SMALLEST_VALUE_PX || !overflows()) return;
    size -= 1;
  }
}

/// One line per shard: its share of the frames archived, as a bar, and what it has in flight, so
/// that a shard carrying more than its share stands out.
function showShards(shards) {
  const list = $("shards");
  const total = shards.reduce((sum, shard) => sum + shard.frames_archived, 0);
  while (list.children.length > shards.length) list.lastElementChild.remove();
  shards.forEach((shard, i) => {
    let item = list.children[i];
    if (!item) {
      item = document.createElement("li");
      item.innerHTML = '<span class="label"></span><span class="bar"><span></span></span><span class="detail"></span>';
      list.append(item);
    }
    const share = total ? shard.frames_archived / total : 0;
    item.dataset.shard = shard.shard;
    item.classList.toggle("failing", shard.archive_failing !== 0);
    item.querySelector(".label").textContent = `${shard.shard}`;
    item.querySelector(".bar span").style.width = `${(share * 100).toFixed(1)}%`;
    item.querySelector(".detail").textContent =
      `${(share * 100).toFixed(0)}% · ${number.format(shard.in_flight)}`;
  });
}

/// The ground-segment links' tile, shown when `[[links]]` are configured (docs/ground-segment.md):
/// each station's state (and the link's, while disconnected), when it last sent (UTC), packets
/// stored and copies dropped, for frames their quality, and its backfill; a dialled link that is
/// not connected, or one whose recordings failed, in red.
function showLinks(links) {
  $("links-tile").hidden = !links || links.length === 0;
  if (!links) return;
  $("links").replaceChildren(...links.map((link) => {
    const item = document.createElement("li");
    const station = link.station_state === "disconnected"
      ? `disconnected (${link.state})` : link.station_state ?? link.state;
    const seen = link.last_seen ? ` · seen ${timeOfDay(link.last_seen).slice(0, 8)}` : "";
    item.textContent = `${link.name}: ${station}${seen} · ` +
      `${number.format(link.packets)} · ${number.format(link.copies)}`;
    // A link of transfer frames: frames good, bad FECF and dropped, and frames lost.
    if (link.frames_good !== undefined) {
      item.textContent += ` · frames ${number.format(link.frames_good)} good, ` +
        `${number.format(link.frames_bad_fecf + link.frames_dropped)} bad, ` +
        `${number.format(link.vc_gaps)} lost`;
    }
    // A station's recordings going in through its spool: files done and failed, packets stored.
    const b = link.backfill;
    if (b && (b.importing || b.files_done || b.files_failed || b.spool_unreadable)) {
      item.textContent += ` · backfill ${b.importing ? "importing, " : ""}${number.format(b.files_done)} done, ` +
        `${number.format(b.files_failed)} failed${b.spool_unreadable ? ", spool unreadable" : ""}, ` +
        `${number.format(b.stored)} stored, ${number.format(b.held)} held`;
    }
    item.classList.toggle("down", link.state === "connecting" || link.state === "backoff" ||
      (b?.files_failed ?? 0) > 0 || b?.spool_unreadable === true);
    if (link.last_error) item.title = link.last_error;
    return item;
  }));
}

/// The NATS sink's tile, shown when `[sinks.nats]` is configured (docs/scale-out.md).
function showNats(stats) {
  $("nats-tile").hidden = !stats.nats_sink;
  if (!stats.nats_sink) return;
  $("nats-state").textContent = stats.nats_connected ? "connected" : "disconnected";
  const cursor = `${stats.nats_cursor_segment}:${stats.nats_cursor_offset}:${stats.nats_cursor_index}`;
  $("nats-detail").textContent =
    `lag ${number.format(stats.nats_lag_frames)} frames, ${number.format(stats.nats_lag_seconds)} s · ` +
    `cursor ${cursor} · ${number.format(stats.nats_published)} published, ` +
    `${number.format(stats.nats_republished)} republished, ${number.format(stats.nats_errors)} errors`;
}

/// The archive's size on disk, the time it spans, and what retention deleted.
function showArchive(archive) {
  $("archive-disk").textContent = formatBytes(archive.bytes);
  const [oldest, newest] = [shortTime(archive.oldest_received), shortTime(archive.newest_received)];
  // One date when both ends share it.
  const span = archive.oldest_received === null
    ? "no frames yet"
    : `${oldest} → ${newest.startsWith(oldest.slice(0, 6)) ? newest.slice(6) : newest} UTC`;
  $("archive-span").textContent = `${counted(archive.segments, "segment")} · ${span}`;
  const retention = archive.retention;
  $("archive-retention").textContent = retention.deleted_segments === 0
    ? `${formatBytes(archive.free_bytes)} free · nothing deleted`
    : `${formatBytes(archive.free_bytes)} free · ${counted(retention.deleted_segments, "segment")} ` +
      `(${formatBytes(retention.deleted_bytes)}) deleted, last ${shortTime(retention.last_deletion)}`;
}

/// The clock's steps: none, or how many and the last (the archive clock never moves with them).
function showClock(clock) {
  if (clock === undefined) return;
  const last = clock.last_step;
  $("archive-clock").textContent = last === null
    ? "clock: no step"
    : `clock: ${counted(clock.steps, "step")}, last ${last.seconds > 0 ? "+" : ""}${number.format(last.seconds)} s ` +
      `at ${shortTime(last.at)}${last.event === "start" ? " (a start behind the archive)" : ""}`;
}

/// `1 segment`, `2 segments`.
function counted(n, noun) {
  return `${number.format(n)} ${noun}${n === 1 ? "" : "s"}`;
}

/// `2026-11-24T10:00:00.000000000Z` as `11-24 10:00:00`.
function shortTime(rfc3339) {
  return rfc3339 === null ? "–" : `${rfc3339.slice(5, 10)} ${rfc3339.slice(11, 19)}`;
}

function showHealth(health, stats, clock) {
  const badge = $("health");
  badge.dataset.health = health;
  badge.textContent = health;
  const degraded = [];
  if (stats.archive_failing) {
    degraded.push(`the archive cannot store frames (${number.format(stats.archive_errors)} failed writes or syncs): ` +
      "frames are held, not acknowledged");
  }
  if (stats.retention_short) {
    degraded.push(`retention cannot keep the archive's size limits (${formatBytes(stats.archive_bytes)} on disk, ` +
      `${formatBytes(stats.archive_free_bytes)} free): only segments it never deletes are left`);
  }
  if (stats.nats_degraded) {
    degraded.push(`the NATS sink is ${stats.nats_connected ? "behind" : "disconnected"}: ` +
      `${number.format(stats.nats_lag_frames)} frames, ${number.format(stats.nats_lag_seconds)} s not yet in JetStream; ingest goes on`);
  }
  if (clock?.in_doubt) {
    degraded.push(`the clock is in doubt: ${clock.reason}`);
  }
  const reasons = {
    ready: "",
    draining: "shutting down: storing what it accepted, accepting nothing new",
    degraded: degraded.join(" · "),
  };
  $("health-reason").textContent = reasons[health] ?? "";
}

function showUnreachable(error) {
  const badge = $("health");
  badge.dataset.health = "unreachable";
  badge.textContent = "unreachable";
  $("health-reason").textContent =
    `no answer from the daemon since ${clock(new Date())} UTC (${error.message}); the figures below are the last it gave`;
  document.body.classList.add("stale");
  addSample(performance.now(), null);
}

// ---------------------------------------------------------------------------------------------
// The rate plot
// ---------------------------------------------------------------------------------------------

function addSample(now, value) {
  samples.push({ t: now, v: value });
  while (samples.length > 0 && samples[0].t < now - HISTORY_MS) samples.shift();
  $("rate").textContent = value === null ? "–" : decimal.format(value);
  drawPlot(now);
}

function drawPlot(now) {
  const canvas = $("rate-plot");
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(canvas.clientWidth * ratio);
  const height = Math.round(canvas.clientHeight * ratio);
  if (width === 0 || height === 0) return;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const context = canvas.getContext("2d");
  const style = getComputedStyle(document.documentElement);
  context.clearRect(0, 0, width, height);

  const values = samples.map((s) => s.v).filter((v) => v !== null);
  const top = niceCeiling(Math.max(1, ...values));
  const pad = 16 * ratio;
  // The plot spans what the page has seen, up to its history: a new page fills it too.
  const span = Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, now - (samples[0]?.t ?? now)));
  $("rate-span").textContent = `last ${span < 60000 ? `${Math.round(span / 1000)} s` : `${Math.round(span / 60000)} min`}`;
  const x = (t) => ((t - (now - span)) / span) * width;
  const y = (v) => pad + (1 - v / top) * (height - pad);

  context.strokeStyle = style.getPropertyValue("--line");
  context.lineWidth = ratio;
  for (const fraction of [0, 0.5, 1]) {
    context.beginPath();
    context.moveTo(0, y(top * fraction));
    context.lineTo(width, y(top * fraction));
    context.stroke();
  }
  context.fillStyle = style.getPropertyValue("--dim");
  context.font = `${11 * ratio}px system-ui, sans-serif`;
  context.textBaseline = "top";
  context.textAlign = "left";
  context.fillText(`${compact.format(top)}/s`, 2 * ratio, 0);
  context.textAlign = "right";
  context.fillText("now", width - 2 * ratio, 0);

  const accent = style.getPropertyValue("--accent");
  context.strokeStyle = accent;
  context.lineWidth = 2 * ratio;
  context.lineJoin = "round";
  // One path per run of samples between gaps (polls that failed, restarts).
  let run = [];
  const drawRun = () => {
    if (run.length > 1) {
      context.beginPath();
      run.forEach((s, i) => (i === 0 ? context.moveTo(x(s.t), y(s.v)) : context.lineTo(x(s.t), y(s.v))));
      context.stroke();
      context.lineTo(x(run[run.length - 1].t), height);
      context.lineTo(x(run[0].t), height);
      context.closePath();
      context.globalAlpha = 0.18;
      context.fillStyle = accent;
      context.fill();
      context.globalAlpha = 1;
    }
    run = [];
  };
  for (const sample of samples) {
    if (sample.v === null) drawRun();
    else run.push(sample);
  }
  drawRun();
}

// The smallest 1, 2 or 5 times a power of ten at or above `value`: the plot's top line.
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= value);
}

// ---------------------------------------------------------------------------------------------
// The sources table
// ---------------------------------------------------------------------------------------------

// Per source key ("live:7"): its row, cells, and its last few polls (for its rate and lag).
const rows = new Map();
const COLUMNS = ["kind", "id", "peer", "rate", "frames", "emergency_frames", "last_sequence", "last_acked", "lag", "catalog_version"];
const TEXT_COLUMNS = new Set(["kind", "peer"]);
let sort = loadSort();

function showSources(sources, uptime) {
  const seen = new Set();
  for (const source of sources) {
    const kind = KINDS[source.kind] ?? source.kind;
    const key = `${kind}:${source.id}`;
    seen.add(key);
    let entry = rows.get(key);
    if (entry === undefined) {
      entry = newRow(key, kind);
      rows.set(key, entry);
    }
    updateRow(entry, source, uptime);
  }
  for (const [key, entry] of rows) {
    if (!seen.has(key)) {
      entry.row.remove();
      rows.delete(key);
    }
  }
  $("no-sources").hidden = rows.size > 0;
  order();
}

function newRow(key, kind) {
  const row = document.createElement("tr");
  row.dataset.source = key;
  const cells = {};
  for (const column of COLUMNS) {
    const cell = row.insertCell();
    cell.className = TEXT_COLUMNS.has(column) ? column : `num ${column}`;
    cells[column] = cell;
  }
  const tag = document.createElement("span");
  tag.className = `tag tag-${kind}`;
  tag.textContent = kind;
  cells.kind.append(tag);
  return { row, cells, values: { kind }, polls: [], lagging: false };
}

function updateRow(entry, source, uptime) {
  // A source that reconnected (or a restarted daemon) has new counters: start again.
  const last = entry.polls[entry.polls.length - 1];
  if (last !== undefined && (last.since !== source.connected_since_unix_ms || uptime <= last.uptime)) {
    entry.polls = [];
  }
  entry.polls = entry.polls.filter((poll) => poll.uptime >= uptime - RATE_WINDOW_S);
  entry.polls.push({ uptime, frames: source.frames, lag: source.lag, since: source.connected_since_unix_ms });
  const first = entry.polls[0];
  const rate = entry.polls.length > 1 ? (source.frames - first.frames) / (uptime - first.uptime) : null;
  entry.lagging = isLagging(entry, rate);
  entry.row.classList.toggle("lagging", entry.lagging);

  Object.assign(entry.values, {
    id: source.id,
    peer: source.station ? `${source.station} · ${source.peer}` : source.peer,
    rate,
    frames: source.frames,
    emergency_frames: source.emergency_frames,
    last_sequence: source.last_sequence,
    last_acked: source.last_acked,
    lag: source.lag,
    catalog_version: source.catalog_version,
  });
  const c = entry.cells;
  c.id.textContent = source.id;
  c.peer.textContent = entry.values.peer;
  c.rate.textContent = rate === null ? "–" : decimal.format(rate);
  for (const column of ["frames", "emergency_frames", "last_sequence", "last_acked", "lag", "catalog_version"]) {
    const value = source[column];
    c[column].textContent = value === null ? "–" : number.format(value);
  }
}

// A row turns red once its lag (frames admitted, not yet stored) has grown at each of the last two
// polls to more than a second of the source's own traffic, and stays red until the lag is back
// under a second of traffic. A lag of a moment's traffic is normal (the archive syncs every few
// milliseconds) and flickers; a lag that keeps growing means the archive or the pipeline is
// holding the source back.
function isLagging(entry, rate) {
  if (rate === null) return entry.lagging;
  const lags = entry.polls.slice(-3).map((poll) => poll.lag);
  const overASecond = lags[lags.length - 1] > rate;
  if (entry.lagging) return overASecond;
  const [a, b, c] = lags;
  return lags.length === 3 && a < b && b < c && overASecond;
}

function compare(a, b) {
  const { key, direction } = sort;
  const x = a.values[key];
  const y = b.values[key];
  let result;
  if (TEXT_COLUMNS.has(key)) result = String(x).localeCompare(String(y), "en", { numeric: true });
  else result = (x ?? -1) - (y ?? -1);
  if (result === 0) result = a.values.kind.localeCompare(b.values.kind) || a.values.id - b.values.id;
  return result * direction;
}

// Puts the rows in sort order, moving only when the order changed.
function order() {
  const body = $("sources").tBodies[0];
  const sorted = [...rows.values()].sort(compare).map((entry) => entry.row);
  const current = [...body.rows];
  if (sorted.length === current.length && sorted.every((row, i) => row === current[i])) return;
  body.append(...sorted);
}

function loadSort() {
  try {
    const saved = JSON.parse(localStorage.getItem(SORT_STORAGE));
    if (COLUMNS.includes(saved?.key) && Math.abs(saved.direction) === 1) return saved;
  } catch {
    // No storage (a private window) or nothing saved: the default order.
  }
  return { key: "kind", direction: 1 };
}

function sortBy(key) {
  // Text ascending first; figures largest first, where the interesting rows are.
  const direction = sort.key === key ? -sort.direction : TEXT_COLUMNS.has(key) || key === "id" ? 1 : -1;
  sort = { key, direction };
  try {
    localStorage.setItem(SORT_STORAGE, JSON.stringify(sort));
  } catch {
    // The order still holds until the page is reloaded.
  }
  showSortOrder();
  order();
}

function showSortOrder() {
  for (const header of $("sources").tHead.rows[0].cells) {
    if (header.dataset.key === sort.key) {
      header.setAttribute("aria-sort", sort.direction === 1 ? "ascending" : "descending");
    } else {
      header.removeAttribute("aria-sort");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The live feed: emergency frames
// ---------------------------------------------------------------------------------------------

// Follows the feed, reconnecting with backoff. Returns a function that, while a reconnection is
// waiting, makes it now (the stats poll calls it when the daemon answers again).
function followFeed() {
  const status = $("feed-status");
  const backoff = new Backoff();
  let retry = null;

  const connect = () => {
    retry = null;
    setLink(status, "connecting", "connecting");
    const url = new URL("feed?priority=emergency", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url);
    let openedAt = null;
    socket.onopen = () => {
      openedAt = performance.now();
      setLink(status, "live", "live");
    };
    socket.onmessage = (event) => onFeedMessage(event.data);
    socket.onclose = (event) => {
      if (openedAt !== null && performance.now() - openedAt > FEED_STABLE_MS) backoff.reset();
      const wait = backoff.next();
      const why = openedAt === null ? "cannot connect" : `closed${event.reason ? `: ${event.reason}` : ""}`;
      setLink(status, "retrying", `${why}; retrying in ${seconds(wait)}`);
      retry = setTimeout(connect, wait);
    };
  };
  connect();
  return () => {
    if (retry !== null) {
      clearTimeout(retry);
      connect();
    }
  };
}

// Entries received and not yet drawn, newest last.
let pending = [];
let flushTimer = null;
let emergencyCount = 0;

function onFeedMessage(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    return;
  }
  if (message === null || typeof message !== "object") return;
  if (Number.isInteger(message.gap)) {
    pending.push(gapEntry(message.gap));
  } else if (message.priority === "emergency" && typeof message.source === "string") {
    emergencyCount += 1;
    pending.push(emergencyEntry(message));
  } else {
    return;
  }
  if (pending.length > MAX_EMERGENCIES) pending = pending.slice(-MAX_EMERGENCIES);
  flushTimer ??= setTimeout(flushEmergencies, EMERGENCY_FLUSH_MS);
}

function flushEmergencies() {
  flushTimer = null;
  const list = $("emergencies");
  for (const item of list.querySelectorAll(".fresh")) item.classList.remove("fresh");
  list.prepend(...pending.reverse());
  pending = [];
  while (list.children.length > MAX_EMERGENCIES) list.lastElementChild.remove();
  $("no-emergencies").hidden = list.children.length > 0;
  $("emergency-count").textContent = `${number.format(emergencyCount)} since this page opened`;
}

function emergencyEntry(frame) {
  const item = document.createElement("li");
  item.dataset.emergency = "";
  item.className = "fresh";
  item.title = `received ${frame.received}, processed ${frame.processed}`;
  const part = (className, text) => {
    const span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    item.append(span);
  };
  part("source", frame.source);
  part("seq", `#${frame.seq}`);
  part("time", timeOfDay(frame.processed ?? frame.received));
  part("payload", payloadPreview(frame));
  return item;
}

function gapEntry(missed) {
  const item = document.createElement("li");
  item.className = "gap fresh";
  item.textContent = `${number.format(missed)} frames missed: this page fell behind the feed`;
  return item;
}

// "17:20:01.123" out of an RFC 3339 time, as the daemon wrote it (UTC).
function timeOfDay(time) {
  const match = /T(\d\d:\d\d:\d\d(?:\.\d{1,3})?)/.exec(time ?? "");
  return match ? match[1] : "";
}

// The payload's first bytes in hex, then as text (dots for what does not print). The page asks
// for the feed's default encoding, base64; anything else is shown as it came.
function payloadPreview(frame) {
  let bytes;
  try {
    bytes = Array.from(atob(frame.payload), (c) => c.charCodeAt(0));
  } catch {
    return String(frame.payload).slice(0, 2 * PAYLOAD_PREVIEW_BYTES);
  }
  const shown = bytes.slice(0, PAYLOAD_PREVIEW_BYTES);
  const hex = shown.map((b) => b.toString(16).padStart(2, "0")).join(" ");
  const text = shown.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
  const more = (frame.payload_len ?? bytes.length) > shown.length ? " …" : "";
  return `${hex}${more}   ${text}`;
}

// ---------------------------------------------------------------------------------------------
// Archive completeness: per source, a bar over the chosen window
// ---------------------------------------------------------------------------------------------

// The windows offered, each divided into buckets of a round length, a few pixels each on a wall
// screen; the daemon counts each bucket's frames and the sequences missing after it.
const WINDOWS = {
  "15m": { name: "15 min", buckets: 180, step: "5 s" },
  "1h": { name: "1 h", buckets: 240, step: "15 s" },
  "6h": { name: "6 h", buckets: 360, step: "1 min" },
  "24h": { name: "24 h", buckets: 288, step: "5 min" },
};
const TIMELINE_POLL_MS = 10000;
const WINDOW_STORAGE = "aggregator-dashboard-window";
// The axis's tick steps, in minutes: the smallest that leaves this much room for each label.
const TICK_STEPS_MIN = [1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440];
const TICK_ROOM_PX = 80;
// A tick closer than this to the window's start or end (or than 0.7 of the ticks' spacing) gives
// way to its label.
const TICK_CLEARANCE_PX = 64;
// A bucket's fill by its frames (against the source's fullest bucket), in four shades.
const SHADES = [0.5, 0.67, 0.84, 1];

let timelineWindow = loadWindow();
let timelineTimer = null;
let timelineBusy = false;
// The last answer drawn, drawn again when the page is resized: { answer, window }.
let timelineShown = null;

// Asks for the chosen window now and every TIMELINE_POLL_MS: one request at a time; a window
// chosen while one is under way is asked for as soon as it ends.
async function refreshTimeline() {
  clearTimeout(timelineTimer);
  timelineTimer = setTimeout(refreshTimeline, TIMELINE_POLL_MS);
  if (timelineBusy) return;
  timelineBusy = true;
  const chosen = timelineWindow;
  try {
    const response = await fetch(
      `archive/completeness?from=-${chosen}&buckets=${WINDOWS[chosen].buckets}`,
      { cache: "no-store", signal: AbortSignal.timeout(TIMELINE_POLL_MS) },
    );
    if (chosen === timelineWindow) await onTimelineAnswer(response, chosen);
  } catch {
    // The daemon does not answer: the stats poll says so; the last picture stays.
  } finally {
    timelineBusy = false;
    if (chosen !== timelineWindow) refreshTimeline();
  }
}

async function onTimelineAnswer(response, chosen) {
  const panel = $("timeline-panel");
  if (response.status === 404) {
    // archive.kind = "count": no archive files, nothing to draw.
    panel.hidden = true;
    timelineShown = null;
    return;
  }
  panel.hidden = false;
  if (response.status === 503) {
    $("timeline-hint").textContent = "the daemon is busy with other archive queries; retrying";
    return;
  }
  if (!response.ok) {
    const why = response.status === 401
      ? "the daemon wants its token: open the dashboard once as /?token=…"
      : `HTTP ${response.status}: ${(await response.text()).trim()}`;
    showTimelineMessage(why);
    return;
  }
  timelineShown = { answer: await response.json(), window: chosen };
  drawTimeline();
}

function showTimelineMessage(text) {
  timelineShown = null;
  $("lanes").replaceChildren();
  $("axis").replaceChildren();
  $("timeline-empty").textContent = text;
  $("timeline-empty").hidden = false;
}

function drawTimeline() {
  if (timelineShown === null) return;
  const { answer, window } = timelineShown;
  const from = parseTime(answer.from);
  const to = parseTime(answer.to);
  const { name, step } = WINDOWS[window];
  $("timeline-hint").textContent = `last ${name}, in steps of ${step}`;
  const ticks = drawAxis(from, to);
  $("lanes").replaceChildren(...answer.sources.map((source) => timelineLane(source, from, to, ticks)));
  $("timeline-empty").textContent = "No frame received in this window.";
  $("timeline-empty").hidden = answer.sources.length > 0;
}

/// One source's lane: its name, its bar and its totals.
function timelineLane(source, from, to, ticks) {
  const lane = document.createElement("div");
  lane.className = "lane";
  lane.dataset.source = `${source.kind}:${source.source}`;
  const label = document.createElement("span");
  label.className = "label";
  const tag = document.createElement("span");
  tag.className = `tag tag-${source.kind}`;
  tag.textContent = source.kind;
  label.append(tag, `${source.source}`);
  const buckets = source.timeline ?? [];
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.innerHTML = laneBar(buckets, from, to, ticks);
  const summary = document.createElement("span");
  summary.className = "summary";
  summary.textContent = `${number.format(source.frames)} frames`;
  const missing = buckets.reduce((sum, [, gap]) => sum + gap, 0);
  if (missing > 0) {
    const gaps = document.createElement("span");
    gaps.className = "missing";
    gaps.textContent = ` · ${number.format(missing)} missing`;
    summary.append(gaps);
  }
  lane.append(label, bar, summary);
  return lane;
}

/// A lane's bar, as SVG: a unit of width per bucket; faint lines at the axis's ticks, a rect per
/// run of buckets of one shade of frames held, and a red one per bucket with missing sequences.
function laneBar(buckets, from, to, ticks) {
  const n = Math.max(1, buckets.length);
  const fullest = Math.max(1, ...buckets.map(([frames]) => frames));
  const shade = (frames) => (frames === 0 ? 0 : SHADES[Math.min(3, Math.floor((4 * frames) / fullest))]);
  const at = (time) => ((time - from) / Math.max(1, to - from)) * n;
  let marks = ticks
    .map((time) => `<line class="grid" x1="${at(time)}" x2="${at(time)}" y1="0" y2="1" vector-effect="non-scaling-stroke"/>`)
    .join("");
  for (let i = 0; i < buckets.length;) {
    const level = shade(buckets[i][0]);
    let j = i + 1;
    while (j < buckets.length && shade(buckets[j][0]) === level) j += 1;
    if (level > 0) marks += `<rect class="held" x="${i}" width="${j - i}" height="1" fill-opacity="${level}"/>`;
    i = j;
  }
  buckets.forEach(([, gap], i) => {
    if (gap === 0) return;
    const when = clock(new Date(from + ((to - from) * i) / n));
    marks += `<rect class="missing" x="${i}" width="1" height="1"><title>${number.format(gap)} sequences ` +
      `missing after a frame received from ${when} UTC</title></rect>`;
  });
  return `<svg viewBox="0 0 ${n} 1" preserveAspectRatio="none" shape-rendering="crispEdges">${marks}</svg>`;
}

/// The time axis under the lanes (or under `axis`): the window's start and end and round times
/// between, HH:MM UTC. Returns the round times, for the lanes' lines.
function drawAxis(from, to, axis = $("axis")) {
  const width = axis.clientWidth;
  const span = Math.max(1, to - from);
  const room = Math.max(1, Math.floor(width / TICK_ROOM_PX));
  const step = 60000 * (TICK_STEPS_MIN.find((minutes) => span / (minutes * 60000) <= room) ?? 1440);
  const x = (time) => ((time - from) / span) * width;
  const clearance = Math.max(TICK_CLEARANCE_PX, (0.7 * step * width) / span);
  const ticks = [];
  for (let time = Math.ceil(from / step) * step; time < to; time += step) {
    if (x(time) >= clearance && x(time) <= width - clearance) ticks.push(time);
  }
  const label = (time, className) => {
    const tick = document.createElement("span");
    tick.className = `tick ${className}`;
    tick.style.left = `${((time - from) / span) * 100}%`;
    tick.textContent = hoursMinutes(new Date(time));
    return tick;
  };
  axis.replaceChildren(label(from, "start"), ...ticks.map((time) => label(time, "mid")), label(to, "end"));
  return ticks;
}

function chooseWindow(key) {
  timelineWindow = key;
  try {
    localStorage.setItem(WINDOW_STORAGE, key);
  } catch {
    // It holds until the page is reloaded.
  }
  showWindowChoice();
  refreshTimeline();
}

function showWindowChoice() {
  for (const button of document.querySelectorAll("#timeline-panel .windows button")) {
    button.setAttribute("aria-pressed", String(button.dataset.window === timelineWindow));
  }
}

function loadWindow() {
  try {
    const saved = localStorage.getItem(WINDOW_STORAGE);
    if (saved in WINDOWS) return saved;
  } catch {
    // No storage: the default.
  }
  return "1h";
}

/// An RFC 3339 time as the daemon writes it (nanoseconds), in milliseconds since the epoch.
function parseTime(rfc3339) {
  return Date.parse(rfc3339.replace(/(\.\d{3})\d+/, "$1"));
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

const pad2 = (n) => String(n).padStart(2, "0");

function formatUptime(totalSeconds) {
  const s = Math.floor(totalSeconds);
  const days = Math.floor(s / 86400);
  const clockPart = `${Math.floor((s % 86400) / 3600)}:${pad2(Math.floor((s % 3600) / 60))}:${pad2(s % 60)}`;
  return days > 0 ? `${days} d ${clockPart}` : clockPart;
}

function hoursMinutes(date) {
  return `${pad2(date.getUTCHours())}:${pad2(date.getUTCMinutes())}`;
}

function clock(date) {
  return `${pad2(date.getUTCHours())}:${pad2(date.getUTCMinutes())}:${pad2(date.getUTCSeconds())}`;
}

function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : decimal.format(value)} ${units[unit]}`;
}

// ---------------------------------------------------------------------------------------------

for (const header of $("sources").tHead.rows[0].cells) {
  header.addEventListener("click", () => sortBy(header.dataset.key));
}
showSortOrder();
for (const button of document.querySelectorAll("#timeline-panel .windows button")) {
  button.addEventListener("click", () => chooseWindow(button.dataset.window));
}
showWindowChoice();
window.addEventListener("resize", () => {
  fitValues();
  drawPlot(performance.now());
  drawTimeline();
});
const reconnectFeed = followFeed();
pollStats(reconnectFeed);
refreshTimeline();
