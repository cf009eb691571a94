// The capture screen of one interface: pick an analyzer and a direction, start, then watch the
// packets arrive. Mirroring lasts while the screen is open:
// - Stop and Close stop the capture (DELETE), and so does leaving the screen within the app;
// - closing or reloading the tab sends POST /api/captures/{id}/stop with navigator.sendBeacon;
// - a tab that dies without a word stops renewing the capture's lease (lease-worker.js), and
//   the controller stops the capture when the lease runs out.

import {ApiError, get, leaseUrl, post, remove, stopCaptureOnExit} from "../api.js";
import {h, icon, replaceChildren} from "../dom.js";
import {
  MONITOR_INFRASTRUCTURE, errorPanel, formatBytes, formatClock, formatDuration, notify, pageHeader,
  pill, setBreadcrumb, showError,
} from "../ui.js";

const DEFAULT_ANALYZER = "interface-packet-capture";
const POLL_MS = 500;
const CATCH_UP_MS = 250;          // between requests while more packets wait
const PAGE_SIZE = 500;            // packets fetched per request
const MAX_BEHIND = 2000;          // further behind than this, the view skips ahead
const MAX_ROWS = 2000;            // rows kept in the table; the pcap has them all
const FINAL_POLLS = 4;            // polls after stopping, for copies still on their way

const DIRECTIONS = [
  {value: "both", label: "Both", text: (vm) => `what ${vm} sends and what is delivered to it`},
  {value: "ingress", label: "Ingress", text: (vm) => `packets ${vm} sends`},
  {value: "egress", label: "Egress", text: (vm) => `packets delivered to ${vm}`},
];

function protocolClass(protocol) {
  return `proto-${protocol.toLowerCase().replace(/[^a-z0-9]/g, "")}`;
}

function analyzerOption(analyzer) {
  return `${analyzer.name} \u2014 ${analyzer.vm} on ${analyzer.compute}, ${analyzer.network} ${analyzer.ip}`;
}

/** The capture screen of `interfaceName` on vRouter `vrouterName`. */
export function captureView(container, vrouterName, interfaceName) {
  const vrouterHref = `#/vrouters/${encodeURIComponent(vrouterName)}`;
  const interfacesHref = `${vrouterHref}/interfaces`;
  setBreadcrumb([...MONITOR_INFRASTRUCTURE, {label: "Virtual Routers", href: "#/vrouters"},
    {label: vrouterName, href: vrouterHref}, {label: "Interfaces", href: interfacesHref},
    {label: interfaceName, href: interfacesHref}, {label: "Packet Capture"}]);
  const status = h("div", {id: "capture-status", class: "capture-status", "aria-live": "polite"});
  container.append(pageHeader("Packet Capture", `${interfaceName} on vRouter ${vrouterName}`, status));
  const body = h("div", null, h("p", {class: "loading"}, "Loading…"));
  container.append(body);

  let disposed = false;
  let phase = "setup";            // setup, starting, active, stopping, stopped
  let capture = null;             // the capture this screen started (from the API)
  let leaseSeconds = null;
  let leaseWorker = null;
  let leaseWarning = null;
  let startError = null;          // the notice of a refused start, gone at the next attempt
  let pollError = null;           // the notice of a failed poll, gone at the next success
  let pollTimer = null;
  let finalPolls = 0;
  let lastIndex = 0;              // number of the last packet shown
  let knownTotal = 0;             // packets recorded, as of the last poll
  let iface = null;
  let analyzers = [];
  let view = null;                // elements of the running capture

  const onPageHide = () => {
    if (capture && (phase === "active" || phase === "stopping")) stopCaptureOnExit(capture);
  };

  function setStatus(kind, text) {
    replaceChildren(status, pill(kind, text));
  }

  function stopRenewing() {
    if (leaseWorker) leaseWorker.terminate();
    leaseWorker = null;
    window.removeEventListener("pagehide", onPageHide);
  }

  // --- set-up form ---------------------------------------------------------------------------

  function setupForm() {
    const options = analyzers.map((analyzer) => h("option", {value: analyzer.name}, analyzerOption(analyzer)));
    if (!analyzers.some((analyzer) => analyzer.name === DEFAULT_ANALYZER)) {
      options.unshift(h("option", {value: ""},
        `${DEFAULT_ANALYZER} \u2014 default, launched on ${vrouterName} when the capture starts`));
    }
    const select = h("select", {id: "capture-analyzer", name: "analyzer"}, options);
    select.value = analyzers.some((analyzer) => analyzer.name === DEFAULT_ANALYZER) ? DEFAULT_ANALYZER : "";
    const radios = DIRECTIONS.map((direction) => h("label", {class: "radio"},
      h("input", {type: "radio", name: "direction", value: direction.value, checked: direction.value === "both"}),
      h("span", {class: "radio-label"}, direction.label),
      h("span", {class: "radio-text"}, direction.text(iface.vm))));
    const startButton = h("button", {type: "submit", class: "button primary"}, icon("play"), "Start capture");
    const form = h("form", {class: "card capture-setup", "aria-label": "Start a capture"},
      h("div", {class: "card-title"}, "Start a capture"),
      h("p", {class: "hint"}, `Copies of the traffic of ${iface.vm}'s interface ${iface.name} `
        + `(${iface.network}, ${iface.ip}) go to an analyzer, which records them. Mirroring lasts `
        + "while this screen is open: closing it stops the capture."),
      h("div", {class: "form-row"}, h("label", {for: "capture-analyzer"}, "Analyzer"), select),
      h("fieldset", {class: "form-row"}, h("legend", null, "Direction"), h("div", {class: "radios"}, radios)),
      h("div", {class: "form-actions"}, startButton,
        h("a", {class: "button", href: interfacesHref}, "Cancel")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      start(select.value, form.elements.direction.value, startButton);
    });
    return form;
  }

  async function start(analyzer, direction, startButton) {
    phase = "starting";
    startButton.disabled = true;
    if (startError) startError.remove();
    setStatus("idle", analyzer ? "Starting…" : `Starting… (launching ${DEFAULT_ANALYZER})`);
    const request = {vrouter: vrouterName, interface: iface.name, direction, lease_seconds: leaseSeconds};
    if (analyzer) request.analyzer = analyzer;
    let started;
    try {
      started = await post("/api/captures", request);
    } catch (error) {
      phase = "setup";
      if (disposed) return;
      startButton.disabled = false;
      replaceChildren(status);
      startError = showError("Could not start the capture.", error);
      return;
    }
    if (disposed) {  // the user left while it started: stop it at once
      remove(`/api/captures/${started.id}`).catch((error) =>
        showError(`Could not stop capture ${started.id}; its lease stops it within ${leaseSeconds} s.`, error));
      return;
    }
    capture = started;
    phase = "active";
    window.addEventListener("pagehide", onPageHide);
    leaseWorker = new Worker(new URL("../lease-worker.js", import.meta.url));
    leaseWorker.onmessage = (event) => leaseRenewed(event.data);
    leaseWorker.postMessage({url: leaseUrl(capture), intervalMs: leaseSeconds * 1000 / 3});
    showRunning();
    try {
      analyzers = await get("/api/analyzers");
      if (!disposed) describeCapture();
    } catch (error) {
      showError("Could not load the analyzer's details.", error);
    }
    poll();
  }

  function leaseRenewed(result) {
    if (result.ok) {
      if (leaseWarning) leaseWarning.remove();
      leaseWarning = null;
    } else if (result.status === 0) {
      leaseWarning = notify("warning", "Cannot renew the capture's lease.",
        `${result.error}; the controller stops the capture if this lasts ${leaseSeconds} s`);
    } else if (result.status !== 409) {  // 409: stopped meanwhile, which the next poll shows
      showError("Could not renew the capture's lease.", result.error);
    }
  }

  // --- running capture -------------------------------------------------------------------------

  function showRunning() {
    const stat = (name, label) => h("div", {class: "tile"}, h("div", {class: "tile-value", dataset: {stat: name}}, "0"),
      h("div", {class: "tile-label"}, label));
    const follow = h("input", {type: "checkbox", checked: true, id: "capture-follow"});
    const rows = h("tbody");
    const scroller = h("div", {class: "packet-scroll"},
      h("table", {class: "packet-table", "aria-label": "Captured packets"},
        h("thead", null, h("tr", null, ["No.", "Time", "Source", "Destination", "Protocol", "Length", "Info"]
          .map((label) => h("th", {scope: "col"}, label)))),
        rows));
    const empty = h("p", {class: "empty-packets"}, `Waiting for packets\u2026 They appear here as the `
      + `analyzer receives them; try: mirrorlab exec ${iface.vm} -- ping -c 3 <a peer's IP>`);
    scroller.addEventListener("scroll", () => {
      follow.checked = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
    });
    const stopButton = h("button", {type: "button", class: "button danger", onclick: stop}, icon("stop"), "Stop");
    const closeButton = h("button", {type: "button", class: "button", onclick: close}, icon("close"), "Close");
    const meta = h("div", {class: "capture-meta"});
    view = {
      meta, rows, scroller, follow, empty, stopButton,
      packets: stat("packets", "Packets"), bytes: stat("bytes", "Bytes"),
      duration: stat("duration", "Duration"), lease: stat("lease", "Lease"),
    };
    replaceChildren(body,
      h("section", {class: "card capture-run"},
        h("div", {class: "capture-head"}, meta,
          h("div", {class: "capture-actions"},
            h("a", {class: "button", href: `/api/captures/${capture.id}/pcap`, download: ""},
              icon("download"), "Download pcap"),
            stopButton, closeButton)),
        h("div", {class: "tiles"}, view.packets, view.bytes, view.duration, view.lease)),
      h("section", {class: "card"},
        h("div", {class: "card-title"}, "Packets",
          h("label", {class: "follow", for: "capture-follow"}, follow, "Follow newest")),
        scroller, empty));
    describeCapture();
    showCounts(capture);
  }

  // Capture limits and failures (recorder-limits): why a capture ended, as the API says.
  function endedText(info) {
    const word = info.state === "failed" ? "Failed" : "Stopped";
    return info.stop_reason ? `${word}: ${info.stop_reason}` : word;
  }

  function describeCapture() {
    const analyzer = analyzers.find((candidate) => candidate.name === capture.analyzer);
    const where = analyzer ? ` (${analyzer.vm} on ${analyzer.compute}, ${analyzer.ip})` : "";
    replaceChildren(view.meta,
      h("div", {class: "capture-title"}, `Capture #${capture.id}`),
      h("div", {class: "capture-route"},
        h("span", {class: "strong"}, `${capture.interface} (${capture.vm})`), " \u2192 ",
        h("span", {class: "strong"}, capture.analyzer), where),
      h("div", {class: "muted small"}, `direction ${capture.direction} \u00b7 started `
        + `${formatClock(Date.parse(capture.started_at) / 1000)} \u00b7 limit ${formatBytes(capture.limit_bytes)}`));
    setStatus(phase === "active" ? "active" : phase === "stopping" ? "idle" : "bad",
      phase === "stopped" ? endedText(capture) : {active: "Capturing", stopping: "Stopping…"}[phase]);
  }

  function showCounts(info) {
    const set = (tile, text, title) => {
      const value = tile.querySelector(".tile-value");
      value.textContent = text;
      value.title = title || "";
    };
    const startedAt = Date.parse(info.started_at) / 1000;
    const endedAt = info.stopped_at ? Date.parse(info.stopped_at) / 1000 : Date.now() / 1000;
    set(view.packets, String(info.packets));
    set(view.bytes, formatBytes(info.bytes),
      `${info.bytes} bytes; pcap file ${info.file_bytes} of its ${info.limit_bytes}-byte limit`);
    set(view.duration, formatDuration(endedAt - startedAt));
    set(view.lease, phase === "active" ? `${leaseSeconds} s` : "ended",
      phase === "active" ? `renewed every ${(leaseSeconds / 3).toFixed(1)} s while this screen is open` : "");
  }

  function addPackets(packets) {
    const startedAt = Date.parse(capture.started_at) / 1000;
    for (const packet of packets) {
      view.rows.append(h("tr", {class: protocolClass(packet.protocol)},
        h("td", {class: "num"}, String(packet.index)),
        h("td", {class: "num", title: formatClock(packet.time)}, Math.max(0, packet.time - startedAt).toFixed(6)),
        h("td", null, packet.source), h("td", null, packet.destination), h("td", null, packet.protocol),
        h("td", {class: "num"}, String(packet.length)), h("td", {class: "info"}, packet.summary)));
      lastIndex = packet.index;
    }
    while (view.rows.children.length > MAX_ROWS) view.rows.firstElementChild.remove();
    if (view.rows.children.length) view.empty.hidden = true;
    if (view.follow.checked) view.scroller.scrollTop = view.scroller.scrollHeight;
  }

  function skipAhead() {
    const skipped = knownTotal - PAGE_SIZE - lastIndex;
    view.rows.append(h("tr", {class: "skipped"}, h("td", {colspan: 7},
      `\u2026 ${skipped} packets not shown here (too many to follow live); the pcap holds them all`)));
    lastIndex += skipped;
  }

  async function refresh() {
    if (knownTotal - lastIndex > MAX_BEHIND) skipAhead();
    const [page, info] = await Promise.all([
      get(`/api/captures/${capture.id}/packets?after=${lastIndex}&limit=${PAGE_SIZE}`),
      get(`/api/captures/${capture.id}`)]);
    if (disposed) return;
    knownTotal = page.total;
    addPackets(page.packets);
    if (info.state !== "active" && phase === "active") {
      if (info.stop_reason) notify("warning", `Capture #${capture.id} ${info.state}:`, info.stop_reason);
      else notify("warning", `Capture #${capture.id} was stopped outside this screen,`,
        "or its lease ran out before this screen renewed it");
      stopped(info);
    }
    showCounts(info);
  }

  async function poll() {
    if (disposed) return;
    try {
      await refresh();
      if (pollError) pollError.remove();
      pollError = null;
    } catch (error) {
      if (!disposed) pollError = showError("Could not read the capture's packets.", error);
    }
    if (disposed || (phase === "stopped" && finalPolls-- <= 0)) return;
    pollTimer = setTimeout(poll, knownTotal > lastIndex ? CATCH_UP_MS : POLL_MS);
  }

  function stopped(info) {
    phase = "stopped";
    finalPolls = FINAL_POLLS;
    stopRenewing();
    view.stopButton.disabled = true;
    capture = {...capture, ...info};
    describeCapture();
  }

  async function stop() {
    if (phase !== "active") return phase === "stopped";
    phase = "stopping";
    view.stopButton.disabled = true;
    describeCapture();
    try {
      stopped(await remove(`/api/captures/${capture.id}`));
      return true;
    } catch (error) {
      phase = "active";
      view.stopButton.disabled = false;
      describeCapture();
      showError("Could not stop the capture.", error);
      return false;
    }
  }

  async function close() {
    if (await stop()) location.hash = interfacesHref;
  }

  // --- loading -----------------------------------------------------------------------------------

  (async () => {
    let vrouter;
    let config;
    try {
      [vrouter, analyzers, config] = await Promise.all([
        get(`/api/vrouters/${encodeURIComponent(vrouterName)}`), get("/api/analyzers"), get("/api/config")]);
    } catch (error) {
      if (!disposed) replaceChildren(body, errorPanel("Could not open the capture screen.", error));
      return;
    }
    if (disposed) return;
    leaseSeconds = config.lease_seconds;
    iface = vrouter.interface_list.find((item) => item.name === interfaceName || item.vm_interface === interfaceName);
    if (!iface) {
      const known = vrouter.interface_list.map((item) => item.name).join(", ") || "none";
      replaceChildren(body, errorPanel("Could not open the capture screen.",
        new ApiError(`vRouter ${vrouterName} has no interface '${interfaceName}' (it has: ${known})`, 404)));
      return;
    }
    replaceChildren(body, setupForm());
  })();

  return () => {
    disposed = true;
    clearTimeout(pollTimer);
    if (leaseWarning) leaseWarning.remove();
    if (capture && (phase === "active" || phase === "stopping")) {
      const id = capture.id;
      remove(`/api/captures/${id}`).catch((error) =>
        showError(`Could not stop capture #${id}; its lease stops it within ${leaseSeconds} s.`, error));
    }
    stopRenewing();
  };
}
