// Building DOM and SVG nodes without HTML strings, so no text from the API is ever parsed as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function assign(node, attributes) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("a", {href: "#/x", class: "link"}, "text", otherNode). */
export function h(tag, attributes, ...children) {
  const node = document.createElement(tag);
  assign(node, attributes);
  return append(node, children);
}

/** An SVG element, like `h`. */
export function s(tag, attributes, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  assign(node, attributes);
  return append(node, children);
}

/** Replace every child of `node` with `children`. */
export function replaceChildren(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

const ICON_PATHS = {
  gear: "M12 15.5a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7z M19.4 13a7.5 7.5 0 0 0 0-2l2.1-1.6-2-3.4-2.5 1a7.6 7.6 0 0 0-1.7-1L15 3.4h-4l-.4 2.6a7.6 7.6 0 0 0-1.7 1l-2.5-1-2 3.4L6.6 11a7.5 7.5 0 0 0 0 2l-2.1 1.6 2 3.4 2.5-1a7.6 7.6 0 0 0 1.7 1l.4 2.6h4l.4-2.6a7.6 7.6 0 0 0 1.7-1l2.5 1 2-3.4z",
  capture: "M4 6h16M4 12h10M4 18h7 M17 15l4 3-4 3z",
  download: "M12 3v12 M7 10l5 5 5-5 M4 20h16",
  stop: "M7 7h10v10H7z",
  close: "M6 6l12 12 M18 6L6 18",
  play: "M8 5l11 7-11 7z",
  refresh: "M20 11a8 8 0 1 0-2.3 5.7 M20 4v7h-7",
  alert: "M12 3l10 18H2z M12 10v5 M12 18v.5",
  info: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z M12 11v6 M12 7.5v.5",
  server: "M4 4h16v6H4z M4 14h16v6H4z M8 7h.01 M8 17h.01",
};

/** A stroked line icon (decorative: hidden from assistive technology). */
export function icon(name, extraClass = "") {
  return s("svg", {class: `icon ${extraClass}`.trim(), viewBox: "0 0 24 24", "aria-hidden": "true"},
    s("path", {d: ICON_PATHS[name]}));
}
