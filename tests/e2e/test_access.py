"""End-to-end: who may use a running lab's API, in a real Chromium and with real files.

A page of another origin (a web server on 127.0.0.2) tries what issue 8 found working: stopping
captures with sendBeacon and text/plain POSTs guessing their ids, starting one, deleting one.
A page reached by DNS rebinding (a foreign name resolving to 127.0.0.1, Chromium's resolver
rules play the DNS) gets nothing. Everything the lab writes is its owner's alone.
"""
from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tests.e2e.conftest import API_PORT, CHROMIUM, CHROMIUM_ARGS, STATE_DIR, Target
from tests.e2e.test_ui import capture_state, ping_peer

FOREIGN_HOST = "127.0.0.2"  # another origin on this machine, as a web page elsewhere would be
REBOUND_NAME = "rebind.example"


def attack_page(api: str, capture_ids: list[int]) -> str:
    """A foreign page that, on load, tries every way a page can send requests that change state
    without a CORS grant, then sets document.title to 'done'."""
    return f"""<!doctype html><title>attack</title><script>
(async () => {{
  const api = "{api}";
  for (const id of {capture_ids}) {{
    navigator.sendBeacon(`${{api}}/api/captures/${{id}}/stop`);
    navigator.sendBeacon(`${{api}}/api/captures/${{id}}/stop?secret=guess`, "x");
    await fetch(`${{api}}/api/captures/${{id}}/stop`, {{method: "POST", mode: "no-cors",
      headers: {{"Content-Type": "text/plain"}}, body: ""}}).catch(() => {{}});
    await fetch(`${{api}}/api/captures/${{id}}/lease?secret=guess`, {{method: "POST", mode: "no-cors"}})
      .catch(() => {{}});
    await fetch(`${{api}}/api/captures/${{id}}`, {{method: "DELETE"}}).catch(() => {{}});
  }}
  await fetch(`${{api}}/api/captures`, {{method: "POST", mode: "no-cors",
    headers: {{"Content-Type": "text/plain"}},
    body: JSON.stringify({{vm: "vm3", direction: "both"}})}}).catch(() => {{}});
  const form = document.createElement("form");
  form.method = "POST";
  form.action = `${{api}}/api/captures/{capture_ids[0]}/stop`;
  form.target = "sink";
  document.body.append(Object.assign(document.createElement("iframe"), {{name: "sink"}}), form);
  form.submit();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  document.title = "done";
}})();
</script>"""


@pytest.fixture
def foreign_site():
    """A web server on another origin (127.0.0.2) serving the page set on it; its URL."""
    page = {"html": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = page["html"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            """Quiet."""

    server = ThreadingHTTPServer((FOREIGN_HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield page, f"http://{FOREIGN_HOST}:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def chromium(playwright):
    """Headless Chromium whose resolver sends REBOUND_NAME to 127.0.0.1, as a rebinding
    attacker's DNS server does once the victim loaded its page (on the session's Playwright:
    one runs at a time per process)."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {REBOUND_NAME} 127.0.0.1"])
    yield browser
    browser.close()


def test_a_foreign_page_cannot_stop_start_or_delete_captures(lab, clean_lab, chromium, foreign_site,
                                                             target: Target):
    """The page's beacons, no-cors POSTs, form POST and DELETE all fail: the captures stay
    active and mirror, no capture is started."""
    page_html, url = foreign_site
    started = [lab.http("POST", "/api/captures", json={"vrouter": target.compute,
                                                      "interface": target.port}).json()
               for _ in range(3)]
    ids = [c["id"] for c in started]
    page_html["html"] = attack_page(f"http://127.0.0.1:{API_PORT}", ids)
    tab = chromium.new_page()
    tab.goto(url)
    tab.wait_for_function("document.title === 'done'", timeout=30_000)
    time.sleep(1)  # beacons are sent in the background
    assert [capture_state(lab, i) for i in ids] == ["active"] * 3
    assert sorted(c["id"] for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()) == ids
    before = lab.http("GET", f"/api/captures/{ids[0]}").json()["packets"]
    ping_peer(lab, target)
    lab.wait_for(lambda: lab.http("GET", f"/api/captures/{ids[0]}").json()["packets"] > before,
                 what="the capture to go on mirroring")
    own = lab.http("POST", f"/api/captures/{ids[0]}/stop", params={"secret": started[0]["secret"]})
    assert own.json()["state"] == "stopped"


def test_a_page_reached_by_dns_rebinding_gets_nothing(lab, clean_lab, chromium, target: Target):
    """Under a foreign name resolving to 127.0.0.1, the page and every request of it (same-
    origin to the browser) are refused: nothing listed, started or stopped."""
    capture = lab.http("POST", "/api/captures", json={"vrouter": target.compute,
                                                     "interface": target.port}).json()
    tab = chromium.new_page()
    response = tab.goto(f"http://{REBOUND_NAME}:{API_PORT}/")
    assert response.status == 403
    statuses = tab.evaluate("""async (id) => [
        (await fetch('/api/captures')).status,
        (await fetch('/api/captures', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                       body: JSON.stringify({vm: 'vm3'})})).status,
        (await fetch(`/api/captures/${id}`, {method: 'DELETE'})).status]""", capture["id"])
    assert statuses == [403, 403, 403]
    refused = lab.http("GET", "/api/captures", headers={"Host": f"{REBOUND_NAME}:{API_PORT}"})
    assert refused.status_code == 403 and refused.json()["field"] == "Host"
    assert [c["id"] for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()] == [capture["id"]]


def test_the_lab_state_is_its_owner_alone(lab, clean_lab, target: Target):
    """The state directory is 0700 and every file in it (record, store, logs, pcaps) is closed
    to other users; user nobody can read none of it."""
    capture = lab.http("POST", "/api/captures", json={"vrouter": target.compute,
                                                     "interface": target.port}).json()
    ping_peer(lab, target)
    lab.wait_for(lambda: lab.http("GET", f"/api/captures/{capture['id']}").json()["packets"] > 0,
                 what="packets in the pcap")
    assert stat.S_IMODE(os.stat(STATE_DIR).st_mode) == 0o700
    paths = [p for p in STATE_DIR.rglob("*")]
    names = {p.name for p in paths}
    assert {"lab.json", "controller.db", "controller.log", "lab.log"} <= names
    assert any(p.suffix == ".pcap" for p in paths)
    opened = {str(p.relative_to(STATE_DIR)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
              if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert opened == {}
    pcap = next(p for p in paths if p.suffix == ".pcap")
    for path in (STATE_DIR / "controller.db", pcap):
        denied = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(path)],
                                capture_output=True, text=True)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
