// The controller's REST API. Every failure becomes an ApiError whose message is fit for users:
// the API's own {"error": "..."} text, or a sentence saying the controller does not answer.

export class ApiError extends Error {
  constructor(message, status, field) {
    super(message);
    this.name = "ApiError";
    this.status = status;   // HTTP status; 0 when the controller did not answer at all
    this.field = field;     // the request field the controller complained about, if any
  }
}

/** The window event each request fires with {detail: {online}}: whether the controller answered. */
export const CONTROLLER_EVENT = "mirrorlab:controller";

const CONTROLLER_DOWN =
  "The controller does not answer. Is it running? (mirrorlab status, mirrorlab controller start)";

/** Send a request; resolve to the decoded JSON body, or reject with an ApiError. */
export async function request(method, path, body) {
  const options = {method, headers: {Accept: "application/json"}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    window.dispatchEvent(new CustomEvent(CONTROLLER_EVENT, {detail: {online: false}}));
    throw new ApiError(CONTROLLER_DOWN, 0);
  }
  window.dispatchEvent(new CustomEvent(CONTROLLER_EVENT, {detail: {online: true}}));
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && (data.error || (typeof data.detail === "string" && data.detail));
    throw new ApiError(message || `The controller answered ${response.status} ${response.statusText}.`,
                       response.status, data && data.field);
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const remove = (path) => request("DELETE", path);

/** `text` made into a sentence: capital first letter, final full stop. A first word spelt with
 * a capital inside (vRouter) keeps its spelling. */
export function sentence(text) {
  const trimmed = String(text).trim();
  if (!trimmed) return trimmed;
  const capital = /^[a-z]+[A-Z]/.test(trimmed) ? trimmed : trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?)]$/.test(capital) ? capital : `${capital}.`;
}

/** The URL that renews `capture`'s lease: it carries the capture's secret, which only the
 * response that started the capture holds, so no other page can keep the capture alive. */
export function leaseUrl(capture) {
  return `/api/captures/${capture.id}/lease?secret=${encodeURIComponent(capture.secret)}`;
}

/** Ask the controller to stop `capture` (as the response that started it: it holds the
 * capture's secret) even while the page goes away (tab closed, reloaded): navigator.sendBeacon
 * survives the page; it can only POST, hence /stop rather than DELETE. */
export function stopCaptureOnExit(capture) {
  const url = `/api/captures/${capture.id}/stop?secret=${encodeURIComponent(capture.secret)}`;
  if (navigator.sendBeacon && navigator.sendBeacon(url)) return;
  // Nobody is left to tell if this fails as the page closes; the capture's lease then stops it.
  fetch(url, {method: "POST", keepalive: true}).catch(() => {});
}
