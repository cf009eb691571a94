"""End-to-end: the monitor web UI in a real headless Chromium, against the real lab.

Monitor > Infrastructure > Virtual Routers > a vRouter > Interfaces > Action > Packet Capture:
one click starts the capture (to the analyzer instance already running, else the default one),
the screen shows a VM's pings live, its analyzer and direction restart it, a packet's layers and
bytes are shown, a display filter narrows the list, and every way of leaving stops the capture
and removes its mirror flows: Close, Stop, navigating elsewhere in the app, closing the tab, and
a browser killed outright (its lease runs out). The VM, its peer and the compute nodes are taken
from the lab's topology, so the tests run against any topology file.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from playwright.sync_api import Page, expect
from scapy.all import ICMP, IP, rdpcap
from vnc_api.gen.resource_client import NetworkPolicy
from vnc_api.gen.resource_xsd import (
    AddressType, PolicyEntriesType, SequenceType, SubnetType, VirtualNetworkPolicyType,
)

from mirrorlab import InstalledFlow
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, MAX_CAPTURES_PER_INTERFACE
from mirrorlab.controller.pipeline import EGRESS_MIRROR, INGRESS_MIRROR
from mirrorlab.controller.store import Store
from mirrorlab.controller.vncmodel import object_uuid
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, CONFIG_API_PORT, FAR_ANALYZER, VIEWPORT, Target
from tests.e2e.test_policies import BLUE, PROJECT, RED, rule, vnc  # noqa: F401 (vnc is a fixture)

pytestmark = pytest.mark.usefixtures("only_the_default_analyzer")

START_TIMEOUT_MS = 120_000  # the first capture also launches the default analyzer


# --- helpers -----------------------------------------------------------------------------------

def capture_flows(lab, capture_id: int) -> list[InstalledFlow]:
    """Flows of capture `capture_id` on any vRouter."""
    return [flow for compute in lab.topology.computes for flow in lab.flows(compute.name)
            if flow.capture == capture_id]


def active_capture(lab, target: Target) -> dict:
    """The one active capture of the target interface."""
    captures = [c for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()
                if c["interface"] == target.port]
    assert len(captures) == 1, captures
    return captures[0]


def capture_state(lab, capture_id: int) -> str:
    """A capture's state as the API reports it: active or stopped."""
    return lab.http("GET", f"/api/captures/{capture_id}").json()["state"]


def open_capture_screen(page: Page, lab, target: Target, screenshots: bool = False) -> None:
    """Click through Monitor > Infrastructure > Virtual Routers > vRouter > Interfaces >
    Action > Packet Capture, as a user does: that one click starts the capture."""
    page.goto(f"{lab.api_url}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Virtual Routers").click()
    expect(page.locator("#breadcrumb li")).to_have_text(["Monitor", "Infrastructure", "Virtual Routers"])
    vrouter_row = page.locator("tr", has=page.get_by_role("link", name=target.compute, exact=True))
    expect(vrouter_row).to_contain_text("Connected")
    if screenshots:
        page.screenshot(path=ARTIFACTS / "ui-vrouters.png", full_page=True)
    page.get_by_role("link", name=target.compute, exact=True).click()
    page.get_by_role("tab", name="Interfaces").click()
    row = page.locator("tr", has_text=target.port)
    expect(row).to_contain_text(str(target.interface.ip))
    expect(row).to_contain_text(target.interface.mac)
    if screenshots:
        page.screenshot(path=ARTIFACTS / "ui-interfaces.png", full_page=True)
    page.get_by_role("button", name=f"Actions for {target.port}").click()
    page.get_by_role("menuitem", name="Packet Capture").click()


def capturing(page: Page, lab, target: Target, direction: str = "both") -> dict:
    """Wait until the screen shows its capture running; the capture's API record (the one
    active capture of the interface, in `direction`, with mirror flows)."""
    expect(page.locator("#capture-status")).to_have_text("Capturing", timeout=START_TIMEOUT_MS)
    capture = active_capture(lab, target)
    expect(page.locator(".capture-title")).to_have_text(f"Capture #{capture['id']}")
    assert capture["direction"] == direction
    assert capture_flows(lab, capture["id"]), "an active capture has mirror flows"
    return capture


def mirror_tables(lab, capture_id: int) -> set[str]:
    """Which mirror tables hold the capture's flows: "egress" (3-10), "ingress" (11-18)."""
    tables = {flow.table for flow in capture_flows(lab, capture_id)}
    return ({"egress"} if any(EGRESS_MIRROR <= t < INGRESS_MIRROR for t in tables) else set()) | \
        ({"ingress"} if any(INGRESS_MIRROR <= t < INGRESS_MIRROR + MAX_CAPTURES_PER_INTERFACE
                            for t in tables) else set())


def launched_analyzers(lab) -> set[str]:
    """The analyzer instances running besides the default one."""
    return {a["name"] for a in lab.http("GET", "/api/analyzers").json()} - {DEFAULT_ANALYZER}


def ping_peer(lab, target: Target, count: int = 3) -> None:
    """`count` pings from the target VM to its peer, all answered."""
    result = lab.shell(target.vm, f"ping -c {count} -i 0.2 {target.peer.ip}")
    assert f"{count} received" in result.stdout, result.stdout


def packet_rows(page: Page, info: str, source: str):
    """Rows of the live packet table whose text has `info` and `source`."""
    return page.locator(".packet-table tbody tr").filter(has_text=info).filter(has_text=source)


def assert_stopped_and_flows_gone(lab, capture_id: int, within: float) -> None:
    """The capture stops within `within` seconds, and no vRouter keeps a flow of it."""
    lab.wait_for(lambda: capture_state(lab, capture_id) == "stopped", timeout=within,
                 interval=0.1, what=f"capture {capture_id} to stop")
    assert capture_flows(lab, capture_id) == []


# --- tests -------------------------------------------------------------------------------------

def test_one_click_captures_to_the_default_analyzer_live_and_close_stops_it(lab, page, target):
    """The user story: click through to Packet Capture and the capture runs at once, both
    directions, to the default analyzer (the screen says so while it is launched); a ping's
    requests and replies appear with their columns, counts and rate; Close: the capture stops
    and its flows are gone from every vRouter."""
    assert not launched_analyzers(lab), "no analyzer instance besides the default one runs"
    default_running = DEFAULT_ANALYZER in {a["name"] for a in lab.http("GET", "/api/analyzers").json()}
    open_capture_screen(page, lab, target, screenshots=True)
    if not default_running:
        expect(page.locator("#capture-status")).to_have_text("Launching the default analyzer\u2026")
        expect(page.locator(".launching")).to_contain_text(f"Launching the default analyzer {DEFAULT_ANALYZER}")
    capture = capturing(page, lab, target)
    assert capture["analyzer"] == DEFAULT_ANALYZER
    assert mirror_tables(lab, capture["id"]) == {"ingress", "egress"}
    assert capture["lease_seconds"] == lab.http("GET", "/api/config").json()["lease_seconds"]
    expect(page.get_by_label("Analyzer", exact=True)).to_have_value(DEFAULT_ANALYZER)
    expect(page.get_by_role("radio", name="Both")).to_be_checked()
    expect(page.locator("#analyzer-rule")).to_contain_text("Chosen on opening: the default analyzer")

    ping_peer(lab, target, count=10)
    source, peer = str(target.interface.ip), str(target.peer.ip)
    requests = packet_rows(page, "Echo (ping) request", source)
    expect(requests).to_have_count(10)
    expect(packet_rows(page, "Echo (ping) reply", peer)).to_have_count(10)
    cells = requests.first.locator("td")
    expect(cells.nth(2)).to_have_text(f"from {target.interface.vm}")
    expect(cells.nth(3)).to_have_text(source)
    expect(cells.nth(4)).to_have_text(peer)
    expect(cells.nth(5)).to_have_text("ICMP")
    expect(cells.nth(6)).to_have_text("98")
    expect(cells.nth(7)).to_have_text(re.compile(r"Echo \(ping\) request id=0x[0-9a-f]{4}, seq=1$"))
    reply = packet_rows(page, "Echo (ping) reply", peer).first.locator("td")
    expect(reply.nth(2)).to_have_text(f"to {target.interface.vm}")
    packets = page.locator("[data-stat=packets]")
    expect(packets).to_have_text(re.compile(r"^\d+$"))
    assert int(packets.inner_text()) >= 20
    expect(page.locator("[data-stat=bytes]")).not_to_have_text("0 B")
    charts = page.get_by_role("img", name=re.compile("over the last minute"))
    expect(charts).to_have_count(2)
    expect(page.locator("[data-rate=packets]")).to_have_text(re.compile(r"^[0-9.]+ packets/s$"))
    expect(page.locator(".rate-chart .rate-peak").first).not_to_have_text("peak 0 packets/s")
    expect(page.locator(".rate-chart .rate-line")).to_have_count(2)

    page.get_by_role("button", name="Close", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/vrouters/[^/]+/interfaces$"))
    assert_stopped_and_flows_gone(lab, capture["id"], within=2)
    expect(page.locator("tr", has_text=target.port)).to_contain_text("Off")


def test_the_analyzer_instance_already_running_is_used(lab, page, target, far_analyzer):
    """With an analyzer instance launched (on another compute node), one click captures to it,
    and the screen says which rule picked it; choosing the default analyzer in the running
    screen restarts the capture there."""
    assert launched_analyzers(lab) == {FAR_ANALYZER}
    preferred = lab.http("GET", "/api/analyzer-choice").json()
    assert preferred["analyzer"] == FAR_ANALYZER
    open_capture_screen(page, lab, target)
    capture = capturing(page, lab, target)
    assert capture["analyzer"] == FAR_ANALYZER
    expect(page.locator(".capture-route")).to_contain_text(f"{FAR_ANALYZER} ({far_analyzer['vm']} on "
                                                           f"{target.other_compute}")
    expect(page.locator("#analyzer-rule")).to_contain_text(f"Chosen on opening: {preferred['reason']}.")
    expect(page.locator("#analyzer-rule")).to_contain_text(
        "Rule: an analyzer instance launched besides the default one is used")
    ping_peer(lab, target)
    expect(packet_rows(page, "Echo (ping) request", str(target.interface.ip))).to_have_count(3)

    page.get_by_label("Analyzer", exact=True).select_option(DEFAULT_ANALYZER)
    assert_stopped_and_flows_gone(lab, capture["id"], within=5)
    restarted = capturing(page, lab, target)
    assert restarted["id"] != capture["id"] and restarted["analyzer"] == DEFAULT_ANALYZER
    # The list starts again (a guest's own ARP or ND may arrive, but no earlier ping).
    expect(page.locator(".packet-table tbody tr").filter(has_text="Echo (ping)")).to_have_count(0)
    expect(page.locator("#analyzer-rule")).to_contain_text("Chosen by you.")


def test_changing_the_direction_restarts_the_capture_with_its_flows(lab, page, target):
    """Ingress, then egress, on the running screen: each stops the capture and starts one whose
    flows are in the mirror tables of that direction only, and whose list shows only the echo
    requests the VM sends, then only the replies delivered to it."""
    open_capture_screen(page, lab, target)
    both = capturing(page, lab, target)
    source, peer = str(target.interface.ip), str(target.peer.ip)
    page.get_by_role("radio", name="Ingress").check()
    assert_stopped_and_flows_gone(lab, both["id"], within=5)
    ingress = capturing(page, lab, target, direction="ingress")
    assert mirror_tables(lab, ingress["id"]) == {"ingress"}
    expect(page.locator("#capture-status")).to_have_text("Capturing")
    ping_peer(lab, target)
    expect(packet_rows(page, "Echo (ping) request", source)).to_have_count(3)
    page.wait_for_timeout(1000)
    expect(page.locator(".packet-table tbody tr").filter(has_text="Echo (ping) reply")).to_have_count(0)

    page.get_by_role("radio", name="Egress").check()
    assert_stopped_and_flows_gone(lab, ingress["id"], within=5)
    egress = capturing(page, lab, target, direction="egress")
    assert mirror_tables(lab, egress["id"]) == {"egress"}
    ping_peer(lab, target)
    expect(packet_rows(page, "Echo (ping) reply", peer)).to_have_count(3)
    page.wait_for_timeout(1000)
    expect(page.locator(".packet-table tbody tr").filter(has_text="Echo (ping) request")).to_have_count(0)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#capture-status")).to_have_text("Stopped")
    assert_stopped_and_flows_gone(lab, egress["id"], within=2)


def selected_bytes(page: Page) -> tuple[list[int], str]:
    """The offsets and hex text of the bytes highlighted in the details' hex dump."""
    highlighted = page.locator(".hex-dump .hex-byte.hl")
    offsets = [int(offset) for offset in highlighted.evaluate_all("nodes => nodes.map(n => n.dataset.offset)")]
    return offsets, "".join(highlighted.all_inner_texts())


def test_details_of_an_icmp_packet_show_its_fields_and_bytes(lab, page, target):
    """Selecting an echo request shows its layers as a tree (Ethernet, IPv4, ICMP with their
    fields), its bytes in hex and ASCII equal to the pcap's, and the selected field's bytes
    highlighted; the arrow keys move to the next packet, Esc closes the details."""
    open_capture_screen(page, lab, target)
    capture = capturing(page, lab, target)
    ping_peer(lab, target, count=10)
    source, peer = str(target.interface.ip), str(target.peer.ip)
    expect(packet_rows(page, "Echo (ping) reply", peer)).to_have_count(10)
    request = packet_rows(page, "Echo (ping) request", source).first
    expect(request).to_contain_text("seq=1")
    number = int(request.locator("td").first.inner_text())
    request.click()

    details = page.get_by_role("region", name=f"Packet {number} details")
    tree = details.get_by_role("tree", name="Packet layers")
    layers = tree.locator(":scope > li > .tree-row .tree-label")
    expect(layers).to_have_count(4)
    expect(layers.nth(1)).to_have_text(re.compile(f"^Ethernet II, Src: {target.interface.mac}"))
    expect(layers.nth(2)).to_have_text(f"Internet Protocol Version 4, Src: {source}, Dst: {peer}")
    expect(layers.nth(3)).to_have_text("Internet Control Message Protocol")
    field = lambda label: tree.locator(".tree-label", has_text=re.compile(f"^{re.escape(label)}$"))
    for label in ("Type: 8 (Echo (ping) request)", "Code: 0", "Sequence Number (BE): 1 (0x0001)",
                  f"Source Address: {source}", f"Destination Address: {peer}", "Time to Live: 64"):
        expect(field(label)).to_be_visible()

    pcap = ARTIFACTS / "ui-details.pcapng"
    pcap.write_bytes(lab.http("GET", f"/api/captures/{capture['id']}/pcap").content)
    frame = bytes(rdpcap(str(pcap))[number - 1])
    assert frame[34] == 8 and IP(frame[14:]).src == source
    dump = details.get_by_role("group", name="Packet bytes")
    expect(dump.locator(".hex-byte")).to_have_count(len(frame))
    assert "".join(dump.locator(".hex-byte").all_inner_texts()) == frame.hex()

    field("Type: 8 (Echo (ping) request)").click()
    assert selected_bytes(page) == ([34], "08")
    expect(dump.locator(".hex-char.hl")).to_have_count(1)
    field(f"Source Address: {source}").click()
    assert selected_bytes(page) == ([26, 27, 28, 29], frame[26:30].hex())
    dump.locator(".hex-byte[data-offset='40']").click()  # a byte selects the field decoded from it
    expect(tree.locator("[aria-selected=true] > .tree-row .tree-label")).to_have_text(
        "Sequence Number (BE): 1 (0x0001)")
    page.screenshot(path=ARTIFACTS / "ui-capture.png", full_page=True)

    page.keyboard.press("ArrowDown")
    following = page.get_by_role("region", name=f"Packet {number + 1} details")
    expect(following.get_by_role("tree", name="Packet layers")).to_be_visible()
    expect(page.locator(".packet-table tbody tr.selected td").first).to_have_text(str(number + 1))
    page.keyboard.press("ArrowUp")
    expect(page.get_by_role("region", name=f"Packet {number} details")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator(".packet-details")).to_have_count(0)
    expect(page.locator(".packet-table tbody tr.selected")).to_have_count(0)


def test_a_display_filter_narrows_the_list_and_a_bad_one_is_explained(lab, page, target):
    """`icmp and src host VM` keeps only the echo requests, also those recorded before the filter
    was applied; `tcp port 80` matches none; a misspelt filter is refused naming the word and
    where, and the list stays as it was; Clear shows everything again."""
    open_capture_screen(page, lab, target)
    capturing(page, lab, target)
    ping_peer(lab, target)
    source = str(target.interface.ip)
    rows = page.locator(".packet-table tbody tr")
    expect(packet_rows(page, "Echo (ping) reply", str(target.peer.ip))).to_have_count(3)
    # Guests refresh their neighbour entries (ARP, ND) on their own: count the pings.
    echoes = rows.filter(has_text="Echo (ping)")
    everything = echoes.count()

    filter_box = page.get_by_role("textbox", name="Display filter")
    filter_box.fill(f"icmp and src host {source}")
    filter_box.press("Enter")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="Echo (ping) request")).to_have_count(3)
    expect(page.locator("#filter-state")).to_have_text(f"filter: icmp and src host {source}")
    ping_peer(lab, target)
    expect(rows).to_have_count(6)
    expect(rows.filter(has_text="Echo (ping) request")).to_have_count(6)

    filter_box.fill("tcp port 80")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(0)
    expect(page.locator(".empty-packets")).to_have_text("No packet matches the filter yet.")

    filter_box.fill(f"icmp and hots {source}")
    filter_box.press("Enter")
    alert = page.locator("#filter-error").get_by_role("alert")
    expect(alert).to_contain_text("Filter not applied. Bad filter: unknown word 'hots' at character 10")
    expect(filter_box).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#filter-state")).to_have_text("filter: tcp port 80")

    page.get_by_role("button", name="Clear").click()
    expect(alert).to_have_count(0)
    expect(echoes).to_have_count(everything + 6)


def test_leaving_the_capture_screen_within_the_app_stops_the_capture(lab, page, target):
    """Navigating to another page of the monitor stops the capture at once."""
    open_capture_screen(page, lab, target)
    capture = capturing(page, lab, target)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Topology").click()
    assert_stopped_and_flows_gone(lab, capture["id"], within=2)


def test_closing_the_tab_stops_the_capture_before_its_lease_runs_out(lab, page, target):
    """Closing the tab sends the stop with navigator.sendBeacon on pagehide: the capture stops
    well before its lease would have run out."""
    open_capture_screen(page, lab, target)
    capture = capturing(page, lab, target)
    lease = capture["lease_seconds"]
    page.close()
    assert_stopped_and_flows_gone(lab, capture["id"], within=min(2.0, lease / 2))


@pytest.fixture
def killable_chromium(tmp_path):
    """A Chromium started as its own process group, so a test can kill it outright; the CDP
    endpoint Playwright connects to."""
    log = tmp_path / "chromium.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen([CHROMIUM, "--headless", f"--user-data-dir={tmp_path / 'profile'}",
                                    "--remote-debugging-port=0", *CHROMIUM_ARGS, "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    listening = re.compile(r"DevTools listening on (ws://\S+)")
    deadline = time.monotonic() + 30
    while not listening.search(log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, \
            f"chromium did not start:\n{log.read_text()}"
        time.sleep(0.1)
    yield process, listening.search(log.read_text()).group(1)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_killed_browser_lets_the_lease_run_out_and_the_capture_stops(lab, clean_lab, target, playwright,
                                                                      killable_chromium):
    """A browser killed with SIGKILL says no goodbye: while it lived the page renewed the lease
    (the capture outlives several lease periods); once dead, the controller stops the capture
    within a lease period."""
    process, endpoint = killable_chromium
    browser = playwright.chromium.connect_over_cdp(endpoint)
    tab = browser.contexts[0].new_page()
    tab.set_viewport_size(VIEWPORT)
    open_capture_screen(tab, lab, target)
    capture = capturing(tab, lab, target)
    lease = capture["lease_seconds"]
    time.sleep(2 * lease)
    assert capture_state(lab, capture["id"]) == "active", "the open screen renews the lease"
    os.killpg(process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    process.wait(timeout=10)
    assert_stopped_and_flows_gone(lab, capture["id"], within=lease + 3)
    assert time.monotonic() - killed_at <= lease + 3


def test_chosen_analyzer_in_one_direction_topology_pcap_and_stop(lab, page, target, far_analyzer):
    """The analyzer on another compute node, ingress: the topology picture shows the mirroring,
    the pcap download holds exactly the echo requests, and Stop stops; Start capture then runs
    a new capture with the same settings."""
    open_capture_screen(page, lab, target)
    capturing(page, lab, target)
    page.get_by_role("radio", name="Ingress").check()
    capture = capturing(page, lab, target, direction="ingress")
    assert capture["analyzer"] == FAR_ANALYZER

    ping_peer(lab, target)
    source = str(target.interface.ip)
    expect(packet_rows(page, "Echo (ping) request", source)).to_have_count(3)

    topology = page.context.new_page()
    topology.goto(f"{lab.api_url}/#/topology")
    expect(topology.locator("svg.topology .topo-mirror")).to_have_count(1)
    mirroring = topology.get_by_role("table", name="Active mirroring")
    expect(mirroring).to_contain_text(target.port)
    expect(mirroring).to_contain_text(FAR_ANALYZER)
    topology.screenshot(path=ARTIFACTS / "ui-topology.png", full_page=True)
    topology.close()

    with page.expect_download() as download:
        page.get_by_role("link", name="Download pcapng").click()
    pcap = ARTIFACTS / "ui-capture-ingress.pcap"
    download.value.save_as(pcap)
    pings = [frame for frame in rdpcap(str(pcap)) if frame.haslayer(ICMP)]
    assert [(frame[IP].src, frame[ICMP].type) for frame in pings] == [(source, 8)] * 3

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#capture-status")).to_have_text("Stopped")
    assert_stopped_and_flows_gone(lab, capture["id"], within=2)
    page.get_by_role("button", name="Start capture").click()
    again = capturing(page, lab, target, direction="ingress")
    assert again["id"] != capture["id"] and again["analyzer"] == FAR_ANALYZER


def test_api_errors_are_shown_in_plain_words(lab, page, target):
    """What the controller refuses is shown as its own sentence: an unknown vRouter, and a
    capture beyond the most one interface holds (the one click starts none, and says why)."""
    page.goto(f"{lab.api_url}/#/vrouters/no-such-vrouter")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Could not load vRouter no-such-vrouter.")
    expect(alert).to_contain_text("Unknown vrouter 'no-such-vrouter' (known: "
                                  + ", ".join(c.name for c in lab.topology.computes) + ")")

    body = {"vrouter": target.compute, "interface": target.port}
    for _ in range(MAX_CAPTURES_PER_INTERFACE):
        assert lab.http("POST", "/api/captures", json=body).status_code == 201
    refused = lab.http("POST", "/api/captures", json=body)
    assert refused.status_code == 409
    message = refused.json()["error"]

    open_capture_screen(page, lab, target)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Could not start the capture.")
    expect(alert).to_contain_text(message[0].upper() + message[1:])
    expect(page.get_by_role("button", name="Start capture")).to_be_enabled()
    expect(page.locator("#capture-status")).to_have_text("Not capturing")
    active = [c for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()
              if c["interface"] == target.port]
    assert len(active) == MAX_CAPTURES_PER_INTERFACE


def test_ui_endpoints_serve_the_page_live_packets_topology_and_stop_by_post(lab, clean_lab, target):
    """The API the UI stands on: the page and its modules; packets numbered from 1 and paged with
    after/limit, with Wireshark's columns; bad paging refused in words; the lab graph; POST /stop
    stops like DELETE (and again is a no-op), given the capture's secret."""
    page = lab.http("GET", "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script type="module" src="/ui/js/app.js">' in page.text
    script = lab.http("GET", "/ui/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]

    capture = lab.http("POST", "/api/captures", json={"vrouter": target.compute, "interface": target.port,
                                                     "direction": "ingress"}).json()
    ping_peer(lab, target)
    packets_url = f"/api/captures/{capture['id']}/packets"
    echo_requests = lambda packets: [p for p in packets if p["summary"].startswith("Echo (ping) request")]
    lab.wait_for(lambda: len(echo_requests(lab.http("GET", packets_url).json()["packets"])) == 3,
                 what="3 recorded echo requests")
    first = lab.http("GET", packets_url, params={"after": 0, "limit": 2}).json()
    assert [p["index"] for p in first["packets"]] == [1, 2] and first["total"] >= 3
    rest = lab.http("GET", packets_url, params={"after": 2}).json()["packets"]
    assert rest[0]["index"] == 3
    requests = echo_requests(first["packets"] + rest)
    assert [(p["source"], p["destination"], p["protocol"], p["length"]) for p in requests] == \
        [(str(target.interface.ip), str(target.peer.ip), "ICMP", 98)] * 3
    assert [p["summary"].rsplit("seq=", 1)[1] for p in requests] == ["1", "2", "3"]
    assert all(isinstance(p["time"], float) for p in requests)
    beyond = lab.http("GET", packets_url, params={"after": 10**6}).json()
    assert beyond["packets"] == [] and beyond["total"] >= 2 + len(rest)
    bad = lab.http("GET", packets_url, params={"after": -1})
    assert bad.status_code == 400 and bad.json()["field"] == "query.after"
    assert lab.http("GET", packets_url, params={"limit": 0}).status_code == 400
    unknown = lab.http("GET", "/api/captures/999999/packets")
    assert unknown.status_code == 404 and unknown.json() == {"error": "unknown capture 999999", "field": "id"}

    graph = lab.http("GET", "/api/topology").json()
    assert graph["name"] == lab.topology.name
    networks = {n["name"]: n["subnet"] for n in graph["nodes"] if n["kind"] == "network"}
    assert networks[target.interface.network] == str(lab.topology.network(target.interface.network).subnet)
    hosted = {frozenset((e["source"], e["target"])) for e in graph["edges"] if e["kind"] == "hosted-on"}
    assert frozenset((f"vm:{target.vm}", f"compute:{target.compute}")) in hosted

    unowned = lab.http("POST", f"/api/captures/{capture['id']}/stop", params={"secret": "guess"})
    assert unowned.status_code == 403 and capture_state(lab, capture["id"]) == "active"
    owner = {"secret": capture["secret"]}
    stopped = lab.http("POST", f"/api/captures/{capture['id']}/stop", params=owner)
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    assert capture_flows(lab, capture["id"]) == []
    again = lab.http("POST", f"/api/captures/{capture['id']}/stop", params=owner)
    assert again.status_code == 200 and again.json()["stopped_at"] == stopped.json()["stopped_at"]


# --- the Analyzers and Captures pages, and the capture screen's small things ------------------

PAGE_ANALYZER = "page-analyzer"
BAD_RED = "rgb(210, 70, 60)"  # --bad: the colour of errors


def test_analyzers_page_creates_lists_and_refuses_to_delete_one_in_use(lab, page, target):
    """Monitor > Infrastructure > Analyzers: create one (name, compute node, network); its row
    shows its VM, compute node, network, address and the capture using it; deleting it while
    in use is refused with the controller's reason; once the capture stops it is deleted."""
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{lab.api_url}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analyzers").click()
    expect(page.locator("#breadcrumb li")).to_have_text(["Monitor", "Infrastructure", "Analyzers"])
    page.get_by_label("Name").fill(PAGE_ANALYZER)
    page.get_by_label("Compute node").select_option(target.other_compute)
    page.get_by_role("button", name="Create").click()
    row = page.locator(f"tr[data-analyzer='{PAGE_ANALYZER}']")
    expect(row).to_be_visible(timeout=START_TIMEOUT_MS)
    created = next(a for a in lab.http("GET", "/api/analyzers").json() if a["name"] == PAGE_ANALYZER)
    assert created["compute"] == target.other_compute
    for text in (created["vm"], created["compute"], created["network"], created["ip"], "running"):
        expect(row).to_contain_text(text)
    try:
        capture = lab.http("POST", "/api/captures", json={"vrouter": target.compute, "interface": target.port,
                                                         "analyzer": PAGE_ANALYZER}).json()
        expect(row).to_contain_text(f"1 active: #{capture['id']}", timeout=10_000)
        page.get_by_role("button", name=f"Delete analyzer {PAGE_ANALYZER}").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text(f"Could not delete analyzer {PAGE_ANALYZER}.")
        expect(alert).to_contain_text(f"is used by active capture(s) {capture['id']}; stop them first")
        expect(row).to_be_visible()
        page.screenshot(path=ARTIFACTS / "ui-analyzers.png", full_page=True)
        lab.http("DELETE", f"/api/captures/{capture['id']}")
        page.get_by_role("button", name=f"Delete analyzer {PAGE_ANALYZER}").click()
        expect(row).to_have_count(0, timeout=60_000)
        assert PAGE_ANALYZER not in launched_analyzers(lab)
    finally:
        lab.stop_all_captures()
        lab.http("DELETE", f"/api/analyzers/{PAGE_ANALYZER}")


def test_captures_page_lists_who_started_each_with_counts_duration_and_pcap(lab, page, target):
    """Monitor > Infrastructure > Captures: a capture of the capture screen, one of the CLI
    (stopped twice: the second stop says it already was) and a running one of the API, each
    with who started it, its packets and its pcap."""
    open_capture_screen(page, lab, target)
    from_screen = capturing(page, lab, target)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#capture-status")).to_have_text("Stopped")

    started = lab.cli("capture", "start", target.compute, target.port, "--json")
    from_cli = json.loads(started.stdout)
    assert from_cli["origin"] == "cli"
    ping_peer(lab, target)
    lab.wait_for(lambda: lab.http("GET", f"/api/captures/{from_cli['id']}").json()["packets"] >= 6,
                 what="the CLI capture's 6 pings")
    assert "already stopped" not in lab.cli("capture", "stop", str(from_cli["id"])).stdout
    again = lab.cli("capture", "stop", str(from_cli["id"])).stdout
    assert again.startswith(f"capture {from_cli['id']} was already stopped\n"), again
    from_api = lab.http("POST", "/api/captures", json={"vrouter": target.compute, "interface": target.port}).json()
    packets = lab.http("GET", f"/api/captures/{from_cli['id']}").json()["packets"]

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Captures").click()
    expect(page.locator("#breadcrumb li")).to_have_text(["Monitor", "Infrastructure", "Captures"])
    rows = {capture["id"]: page.locator(f"tr[data-capture='{capture['id']}']")
            for capture in (from_screen, from_cli, from_api)}
    expect(rows[from_screen["id"]]).to_contain_text("Capture screen")
    expect(rows[from_screen["id"]]).to_contain_text("stopped")
    expect(rows[from_cli["id"]]).to_contain_text("CLI")
    expect(rows[from_cli["id"]].locator("td").nth(8)).to_have_text(str(packets))
    expect(rows[from_cli["id"]].locator("td").nth(7)).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(rows[from_api["id"]]).to_contain_text("API")
    expect(rows[from_api["id"]]).to_contain_text("active")
    expect(page.locator(".card-count")).to_contain_text("1 running")
    page.screenshot(path=ARTIFACTS / "ui-captures.png", full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name=f"Download the pcap of capture {from_cli['id']}").click()
    pcap = ARTIFACTS / "ui-captures-cli.pcap"
    download.value.save_as(pcap)
    assert len(rdpcap(str(pcap))) == packets


def test_capture_screen_warns_of_a_second_capture_and_times_from_the_first_packet(lab, page, target):
    """A capture already running on the interface: the screen says so and starts another
    (allowed); times count from the first packet, as tshark's; the Lease card explains itself;
    a capture stopped elsewhere is said in one sentence; Stopped is grey, not an error's red."""
    other = lab.http("POST", "/api/captures", json={"vrouter": target.compute, "interface": target.port}).json()
    open_capture_screen(page, lab, target)
    warning = page.locator("#notices .alert-warning")
    expect(warning).to_contain_text(f"{target.port} is already being captured (capture #{other['id']})")
    expect(page.locator("#capture-status")).to_have_text("Capturing", timeout=START_TIMEOUT_MS)
    mine = [c for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()
            if c["interface"] == target.port and c["id"] != other["id"]]
    assert len(mine) == 1 and mine[0]["origin"] == "screen"
    expect(page.locator(".capture-meta")).to_contain_text("started ")
    assert "lease" in page.locator(".tile", has_text="Lease").get_attribute("title")

    time.sleep(1)  # the first packet comes well after the capture's start
    ping_peer(lab, target)
    expect(packet_rows(page, "Echo (ping) request", str(target.interface.ip))).to_have_count(3)
    expect(page.locator(".packet-table tbody tr").first.locator("td").nth(1)).to_have_text("0.000000")
    page.screenshot(path=ARTIFACTS / "ui-capture-second.png", full_page=True)

    lab.http("DELETE", f"/api/captures/{mine[0]['id']}")
    notice = page.locator("#notices .alert", has_text="no longer running")
    expect(notice).to_have_text(f"Capture #{mine[0]['id']} is no longer running. It was stopped outside this "
                                "screen, or its lease ran out before this screen renewed it.")
    status = page.locator("#capture-status")
    expect(status).to_have_text("Stopped")
    dot = status.locator(".pill-dot").evaluate("node => getComputedStyle(node).backgroundColor")
    assert dot != BAD_RED
    page.screenshot(path=ARTIFACTS / "ui-capture-stopped.png", full_page=True)

    page.goto(f"{lab.api_url}/#/vrouters/{target.compute}/interfaces/no-such-port/capture")
    expect(page.get_by_role("alert")).to_contain_text(f"vRouter {target.compute} has no interface 'no-such-port'")


def test_capture_screen_notes_the_last_rows_of_many(lab, page, target):
    """More packets than the table keeps: it says it shows the last 2000 of how many."""
    open_capture_screen(page, lab, target)
    capturing(page, lab, target)
    lab.shell(target.vm, f"ping -q -f -c 1200 {target.peer.ip}", timeout=120)
    note = page.locator("#filter-state")
    expect(note).to_have_text(re.compile(r"^showing the last 2000 of (\d+) packets \(the pcap has them all\)$"),
                              timeout=30_000)
    assert int(re.search(r"of (\d+)", note.inner_text()).group(1)) > 2000
    expect(page.locator(".packet-table tbody tr")).to_have_count(2000)


def test_capture_screen_says_controller_unreachable_and_clears_its_notices_when_back(lab, page, target):
    """While the controller is down the screen says so instead of Capturing; once it is back
    (after longer than the lease) the stale notices go, and the screen says the capture
    stopped because its lease ran out."""
    open_capture_screen(page, lab, target)
    capture = capturing(page, lab, target)
    lab.cli("controller", "stop")
    try:
        expect(page.locator("#capture-status")).to_have_text("Controller unreachable", timeout=10_000)
        expect(page.locator("#notices")).to_contain_text("Cannot renew the capture's lease.", timeout=10_000)
        page.screenshot(path=ARTIFACTS / "ui-capture-unreachable.png", full_page=True)
        time.sleep(capture["lease_seconds"] + 1)  # down longer than the lease: the capture must stop
    finally:
        lab.cli("controller", "start")
    expect(page.locator("#capture-status")).to_have_text("Stopped", timeout=30_000)
    notices = page.locator("#notices")
    expect(notices).not_to_contain_text("Cannot renew")
    expect(notices).not_to_contain_text("Could not read")
    expect(notices).to_contain_text(f"Capture #{capture['id']} stopped: Its lease ran out.")
    page.screenshot(path=ARTIFACTS / "ui-capture-controller-back.png", full_page=True)


# --- network policies (Configure > Networking > Policies, and the Topology) ----------------------

def attach_policy(vnc, policy, network: str, major: int) -> None:
    """Attach `policy` to `network` with sequence (major, 0), as a Contrail script does."""
    vn = vnc.virtual_network_read(fq_name=PROJECT + [network])
    vn.add_network_policy(policy, VirtualNetworkPolicyType(sequence=SequenceType(major, 0)))
    vnc.virtual_network_update(vn)


def detach_policy(vnc, policy, network: str) -> None:
    """Detach `policy` from `network`."""
    vn = vnc.virtual_network_read(fq_name=PROJECT + [network])
    vn.del_network_policy(policy)
    vnc.virtual_network_update(vn)


def test_a_policy_written_with_vnc_api_shows_live_on_the_policies_and_topology_pages(lab, page, vnc):
    """Through vnc_api alone, with the pages open and never reloaded: a new policy appears on
    Configure > Networking > Policies with its rules in order; attached to blue and red, the
    networks it attaches (in sequence) and what it does show (blue and red connected, their
    traffic mirrored to the default analyzer); its rules reordered, the page follows; the
    Topology draws the connection and the mirror; detached from red, both go from the
    Topology; deleted, the Policies page explains the empty state again. The CLI and the Lab
    API say the same."""
    page.goto(f"{lab.api_url}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Policies").click()
    expect(page.locator("#breadcrumb li")).to_have_text(["Configure", "Networking", "Policies"])
    expect(page.locator("#policy-empty")).to_contain_text(
        f"No network policy yet. Policies are written with Contrail's client, vnc_api, to the "
        f"configuration API on port {CONFIG_API_PORT}")
    expect(page.get_by_role("table", name="Connected networks")).to_contain_text("No two networks are connected")

    fq_name = ":".join(PROJECT + ["ui-watch"])
    policy = NetworkPolicy("ui-watch", parent_obj=vnc.project_read(fq_name=PROJECT),
                           network_policy_entries=PolicyEntriesType(
                               [rule(BLUE, RED, protocol="icmp"), rule(BLUE, RED, mirror=True)]))
    vnc.network_policy_create(policy)
    card = page.locator(f"section[data-policy='{fq_name}']")
    expect(card).to_contain_text("not attached to any network", timeout=10_000)
    rows = card.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td")).to_have_text(["1", "pass", "icmp", BLUE, "any", "<>", RED, "any", "none"])
    expect(rows.nth(1).locator("td")).to_have_text(["2", "pass", "any", BLUE, "any", "<>", RED, "any",
                                                     DEFAULT_ANALYZER])

    attach_policy(vnc, policy, "red", 1)
    attach_policy(vnc, policy, "blue", 0)
    expect(card.locator(".policy-attached .chip")).to_have_text(["blue \u00b7 sequence 0.0", "red \u00b7 sequence 1.0"],
                                                                timeout=10_000)
    expect(page.locator("tr[data-connection='blue|red'] td")).to_have_text(["blue \u21c4 red", "both ways"])
    expect(page.locator(f"tr[data-mirror='blue|red|{DEFAULT_ANALYZER}']")).to_contain_text(DEFAULT_ANALYZER)
    page.screenshot(path=ARTIFACTS / "ui-policies.png", full_page=True)

    policy = vnc.network_policy_read(fq_name=PROJECT + ["ui-watch"])
    ipv6 = rule(BLUE, RED, protocol="icmp")
    ipv6.ethertype, ipv6.src_addresses = "IPv6", [AddressType(subnet=SubnetType("fd00:1:1::", 64))]
    policy.set_network_policy_entries(PolicyEntriesType(
        [rule(BLUE, RED, mirror=True), rule(BLUE, RED, protocol="icmp"), ipv6]))
    vnc.network_policy_update(policy)
    expect(rows.nth(0).locator("td").nth(2)).to_have_text("any", timeout=10_000)
    expect(rows.nth(0).locator("td").nth(8)).to_have_text(DEFAULT_ANALYZER)
    expect(rows.nth(2).locator("td")).to_have_text(
        ["3", "pass", "icmp (IPv6)", "fd00:1:1::/64", "any", "<>", RED, "any", "none"])

    answer = lab.policies()
    assert [p["fq_name"] for p in answer["policies"]] == [fq_name]
    assert answer["connections"] == [{"source": "blue", "destination": "red", "both_ways": True}]
    assert lab.cli("policies").stdout.splitlines()[-3:] == [
        f"    3  pass protocol icmp ethertype IPv6 network fd00:1:1::/64 ports any <> network {RED} "
        f"ports any",
        "connections: blue <-> red", f"mirrors:     blue <-> red to {DEFAULT_ANALYZER}"]
    assert json.loads(lab.cli("policies", "--json").stdout) == answer

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Topology").click()
    connection = page.locator("svg.topology g[data-connection='blue|red']")
    mirror = page.locator(f"svg.topology g[data-mirror='blue|red|{DEFAULT_ANALYZER}']")
    expect(connection).to_contain_text("blue \u21c4 red: connected by policies")
    expect(mirror).to_contain_text(f"blue \u21c4 red: mirrored to {DEFAULT_ANALYZER}")
    assert not page.locator("#topology-scroll-hint").inner_text()  # in view without scrolling at 1400 px
    expect(page.get_by_role("img", name=re.compile("1 policy connections, 1 policy mirrors"))).to_be_visible()
    page.screenshot(path=ARTIFACTS / "ui-topology-policies.png", full_page=True)

    detach_policy(vnc, policy, "red")
    expect(connection).to_have_count(0, timeout=10_000)
    expect(mirror).to_have_count(0)
    expect(page.get_by_role("img", name=re.compile("0 policy connections, 0 policy mirrors"))).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Policies").click()
    expect(card.locator(".policy-attached .chip")).to_have_text(["blue \u00b7 sequence 0.0"])
    detach_policy(vnc, policy, "blue")
    vnc.network_policy_delete(fq_name=PROJECT + ["ui-watch"])
    expect(page.locator("#policy-empty")).to_contain_text("No network policy yet", timeout=10_000)
    expect(card).to_have_count(0)


def test_stored_policies_the_controller_cannot_apply_show_in_the_api_the_cli_and_the_ui(lab, page, vnc):
    """A controller restarted on stored policies it cannot apply (their rule mirrors to an
    analyzer its store no longer has, as an edited or older store would) applies none, and says
    why in GET /api/policies, `mirrorlab policies`, `mirrorlab status` (exit 1) and on the
    Policies page, until a vnc_api write that applies (the rule mirroring elsewhere)."""
    fq_name = PROJECT + ["ui-stale"]
    policy = NetworkPolicy("ui-stale", parent_obj=vnc.project_read(fq_name=PROJECT),
                           network_policy_entries=PolicyEntriesType([rule(BLUE, RED, mirror=True)]))
    vnc.network_policy_create(policy)
    attach_policy(vnc, policy, "blue", 0)
    attach_policy(vnc, policy, "red", 0)
    assert lab.policies()["connections"] and lab.policies()["problem"] is None
    lab.cli("controller", "stop")
    try:
        store = Store(lab.state.database_path)
        for obj_type, name, props in store.config_objects():
            if name == fq_name:
                props["network_policy_entries"]["policy_rule"][0]["action_list"]["mirror_to"] = {
                    "analyzer_name": ":".join(PROJECT + ["gone"])}
                store.save_config_object(object_uuid(obj_type, tuple(name)), obj_type, name, props)
    finally:
        lab.cli("controller", "start")
    try:
        answer = lab.policies()
        assert answer["problem"].startswith("the stored network policies are not applied") \
            and "unknown analyzer 'gone'" in answer["problem"], answer["problem"]
        assert answer["connections"] == []  # the vRouters apply no policy
        assert lab.cli("policies").stdout.splitlines()[0] == f"PROBLEM: {answer['problem']}"
        status = lab.cli("status", check=False)
        assert status.returncode == 1 and f"PROBLEM: {answer['problem']}" in status.stdout
        page.goto(f"{lab.api_url}/#/policies")
        expect(page.locator("#policy-problem")).to_contain_text(
            "The stored network policies are not applied. The stored network policies are not applied "
            "(the vRouters apply none)")
        expect(page.locator("#policy-problem")).to_contain_text("unknown analyzer 'gone'")

        policy = vnc.network_policy_read(fq_name=fq_name)
        policy.set_network_policy_entries(PolicyEntriesType([rule(BLUE, RED, mirror=True)]))
        vnc.network_policy_update(policy)
        expect(page.locator("#policy-problem")).to_have_count(0, timeout=10_000)
        assert lab.policies()["problem"] is None and lab.policies()["connections"]
        assert lab.cli("status").returncode == 0
    finally:
        policy = vnc.network_policy_read(fq_name=fq_name)
        for network in ("blue", "red"):
            detach_policy(vnc, policy, network)
        vnc.network_policy_delete(fq_name=fq_name)


def test_a_failed_policy_refresh_is_shown_until_the_controller_answers_again(lab, page):
    """A failed refresh is shown (the error and its reason), and goes once the controller is back."""
    page.goto(f"{lab.api_url}/#/policies")
    expect(page.locator("#policy-empty")).to_be_visible()
    lab.cli("controller", "stop")
    try:
        alert = page.locator("#notices").get_by_role("alert")
        expect(alert).to_contain_text("Could not load the network policies. The controller does not answer.",
                                       timeout=10_000)
    finally:
        lab.cli("controller", "start")
    expect(page.locator("#notices").get_by_role("alert")).to_have_count(0, timeout=30_000)
    expect(page.locator("#policy-empty")).to_be_visible()
