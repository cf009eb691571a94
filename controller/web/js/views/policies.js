// Configure > Networking > Policies: the network policies written through Contrail's
// configuration API (vnc_api), as Contrail's own Policies page lists them: each policy by
// fq-name, the networks it is attached to in sequence order, its rules in order (the first
// match wins); then what the policies the vRouters apply do: which networks they connect and
// which traffic they mirror to which analyzer (GET /api/policies). Read-only: policies are
// written with vnc_api. Refreshed every few seconds, so a policy created, changed or detached
// through the configuration API shows without a reload.

import {get} from "../api.js";
import {h, replaceChildren} from "../dom.js";
import {CONFIGURE_NETWORKING, autoRefresh, dataTable, errorPanel, pageHeader, pill, setBreadcrumb} from "../ui.js";

const REFRESH_MS = 3000;

const RULE_COLUMNS = [
  {label: "#", className: "num"}, {label: "Action"}, {label: "Protocol"}, {label: "Source"},
  {label: "Source ports"}, {label: "Direction"}, {label: "Destination"}, {label: "Destination ports"},
  {label: "Mirror to"},
];

const LINK_COLUMNS = [{label: "Between"}, {label: "Which way"}];
const MIRROR_COLUMNS = [{label: "Traffic"}, {label: "Which way"}, {label: "Copied to analyzer"}];

/** Where a pair of networks' traffic goes, in words: blue ⇄ red, blue → red, within blue. */
export function linkText(link) {
  if (link.source === link.destination) return `within ${link.source}`;
  return `${link.source} ${link.both_ways ? "\u21c4" : "\u2192"} ${link.destination}`;
}

function ruleRow(rule) {
  const addresses = (list) => h("span", {class: "mono"}, list.join(", "));
  return {
    attributes: {dataset: {rule: String(rule.number)}, title: rule.text},
    cells: [
      String(rule.number),
      pill(rule.action === "deny" ? "bad" : "ok", rule.action),
      rule.ethertype === "any" ? rule.protocol : `${rule.protocol} (${rule.ethertype})`,
      addresses(rule.source_addresses), addresses(rule.source_ports),
      h("span", {class: "mono", title: rule.direction === "<>" ? "both ways" : "source to destination only"},
        rule.direction),
      addresses(rule.destination_addresses), addresses(rule.destination_ports),
      rule.analyzer ? h("span", {class: "chip chip-mirror"}, rule.analyzer) : h("span", {class: "muted"}, "none"),
    ],
  };
}

function attachedTo(policy) {
  if (!policy.networks.length) {
    return h("span", {class: "muted"}, "not attached to any network: its rules apply nowhere");
  }
  return h("div", {class: "chips"}, policy.networks.map((attachment) =>
    h("span", {class: "chip chip-analyzer", dataset: {network: attachment.network},
               title: `${attachment.fq_name}: network_policy_refs sequence major ${attachment.sequence.major}, `
                 + `minor ${attachment.sequence.minor}`},
    `${attachment.network} \u00b7 sequence ${attachment.sequence.major}.${attachment.sequence.minor}`)));
}

function policyCard(policy) {
  return h("section", {class: "card", dataset: {policy: policy.fq_name}, "aria-label": `Policy ${policy.fq_name}`},
    h("div", {class: "card-title"}, policy.name, h("span", {class: "muted mono"}, policy.fq_name),
      h("span", {class: "card-count"}, `${policy.rules.length} rule${policy.rules.length === 1 ? "" : "s"}`)),
    h("div", {class: "policy-attached"}, h("span", {class: "strong"}, "Attached to "), attachedTo(policy)),
    dataTable(RULE_COLUMNS, policy.rules.map(ruleRow),
      "No rules: a network this policy is attached to denies traffic to other networks.",
      `Rules of ${policy.name}`));
}

function emptyText(answer) {
  if (answer.config_api_port === null) {
    return "This lab does not serve Contrail's configuration API (it was started with --config-api-port 0), "
      + "so it has no network policies.";
  }
  return `No network policy yet. Policies are written with Contrail's client, vnc_api, to the configuration `
    + `API on port ${answer.config_api_port}: create a network-policy with its rules, then attach it to virtual `
    + `networks (network_policy_refs, with a sequence). Without policies each network is on its own: its VMs `
    + `reach each other, and no VM of another network.`;
}

function effects(answer) {
  const connections = answer.connections.map((link) => ({
    attributes: {dataset: {connection: `${link.source}|${link.destination}`}},
    cells: [h("span", {class: "strong"}, linkText(link)),
      link.both_ways ? "both ways" : `${link.source} to ${link.destination} only (replies come back)`],
  }));
  const mirrors = answer.mirrors.map((mirror) => ({
    attributes: {dataset: {mirror: `${mirror.source}|${mirror.destination}|${mirror.analyzer}`}},
    cells: [h("span", {class: "strong"}, linkText(mirror)),
      mirror.source === mirror.destination || mirror.both_ways ? "both ways"
        : `${mirror.source} to ${mirror.destination} only`,
      h("span", {class: "chip chip-mirror"}, mirror.analyzer)],
  }));
  return h("section", {class: "card", id: "policy-effects"},
    h("div", {class: "card-title"}, "What the applied policies do",
      h("span", {class: "card-count"}, h("a", {href: "#/topology"}, "see them on the Topology"))),
    h("p", {class: "hint policy-hint"}, "Traffic between two networks passes when the first matching rule of "
      + "each network's policies passes it; a passing rule with a mirror copies what it matches, from both "
      + "vRouters of a conversation."),
    dataTable(LINK_COLUMNS, connections, "No two networks are connected: each network reaches only itself.",
      "Connected networks"),
    dataTable(MIRROR_COLUMNS, mirrors, "No traffic is mirrored by a policy.", "Policy mirrors"));
}

/** The Policies page. */
export function policiesView(container) {
  setBreadcrumb([...CONFIGURE_NETWORKING, {label: "Policies"}]);
  const list = h("div", {id: "policy-list"}, h("section", {class: "card"},
    h("div", {class: "card-title"}, "Network policies"), h("p", {class: "loading"}, "Loading…")));
  const count = h("span", {class: "muted", id: "policy-count"});
  container.append(pageHeader("Policies",
    "Network policies written through Contrail's configuration API (vnc_api): their rules, the networks "
    + "they are attached to, and what they connect and mirror", count), list);

  return autoRefresh(async () => {
    const answer = await get("/api/policies");
    count.textContent = `${answer.policies.length} polic${answer.policies.length === 1 ? "y" : "ies"}`;
    const cards = answer.policies.length ? answer.policies.map(policyCard)
      : [h("section", {class: "card"}, h("div", {class: "card-title"}, "Network policies"),
        h("p", {class: "empty", id: "policy-empty"}, emptyText(answer)))];
    // Stored policies the controller could not apply when it started: the vRouters apply none.
    const problem = answer.problem
      ? h("div", {id: "policy-problem"}, errorPanel("The stored network policies are not applied.",
        {message: answer.problem})) : null;
    replaceChildren(list, problem, cards, effects(answer));
  }, REFRESH_MS, "Could not load the network policies.");
}
