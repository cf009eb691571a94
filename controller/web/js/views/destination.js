// The capture screen's "Advanced destination": Contrail's mirror_to, field for field (the Juniper
// header, the UDP port, the next-hop mode with a static VXLAN VTEP's address, MAC and VNI,
// NIC-assisted mirroring with its VLAN). Left at its defaults it sends no mirror_to, so the
// capture goes where Contrail's does. The controller checks the fields (controller/mirrorto.py);
// its 400, 404 and 409 answers name the field, and the message is shown next to that field.

import {sentence} from "../api.js";
import {h, replaceChildren} from "../dom.js";

const DEFAULT_UDP_PORT = 8099;

/** What each mirror_to field is called on the screen. */
const LABELS = {
  "mirror_to.juniper_header": "Juniper header",
  "mirror_to.udp_port": "UDP port",
  "mirror_to.nh_mode": "Next hop",
  "mirror_to.static_nh_header.vtep_dst_ip_address": "VTEP address",
  "mirror_to.static_nh_header.vtep_dst_mac_address": "VTEP MAC",
  "mirror_to.static_nh_header.vni": "VNI",
  "mirror_to.nic_assisted_mirroring": "NIC-assisted",
  "mirror_to.nic_assisted_mirroring_vlan": "VLAN",
};

/** A number input's value as a number, or the text itself when it is none (the API says why). */
function numberOrText(input) {
  const text = input.value.trim();
  return /^\d+$/.test(text) ? Number(text) : text;
}

/** The Advanced destination form. `probes` are the lab's fabric analyzers ({name, ip, mac}),
 * the first one filling in a static destination's VTEP; `apply` restarts the capture with it.
 * Returns {element, mirrorTo(), goesToFabric(), showFieldError(error), clearErrors()}. */
export function destinationForm(probes, apply) {
  const inputs = {};
  const errors = {};
  const field = (name, input, hint) => {
    inputs[name] = input;
    input.id = `destination-${name.replace(/^mirror_to\./, "").replace(/\./g, "-")}`;
    input.dataset.field = name;
    errors[name] = h("span", {class: "field-error", id: `${input.id}-error`, role: "alert"});
    input.setAttribute("aria-describedby", errors[name].id);
    const label = h("label", {for: input.id}, LABELS[name]);
    return h("div", {class: "destination-field", dataset: {field: name}},
      input.type === "checkbox" ? [input, label] : [label, input], hint ? h("span", {class: "hint"}, hint) : null,
      errors[name]);
  };
  const probe = probes[0];
  const juniper = h("input", {type: "checkbox", checked: true});
  const udpPort = h("input", {type: "text", inputmode: "numeric", size: 6, placeholder: String(DEFAULT_UDP_PORT)});
  const nhMode = h("select", null, h("option", {value: "dynamic"}, "dynamic (to an analyzer VM)"),
    h("option", {value: "static"}, "static (VXLAN to a VTEP on the fabric)"));
  const vtepIp = h("input", {type: "text", size: 15, value: probe ? probe.ip : ""});
  const vtepMac = h("input", {type: "text", size: 17, value: probe ? probe.mac : ""});
  const vni = h("input", {type: "text", inputmode: "numeric", size: 8, value: "5000"});
  const nic = h("input", {type: "checkbox"});
  const vlan = h("input", {type: "text", inputmode: "numeric", size: 5, value: "100"});
  const staticPart = h("div", {class: "destination-row", id: "destination-static"},
    field("mirror_to.static_nh_header.vtep_dst_ip_address", vtepIp),
    field("mirror_to.static_nh_header.vtep_dst_mac_address", vtepMac),
    field("mirror_to.static_nh_header.vni", vni, "1..16777215"));
  const vlanPart = field("mirror_to.nic_assisted_mirroring_vlan", vlan, "1..4094");
  const showParts = () => {
    staticPart.hidden = nhMode.value !== "static";
    vlanPart.hidden = !nic.checked;
  };
  nhMode.addEventListener("change", () => {
    // A static destination takes no Juniper header (Contrail refuses one): untick it, as
    // Contrail's own UI does; ticking it again shows the controller's refusal.
    if (nhMode.value === "static") juniper.checked = false;
    showParts();
  });
  nic.addEventListener("change", showParts);
  showParts();
  const element = h("details", {class: "destination", id: "capture-destination"},
    h("summary", null, "Advanced destination"),
    h("p", {class: "hint"}, "Contrail's mirror_to. Left as it is, copies go to the analyzer above with the Juniper "
      + `header over UDP ${DEFAULT_UDP_PORT}. Static and NIC-assisted destinations go to a fabric analyzer`
      + (probe ? ` (${probes.map((item) => `${item.name} ${item.ip} ${item.mac}`).join(", ")})` : "")
      + "; the Analyzer choice does not apply to them."),
    h("div", {class: "destination-row"},
      field("mirror_to.juniper_header", juniper),
      field("mirror_to.udp_port", udpPort, `default ${DEFAULT_UDP_PORT}`),
      field("mirror_to.nh_mode", nhMode)),
    staticPart,
    h("div", {class: "destination-row"}, field("mirror_to.nic_assisted_mirroring", nic,
      "the VM's packets tagged towards the fabric; the fabric mirrors them"), vlanPart),
    h("div", {class: "destination-row"},
      h("button", {type: "button", class: "button primary", id: "destination-apply", onclick: apply},
        "Capture to this destination"),
      h("button", {type: "button", class: "button", onclick: () => { reset(); apply(); }}, "Default destination")));

  function reset() {
    juniper.checked = true;
    udpPort.value = "";
    nhMode.value = "dynamic";
    nic.checked = false;
    showParts();
  }

  /** The mirror_to the form asks for; null when it is the default (none is sent). */
  function mirrorTo() {
    const asked = {};
    if (!juniper.checked) asked.juniper_header = false;
    if (udpPort.value.trim()) asked.udp_port = numberOrText(udpPort);
    if (nhMode.value === "static") {
      asked.juniper_header = juniper.checked;
      asked.nh_mode = "static";
      asked.static_nh_header = {vtep_dst_ip_address: vtepIp.value.trim(), vtep_dst_mac_address: vtepMac.value.trim(),
                                vni: numberOrText(vni)};
    }
    if (nic.checked) {
      asked.nic_assisted_mirroring = true;
      asked.nic_assisted_mirroring_vlan = numberOrText(vlan);
    }
    return Object.keys(asked).length ? asked : null;
  }

  function clearErrors() {
    for (const [name, span] of Object.entries(errors)) {
      replaceChildren(span);
      inputs[name].removeAttribute("aria-invalid");
    }
  }

  /** Show `error` (an ApiError) next to the field it names, opening the form; whether it named one. */
  function showFieldError(error) {
    const span = errors[error.field];
    if (!span) return false;
    element.open = true;
    const words = String(error.message).replace(/^mirror_to\.[\w.]+: /, "");
    replaceChildren(span, sentence(words));
    inputs[error.field].setAttribute("aria-invalid", "true");
    return true;
  }

  return {element, mirrorTo, clearErrors, showFieldError,
          goesToFabric: () => nhMode.value === "static" || nic.checked};
}
