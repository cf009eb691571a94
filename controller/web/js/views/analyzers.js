// Monitor > Infrastructure > Analyzers: every analyzer instance (a VM with a recorder), where it
// runs, its address and the captures that use it; create one, or delete one no capture uses
// (the controller refuses, with its reason, while one does).

import {get, post, remove} from "../api.js";
import {h, replaceChildren} from "../dom.js";
import {
  MONITOR_INFRASTRUCTURE, autoRefresh, dataTable, notify, pageHeader, pill, setBreadcrumb, showError,
} from "../ui.js";

const REFRESH_MS = 5000;

const COLUMNS = [
  {label: "Name"}, {label: "VM"}, {label: "Compute node"}, {label: "Network"}, {label: "Address"},
  {label: "Recorder"}, {label: "Captures using it"}, {label: "", className: "actions"},
];

const RECORDER_PILLS = {running: "ok", restarting: "warn", failed: "bad", unknown: "warn"};

function recorderCell(recorder) {
  if (!recorder) return h("span", {class: "muted"}, "unknown");
  return h("span", {title: recorder.last_error || ""},
    pill(RECORDER_PILLS[recorder.state] || "warn", recorder.state),
    recorder.restarts ? h("span", {class: "muted"}, ` ${recorder.restarts} restarts`) : null);
}

function capturesCell(analyzer, captures) {
  const mine = captures.filter((capture) => capture.analyzer === analyzer.name);
  const active = mine.filter((capture) => analyzer.captures.includes(capture.id));
  const past = mine.length - active.length;
  return h("span", null,
    active.length ? pill("active", `${active.length} active: ${active.map((capture) => `#${capture.id}`).join(", ")}`)
      : h("span", {class: "muted"}, "none active"),
    past ? h("a", {href: "#/captures", class: "muted"}, ` \u00b7 ${past} past`) : null);
}

function createForm(computes, networks, created) {
  const name = h("input", {type: "text", id: "analyzer-name", name: "name", required: true, autocomplete: "off",
                           pattern: "[A-Za-z0-9._\\-]{1,63}", placeholder: "e.g. my-analyzer",
                           title: "1-63 letters, digits, '-', '_', '.'"});
  const compute = h("select", {id: "analyzer-compute", name: "compute"},
    computes.map((node) => h("option", {value: node}, node)));
  const network = h("select", {id: "analyzer-network", name: "network"},
    h("option", {value: ""}, "the analyzer network (default)"),
    networks.map((node) => h("option", {value: node.name},
      `${node.name}${node.subnet ? ` (${node.subnet})` : ""}`)));
  const button = h("button", {type: "submit", class: "button primary"}, "Create");
  const form = h("form", {class: "create-form", "aria-label": "Create an analyzer"},
    h("div", {class: "control"}, h("label", {for: "analyzer-name"}, "Name"), name),
    h("div", {class: "control"}, h("label", {for: "analyzer-compute"}, "Compute node"), compute),
    h("div", {class: "control"}, h("label", {for: "analyzer-network"}, "Network"), network),
    button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    button.textContent = "Launching\u2026";
    try {
      const analyzer = await post("/api/analyzers",
        {name: name.value.trim(), compute: compute.value, network: network.value || undefined});
      notify("info", `Analyzer ${analyzer.name} created:`,
        `VM ${analyzer.vm} on ${analyzer.compute}, ${analyzer.network} ${analyzer.ip}`);
      name.value = "";
      await created();
    } catch (error) {
      showError(`Could not create analyzer ${name.value.trim()}.`, error);
    } finally {
      button.disabled = false;
      button.textContent = "Create";
    }
  });
  return form;
}

/** The Analyzers page. */
export function analyzersView(container) {
  setBreadcrumb([...MONITOR_INFRASTRUCTURE, {label: "Analyzers"}]);
  const formCard = h("section", {class: "card"}, h("div", {class: "card-title"}, "Create an analyzer"),
    h("p", {class: "loading"}, "Loading…"));
  const card = h("section", {class: "card"},
    h("div", {class: "card-title"}, "Analyzers"), h("p", {class: "loading"}, "Loading…"));
  container.append(pageHeader("Analyzers",
    "Analyzer instances: VMs whose recorder writes each capture mirrored to them to a pcap file"), formCard, card);

  async function deleteAnalyzer(name) {
    if (!window.confirm(`Delete analyzer ${name} and its VM?`)) return;
    try {
      await remove(`/api/analyzers/${encodeURIComponent(name)}`);
      notify("info", `Analyzer ${name} deleted.`);
    } catch (error) {
      showError(`Could not delete analyzer ${name}.`, error);
    }
    await load().catch((error) => showError("Could not load the analyzers.", error));
  }

  async function load() {
    const [analyzers, captures] = await Promise.all([get("/api/analyzers"), get("/api/captures")]);
    const rows = analyzers.map((analyzer) => ({
      attributes: {dataset: {analyzer: analyzer.name}},
      cells: [
        h("span", {class: "strong"}, analyzer.name), analyzer.vm, analyzer.compute, analyzer.network,
        h("span", {class: "mono"}, analyzer.ip, h("span", {class: "muted"}, ` ${analyzer.mac}`)),
        recorderCell(analyzer.recorder), capturesCell(analyzer, captures),
        h("button", {type: "button", class: "button danger", "aria-label": `Delete analyzer ${analyzer.name}`,
                     title: analyzer.captures.length ? "In use: the controller refuses while a capture uses it" : "",
                     onclick: () => deleteAnalyzer(analyzer.name)}, "Delete"),
      ],
    }));
    replaceChildren(card, h("div", {class: "card-title"}, "Analyzers",
      h("span", {class: "card-count"}, `${analyzers.length} total`)),
    dataTable(COLUMNS, rows, "No analyzer yet: create one above, or open a capture screen, which "
      + "launches the default one.", "Analyzers"));
  }

  (async () => {
    try {
      const topology = await get("/api/topology");
      const computes = topology.nodes.filter((node) => node.kind === "compute").map((node) => node.name);
      const networks = topology.nodes.filter((node) => node.kind === "network");
      replaceChildren(formCard, h("div", {class: "card-title"}, "Create an analyzer"),
        createForm(computes, networks, load),
        h("p", {class: "hint"}, "A new VM with a recorder starts on the compute node, in the network; "
          + "captures can then choose it."));
    } catch (error) {
      showError("Could not load the compute nodes and networks.", error);
    }
  })();
  return autoRefresh(load, REFRESH_MS, "Could not load the analyzers.");
}
