// The dashboard's passes panel: a row per ground station, a bar per pass from its AOS to its LOS
// over the chosen window (the last 24 h unless another is chosen), coloured by how complete the
// pass is, and a click on a bar shows the pass's report under the rows.
//
// One input: /archive/passes?from=-WINDOW (docs/http-api.md). It reads every frame of the window
// from the archive, so the panel asks rarely and never twice at once: the next question goes
// PASSES_POLL_MS after the last answer, or ten times as long as that answer took when it was
// slow, and none while the page is hidden. A daemon without archive files, or one that refuses
// the query, gets a short message in the panel; the rest of the page goes on.
//
// It runs after dashboard.js and uses its helpers: $, number, decimal, formatBytes, parseTime,
// drawAxis and pad2.
"use strict";

const PASS_WINDOWS = { "6h": "6 h", "12h": "12 h", "24h": "24 h" };
const PASS_WINDOW_STORAGE = "aggregator-dashboard-pass-window";
const PASSES_POLL_MS = 30000;
const PASSES_SLOW_FACTOR = 10;
const PASSES_TIMEOUT_MS = 60000;
// The colour rule (docs/http-api.md, "Passes"): a pass spans the sequences it holds,
// those another station filled and those still missing; none missing is complete, under this
// share missing is "some missing", this share or more "much missing".
const MUCH_MISSING = 0.1;
// A sub-row's height: passes of one station that overlap in time are drawn one under the other.
const PASS_ROW_PX = 16;
// Two passes closer than this share of the window go in different sub-rows (a bar is at least
// a few pixels wide).
const PASS_PACK_SHARE = 0.006;

const passesState = {
  window: loadPassWindow(),
  timer: null,
  busy: false,
  // The last answer drawn, drawn again at a resize: { answer, window }.
  shown: null,
  // The pass whose report is shown: its key (passKey).
  selected: null,
};

// Asks for the chosen window now, then again a while after the answer: one request at a time.
async function refreshPasses() {
  clearTimeout(passesState.timer);
  passesState.timer = null;
  if (passesState.busy || document.hidden) return;
  passesState.busy = true;
  const chosen = passesState.window;
  const started = performance.now();
  try {
    const response = await fetch(`archive/passes?from=-${chosen}`, {
      cache: "no-store",
      signal: AbortSignal.timeout(PASSES_TIMEOUT_MS),
    });
    if (chosen === passesState.window) await onPassesAnswer(response, chosen);
  } catch {
    // The daemon does not answer (the stats poll says so): the last picture stays.
    $("passes-hint").textContent = "no answer from the daemon; retrying";
  } finally {
    passesState.busy = false;
    const took = performance.now() - started;
    if (chosen !== passesState.window) {
      refreshPasses();
    } else {
      passesState.timer = setTimeout(refreshPasses, Math.max(PASSES_POLL_MS, PASSES_SLOW_FACTOR * took));
    }
  }
}

async function onPassesAnswer(response, chosen) {
  if (response.status === 503) {
    $("passes-hint").textContent = "the daemon is busy with other archive queries; retrying";
    return;
  }
  const text = await response.text();
  if (!response.ok) {
    showPassesMessage(passesRefusal(response.status, text.trim()));
    return;
  }
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    showPassesMessage("The daemon's answer was cut off (the archive could not be read); retrying.");
    return;
  }
  if (!Array.isArray(answer?.passes) || typeof answer.to !== "string") {
    showPassesMessage("The daemon's answer has no passes: is it an older version?");
    return;
  }
  passesState.shown = { answer, window: chosen };
  drawPasses();
}

function passesRefusal(status, reason) {
  if (status === 404) return `No passes to show: ${reason}.`;
  if (status === 401) return "No passes to show: the daemon wants its token; open the dashboard once as /?token=…";
  return `No passes to show: the daemon refused the query (HTTP ${status}: ${reason.slice(0, 200)}).`;
}

function showPassesMessage(text) {
  passesState.shown = null;
  $("pass-rows").replaceChildren();
  $("passes-axis").replaceChildren();
  $("passes-axis").parentElement.hidden = true;
  $("passes-hint").textContent = "";
  $("passes-empty").textContent = text;
  $("passes-empty").hidden = false;
  showPassReport();
}

function drawPasses() {
  if (passesState.shown === null) return;
  const { answer, window } = passesState.shown;
  const list = Array.isArray(answer.passes) ? answer.passes : [];
  const to = parseTime(answer.to);
  const from = answer.from ? parseTime(answer.from) : Math.min(to - 1, ...list.map((p) => parseTime(p.aos)));
  const gap = passDuration(answer.pass_gap_seconds ?? 0);
  $("passes-hint").textContent = `last ${PASS_WINDOWS[window]} · ${passCount(list.length)} · ` +
    `a silence over ${gap} ends a pass`;
  $("passes-axis").parentElement.hidden = false;
  const ticks = drawAxis(from, to, $("passes-axis"));
  const stations = new Map();
  for (const pass of list) {
    if (!stations.has(pass.station)) stations.set(pass.station, []);
    stations.get(pass.station).push(pass);
  }
  const names = [...stations.keys()].sort();
  $("pass-rows").replaceChildren(...names.map((name) => passRow(name, stations.get(name), from, to, ticks)));
  $("passes-empty").textContent = "No pass in this window.";
  $("passes-empty").hidden = list.length > 0;
  showPassReport();
}

/// A station's row: its name, its passes' bars (overlapping ones in sub-rows) and its totals.
function passRow(station, list, from, to, ticks) {
  const row = document.createElement("div");
  row.className = "pass-row";
  row.dataset.station = station;
  row.setAttribute("role", "group");
  row.setAttribute("aria-label", `${station}: ${passCount(list.length)}`);
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = station;
  label.title = station;
  const track = document.createElement("div");
  track.className = "pass-track";
  const lanes = packPasses(list, from, to);
  track.style.height = `${Math.max(1, ...lanes.map((lane) => lane + 1)) * PASS_ROW_PX}px`;
  const span = Math.max(1, to - from);
  for (const time of ticks) {
    const line = document.createElement("span");
    line.className = "grid";
    line.style.left = `${((time - from) / span) * 100}%`;
    track.append(line);
  }
  track.append(...list.map((pass, i) => passBar(pass, lanes[i], from, to)));
  const summary = document.createElement("span");
  summary.className = "summary";
  summary.textContent = `${passCount(list.length)} · ${number.format(sum(list, "frames"))} frames`;
  const missing = sum(list, "missing");
  if (missing > 0) {
    const part = document.createElement("span");
    part.className = "missing";
    part.textContent = ` · ${number.format(missing)} missing`;
    summary.append(part);
  }
  row.append(label, track, summary);
  return row;
}

/// `1 pass`, `3 passes`.
const passCount = (n) => `${number.format(n)} ${n === 1 ? "pass" : "passes"}`;

const sum = (list, field) => list.reduce((total, item) => total + (Number(item[field]) || 0), 0);

/// Each pass's sub-row: the first whose last pass ended (with a little room) before it begins.
function packPasses(list, from, to) {
  const room = PASS_PACK_SHARE * Math.max(1, to - from);
  const ends = [];
  return list.map((pass) => {
    const [start, end] = [parseTime(pass.aos), parseTime(pass.los)];
    let lane = ends.findIndex((last) => last + room < start);
    if (lane < 0) lane = ends.length;
    ends[lane] = Math.max(end, start + room);
    return lane;
  });
}

/// A pass's bar: a button from AOS to LOS (held within the window), coloured by passState.
function passBar(pass, lane, from, to) {
  const span = Math.max(1, to - from);
  const [aos, los] = [parseTime(pass.aos), parseTime(pass.los)];
  const within = (time) => Math.min(to, Math.max(from, Number.isFinite(time) ? time : from));
  const [start, end] = [within(aos), within(los)];
  const bar = document.createElement("button");
  bar.type = "button";
  bar.className = "pass";
  const state = passState(pass);
  bar.dataset.state = state.key;
  bar.dataset.key = passKey(pass);
  bar.classList.toggle("open-start", pass.clipped_at_from === true);
  bar.classList.toggle("open-end", pass.clipped_at_to === true);
  bar.classList.toggle("outside", aos < from || los > to);
  bar.style.left = `${((start - from) / span) * 100}%`;
  bar.style.width = `${((end - start) / span) * 100}%`;
  bar.style.top = `${lane * PASS_ROW_PX + 2}px`;
  const text = `${pass.station}, ${passReceives(pass)}: AOS ${pass.aos.slice(11, 19)}, ` +
    `LOS ${pass.los.slice(11, 19)} UTC, ${number.format(pass.frames)} frames, ` +
    `${number.format(pass.missing)} missing: ${state.name}`;
  bar.title = text;
  bar.setAttribute("aria-label", text);
  bar.setAttribute("aria-pressed", String(bar.dataset.key === passesState.selected));
  bar.addEventListener("click", () => selectPass(bar.dataset.key));
  return bar;
}

/// How complete a pass is: its key (the bar's colour), its name and the share missing.
function passState(pass) {
  const missing = Number(pass.missing) || 0;
  const spanned = (Number(pass.frames) || 0) + (Number(pass.filled) || 0) + missing;
  const share = spanned > 0 ? missing / spanned : 0;
  if (missing === 0) return { key: "complete", name: "complete", share };
  if (share < MUCH_MISSING) return { key: "some", name: "some missing", share };
  return { key: "much", name: "much missing", share };
}

const passKey = (pass) => JSON.stringify([pass.station, pass.group, pass.source, pass.aos]);

const passReceives = (pass) => (pass.group !== null ? `group ${pass.group}` : `source ${pass.source}`);

function selectPass(key) {
  passesState.selected = key;
  for (const bar of document.querySelectorAll("#pass-rows .pass")) {
    bar.setAttribute("aria-pressed", String(bar.dataset.key === key));
  }
  showPassReport();
}

/// The selected pass's report, or what to do to see one. Drawn again only when it changed, so
/// that a screen reader hears it once, not at every refresh.
function showPassReport() {
  const report = $("pass-report");
  const list = passesState.shown?.answer.passes ?? [];
  const pass = list.find((p) => passKey(p) === passesState.selected);
  report.hidden = list.length === 0;
  const state = pass ? passState(pass) : null;
  const lines = pass ? passFields(pass, list, state) : [];
  const drawn = JSON.stringify([passesState.selected, lines]);
  if (report.dataset.drawn === drawn) return;
  report.dataset.drawn = drawn;
  if (!pass) {
    const hint = document.createElement("p");
    hint.className = "empty";
    hint.textContent = "Click a pass for its report.";
    report.replaceChildren(hint);
    return;
  }
  const heading = document.createElement("h3");
  heading.textContent = `${pass.station} · ${passReceives(pass)}`;
  const verdict = document.createElement("span");
  verdict.className = "verdict";
  verdict.dataset.state = state.key;
  verdict.textContent = state.name;
  heading.append(" ", verdict);
  const fields = document.createElement("dl");
  for (const [field, name, value] of lines) {
    const line = document.createElement("div");
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.dataset.field = field;
    detail.textContent = value;
    line.append(term, detail);
    fields.append(line);
  }
  report.replaceChildren(heading, fields);
}

/// The report's lines: [field, name, value].
function passFields(pass, list, state) {
  const by = countsText(filledBy(pass), "by");
  const forOthers = countsText(filledFor(pass, list), "for");
  const missing = pass.missing > 0
    ? `${number.format(pass.missing)} (${decimal.format(state.share * 100)} %)` : "none";
  const latency = pass.latency
    ? `p50 ${passSeconds(pass.latency.p50_seconds)} · max ${passSeconds(pass.latency.max_seconds)}`
    : "no earth-receive time";
  const clipped = [pass.clipped_at_from && "at the window's start", pass.clipped_at_to && "at its end (may go on)"]
    .filter(Boolean).join(", ") || "no";
  const bases = { earth_received: "earth-receive", received: "the daemon's receive", mixed: "mixed" };
  const links = pass.links?.length && pass.links.join(", ") !== pass.station ? ` (link ${pass.links.join(", ")})` : "";
  return [
    ["station", "station", `${pass.station}${links}`],
    ["receives", pass.group !== null ? "group" : "source", pass.group ?? pass.source],
    ["aos", "AOS", passTime(pass.aos)],
    ["los", "LOS", passTime(pass.los)],
    ["duration", "duration", `${passDuration(pass.duration_seconds)} (${bases[pass.time] ?? pass.time} time)`],
    ["frames", "frames", `${number.format(pass.frames)}${pass.playback > 0 ? ` (${number.format(pass.playback)} played back)` : ""}`],
    ["filled-by", "filled by others", by],
    ["filled-for", "filled for others", forOthers],
    ["missing", "missing", missing],
    ["latency", "latency", latency],
    ["bytes", "bytes", formatBytes(pass.bytes)],
    ["clipped", "clipped", clipped],
  ];
}

/// Sequences other stations filled within the pass, by station.
function filledBy(pass) {
  const counts = new Map();
  for (const source of pass.sources ?? []) {
    for (const run of source.filled ?? []) {
      counts.set(run.station, (counts.get(run.station) ?? 0) + run.last - run.first + 1);
    }
  }
  return counts;
}

/// Sequences this pass delivered that filled another station's pass of its group, by station:
/// the other passes' fills that name this station, within what this pass holds of their APID.
function filledFor(pass, list) {
  const counts = new Map();
  if (pass.group === null) return counts;
  const held = new Map((pass.sources ?? []).map((source) => [source.apid, source.held ?? []]));
  for (const other of list) {
    if (other.group !== pass.group || other.station === pass.station) continue;
    for (const source of other.sources ?? []) {
      const runs = held.get(source.apid) ?? [];
      for (const run of source.filled ?? []) {
        if (run.station !== pass.station) continue;
        const shared = overlap(runs, run.first, run.last);
        if (shared > 0) counts.set(other.station, (counts.get(other.station) ?? 0) + shared);
      }
    }
  }
  return counts;
}

/// How many of `first..=last` the runs `[[a, b], ...]` hold.
function overlap(runs, first, last) {
  return runs.reduce((total, [a, b]) => total + Math.max(0, Math.min(b, last) - Math.max(a, first) + 1), 0);
}

/// `30 by Svalbard, 4 by Wallops`, or `none`.
function countsText(counts, word) {
  const parts = [...counts].map(([station, n]) => `${number.format(n)} ${word} ${station}`);
  return parts.length > 0 ? parts.join(", ") : "none";
}

/// `2026-11-27T08:00:00.000000000Z` as `2026-11-27 08:00:00 UTC`.
const passTime = (rfc3339) => `${rfc3339.slice(0, 10)} ${rfc3339.slice(11, 19)} UTC`;

/// `45 s`, `1 min 59 s`, `2 h 05 min`.
function passDuration(totalSeconds) {
  const s = Math.round(totalSeconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 === 0 ? `${s / 60} min` : `${Math.floor(s / 60)} min ${pad2(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad2(Math.floor((s % 3600) / 60))} min`;
}

/// A latency, negative when the station's clock is ahead: `850 ms`, `1.2 s`, `3.5 min`, `2.9 h`.
function passSeconds(seconds) {
  const size = Math.abs(seconds);
  if (size < 1) return `${decimal.format(seconds * 1000)} ms`;
  if (size < 120) return `${decimal.format(seconds)} s`;
  if (size < 5400) return `${decimal.format(seconds / 60)} min`;
  if (size < 172800) return `${decimal.format(seconds / 3600)} h`;
  return `${decimal.format(seconds / 86400)} d`;
}

function choosePassWindow(key) {
  passesState.window = key;
  try {
    localStorage.setItem(PASS_WINDOW_STORAGE, key);
  } catch {
    // It holds until the page is reloaded.
  }
  showPassWindowChoice();
  refreshPasses();
}

function showPassWindowChoice() {
  for (const button of document.querySelectorAll("#passes-panel .windows button")) {
    button.setAttribute("aria-pressed", String(button.dataset.window === passesState.window));
  }
}

function loadPassWindow() {
  try {
    const saved = localStorage.getItem(PASS_WINDOW_STORAGE);
    if (saved in PASS_WINDOWS) return saved;
  } catch {
    // No storage: the default.
  }
  return "24h";
}

// ---------------------------------------------------------------------------------------------

for (const button of document.querySelectorAll("#passes-panel .windows button")) {
  button.addEventListener("click", () => choosePassWindow(button.dataset.window));
}
showPassWindowChoice();
window.addEventListener("resize", drawPasses);
// A hidden page asks nothing; shown again, it asks at once.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && passesState.timer === null && !passesState.busy) refreshPasses();
});
refreshPasses();
