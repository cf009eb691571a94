// Shared page pieces: notices, breadcrumb, page headers, tables, tabs, status pills, the action
// menu, and number formats.

import {sentence} from "./api.js";
import {h, icon, replaceChildren} from "./dom.js";

/** Show a notice above the page until dismissed or the user navigates: `title` says what
 * happened ("Could not start the capture."), `detail` why (an Error or text). */
export function notify(kind, title, detail) {
  const text = detail instanceof Error ? detail.message : detail;
  const message = text ? sentence(text) : "";
  const area = document.getElementById("notices");
  for (const existing of area.children) {
    if (existing.dataset.key === `${kind}|${title}|${message}`) return existing;
  }
  const notice = h("div", {class: `alert alert-${kind}`, role: kind === "error" ? "alert" : "status",
                           dataset: {key: `${kind}|${title}|${message}`}},
    icon(kind === "error" || kind === "warning" ? "alert" : "info", "alert-icon"),
    h("div", {class: "alert-text"}, h("strong", null, title), message ? ` ${message}` : ""),
    h("button", {class: "alert-close", type: "button", "aria-label": "Dismiss",
                 onclick: () => notice.remove()}, icon("close")));
  area.append(notice);
  return notice;
}

/** Show an error: what failed, and the controller's reason in its own words. */
export function showError(title, error) {
  return notify("error", title, error);
}

/** Remove every notice (on navigation). */
export function clearNotices() {
  replaceChildren(document.getElementById("notices"));
}

/** An error shown in place of content that could not be loaded. */
export function errorPanel(title, error) {
  return h("div", {class: "alert alert-error", role: "alert"}, icon("alert", "alert-icon"),
    h("div", {class: "alert-text"}, h("strong", null, title), ` ${sentence(error.message)}`));
}

/** Set the breadcrumb: [{label, href}], the last item being the current page. */
export function setBreadcrumb(items) {
  const list = h("ol", null, items.map((item, index) => h("li", null,
    item.href && index < items.length - 1 ? h("a", {href: item.href}, item.label)
      : h("span", {"aria-current": index === items.length - 1 ? "page" : null}, item.label))));
  replaceChildren(document.getElementById("breadcrumb"), list);
}

/** The breadcrumb's first items: Monitor > Infrastructure. */
export const MONITOR_INFRASTRUCTURE = [{label: "Monitor"}, {label: "Infrastructure"}];

/** The breadcrumb's first items: Configure > Networking. */
export const CONFIGURE_NETWORKING = [{label: "Configure"}, {label: "Networking"}];

/** A page title with an optional subtitle, status and buttons on the right. */
export function pageHeader(title, subtitle, ...extras) {
  return h("div", {class: "page-header"},
    h("div", null, h("h1", null, title), subtitle ? h("p", {class: "page-subtitle"}, subtitle) : null),
    h("div", {class: "page-header-extras"}, extras));
}

/** A coloured status label. `kind`: ok, bad, active, idle, warn. */
export function pill(kind, text) {
  return h("span", {class: `pill pill-${kind}`}, h("span", {class: "pill-dot", "aria-hidden": "true"}), text);
}

/** A table: columns [{label, className}], rows [{cells: [...], attributes}], text when empty. */
export function dataTable(columns, rows, emptyText, label) {
  const body = rows.length
    ? rows.map((row) => h("tr", row.attributes || null,
        row.cells.map((cell, index) => h("td", {class: columns[index].className || null}, cell))))
    : [h("tr", null, h("td", {class: "empty", colspan: columns.length}, emptyText))];
  return h("div", {class: "table-wrap"},
    h("table", {class: "data-table", "aria-label": label || null},
      h("thead", null, h("tr", null, columns.map((column) =>
        h("th", {scope: "col", class: column.className || null}, column.label)))),
      h("tbody", null, body)));
}

/** Tabs as links: [{label, href, active}]. */
export function tabs(items) {
  return h("div", {class: "tabs", role: "tablist"}, items.map((item) =>
    h("a", {class: `tab${item.active ? " active" : ""}`, href: item.href, role: "tab",
            "aria-selected": item.active ? "true" : "false"}, item.label)));
}

let openMenu = null;

function closeMenu() {
  if (!openMenu) return;
  openMenu.menu.remove();
  openMenu.button.setAttribute("aria-expanded", "false");
  openMenu = null;
}

document.addEventListener("click", (event) => {
  if (openMenu && !openMenu.menu.contains(event.target) && !openMenu.button.contains(event.target)) {
    closeMenu();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && openMenu) {
    const {button} = openMenu;
    closeMenu();
    button.focus();
  }
});
window.addEventListener("resize", closeMenu);
window.addEventListener("hashchange", closeMenu);

/** Whether an action menu is open (auto-refresh waits while it is). */
function menuIsOpen() {
  return openMenu !== null;
}

/** The gear button of a table row, opening a menu of [{label, icon, onselect}]. */
export function actionMenu(label, items) {
  const button = h("button", {class: "icon-button", type: "button", title: "Actions",
                              "aria-label": label, "aria-haspopup": "menu", "aria-expanded": "false"},
    icon("gear"));
  button.addEventListener("click", () => {
    const wasOpen = openMenu && openMenu.button === button;
    closeMenu();
    if (wasOpen) return;
    const menu = h("div", {class: "menu", role: "menu", "aria-label": label},
      items.map((item) => h("button", {class: "menu-item", type: "button", role: "menuitem",
                                       onclick: () => { closeMenu(); item.onselect(); }},
        icon(item.icon), item.label)));
    document.body.append(menu);
    const box = button.getBoundingClientRect();
    menu.style.top = `${box.bottom + 4}px`;
    menu.style.left = `${Math.max(8, box.right - menu.offsetWidth)}px`;
    button.setAttribute("aria-expanded", "true");
    openMenu = {button, menu};
    menu.querySelector(".menu-item").focus();
  });
  return button;
}

/** A byte count for people: 512 B, 1.5 kB, 12.3 MB. */
export function formatBytes(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1000;
    unit += 1;
  } while (value >= 1000 && unit < units.length - 1);
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** Seconds as m:ss or h:mm:ss. */
export function formatDuration(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

/** A local wall-clock time with milliseconds, from seconds since the epoch. */
export function formatClock(epochSeconds) {
  const date = new Date(epochSeconds * 1000);
  const time = date.toLocaleTimeString([], {hour12: false});
  return `${time}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

/** Run `load` now and every `intervalMs` (skipped while a menu is open or the tab is hidden);
 * a failure is shown as an error titled `errorTitle` until a later load succeeds. Returns the
 * function that stops it. */
export function autoRefresh(load, intervalMs, errorTitle) {
  let timer = null;
  let stopped = false;
  let failure = null;
  async function run() {
    if (!menuIsOpen() && !document.hidden) {
      try {
        await load();
        if (failure) failure.remove();
        failure = null;
      } catch (error) {
        if (!stopped) {
          failure = showError(errorTitle, error);
          for (const waiting of document.querySelectorAll(".view .loading")) {
            waiting.textContent = `Not available (see above); trying again every ${intervalMs / 1000} s.`;
          }
        }
      }
    }
    if (!stopped) timer = setTimeout(run, intervalMs);
  }
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
