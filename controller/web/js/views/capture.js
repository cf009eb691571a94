// The capture screen of one interface, as Contrail's: opening it starts mirroring at once
// (direction both, to the analyzer GET /api/analyzer-choice names), and the packets appear
// live. The analyzer and the direction are controls of the running screen: changing one stops
// the capture and starts a new one. A display filter narrows the list (server-side), selecting
// a packet shows its layers and bytes, and a rate view charts packets/s and bits/s.
//
// Mirroring lasts while the screen is open:
// - Stop and Close stop the capture (DELETE), and so does leaving the screen within the app;
// - closing or reloading the tab sends POST /api/captures/{id}/stop with navigator.sendBeacon;
// - a tab that dies without a word stops renewing the capture's lease (lease-worker.js), and
//   the controller stops the capture when the lease runs out.

import {ApiError, get, leaseUrl, post, remove, sentence, stopCaptureOnExit} from "../api.js";
import {h, icon, replaceChildren} from "../dom.js";
import {
  MONITOR_INFRASTRUCTURE, errorPanel, formatBytes, formatClock, formatDuration, notify, pageHeader,
  pill, setBreadcrumb, showError,
} from "../ui.js";
import {destinationForm} from "./destination.js";
import {packetDetails, packetDetailsError} from "./packet-details.js";
import {rateView} from "./rate-chart.js";

const DEFAULT_ANALYZER = "interface-packet-capture";
const POLL_MS = 500;
const CATCH_UP_MS = 250;          // between requests while more packets wait
const PAGE_SIZE = 500;            // packets fetched per request
const MAX_BEHIND = 2000;          // further behind than this (unfiltered), the view skips ahead
const MAX_ROWS = 2000;            // rows kept in the table; the pcap has them all
const FINAL_POLLS = 4;            // polls after stopping, for copies still on their way

const DIRECTIONS = [
  {value: "both", label: "Both", text: (vm) => `what ${vm} sends and what is delivered to it`},
  {value: "ingress", label: "Ingress", text: (vm) => `packets ${vm} sends`},
  {value: "egress", label: "Egress", text: (vm) => `packets delivered to ${vm}`},
];

/** The display filter's syntax, under its input. */
function filterHelp() {
  return [
    "Protocols: eth, vlan, mpls, arp, ip, ip6, icmp, icmpv6, tcp, udp, vxlan, juniper. ",
    "Addresses and ports: host ADDRESS (IPv4, IPv6 or MAC), src host, dst host, port N, src port, dst port. ",
    "Combine with and, or, not and parentheses; terms side by side mean and. ",
    "Examples: ", h("code", null, "icmp and host 10.1.1.12"), ", ", h("code", null, "tcp port 80"), ", ",
    h("code", null, "not arp"), ".",
  ];
}

/** A command in a box with a Copy button. */
function commandBox(label, command) {
  const code = h("code", null, command);
  const copied = h("span", {class: "copy-result", "aria-live": "polite"});
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(command);
      copied.textContent = "Copied";
    } catch {
      // No clipboard (a page not served from a secure origin): select it for Ctrl+C instead.
      getSelection().selectAllChildren(code);
      copied.textContent = "Selected: press Ctrl+C";
    }
  };
  return h("div", {class: "command"}, h("div", {class: "command-label"}, label),
    h("div", {class: "command-line"}, h("pre", null, code),
      h("button", {type: "button", class: "button", onclick: copy, "aria-label": `Copy: ${label}`}, "Copy"),
      copied));
}

/** The "What the analyzer receives" panel: the API's analyzer_view of the capture, rendered. */
function receivesPanel(view) {
  return [
    h("div", {class: "card-title"}, "What the analyzer receives"),
    h("dl", {class: "details receives"},
      h("dt", null, "Destination"), h("dd", {id: "receives-destination"}, view.destination),
      h("dt", null, "Arrives as"), h("dd", {id: "receives-wrapper"}, h("strong", null, view.wrapper_name), ` \u00b7 ${view.tag}`),
      h("dt", null, "Path"), h("dd", {id: "receives-path"}, view.path_text),
      h("dt", null, "What arrives"), h("dd", null, view.summary),
      h("dt", null, "Ingress and egress"), h("dd", {id: "receives-directions"}, view.directions)),
    h("div", {class: "commands"},
      commandBox("Read the pcap download with each packet's direction", view.tshark_pcap),
      view.tshark_analyzer ? commandBox(`Watch the copies arrive, on ${view.receiver}`, view.tshark_analyzer)
        : h("p", {class: "hint"}, "The analyzer of this capture no longer exists.")),
  ];
}

const STATUS = {
  launching: ["idle", "Launching the default analyzer\u2026"], starting: ["idle", "Starting\u2026"],
  active: ["active", "Capturing"], stopping: ["idle", "Stopping\u2026"], stopped: ["idle", "Stopped"],
  failed: ["bad", "Not capturing"],
};

function protocolClass(protocol) {
  return `proto-${protocol.toLowerCase().replace(/[^a-z0-9]/g, "")}`;
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
  let phase = "starting";         // launching, starting, active, stopping, stopped, failed
  let capture = null;             // the capture running or last run on this screen (from the API)
  let run = 0;                    // which start the asynchronous answers belong to
  let leaseSeconds = null;
  let leaseWorker = null;
  let leaseWarning = null;
  let startError = null;          // the notice of a refused start, gone at the next attempt
  let pollError = null;           // the notice of a failed poll, gone at the next success
  let pollTimer = null;
  let finalPolls = 0;
  let listVersion = 0;            // bumped when the list is emptied: older answers are dropped
  let nextAfter = 0;              // packet number the next request continues after
  let knownTotal = 0;             // packets recorded, as of the last poll
  let shownProblem = null;        // the last capture problem the API reported and this screen said
  let firstTime = null;           // when packet 1 was recorded: the Time column counts from it, as tshark does
  let rowsDropped = false;        // whether the oldest rows left the table (MAX_ROWS)
  let filterText = "";            // the display filter in force
  let selectedRow = null;
  let detailsRequest = 0;
  let iface = null;
  let analyzers = [];
  let preferred = null;           // GET /api/analyzer-choice
  let probes = [];                // the lab's fabric analyzers (GET /api/topology)
  let view = null;                // elements of the screen
  const rates = rateView();

  const onPageHide = () => {
    if (capture && (phase === "active" || phase === "stopping")) stopCaptureOnExit(capture);
  };
  // Esc closes the details; the arrow keys (with Home, End, Page Up/Down) move through the list
  // from anywhere on the screen but a form field, as in Wireshark.
  const onKey = (event) => {
    if (!view || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "Escape" && view.details.childElementCount) closeDetails();
    else if (!event.target.closest("input, select, textarea")) moveSelection(event);
  };
  document.addEventListener("keydown", onKey);

  function setPhase(next) {
    phase = next;
    replaceChildren(status, pill(...STATUS[phase]));
    if (!view) return;
    const busy = ["launching", "starting", "stopping"].includes(phase);
    view.analyzer.disabled = busy;
    for (const radio of view.directions) radio.disabled = busy;
    view.stopButton.hidden = !(phase === "active" || phase === "stopping");
    view.stopButton.disabled = phase !== "active";
    view.startButton.hidden = !(phase === "stopped" || phase === "failed");
    view.download.hidden = view.downloadClassic.hidden = !capture;
    if (capture) {
      view.download.href = `/api/captures/${capture.id}/pcap`;
      view.downloadClassic.href = `/api/captures/${capture.id}/pcap?format=pcap`;
    }
  }

  function stopRenewing() {
    if (leaseWorker) leaseWorker.terminate();
    leaseWorker = null;
    window.removeEventListener("pagehide", onPageHide);
  }

  function analyzerRunning(name) {
    return analyzers.some((analyzer) => analyzer.name === name);
  }

  // --- the screen --------------------------------------------------------------------------------

  function analyzerOptions() {
    const options = analyzers.map((analyzer) => h("option", {value: analyzer.name},
      `${analyzer.name} \u2014 ${analyzer.vm} on ${analyzer.compute}, ${analyzer.network} ${analyzer.ip}`));
    if (!analyzerRunning(DEFAULT_ANALYZER)) {
      options.unshift(h("option", {value: DEFAULT_ANALYZER},
        `${DEFAULT_ANALYZER} \u2014 default, launched on ${vrouterName} when chosen`));
    }
    return options;
  }

  function build() {
    const stat = (name, label) => h("div", {class: "tile"}, h("div", {class: "tile-value", dataset: {stat: name}}, "0"),
      h("div", {class: "tile-label"}, label));
    const analyzer = h("select", {id: "capture-analyzer", name: "analyzer", onchange: restart}, analyzerOptions());
    analyzer.value = preferred.analyzer;
    const directions = DIRECTIONS.map((direction) => h("input", {type: "radio", name: "direction",
      value: direction.value, checked: direction.value === "both", onchange: restart}));
    const follow = h("input", {type: "checkbox", checked: true, id: "capture-follow"});
    const rows = h("tbody");
    const scroller = h("div", {class: "packet-scroll", tabindex: "0", "aria-label": "Packet list: arrow keys move, Esc closes the details"},
      h("table", {class: "packet-table", "aria-label": "Captured packets"},
        h("thead", null, h("tr", null, ["No.", "Time", "Direction", "Source", "Destination", "Protocol", "Length", "Info"]
          .map((label) => h("th", {scope: "col", title: label === "Time" ? "Seconds since the first packet, as tshark counts" : null}, label)))),
        rows));
    scroller.addEventListener("scroll", () => {
      follow.checked = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
    });
    rows.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-index]");
      if (row) selectRow(row);
    });
    const filterInput = h("input", {type: "text", id: "packet-filter", class: "filter-input", spellcheck: "false",
                                    autocomplete: "off", placeholder: "Display filter, e.g. icmp and host 10.1.1.12",
                                    "aria-label": "Display filter", "aria-describedby": "filter-help"});
    const filterForm = h("form", {class: "filter-bar", role: "search"},
      filterInput, h("button", {type: "submit", class: "button"}, "Apply"),
      h("button", {type: "button", class: "button", onclick: () => { filterInput.value = ""; applyFilter(""); }}, "Clear"));
    filterForm.addEventListener("submit", (event) => {
      event.preventDefault();
      applyFilter(filterInput.value.trim());
    });
    view = {
      analyzer, directions, follow, rows, scroller, filterInput,
      meta: h("div", {class: "capture-meta"}),
      rule: h("p", {class: "hint rule", id: "analyzer-rule"}),
      empty: h("p", {class: "empty-packets"}),
      filterError: h("div", {class: "filter-error", id: "filter-error"}),
      filterState: h("span", {class: "card-count", id: "filter-state"}),
      details: h("div", {id: "packet-details"}),
      destination: destinationForm(probes, restart),
      receives: h("section", {class: "card", id: "analyzer-receives", "aria-label": "What the analyzer receives"}),
      stopButton: h("button", {type: "button", class: "button danger", onclick: stop}, icon("stop"), "Stop"),
      startButton: h("button", {type: "button", class: "button primary", onclick: () => start()}, icon("play"), "Start capture"),
      closeButton: h("button", {type: "button", class: "button", onclick: close}, icon("close"), "Close"),
      download: h("a", {class: "button", download: "", title: "pcapng: each packet with its direction (Wireshark: Inbound = delivered to the VM, Outbound = sent by it)"},
        icon("download"), "Download pcapng"),
      downloadClassic: h("a", {class: "button", download: "", title: "classic pcap, without directions"}, "classic pcap"),
      packets: stat("packets", "Packets"), bytes: stat("bytes", "Bytes"),
      duration: stat("duration", "Duration"), lease: stat("lease", "Lease"),
    };
    view.lease.title = `While this screen is open it renews the capture's lease; if the screen goes away without `
      + `stopping the capture (tab crashed, network lost), the controller stops it when the lease runs out.`;
    replaceChildren(body,
      h("section", {class: "card capture-run"},
        h("div", {class: "capture-head"}, view.meta,
          h("div", {class: "capture-actions"}, view.download, view.downloadClassic, view.stopButton, view.startButton, view.closeButton)),
        h("div", {class: "capture-controls"},
          h("div", {class: "control"}, h("label", {for: "capture-analyzer"}, "Analyzer"), analyzer),
          h("fieldset", {class: "control"}, h("legend", null, "Direction"),
            h("div", {class: "segmented"}, DIRECTIONS.map((direction, index) =>
              h("label", {title: direction.text(iface.vm)}, directions[index], h("span", null, direction.label))))),
          view.rule),
        view.destination.element,
        h("div", {class: "tiles"}, view.packets, view.bytes, view.duration, view.lease),
        rates.element),
      view.receives,
      h("section", {class: "card"},
        h("div", {class: "card-title"}, "Packets", view.filterState,
          h("label", {class: "follow", for: "capture-follow"}, follow, "Follow newest")),
        filterForm,
        h("p", {class: "hint filter-help", id: "filter-help"}, filterHelp()),
        view.filterError,
        scroller, view.empty),
      view.details);
    describeRule();
  }

  function describeRule() {
    const chosen = view.analyzer.value;
    const why = chosen === preferred.analyzer ? `Chosen on opening: ${preferred.reason}.` : "Chosen by you.";
    replaceChildren(view.rule, `${why} Rule: ${preferred.rule}.`);
  }

  function describeCapture(settings) {
    const name = capture ? capture.analyzer : settings.analyzer;
    const analyzer = analyzers.find((candidate) => candidate.name === name);
    const where = analyzer ? ` (${analyzer.vm} on ${analyzer.compute}, ${analyzer.ip})` : "";
    const launching = phase === "launching"
      ? h("div", {class: "launching"}, `Launching the default analyzer ${DEFAULT_ANALYZER} on ${vrouterName}\u2026 `
        + "The first capture to it takes a few seconds; mirroring starts as soon as it runs.") : null;
    const starting = phase === "launching" || phase === "starting";
    replaceChildren(view.meta,
      h("div", {class: "capture-title"}, starting ? "Starting a capture" : `Capture #${capture.id}`),
      h("div", {class: "capture-route"},
        h("span", {class: "strong"}, `${iface.name} (${iface.vm})`), " \u2192 ", h("span", {class: "strong"}, name), where),
      h("div", {class: "muted small"}, `direction ${starting ? settings.direction : capture.direction}`
        + (starting ? "" : ` \u00b7 started ${formatClock(Date.parse(capture.started_at) / 1000)}`
          + ` \u00b7 limit ${formatBytes(capture.limit_bytes)}`)),
      launching);
    if (starting) {
      replaceChildren(view.receives, h("div", {class: "card-title"}, "What the analyzer receives"),
        h("p", {class: "loading"}, "Shown once the capture runs."));
    } else {
      replaceChildren(view.receives, receivesPanel(capture.analyzer_view));
    }
  }

  function settingsNow() {
    return {analyzer: view.analyzer.value, direction: view.directions.find((radio) => radio.checked).value};
  }

  // --- starting and stopping -----------------------------------------------------------------------

  async function start() {
    const settings = settingsNow();
    const mine = ++run;
    if (startError) startError.remove();
    startError = null;
    capture = null;
    view.destination.clearErrors();
    const toFabric = view.destination.goesToFabric();
    const launch = !toFabric && settings.analyzer === DEFAULT_ANALYZER && !analyzerRunning(DEFAULT_ANALYZER);
    setPhase(launch ? "launching" : "starting");
    describeCapture(settings);
    resetList();
    rates.reset();
    showCounts({packets: 0, bytes: 0});
    const request = {vrouter: vrouterName, interface: iface.name, direction: settings.direction,
                     lease_seconds: leaseSeconds, origin: "screen"};
    // Without an analyzer the controller launches the default; a fabric destination names none.
    if (!launch && !toFabric) request.analyzer = settings.analyzer;
    const mirrorTo = view.destination.mirrorTo();
    if (mirrorTo) request.mirror_to = mirrorTo;
    let started;
    try {
      started = await post("/api/captures", request);
    } catch (error) {
      if (disposed || mine !== run) return;
      setPhase("failed");
      if (view.destination.showFieldError(error)) {
        replaceChildren(view.meta, h("div", {class: "capture-title"}, "No capture running"),
          h("div", {class: "muted", id: "destination-refused"},
            "The controller refused the destination: see the field marked under Advanced destination."));
        return;
      }
      replaceChildren(view.meta, h("div", {class: "capture-title"}, "No capture running"),
        h("div", {class: "muted"}, "Change the analyzer or the direction, or press Start capture to try again."));
      startError = showError("Could not start the capture.", error);
      return;
    }
    if (disposed || mine !== run) {  // the user left, or asked for another capture, meanwhile
      remove(`/api/captures/${started.id}`).catch((error) =>
        showError(`Could not stop capture #${started.id}; its lease stops it within ${leaseSeconds} s.`, error));
      return;
    }
    capture = started;
    setPhase("active");
    window.addEventListener("pagehide", onPageHide);
    leaseWorker = new Worker(new URL("../lease-worker.js", import.meta.url));
    leaseWorker.onmessage = (event) => leaseRenewed(event.data);
    leaseWorker.postMessage({url: leaseUrl(capture), intervalMs: leaseSeconds * 1000 / 3});
    describeCapture(settings);
    showCounts(capture);
    poll(mine);
    if (launch) {
      try {
        analyzers = await get("/api/analyzers");
      } catch (error) {
        showError("Could not load the analyzers.", error);
        return;
      }
      if (disposed || mine !== run) return;
      replaceChildren(view.analyzer, analyzerOptions());
      view.analyzer.value = capture.analyzer;
      describeCapture(settings);
    }
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

  function stopped(info) {
    setPhase("stopped");
    finalPolls = FINAL_POLLS;
    stopRenewing();
    capture = {...capture, ...info};
  }

  /** Stop the running capture; resolves to whether none runs any more. */
  async function stop() {
    if (phase === "launching" || phase === "starting") {
      run += 1;  // the capture being started is stopped as soon as it answers
      setPhase("failed");
      return true;
    }
    if (phase !== "active") return phase !== "stopping";
    setPhase("stopping");
    try {
      stopped(await remove(`/api/captures/${capture.id}`));
      return true;
    } catch (error) {
      setPhase("active");
      showError("Could not stop the capture.", error);
      return false;
    }
  }

  /** A control changed: stop the capture and start one with the new settings. */
  async function restart() {
    describeRule();
    if (await stop()) start();
  }

  async function close() {
    if (await stop()) location.hash = interfacesHref;
  }

  // --- the live list ----------------------------------------------------------------------------

  function resetList() {
    listVersion += 1;
    nextAfter = 0;
    knownTotal = 0;
    firstTime = null;
    rowsDropped = false;
    selectedRow = null;
    closeDetails();
    replaceChildren(view.rows);
    view.empty.hidden = false;
    view.empty.textContent = filterText
      ? `No packet matches the filter yet.`
      : `Waiting for packets\u2026 They appear here as the analyzer receives them; try: `
        + `mirrorlab exec ${iface.vm} -- ping -c 3 <a peer's IP>`;
    describeList();
  }

  function describeList() {
    const shown = rowsDropped ? `showing the last ${MAX_ROWS} of ${filterText ? "the matching" : knownTotal} packets`
      + " (the pcap has them all)" : "";
    replaceChildren(view.filterState, [filterText ? `filter: ${filterText}` : "", shown].filter(Boolean).join(" \u00b7 "));
  }

  function showCounts(info) {
    const set = (tile, text, title) => {
      const value = tile.querySelector(".tile-value");
      value.textContent = text;
      value.title = title || "";
    };
    set(view.packets, String(info.packets));
    set(view.bytes, formatBytes(info.bytes),
      `${info.bytes} bytes; pcap file ${info.file_bytes} of its ${info.limit_bytes}-byte limit`);
    if (capture) {
      const startedAt = Date.parse(capture.started_at) / 1000;
      const endedAt = info.stopped_at ? Date.parse(info.stopped_at) / 1000 : Date.now() / 1000;
      set(view.duration, formatDuration(endedAt - startedAt));
    } else {
      set(view.duration, formatDuration(0));
    }
    set(view.lease, phase === "active" ? `${leaseSeconds} s` : phase === "stopped" ? "ended" : "\u2014",
      phase === "active" ? `renewed every ${(leaseSeconds / 3).toFixed(1)} s while this screen is open` : "");
  }

  function addPackets(packets, first) {
    if (first !== null) firstTime = first;
    for (const packet of packets) {
      view.rows.append(h("tr", {class: protocolClass(packet.protocol), dataset: {index: String(packet.index)}},
        h("td", {class: "num"}, String(packet.index)),
        h("td", {class: "num", title: formatClock(packet.time)}, (packet.time - firstTime).toFixed(6)),
        h("td", {class: `direction direction-${packet.direction || "unknown"}`,
                 title: packet.direction ? `${packet.direction}, seen from the vRouter` : "direction unknown"},
          packet.direction_text),
        h("td", null, packet.source), h("td", null, packet.destination), h("td", null, packet.protocol),
        h("td", {class: "num"}, String(packet.length)), h("td", {class: "info"}, packet.summary)));
    }
    while (view.rows.children.length > MAX_ROWS) {
      if (view.rows.firstElementChild === selectedRow) selectedRow = null;
      view.rows.firstElementChild.remove();
      rowsDropped = true;
    }
    describeList();
    if (view.rows.children.length) view.empty.hidden = true;
    if (view.follow.checked) view.scroller.scrollTop = view.scroller.scrollHeight;
  }

  function skipAhead() {
    const skipped = knownTotal - PAGE_SIZE - nextAfter;
    view.rows.append(h("tr", {class: "skipped"}, h("td", {colspan: 8},
      `\u2026 ${skipped} packets not shown here (too many to follow live); the pcap holds them all`)));
    nextAfter += skipped;
  }

  function packetsUrl(after, filter) {
    const query = new URLSearchParams({after: String(after), limit: String(PAGE_SIZE)});
    if (filter) query.set("filter", filter);
    return `/api/captures/${capture.id}/packets?${query}`;
  }

  async function refresh(mine) {
    if (!filterText && knownTotal - nextAfter > MAX_BEHIND) skipAhead();
    const version = listVersion;
    const [page, info] = await Promise.all([get(packetsUrl(nextAfter, filterText)), get(`/api/captures/${capture.id}`)]);
    if (disposed || mine !== run) return;
    if (version === listVersion) {
      knownTotal = page.total;
      nextAfter = page.next_after;
      addPackets(page.packets, page.first_time);
    }
    if (info.problem && phase === "active" && info.problem !== shownProblem) {
      shownProblem = info.problem;  // e.g. its vRouter lost the controller: say so once
      notify("warning", `Capture #${capture.id} may not be mirroring:`, info.problem);
    }
    if (info.state !== "active" && phase === "active") {
      if (info.stop_reason) notify("warning", `Capture #${capture.id} ${info.state}:`, info.stop_reason);
      else notify("warning", `Capture #${capture.id} is no longer running.`,
        "it was stopped outside this screen, or its lease ran out before this screen renewed it");
      stopped(info);
    }
    rates.add(info.packets, info.bytes);
    showCounts(info);
  }

  async function poll(mine) {
    if (disposed || mine !== run) return;
    try {
      await refresh(mine);
      if (pollError || leaseWarning) setPhase(phase);  // the controller is back: its notices are stale
      if (pollError) pollError.remove();
      if (leaseWarning) leaseWarning.remove();
      pollError = leaseWarning = null;
    } catch (error) {
      if (!disposed && mine === run) {
        pollError = showError("Could not read the capture's packets.", error);
        if (error.status === 0) replaceChildren(status, pill("bad", "Controller unreachable"));
      }
    }
    if (disposed || mine !== run || (phase === "stopped" && finalPolls-- <= 0)) return;
    pollTimer = setTimeout(() => poll(mine), knownTotal > nextAfter ? CATCH_UP_MS : POLL_MS);
  }

  /** Show only the packets `text` matches (all when empty); a bad filter is refused with the
   * controller's message and the list stays as it was. */
  async function applyFilter(text) {
    replaceChildren(view.filterError);
    view.filterInput.removeAttribute("aria-invalid");
    if (!capture) {
      filterText = text;
      resetList();
      return;
    }
    const mine = run;
    let page;
    try {
      page = await get(packetsUrl(0, text));
    } catch (error) {
      if (disposed || mine !== run) return;
      if (error instanceof ApiError && error.status === 400) {
        view.filterInput.setAttribute("aria-invalid", "true");
        replaceChildren(view.filterError, h("div", {class: "alert alert-error", role: "alert"},
          icon("alert", "alert-icon"), h("div", {class: "alert-text"}, h("strong", null, "Filter not applied."), ` ${sentence(error.message)}`)));
      } else {
        showError("Could not filter the packets.", error);
      }
      return;
    }
    if (disposed || mine !== run) return;
    filterText = text;
    resetList();
    knownTotal = page.total;
    nextAfter = page.next_after;
    addPackets(page.packets, page.first_time);
  }

  // --- packet details and the keyboard ------------------------------------------------------------

  function closeDetails() {
    detailsRequest += 1;
    replaceChildren(view.details);
    if (selectedRow) selectedRow.classList.remove("selected");
    if (selectedRow) selectedRow.removeAttribute("aria-selected");
    selectedRow = null;
  }

  async function selectRow(row) {
    if (selectedRow) selectedRow.classList.remove("selected");
    if (selectedRow) selectedRow.removeAttribute("aria-selected");
    selectedRow = row;
    row.classList.add("selected");
    row.setAttribute("aria-selected", "true");
    view.follow.checked = false;
    row.scrollIntoView({block: "nearest"});
    view.scroller.focus({preventScroll: true});
    const index = Number(row.dataset.index);
    const mine = ++detailsRequest;
    replaceChildren(view.details, h("section", {class: "card packet-details"},
      h("div", {class: "card-title"}, `Packet ${index}`), h("p", {class: "loading"}, "Decoding\u2026")));
    let panel;
    try {
      panel = packetDetails(await get(`/api/captures/${capture.id}/packets/${index}`), closeDetails);
    } catch (error) {
      panel = packetDetailsError(index, error, closeDetails);
    }
    if (!disposed && mine === detailsRequest) replaceChildren(view.details, panel);
  }

  function moveSelection(event) {
    const rows = [...view.rows.querySelectorAll("tr[data-index]")];
    if (!rows.length) return;
    const at = selectedRow ? rows.indexOf(selectedRow) : -1;
    const target = {ArrowDown: at + 1, ArrowUp: at < 0 ? rows.length - 1 : at - 1, Home: 0, End: rows.length - 1,
                    PageDown: at + 20, PageUp: at - 20}[event.key];
    if (target === undefined) return;
    event.preventDefault();
    selectRow(rows[Math.max(0, Math.min(rows.length - 1, target))]);
  }

  // --- loading -----------------------------------------------------------------------------------

  (async () => {
    let vrouter;
    let config;
    let topology;
    try {
      [vrouter, analyzers, config, preferred, topology] = await Promise.all([
        get(`/api/vrouters/${encodeURIComponent(vrouterName)}`), get("/api/analyzers"), get("/api/config"),
        get("/api/analyzer-choice"), get("/api/topology")]);
    } catch (error) {
      if (!disposed) replaceChildren(body, errorPanel("Could not open the capture screen.", error));
      return;
    }
    if (disposed) return;
    leaseSeconds = config.lease_seconds;
    probes = topology.nodes.filter((node) => node.kind === "fabric_analyzer");
    iface = vrouter.interface_list.find((item) => item.name === interfaceName || item.vm_interface === interfaceName);
    if (!iface) {
      const known = vrouter.interface_list.map((item) => item.name).join(", ") || "none";
      replaceChildren(body, errorPanel("Could not open the capture screen.",
        new ApiError(`vRouter ${vrouterName} has no interface '${interfaceName}' (it has: ${known})`, 404)));
      return;
    }
    build();
    if (iface.captures.length) {
      notify("warning", `${iface.name} is already being captured`,
        `(capture ${iface.captures.map((id) => `#${id}`).join(", ")}); this screen starts another one, which is allowed`);
    }
    start();
  })();

  return () => {
    disposed = true;
    clearTimeout(pollTimer);
    document.removeEventListener("keydown", onKey);
    if (leaseWarning) leaseWarning.remove();
    if (capture && (phase === "active" || phase === "stopping")) {
      const id = capture.id;
      remove(`/api/captures/${id}`).catch((error) =>
        showError(`Could not stop capture #${id}; its lease stops it within ${leaseSeconds} s.`, error));
    }
    stopRenewing();
  };
}
