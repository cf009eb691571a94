// Monitor > Infrastructure > Virtual Routers > NAME: one vRouter, with its Details and
// Interfaces tabs. Each interface row has an Action menu whose Packet Capture item opens the
// capture screen.

import {get} from "../api.js";
import {h, icon, replaceChildren} from "../dom.js";
import {
  MONITOR_INFRASTRUCTURE, actionMenu, autoRefresh, dataTable, pageHeader, pill, setBreadcrumb, tabs,
} from "../ui.js";

const REFRESH_MS = 5000;

const INTERFACE_COLUMNS = [
  {label: "Name"}, {label: "VM"}, {label: "Network"}, {label: "IP address"}, {label: "MAC address"},
  {label: "Status"}, {label: "Mirroring"}, {label: "Action", className: "action"},
];

/** The hash of the capture screen for `interfaceName` on `vrouterName`. */
function captureHref(vrouterName, interfaceName) {
  return `#/vrouters/${encodeURIComponent(vrouterName)}/interfaces/${encodeURIComponent(interfaceName)}/capture`;
}

/** The chip of an analyzer VM, with how its recorder is doing when that is not simply running. */
function analyzerChip(name, recorder) {
  const healthy = recorder.state === "running";
  const restarts = recorder.restarts ? `, restarted ${recorder.restarts}\u00d7` : "";
  const text = `analyzer ${name}` + (healthy ? (restarts && ` (recorder${restarts})`)
    : ` \u00b7 recorder ${recorder.state}`);
  const title = `this VM is an analyzer instance; its recorder is ${recorder.state}${restarts}`
    + (recorder.last_error ? `; last failure: ${recorder.last_error}` : "");
  return h("span", {class: `chip chip-analyzer${healthy ? "" : " chip-bad"}`, dataset: {recorder: recorder.state},
                    title}, text);
}

function mirroringCell(item, captures) {
  const mine = captures.filter((capture) => capture.interface === item.name);
  // A port-configured capture (interface_mirror set through the configuration API) says so.
  const onPort = (capture) => capture.origin === "port";
  const chips = mine.map((capture) => h("span", {class: "chip chip-mirror", dataset: {origin: capture.origin},
                                                 title: `capture ${capture.id}, ${capture.direction}, `
                                                   + (onPort(capture) ? "interface_mirror configured on the port, " : "")
                                                   + `pcap file ${capture.file_bytes} of ${capture.limit_bytes} bytes`},
    `#${capture.id} \u2192 ${capture.analyzer} (${capture.direction}${onPort(capture) ? ", port" : ""})`));
  if (item.analyzer) {
    chips.unshift(analyzerChip(item.analyzer, item.recorder || {state: "unknown", restarts: 0}));
  }
  return chips.length ? h("div", {class: "chips"}, chips) : h("span", {class: "muted"}, "Off");
}

function interfaceRow(vrouter, item, captures) {
  return {
    attributes: {dataset: {interface: item.name}},
    cells: [
      h("div", null, h("div", {class: "strong"}, item.name), h("div", {class: "muted small"}, item.vm_interface)),
      h("div", null, item.vm, item.analyzer ? h("span", {class: "tag"}, "analyzer") : null),
      item.network,
      h("div", {class: "mono"}, item.ip, item.ip6 ? h("div", {class: "muted small"}, item.ip6) : null),
      h("span", {class: "mono"}, item.mac),
      vrouter.connected ? pill("ok", "Active") : pill("bad", "Down"),
      mirroringCell(item, captures),
      actionMenu(`Actions for ${item.name}`, [{
        label: "Packet Capture", icon: "capture",
        onselect: () => { location.hash = captureHref(vrouter.name, item.name); },
      }]),
    ],
  };
}

function details(vrouter) {
  const rows = [
    ["Host name", vrouter.name], ["vRouter bridge", vrouter.bridge], ["Datapath id", String(vrouter.dpid)],
    ["Fabric IP", vrouter.fabric_ip], ["Fabric MAC", vrouter.fabric_mac],
    ["Controller", vrouter.connected ? pill("ok", "Connected") : pill("bad", "Not connected")],
    ["VMs", vrouter.vms.join(", ") || "none"], ["Interfaces", String(vrouter.interfaces)],
    ["Active captures", String(vrouter.active_captures)],
  ];
  return h("section", {class: "card"}, h("div", {class: "card-title"}, "vRouter details"),
    h("dl", {class: "details"}, rows.map(([term, value]) => [h("dt", null, term), h("dd", null, value)])));
}

/** The page of vRouter `name`, showing `tab` ("details" or "interfaces"). */
export function vrouterView(container, name, tab = "details") {
  const base = `#/vrouters/${encodeURIComponent(name)}`;
  setBreadcrumb([...MONITOR_INFRASTRUCTURE, {label: "Virtual Routers", href: "#/vrouters"},
    {label: name, href: base}, {label: tab === "interfaces" ? "Interfaces" : "Details"}]);
  const header = pageHeader(name, "vRouter");
  const body = h("div", null, h("p", {class: "loading"}, "Loading…"));
  container.append(header,
    tabs([{label: "Details", href: base, active: tab === "details"},
          {label: "Interfaces", href: `${base}/interfaces`, active: tab === "interfaces"}]),
    body);

  return autoRefresh(async () => {
    const [vrouter, captures] = await Promise.all([
      get(`/api/vrouters/${encodeURIComponent(name)}`), get("/api/captures?state=active")]);
    replaceChildren(header, ...pageHeader(vrouter.name,
      `vRouter ${vrouter.bridge} \u00b7 fabric ${vrouter.fabric_ip}`,
      vrouter.connected ? pill("ok", "Connected to the controller") : pill("bad", "Not connected")).childNodes);
    if (tab === "interfaces") {
      const here = captures.filter((capture) => capture.vrouter === vrouter.name);
      replaceChildren(body, h("section", {class: "card"},
        h("div", {class: "card-title"}, icon("server"), "Interfaces",
          h("span", {class: "card-count"}, `${vrouter.interface_list.length} total`)),
        dataTable(INTERFACE_COLUMNS, vrouter.interface_list.map((item) => interfaceRow(vrouter, item, here)),
          "No interfaces on this vRouter.", "Interfaces")));
    } else {
      replaceChildren(body, details(vrouter));
    }
  }, REFRESH_MS, `Could not load vRouter ${name}.`);
}
