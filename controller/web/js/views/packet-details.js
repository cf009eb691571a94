// The packet details of the capture screen, as Wireshark shows them: the decoded layers as a tree
// (from GET /api/captures/{id}/packets/{n}, decoded by tshark) and the frame's bytes in hex and
// ASCII. Selecting a field highlights its bytes; clicking a byte selects the innermost field
// decoded from it.

import {sentence} from "../api.js";
import {h} from "../dom.js";

const BYTES_PER_LINE = 16;

function printable(byte) {
  return byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : ".";
}

function hexDump(bytes, onpick) {
  const lines = [];
  for (let start = 0; start < bytes.length; start += BYTES_PER_LINE) {
    const slice = bytes.slice(start, start + BYTES_PER_LINE);
    const hex = [];
    const ascii = [];
    slice.forEach((byte, index) => {
      const offset = String(start + index);
      hex.push(h("span", {class: "hex-byte", dataset: {offset}}, byte.toString(16).padStart(2, "0")));
      ascii.push(h("span", {class: "hex-char", dataset: {offset}}, printable(byte)));
    });
    lines.push(h("div", {class: "hex-line"},
      h("span", {class: "hex-offset"}, start.toString(16).padStart(4, "0")),
      h("span", {class: "hex-bytes"}, hex), h("span", {class: "hex-ascii"}, ascii)));
  }
  const dump = h("div", {class: "hex-dump", role: "group", "aria-label": "Packet bytes"}, lines);
  dump.addEventListener("click", (event) => {
    const offset = event.target.dataset && event.target.dataset.offset;
    if (offset !== undefined) onpick(Number(offset));
  });
  return dump;
}

/** One line on the packet's direction, as seen from the monitored VM and from the vRouter, and
 * as the pcapng download records it. */
function directionLine(packet) {
  const known = {
    ingress: "ingress: the monitored VM sent it (pcapng: Outbound)",
    egress: "egress: it was delivered to the monitored VM (pcapng: Inbound)",
  }[packet.direction];
  return h("div", {class: `packet-direction direction-${packet.direction || "unknown"}`},
    h("span", {class: "muted"}, "Direction "), h("strong", null, packet.direction_text),
    known ? ` \u2014 ${known}` : " \u2014 its recorder lost it");
}

/** The details panel of one packet: `packet` as the API returns it ({index, length, direction,
 * direction_text, bytes (hex), layers}); `onclose` is called by its close button. */
export function packetDetails(packet, onclose) {
  const bytes = Uint8Array.from(packet.bytes.match(/../g) || [], (pair) => parseInt(pair, 16));
  const nodes = [];   // [{node, item}] in tree order, for picking by byte offset
  let selected = null;

  function highlight(node) {
    for (const span of dump.querySelectorAll(".hl")) span.classList.remove("hl");
    if (!node || !node.length) return;
    for (let offset = node.offset; offset < node.offset + node.length; offset += 1) {
      for (const span of dump.querySelectorAll(`[data-offset="${offset}"]`)) span.classList.add("hl");
    }
  }

  function select(entry) {
    if (selected) selected.item.setAttribute("aria-selected", "false");
    selected = entry;
    entry.item.setAttribute("aria-selected", "true");
    for (let parent = entry.item.parentElement.closest("[role=treeitem]"); parent;
      parent = parent.parentElement.closest("[role=treeitem]")) {
      parent.setAttribute("aria-expanded", "true");
    }
    highlight(entry.node);
    entry.item.querySelector(".tree-row").scrollIntoView({block: "nearest"});
  }

  function treeItem(node, depth) {
    const hasChildren = node.children.length > 0;
    const expanded = hasChildren && depth === 0 && node.field !== "frame";
    const row = h("div", {class: "tree-row",
                          title: node.field ? `${node.field}${node.length ? `, bytes ${node.offset}\u2013${node.offset + node.length - 1}` : ""}` : null},
      h("span", {class: "tree-toggle", "aria-hidden": "true"}), h("span", {class: "tree-label"}, node.label));
    const item = h("li", {role: "treeitem", "aria-selected": "false", "aria-expanded": hasChildren ? String(expanded) : null,
                          dataset: {field: node.field}}, row);
    const entry = {node, item};
    nodes.push(entry);
    if (hasChildren) {
      item.append(h("ul", {role: "group"}, node.children.map((child) => treeItem(child, depth + 1))));
      const toggle = () => item.setAttribute("aria-expanded", String(item.getAttribute("aria-expanded") !== "true"));
      row.querySelector(".tree-toggle").addEventListener("click", (event) => {
        event.stopPropagation();
        toggle();
      });
      row.addEventListener("dblclick", toggle);
    }
    row.addEventListener("click", () => select(entry));
    return item;
  }

  function pickByte(offset) {
    const covering = nodes.filter(({node}) => node.length && node.offset <= offset && offset < node.offset + node.length);
    if (covering.length) select(covering.reduce((best, entry) => (entry.node.length < best.node.length ? entry : best)));
  }

  const tree = h("ul", {class: "packet-tree", role: "tree", "aria-label": "Packet layers"},
    packet.layers.map((layer) => treeItem(layer, 0)));
  const dump = hexDump(bytes, pickByte);
  return h("section", {class: "card packet-details", "aria-label": `Packet ${packet.index} details`},
    h("div", {class: "card-title"}, `Packet ${packet.index}`,
      h("span", {class: "card-count"}, `${packet.length} bytes \u00b7 Esc closes`),
      h("button", {type: "button", class: "icon-button", "aria-label": "Close details", title: "Close (Esc)",
                   onclick: onclose}, "\u00d7")),
    directionLine(packet),
    h("div", {class: "details-panes"}, h("div", {class: "tree-pane"}, tree), h("div", {class: "hex-pane"}, dump)));
}

/** A details panel saying the packet could not be decoded, and why. */
export function packetDetailsError(index, error, onclose) {
  return h("section", {class: "card packet-details", "aria-label": `Packet ${index} details`},
    h("div", {class: "card-title"}, `Packet ${index}`,
      h("button", {type: "button", class: "icon-button", "aria-label": "Close details", onclick: onclose}, "\u00d7")),
    h("div", {class: "alert alert-error details-error", role: "alert"},
      h("div", {class: "alert-text"}, h("strong", null, "Could not decode this packet."), ` ${sentence(error.message)}`)));
}
