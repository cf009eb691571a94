// The rate view of a running capture: packets/s and bits/s, computed from the capture's counters
// as the screen polls them, drawn as two small SVG area charts of the last minute.

import {h, replaceChildren, s} from "../dom.js";

const WINDOW_SECONDS = 60;
const MIN_INTERVAL_SECONDS = 0.9;   // counters read closer together than this are merged
const WIDTH = 300;
const HEIGHT = 64;

/** A rate for people: 0 bit/s, 850 bit/s, 1.2 kbit/s, 3.45 Mbit/s (`unit`: "bit/s", "packets/s"). */
function formatRate(value, unit) {
  if (unit !== "bit/s") return `${value < 10 ? value.toFixed(1).replace(/\.0$/, "") : Math.round(value)} ${unit}`;
  const prefixes = ["", "k", "M", "G"];
  let scaled = value;
  let prefix = 0;
  while (scaled >= 1000 && prefix < prefixes.length - 1) {
    scaled /= 1000;
    prefix += 1;
  }
  const digits = prefix === 0 ? 0 : scaled < 10 ? 2 : 1;
  return `${scaled.toFixed(digits)} ${prefixes[prefix]}bit/s`;
}

function chart(points, key, unit, label) {
  const now = points.length ? points[points.length - 1].t : 0;
  const peak = Math.max(1, ...points.map((point) => point[key]));
  const x = (t) => WIDTH - ((now - t) / WINDOW_SECONDS) * WIDTH;
  const y = (value) => HEIGHT - 2 - (value / peak) * (HEIGHT - 6);
  const line = points.map((point) => `${x(point.t).toFixed(1)},${y(point[key]).toFixed(1)}`).join(" ");
  const area = points.length > 1
    ? `M${x(points[0].t).toFixed(1)},${HEIGHT} L${line.replaceAll(" ", " L")} L${x(now).toFixed(1)},${HEIGHT} Z` : "";
  const current = points.length ? points[points.length - 1][key] : 0;
  return h("figure", {class: "rate-chart"},
    h("figcaption", null, h("span", {class: "rate-label"}, label),
      h("span", {class: "rate-value", dataset: {rate: key}}, formatRate(current, unit)),
      h("span", {class: "rate-peak"}, `peak ${formatRate(points.length ? peak : 0, unit)}`)),
    s("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", role: "img",
              "aria-label": `${label} over the last minute, now ${formatRate(current, unit)}`},
      s("line", {class: "rate-axis", x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5}),
      area ? s("path", {class: "rate-area", d: area}) : null,
      points.length > 1 ? s("polyline", {class: "rate-line", points: line}) : null));
}

/** The rate view: `element` to place on the screen; `add(packets, bytes)` with the capture's
 * counters each time they are read; `reset()` for a new capture. */
export function rateView() {
  const element = h("div", {class: "rate-charts", "aria-label": "Capture rate"});
  let last = null;      // {t, packets, bytes} of the last counters used
  let points = [];      // {t, packets (per s), bits (per s)}

  function draw() {
    replaceChildren(element, chart(points, "packets", "packets/s", "Packets/s"),
      chart(points, "bits", "bit/s", "Bits/s"));
  }

  function add(packets, bytes) {
    const t = performance.now() / 1000;
    if (last && t - last.t < MIN_INTERVAL_SECONDS) return;
    if (last) {
      const seconds = t - last.t;
      points.push({t, packets: Math.max(0, packets - last.packets) / seconds,
                   bits: (Math.max(0, bytes - last.bytes) * 8) / seconds});
      points = points.filter((point) => t - point.t <= WINDOW_SECONDS);
    }
    last = {t, packets, bytes};
    draw();
  }

  function reset() {
    last = null;
    points = [];
    draw();
  }

  draw();
  return {element, add, reset};
}
