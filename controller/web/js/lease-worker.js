// Renews a capture's lease while the capture screen is open. It runs in a worker because
// browsers throttle the timers of hidden tabs (down to once a minute), which would let the
// lease run out; a worker's timers keep their pace. It ends with the page, so a closed or
// crashed tab stops renewing and the controller stops the capture when the lease runs out.
//
// Messages in: {url, intervalMs} starts renewing (POST url every intervalMs).
// Messages out: {ok: true} or {ok: false, status, error} after each renewal.

let timer = null;

async function renew(url) {
  try {
    const response = await fetch(url, {method: "POST"});
    if (response.ok) {
      postMessage({ok: true});
      return;
    }
    let error = `${response.status} ${response.statusText}`;
    try {
      error = (await response.json()).error || error;
    } catch {
      // not JSON: keep the status line
    }
    postMessage({ok: false, status: response.status, error});
  } catch {
    postMessage({ok: false, status: 0, error: "the controller does not answer"});
  }
}

onmessage = (event) => {
  const {url, intervalMs} = event.data;
  clearInterval(timer);
  timer = setInterval(() => renew(url), intervalMs);
};
