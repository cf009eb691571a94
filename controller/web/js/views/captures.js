// Monitor > Infrastructure > Captures: every capture, running or past, newest first, with its
// counts, duration, who started it (the capture screen, the CLI or the API) and its pcap.

import {get} from "../api.js";
import {h, icon, replaceChildren} from "../dom.js";
import {
  MONITOR_INFRASTRUCTURE, autoRefresh, dataTable, formatBytes, formatClock, formatDuration, pageHeader, pill,
  setBreadcrumb,
} from "../ui.js";

const REFRESH_MS = 3000;

/** Who started a capture, in words, by its API `origin`. */
export const ORIGINS = {screen: "Capture screen", cli: "CLI", api: "API", port: "Port configuration"};

const STATES = {active: "active", starting: "idle", stopped: "idle", failed: "bad"};

const COLUMNS = [
  {label: "#", className: "num"}, {label: "Interface"}, {label: "Direction"}, {label: "Analyzer"},
  {label: "State"}, {label: "Started by"}, {label: "Started"}, {label: "Duration", className: "num"},
  {label: "Packets", className: "num"}, {label: "Bytes", className: "num"}, {label: "pcap"},
];

function seconds(iso) {
  return Date.parse(iso) / 1000;
}

function captureRow(capture) {
  const vrouterHref = `#/vrouters/${encodeURIComponent(capture.vrouter)}/interfaces`;
  const ended = capture.stopped_at ? seconds(capture.stopped_at) : Date.now() / 1000;
  const why = capture.stop_reason || capture.problem;
  return {
    attributes: {dataset: {capture: String(capture.id)}},
    cells: [
      String(capture.id),
      h("span", null, h("a", {href: vrouterHref}, `${capture.vrouter}/${capture.interface}`),
        capture.vm ? h("span", {class: "muted"}, ` (${capture.vm})`) : null),
      capture.direction, capture.analyzer,
      h("span", null, pill(STATES[capture.state] || "idle", capture.state),
        why ? h("div", {class: "muted small"}, why) : null),
      ORIGINS[capture.origin] || capture.origin,
      formatClock(seconds(capture.started_at)),
      formatDuration(ended - seconds(capture.started_at)),
      String(capture.packets),
      h("span", {title: `${capture.bytes} bytes; pcap file ${capture.file_bytes} of its ${capture.limit_bytes}-byte limit`},
        formatBytes(capture.bytes)),
      h("a", {class: "button", href: `/api/captures/${capture.id}/pcap`, download: "",
              "aria-label": `Download the pcap of capture ${capture.id}`}, icon("download"), "pcap"),
    ],
  };
}

/** The Captures page. */
export function capturesView(container) {
  setBreadcrumb([...MONITOR_INFRASTRUCTURE, {label: "Captures"}]);
  const card = h("section", {class: "card"},
    h("div", {class: "card-title"}, "Captures"), h("p", {class: "loading"}, "Loading…"));
  container.append(pageHeader("Captures",
    "Every packet capture, running or past: open a vRouter's interfaces to start one"), card);

  return autoRefresh(async () => {
    const captures = await get("/api/captures");
    const running = captures.filter((capture) => capture.state === "active" || capture.state === "starting").length;
    replaceChildren(card, h("div", {class: "card-title"}, "Captures",
      h("span", {class: "card-count"}, `${running} running, ${captures.length - running} past`)),
    dataTable(COLUMNS, captures.map(captureRow), "No capture yet.", "Captures"));
  }, REFRESH_MS, "Could not load the captures.");
}
