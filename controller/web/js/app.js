// The monitor's shell: hash routes to views, the left navigation, the lab status in the header.
// A view is a function (container, ...route parameters) returning the function that disposes of
// it; the router calls that before showing the next view (the capture screen stops its capture).

import {CONTROLLER_EVENT, get} from "./api.js";
import {h, replaceChildren} from "./dom.js";
import {clearNotices, pill} from "./ui.js";
import {analyzersView} from "./views/analyzers.js";
import {captureView} from "./views/capture.js";
import {capturesView} from "./views/captures.js";
import {policiesView} from "./views/policies.js";
import {topologyView} from "./views/topology.js";
import {vrouterView} from "./views/vrouter.js";
import {vroutersView} from "./views/vrouters.js";

const DEFAULT_ROUTE = "#/vrouters";
const CONTROLLER_CHECK_MS = 10000;

const ROUTES = [
  {pattern: /^#\/vrouters$/, nav: "vrouters", view: vroutersView},
  {pattern: /^#\/vrouters\/([^/]+)(?:\/(details|interfaces))?$/, nav: "vrouters", view: vrouterView},
  {pattern: /^#\/vrouters\/([^/]+)\/interfaces\/([^/]+)\/capture$/, nav: "vrouters", view: captureView},
  {pattern: /^#\/analyzers$/, nav: "analyzers", view: analyzersView},
  {pattern: /^#\/captures$/, nav: "captures", view: capturesView},
  {pattern: /^#\/topology$/, nav: "topology", view: topologyView},
  {pattern: /^#\/policies$/, nav: "policies", view: policiesView},
];

let disposeCurrent = null;
let labName = null;

function show() {
  const hash = (location.hash || DEFAULT_ROUTE).replace(/\/$/, "");
  const route = ROUTES.find((candidate) => candidate.pattern.test(hash));
  if (!route) {
    location.replace(DEFAULT_ROUTE);
    return;
  }
  setNavigationOpen(false);
  if (disposeCurrent) disposeCurrent();
  disposeCurrent = null;
  clearNotices();
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === route.nav);
    if (link.dataset.nav === route.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const container = h("div", {class: "view"});
  replaceChildren(document.getElementById("view"), container);
  const parameters = hash.match(route.pattern).slice(1).map((part) => part && decodeURIComponent(part));
  disposeCurrent = route.view(container, ...parameters) || null;
}

// In a window 1100 px wide or less (css/app.css) the navigation collapses behind the header's Menu button; it
// opens over the page and closes when a page is chosen, Esc is pressed or the page is clicked.
function setNavigationOpen(open) {
  document.body.classList.toggle("nav-open", open);
  document.getElementById("nav-toggle").setAttribute("aria-expanded", String(open));
}

document.getElementById("nav-toggle").addEventListener("click", (event) => {
  event.stopPropagation();
  setNavigationOpen(!document.body.classList.contains("nav-open"));
});
document.addEventListener("click", (event) => {
  if (document.body.classList.contains("nav-open") && !event.target.closest("#sidenav")) setNavigationOpen(false);
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.body.classList.contains("nav-open")) setNavigationOpen(false);
});

function showControllerStatus(online) {
  replaceChildren(document.getElementById("lab-status"),
    labName ? [h("span", {class: "topbar-label"}, "Lab"), h("span", {class: "topbar-value"}, labName)] : null,
    online ? pill("ok", "controller online") : pill("bad", "controller not answering"));
}

async function checkController() {
  try {
    labName = (await get("/api/topology")).name;
    showControllerStatus(true);
  } catch {
    // The header shows whether the controller answers (CONTROLLER_EVENT); pages report their own errors.
  }
}

window.addEventListener("hashchange", show);
window.addEventListener(CONTROLLER_EVENT, (event) => showControllerStatus(event.detail.online));
// A page restored from the back/forward cache said goodbye when it was hidden: show it afresh.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) show();
});
show();
checkController();
setInterval(checkController, CONTROLLER_CHECK_MS);
