// Monitor > Infrastructure > Topology: a picture of the lab. Virtual networks run across the
// top; each compute node holds its VMs and its vRouter; the vRouters meet on the fabric below.
// Fabric analyzers (probe appliances on the fabric: VTEPs of static destinations, the
// receivers of NIC-assisted mirrors) hang below the fabric line, under the last compute node.
// Each active capture's copies are drawn along their real path (the capture's analyzer_view from
// the API): down from the monitored VM into its vRouter, for an analyzer elsewhere along the
// fabric to the analyzer's vRouter, and up into the analyzer VM, or along the fabric into the
// fabric analyzer, labelled with the wrapper and the live packet count. Right of the compute
// nodes, where the network lines end, each network policy connection (two networks whose
// policies both pass traffic between them) joins its two network lines, and each policy mirror
// (a network pair's traffic copied to an analyzer) too, dashed, named by its analyzer (GET
// /api/policies, which reads them from the vRouters' own policy decisions). The picture is
// drawn at its natural size (text at 12 px or more) and scrolls sideways where the window is
// narrower.

import {get} from "../api.js";
import {h, replaceChildren, s} from "../dom.js";
import {linkText} from "./policies.js";
import {MONITOR_INFRASTRUCTURE, autoRefresh, dataTable, formatBytes, formatClock, pageHeader, setBreadcrumb}
  from "../ui.js";

const REFRESH_MS = 2000;   // the copy paths' packet counts are live
const LABEL_WIDTH = 150;   // left margin holding the network names
const TOP = 30;            // first network line
const NETWORK_GAP = 36;    // between network lines
const VM_WIDTH = 108;
const VM_HEIGHT = 58;
const VM_GAP = 12;
const PADDING = 12;        // inside a compute node's box
const BOX_GAP = 24;        // between compute nodes' boxes
const MIN_BOX_WIDTH = 160; // room for a compute node's name and fabric address
const PROBE_WIDTH = 132;   // a fabric analyzer's box on the fabric line
const PROBE_HEIGHT = 40;
const VROUTER_HEIGHT = 36;     // its name on top, the copy paths running through below it
const LANE = 30;           // below the fabric, per copy path crossing it (its line and its label)
const TAP_SHIFT = 10;      // a copy path runs beside the VM's own tap line, not on it
const PATH_GAP = 6;        // between copy paths leaving one VM or reaching one analyzer
const POLICY_GAP = 24;     // between policy connections and mirrors, right of the compute nodes
const POLICY_ROW = 17;     // per policy link label, under the network lines
const MIRROR_COLOR = "#e8710a";
const POLICY_COLOR = "#2d3e50";
const NAMED_COLORS = {
  blue: "#2f78c4", red: "#d2463c", green: "#2e9a57", orange: "#e08a1e", purple: "#8a5cc2",
  yellow: "#c4a000", pink: "#d45a9a", cyan: "#1598a8", brown: "#8c5a3c", gray: "#7a8591", grey: "#7a8591",
};
const PALETTE = ["#2f78c4", "#d2463c", "#2e9a57", "#8a5cc2", "#e08a1e", "#1598a8", "#d45a9a", "#8c5a3c"];
const ANALYZER_NETWORK_COLOR = "#6f7c8a";
const DEFAULT_ANALYZER_NETWORK = "svc-vn-left";  // Contrail's name, which the lab keeps

function networkColors(networks, analyzerNetworks) {
  const colors = new Map();
  networks.forEach((network, index) => {
    colors.set(network.name, analyzerNetworks.has(network.name) ? ANALYZER_NETWORK_COLOR
      : NAMED_COLORS[network.name.toLowerCase()] || PALETTE[index % PALETTE.length]);
  });
  return colors;
}

function shorten(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}\u2026` : text;
}

/** The VMs of one vRouter, in port order, each with its interfaces. */
function vmsOf(interfaces) {
  const vms = new Map();
  for (const item of interfaces) {
    if (!vms.has(item.vm)) vms.set(item.vm, {name: item.vm, analyzer: item.analyzer, interfaces: []});
    vms.get(item.vm).interfaces.push(item);
  }
  return [...vms.values()];
}

function layout(vrouters, interfacesByVrouter, networkCount, fabricLanes, probeNodes, policyRows) {
  const boxTop = TOP + (networkCount - 1) * NETWORK_GAP + 50 + policyRows;
  const rows = {boxTop, vmTop: boxTop + 46, vrouterTop: boxTop + 46 + VM_HEIGHT + 62};
  rows.boxBottom = rows.vrouterTop + VROUTER_HEIGHT + PADDING;
  rows.fabric = rows.boxBottom + 46;
  let x = LABEL_WIDTH;
  const boxes = vrouters.map((vrouter) => {
    const vms = vmsOf(interfacesByVrouter.get(vrouter.name));
    const slots = Math.max(1, vms.length);
    const width = Math.max(MIN_BOX_WIDTH, PADDING * 2 + slots * VM_WIDTH + (slots - 1) * VM_GAP);
    const box = {vrouter, x, width, vms: vms.map((vm, index) => ({...vm, x: x + PADDING + index * (VM_WIDTH + VM_GAP)}))};
    x += width + BOX_GAP;
    return box;
  });
  const width = x - BOX_GAP + 12;
  rows.probeTop = rows.fabric + 32 + fabricLanes * LANE;  // below the copy paths' lanes
  const probes = probeNodes.map((probe, index) => ({...probe, x: width - 12 - (index + 1) * (PROBE_WIDTH + BOX_GAP) + BOX_GAP}));
  const height = probes.length ? rows.probeTop + PROBE_HEIGHT + 12 : rows.fabric + 24 + fabricLanes * LANE;
  return {rows, boxes, probes, width, height};
}

function drawNetworks(svg, networks, colors, width) {
  networks.forEach((network, index) => {
    const y = TOP + index * NETWORK_GAP;
    svg.append(
      s("line", {x1: LABEL_WIDTH - 14, y1: y, x2: width - 12, y2: y, stroke: colors.get(network.name),
                 "stroke-width": 4, "stroke-linecap": "round"}),
      s("text", {x: 12, y: y - 2, class: "topo-network", fill: colors.get(network.name)}, network.name),
      s("text", {x: 12, y: y + 13, class: "topo-muted"}, network.subnet));
  });
}

function drawBox(svg, box, rows) {
  const {vrouter} = box;
  const right = box.x + box.width;
  svg.append(
    s("rect", {x: box.x, y: rows.boxTop, width: box.width, height: rows.boxBottom - rows.boxTop, rx: 10,
               class: "topo-compute", dataset: {compute: vrouter.name}}),
    s("text", {x: box.x + 12, y: rows.boxTop + 20, class: "topo-compute-name"}, vrouter.name),
    s("text", {x: box.x + 12, y: rows.boxTop + 36, class: "topo-muted"}, `fabric ${vrouter.fabric_ip}`),
    s("circle", {cx: right - 14, cy: rows.boxTop + 16, r: 5, class: vrouter.connected ? "topo-up" : "topo-down"},
      s("title", null, vrouter.connected ? "vRouter connected to the controller" : "vRouter not connected")));
  for (const vm of box.vms) {
    const center = vm.x + VM_WIDTH / 2;
    svg.append(s("line", {x1: center, y1: rows.vmTop + VM_HEIGHT, x2: center, y2: rows.vrouterTop, class: "topo-tap"}));
  }
  svg.append(
    s("rect", {x: box.x + PADDING, y: rows.vrouterTop, width: box.width - 2 * PADDING, height: VROUTER_HEIGHT, rx: 5,
               class: "topo-vrouter", dataset: {vrouter: vrouter.name}}),
    s("text", {x: box.x + box.width / 2, y: rows.vrouterTop + 15, class: "topo-vrouter-label",
               "text-anchor": "middle"}, `vRouter ${vrouter.bridge}`),
    s("line", {x1: box.x + box.width / 2, y1: rows.boxBottom, x2: box.x + box.width / 2, y2: rows.fabric,
               class: "topo-fabric-link"}));
  if (!box.vms.length) {
    svg.append(s("text", {x: box.x + box.width / 2, y: rows.vmTop + VM_HEIGHT / 2, "text-anchor": "middle",
                          class: "topo-muted"}, "no VMs"));
  }
}

function drawVm(svg, vm, vrouter, rows, captures) {
  const mirrored = captures.filter((capture) => vm.interfaces.some((item) => item.name === capture.interface));
  const details = vm.interfaces.map((item) => `${item.name}: ${item.network} ${item.ip} ${item.mac}`);
  for (const capture of mirrored) {
    details.push(`mirrored by capture #${capture.id} \u2192 ${capture.analyzer} (${capture.direction})`);
  }
  const group = s("a", {href: `#/vrouters/${encodeURIComponent(vrouter.name)}/interfaces`, class: "topo-vm-link",
                        dataset: {vm: vm.name}},
    s("title", null, [`${vm.name} on ${vrouter.name}`, ...details].join("\n")),
    s("rect", {x: vm.x, y: rows.vmTop, width: VM_WIDTH, height: VM_HEIGHT, rx: 7,
               class: `topo-vm${vm.analyzer ? " topo-analyzer" : ""}${mirrored.length ? " topo-mirrored" : ""}`}),
    s("text", {x: vm.x + 10, y: rows.vmTop + (vm.analyzer ? 19 : 24), class: "topo-vm-name"}, vm.name));
  if (vm.analyzer) {
    group.append(
      s("text", {x: vm.x + 10, y: rows.vmTop + 35, class: "topo-vm-instance"}, shorten(vm.analyzer, 13)),
      s("text", {x: vm.x + 10, y: rows.vmTop + 51, class: "topo-vm-detail"}, vm.interfaces[0].ip));
  } else {
    group.append(s("text", {x: vm.x + 10, y: rows.vmTop + 44, class: "topo-vm-detail"},
      vm.interfaces.map((item) => item.ip).join(", ")));
  }
  if (mirrored.length) {
    group.append(
      s("rect", {x: vm.x + VM_WIDTH - 44, y: rows.vmTop + 7, width: 38, height: 18, rx: 9, fill: MIRROR_COLOR}),
      s("text", {x: vm.x + VM_WIDTH - 25, y: rows.vmTop + 20, "text-anchor": "middle", class: "topo-badge"}, "REC"));
  }
  svg.append(group);
}

function drawAttachments(svg, boxes, rows, networkIndex, colors) {
  for (const box of boxes) {
    for (const vm of box.vms) {
      vm.interfaces.forEach((item, index) => {
        const x = vm.x + (VM_WIDTH * (index + 1)) / (vm.interfaces.length + 1);
        const y = TOP + networkIndex.get(item.network) * NETWORK_GAP;
        svg.append(
          s("line", {x1: x, y1: rows.vmTop, x2: x, y2: y, stroke: colors.get(item.network), "stroke-width": 2}),
          s("circle", {cx: x, cy: y, r: 4.5, fill: colors.get(item.network), stroke: "#fff", "stroke-width": 1.5}));
      });
    }
  }
}

function drawFabric(svg, topology, width, rows) {
  const fabric = topology.nodes.find((node) => node.kind === "fabric");
  svg.append(
    s("line", {x1: LABEL_WIDTH - 14, y1: rows.fabric, x2: width - 12, y2: rows.fabric, class: "topo-fabric"}),
    s("text", {x: 12, y: rows.fabric - 2, class: "topo-network"}, "fabric"),
    s("text", {x: 12, y: rows.fabric + 13, class: "topo-muted"}, fabric ? fabric.name : ""));
}

/** A fabric analyzer on the fabric: its box below the line, joined to it. */
function drawProbe(svg, probe, rows) {
  const top = rows.probeTop;
  svg.append(s("g", {class: "topo-probe", dataset: {fabricAnalyzer: probe.name}},
    s("title", null, `fabric analyzer ${probe.name}: ${probe.ip} ${probe.mac} (mirrorlab exec ${probe.name} -- ...)`),
    s("line", {x1: probe.x + PROBE_WIDTH / 2, y1: rows.fabric, x2: probe.x + PROBE_WIDTH / 2, y2: top,
               class: "topo-fabric-link"}),
    s("rect", {x: probe.x, y: top, width: PROBE_WIDTH, height: PROBE_HEIGHT, rx: 7, class: "topo-vm topo-analyzer"}),
    s("text", {x: probe.x + 10, y: top + 17, class: "topo-vm-name"}, probe.name),
    s("text", {x: probe.x + 10, y: top + 33, class: "topo-vm-detail"}, probe.ip)));
}

/** Whether a capture's copies cross the fabric (to another compute node or a fabric analyzer). */
function crossesFabric(capture) {
  return capture.analyzer_view.path.some((hop) => hop.kind === "fabric");
}

/** The copy path of `capture` as SVG path data and where its label goes, from the hops of its
 * analyzer_view: monitored VM, its vRouter, [fabric, the analyzer's vRouter,] analyzer VM; or
 * monitored VM, its vRouter, fabric, fabric analyzer. */
function copyRoute(capture, lane, localIndex, offsets, boxes, probes, rows) {
  const vmAt = new Map();
  const boxOf = new Map(boxes.map((box) => [box.vrouter.name, box]));
  for (const box of boxes) for (const vm of box.vms) vmAt.set(vm.name, vm);
  const hops = capture.analyzer_view.path;
  const source = vmAt.get(hops[0].name);
  const last = hops[hops.length - 1];
  const bottom = rows.vmTop + VM_HEIGHT;
  const inVrouter = rows.vrouterTop + VROUTER_HEIGHT - 9;  // under the vRouter's name
  if (hops[0].kind !== "vm" || !source) return null;
  const from = source.x + VM_WIDTH / 2 - TAP_SHIFT - offsets.from * PATH_GAP;
  if (last.kind === "fabric_analyzer") {
    const probe = probes.find((item) => item.name === last.name);
    const out = boxOf.get(hops[1].name);
    if (!probe || !out) return null;
    const y = rows.fabric + 14 + lane * LANE;
    const outX = out.x + out.width / 2 - TAP_SHIFT - offsets.from * PATH_GAP;
    const intoX = probe.x + PROBE_WIDTH / 2 + TAP_SHIFT + offsets.to * PATH_GAP;
    return {d: `M ${from} ${bottom} V ${inVrouter} H ${outX} V ${y} H ${intoX} V ${rows.probeTop - 2}`,
            label: {x: (outX + intoX) / 2, y: y + 17}};
  }
  const target = last.kind === "analyzer" ? vmAt.get(last.name) : null;
  if (!target) return null;
  const to = target.x + VM_WIDTH / 2 + TAP_SHIFT + offsets.to * PATH_GAP;
  if (!crossesFabric(capture)) {
    return {d: `M ${from} ${bottom} V ${inVrouter} H ${to} V ${bottom + 2}`,
            label: {x: (from + to) / 2, y: rows.vrouterTop - 8 - localIndex * 16}};
  }
  const out = boxOf.get(hops[1].name);
  const into = boxOf.get(hops[hops.length - 2].name);
  const y = rows.fabric + 14 + lane * LANE;
  const outX = out.x + out.width / 2 - TAP_SHIFT - offsets.from * PATH_GAP;
  const intoX = into.x + into.width / 2 + TAP_SHIFT + offsets.to * PATH_GAP;
  return {d: `M ${from} ${bottom} V ${inVrouter} H ${outX} V ${y} H ${intoX} V ${inVrouter} H ${to} V ${bottom + 2}`,
          label: {x: (outX + intoX) / 2, y: y + 17}};
}

function drawCopyPaths(svg, boxes, probes, rows, captures) {
  let lane = 0;
  const localIndex = new Map();
  const leaving = new Map();   // copy paths drawn so far per monitored VM, and per analyzer VM
  const reaching = new Map();
  for (const capture of captures) {
    const crossing = crossesFabric(capture);
    const local = localIndex.get(capture.vrouter) || 0;
    const {path} = capture.analyzer_view;
    const [first, last] = [path[0].name, path[path.length - 1].name];
    const offsets = {from: leaving.get(first) || 0, to: reaching.get(last) || 0};
    const route = copyRoute(capture, lane, local, offsets, boxes, probes, rows);
    if (!route) continue;
    leaving.set(first, offsets.from + 1);
    reaching.set(last, offsets.to + 1);
    if (crossing) lane += 1;
    else localIndex.set(capture.vrouter, local + 1);
    const view = capture.analyzer_view;
    const label = `#${capture.id} ${view.tag_short} \u00b7 ${capture.packets} pkts`;
    svg.append(s("g", {class: "topo-copy", dataset: {capture: String(capture.id)}},
      s("title", null, `capture #${capture.id} (${capture.direction}): ${view.path_text}\n`
        + `${view.wrapper_name}, ${view.tag}; ${capture.packets} packets, ${formatBytes(capture.bytes)}`),
      s("path", {d: route.d, class: "topo-mirror", "marker-end": "url(#mirror-arrow)"}),
      s("text", {x: route.label.x, y: route.label.y, "text-anchor": "middle", class: "topo-mirror-label"}, label)));
  }
}

/** The policy connections, then the policy mirrors, each with its label. */
function policyLinks(policies) {
  return [
    ...policies.connections.map((link) => ({kind: "connection", link,
      label: `${linkText(link)}: connected by policies${link.both_ways ? "" : " (one way)"}`})),
    ...policies.mirrors.map((link) => ({kind: "mirror", link,
      label: `${linkText(link)}: mirrored to ${link.analyzer}`})),
  ];
}

/** Each policy connection or mirror, right of the compute nodes from `left`, POLICY_GAP apart: a
 * line joining its two networks' lines (an arrow for one way), or a ring on one network's line
 * for a mirror within it. Its label is on a row of its own under the network lines (the first
 * link's first, `labelTop` down), joined to it by a leader, and ends there: no label crosses
 * another link's leader. */
function drawPolicyLinks(svg, links, networkIndex, colors, left, labelTop) {
  if (!links.length) return;
  links.forEach((item, index) => {
    const {link} = item;
    const x = left + (index + 1) * POLICY_GAP;
    const from = TOP + networkIndex.get(link.source) * NETWORK_GAP;
    const to = TOP + networkIndex.get(link.destination) * NETWORK_GAP;
    const labelY = labelTop + index * POLICY_ROW;
    const mirror = item.kind === "mirror";
    const title = mirror
      ? `policy mirror: traffic ${linkText(link)} is copied to analyzer ${link.analyzer} (by the vRouters of both ends)`
      : `network policies connect ${link.source} and ${link.destination}: traffic `
        + `${link.both_ways ? "both ways" : `from ${link.source} to ${link.destination} only, with its replies,`} passes `
        + "(the first matching rule of each network's policies passes it)";
    const group = s("g", {class: mirror ? "topo-policy-mirror" : "topo-policy-link",
                          dataset: mirror ? {mirror: `${link.source}|${link.destination}|${link.analyzer}`}
                            : {connection: `${link.source}|${link.destination}`}},
      s("title", null, title),
      s("line", {x1: x, y1: Math.max(from, to), x2: x, y2: labelY - 4, class: "topo-policy-leader"}));
    if (from === to) {
      group.append(s("circle", {cx: x, cy: from, r: 7, class: "topo-policy-copy"}));
    } else {
      group.append(
        s("path", {d: `M ${x} ${from} V ${to}`, class: mirror ? "topo-policy-copy" : "topo-policy",
                   "marker-end": link.both_ways ? null : `url(#${mirror ? "mirror" : "policy"}-arrow)`}),
        s("circle", {cx: x, cy: from, r: 4.5, fill: colors.get(link.source)}),
        link.both_ways ? s("circle", {cx: x, cy: to, r: 4.5, fill: colors.get(link.destination)}) : null);
    }
    group.append(s("text", {x: x + 4, y: labelY + 4, "text-anchor": "end",
                            class: `topo-policy-label${mirror ? " topo-mirror-label" : ""}`}, item.label));
    svg.append(group);
  });
  svg.append(s("text", {x: left + links.length * POLICY_GAP + 4, y: 13, "text-anchor": "end", class: "topo-muted"},
    "network policies"));
}

function picture(topology, vrouters, interfacesByVrouter, captures, policies) {
  const networks = topology.nodes.filter((node) => node.kind === "network");
  const analyzerNetworks = new Set([DEFAULT_ANALYZER_NETWORK, ...[...interfacesByVrouter.values()].flat()
    .filter((item) => item.analyzer).map((item) => item.network)]);
  const colors = networkColors(networks, analyzerNetworks);
  const networkIndex = new Map(networks.map((network, index) => [network.name, index]));
  const fabricLanes = captures.filter(crossesFabric).length;
  const probeNodes = topology.nodes.filter((node) => node.kind === "fabric_analyzer");
  const links = policyLinks(policies);
  const {rows, boxes, probes, width: nodesWidth, height} = layout(vrouters, interfacesByVrouter, networks.length,
    fabricLanes, probeNodes, links.length * POLICY_ROW);
  const width = nodesWidth + (links.length ? links.length * POLICY_GAP + 12 : 0);
  const arrow = (id, color) => s("marker", {id, viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 10,
                                            markerHeight: 10, markerUnits: "userSpaceOnUse", orient: "auto"},
    s("path", {d: "M0 0L10 5L0 10z", fill: color}));
  const svg = s("svg", {class: "topology", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
                        "aria-label": `Lab ${topology.name}: ${vrouters.length} compute nodes, `
                          + `${networks.length} networks, ${captures.length} active captures, `
                          + `${policies.connections.length} policy connections, ${policies.mirrors.length} policy mirrors`},
    s("defs", null, arrow("mirror-arrow", MIRROR_COLOR), arrow("policy-arrow", POLICY_COLOR)));
  drawNetworks(svg, networks, colors, width);
  drawPolicyLinks(svg, links, networkIndex, colors, nodesWidth - 12, TOP + (networks.length - 1) * NETWORK_GAP + 30);
  drawFabric(svg, topology, width, rows);
  for (const box of boxes) drawBox(svg, box, rows);
  for (const probe of probes) drawProbe(svg, probe, rows);
  drawAttachments(svg, boxes, rows, networkIndex, colors);
  drawCopyPaths(svg, boxes, probes, rows, captures);
  for (const box of boxes) for (const vm of box.vms) drawVm(svg, vm, box.vrouter, rows, captures);
  return svg;
}

function legend() {
  const item = (swatch, text) => h("span", {class: "legend-item"}, swatch, text);
  const line = (className) => s("svg", {width: 30, height: 12, "aria-hidden": "true"},
    s("line", {x1: 2, y1: 6, x2: 28, y2: 6, class: className}));
  return h("div", {class: "legend"},
    item(h("span", {class: "legend-box vm"}), "guest VM"),
    item(h("span", {class: "legend-box analyzer"}), "analyzer VM"),
    item(h("span", {class: "legend-box mirrored"}), "mirrored interface"),
    item(line("topo-mirror"), "a capture's copies: VM \u2192 vRouter \u2192 [fabric \u2192 vRouter \u2192] analyzer VM, "
      + "or VM \u2192 vRouter \u2192 fabric \u2192 fabric analyzer, with their wrapper and packets"),
    item(line("topo-policy"), "network policy connection: traffic passes between the two networks"),
    item(line("topo-policy-copy"), "policy mirror: a network pair's traffic copied to the analyzer named"),
    item(h("span", {class: "legend-box vrouter"}), "vRouter"),
    item(line("topo-fabric"), "fabric (the overlay: MPLS over Ethernet; fabric analyzers on it)"));
}

const CAPTURE_COLUMNS = [
  {label: "Capture", className: "num"}, {label: "vRouter"}, {label: "Interface"}, {label: "VM"},
  {label: "Direction"}, {label: "Analyzer"}, {label: "Destination"}, {label: "Copies as"}, {label: "Packets", className: "num"},
  {label: "Bytes", className: "num"}, {label: "Started"},
];

function captureRow(capture) {
  return {cells: [
    `#${capture.id}`,
    h("a", {href: `#/vrouters/${encodeURIComponent(capture.vrouter)}/interfaces`}, capture.vrouter),
    capture.interface, capture.vm || "", capture.direction, capture.analyzer, capture.analyzer_view.destination,
    h("span", {title: `${capture.analyzer_view.wrapper_name}, ${capture.analyzer_view.tag}`}, capture.analyzer_view.tag_short),
    String(capture.packets),
    formatBytes(capture.bytes), formatClock(Date.parse(capture.started_at) / 1000),
  ]};
}

/** The Topology page. */
export function topologyView(container) {
  setBreadcrumb([...MONITOR_INFRASTRUCTURE, {label: "Topology"}]);
  const drawing = h("section", {class: "card"}, h("div", {class: "card-title"}, "Lab topology"),
    h("p", {class: "loading"}, "Loading…"));
  const table = h("section", {class: "card"});
  container.append(pageHeader("Topology",
    "Compute nodes, their VMs and networks, which networks the policies connect, and what is mirrored "
    + "to which analyzer"),
  drawing, table);
  let scroller = null;

  return autoRefresh(async () => {
    const [topology, vrouters, captures, policies] = await Promise.all([
      get("/api/topology"), get("/api/vrouters"), get("/api/captures?state=active"), get("/api/policies")]);
    const lists = await Promise.all(vrouters.map((vrouter) =>
      get(`/api/vrouters/${encodeURIComponent(vrouter.name)}/interfaces`)));
    const interfacesByVrouter = new Map(vrouters.map((vrouter, index) => [vrouter.name, lists[index]]));
    // Redrawn every refresh: keep where a narrow window was scrolled to.
    const scrolledTo = scroller ? scroller.scrollLeft : 0;
    scroller = h("div", {class: "topology-scroll"}, picture(topology, vrouters, interfacesByVrouter, captures, policies));
    const hint = h("span", {class: "card-count", id: "topology-scroll-hint"});
    replaceChildren(drawing, h("div", {class: "card-title"}, `Lab ${topology.name}`, hint), scroller, legend());
    scroller.scrollLeft = scrolledTo;
    if (scroller.scrollWidth > scroller.clientWidth) hint.textContent = "wider than the window: scroll sideways";
    replaceChildren(table, h("div", {class: "card-title"}, "Active mirroring",
      h("span", {class: "card-count"}, `${captures.length} active`)),
    dataTable(CAPTURE_COLUMNS, captures.map(captureRow),
      "No interface is mirrored. Start a capture from a vRouter's Interfaces tab.", "Active mirroring"));
  }, REFRESH_MS, "Could not load the lab topology.");
}
