// Monitor > Infrastructure > Virtual Routers: every compute node's vRouter.

import {get} from "../api.js";
import {h, icon, replaceChildren} from "../dom.js";
import {MONITOR_INFRASTRUCTURE, autoRefresh, dataTable, pageHeader, pill, setBreadcrumb} from "../ui.js";

const REFRESH_MS = 5000;

const COLUMNS = [
  {label: "Host name"}, {label: "vRouter"}, {label: "Fabric IP"}, {label: "VMs", className: "num"},
  {label: "Interfaces", className: "num"}, {label: "Controller"},
  {label: "Active captures", className: "num"},
];

function tile(label, value, kind = "") {
  return h("div", {class: `tile ${kind}`.trim()}, h("div", {class: "tile-value"}, String(value)),
    h("div", {class: "tile-label"}, label));
}

function vrouterRow(vrouter) {
  const href = `#/vrouters/${encodeURIComponent(vrouter.name)}`;
  return {
    attributes: {dataset: {vrouter: vrouter.name}},
    cells: [
      h("a", {href, class: "strong-link"}, icon("server"), vrouter.name),
      h("span", null, vrouter.bridge, h("span", {class: "muted"}, ` dpid ${vrouter.dpid}`)),
      h("span", {class: "mono"}, vrouter.fabric_ip),
      h("span", {title: vrouter.vms.join(", ")}, String(vrouter.vms.length)),
      String(vrouter.interfaces),
      h("span", {title: vrouter.problem || ""},
        vrouter.connected ? pill("ok", "Connected") : pill("bad", "Not connected"),
        vrouter.problem ? h("span", {class: "muted small vrouter-problem"}, ` ${vrouter.problem}`) : null),
      vrouter.active_captures ? pill("active", String(vrouter.active_captures)) : h("span", {class: "muted"}, "0"),
    ],
  };
}

/** The Virtual Routers page. */
export function vroutersView(container) {
  setBreadcrumb([...MONITOR_INFRASTRUCTURE, {label: "Virtual Routers"}]);
  const tiles = h("div", {class: "tiles"});
  const card = h("section", {class: "card"},
    h("div", {class: "card-title"}, "Virtual Routers"), h("p", {class: "loading"}, "Loading…"));
  container.append(pageHeader("Virtual Routers",
    "The vRouter of every compute node, its guests and its link to the controller"), tiles, card);

  return autoRefresh(async () => {
    const vrouters = await get("/api/vrouters");
    const count = (key) => vrouters.reduce((sum, vrouter) => sum + vrouter[key], 0);
    const connected = vrouters.filter((vrouter) => vrouter.connected).length;
    replaceChildren(tiles,
      tile("vRouters", vrouters.length),
      tile("Connected", `${connected} / ${vrouters.length}`, connected === vrouters.length ? "good" : "bad"),
      tile("VMs", vrouters.reduce((sum, vrouter) => sum + vrouter.vms.length, 0)),
      tile("Interfaces", count("interfaces")),
      tile("Active captures", count("active_captures"), count("active_captures") ? "active" : ""));
    replaceChildren(card, h("div", {class: "card-title"}, "Virtual Routers",
      h("span", {class: "card-count"}, `${vrouters.length} total`)),
    dataTable(COLUMNS, vrouters.map(vrouterRow), "No compute nodes in this lab.", "Virtual Routers"));
  }, REFRESH_MS, "Could not load the virtual routers.");
}
