"""End-to-end: what a trainee needs from the monitor (issue 15), in a real headless Chromium
against the real lab: each capture's copy path on the Topology page, the capture screen's "What
the analyzer receives" panel (whose tshark commands are run here, as a trainee would paste them)
and its Advanced destination (Contrail's mirror_to, sent from the screen),
each packet's direction in its details, and windows 800, 1024 and 1400 px wide. Every test keeps
its screenshots in artifacts/.
"""
from __future__ import annotations

import ipaddress
import queue
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from playwright.sync_api import Page, expect

from mirrorlab.controller.mirroring import DEFAULT_ANALYZER
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, FAR_ANALYZER, VIEWPORT, Target  # noqa: F401 (CHROMIUM: needs Chromium)

pytestmark = pytest.mark.usefixtures("only_the_default_analyzer")

START_TIMEOUT_MS = 120_000  # the first capture may also launch the default analyzer
MIN_TEXT_PX = 12
NARROW_WIDTHS = (800, 1024)
SIDEBAR_PX = 220


# --- helpers -----------------------------------------------------------------------------------

def ping_peer(lab, target: Target, count: int = 3) -> None:
    """`count` pings from the target VM to its peer, all answered."""
    result = lab.shell(target.vm, f"ping -c {count} -i 0.2 {target.peer.ip}")
    assert f"{count} received" in result.stdout, result.stdout


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The IPv6 link-local address the kernel gives an interface with `mac` (EUI-64)."""
    octets = bytes.fromhex(mac.replace(":", ""))
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes([octets[0] ^ 2]) + octets[1:3] + b"\xff\xfe" + octets[3:])


def open_capture_screen(page: Page, lab, target: Target) -> dict:
    """Open the target interface's capture screen by its address; the capture it runs."""
    page.goto(f"{lab.api_url}/#/vrouters/{target.compute}/interfaces/{target.port}/capture")
    expect(page.locator("#capture-status")).to_have_text("Capturing", timeout=START_TIMEOUT_MS)
    captures = [c for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()
                if c["interface"] == target.port]
    assert len(captures) == 1, captures
    return captures[0]


def path_points(d: str) -> list[tuple[float, float]]:
    """The corners of an SVG path made of M, H and V commands."""
    points = []
    x = y = 0.0
    for command, values in re.findall(r"([MHV])\s*([-\d.\s]+)", d):
        numbers = [float(n) for n in values.split()]
        if command == "M":
            x, y = numbers
        elif command == "H":
            x = numbers[0]
        else:
            y = numbers[0]
        points.append((x, y))
    return points


def svg_box(page: Page, selector: str) -> dict:
    """An SVG element's box in the picture's own coordinates (getBBox)."""
    return page.locator(selector).first.evaluate(
        "node => { const b = node.getBBox(); return {x: b.x, y: b.y, width: b.width, height: b.height}; }")


def inside(point: tuple[float, float], box: dict, slack: float = 3) -> bool:
    """Whether `point` lies within `box` (give or take `slack`)."""
    x, y = point
    return (box["x"] - slack <= x <= box["x"] + box["width"] + slack
            and box["y"] - slack <= y <= box["y"] + box["height"] + slack)


def no_page_overflow(page: Page) -> None:
    """The page itself never scrolls sideways."""
    widths = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"


def within_viewport(page: Page, locator) -> None:
    """`locator`'s box lies inside the window, left to right."""
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not shown"
    width = page.viewport_size["width"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, f"{locator} at {box} in a {width} px window"


# --- 3. the copy path on the Topology page ----------------------------------------------------

def test_topology_draws_each_copy_path_through_vrouters_and_fabric_with_wrapper_and_packets(
        lab, page, target, far_analyzer):
    """One capture to an analyzer on the same compute node (copies stay in its vRouter) and one
    to an analyzer on another (down into the vRouter, along the fabric, up through the
    analyzer's vRouter): each drawn along that path, labelled with its wrapper (the Juniper
    header over UDP 8099) and its live packet count; every text of the picture at 12 px or more, every compute node in the window."""
    local = lab.http("POST", "/api/captures", json={"vrouter": target.compute, "interface": target.port})
    assert local.status_code == 201 and local.json()["analyzer"] == DEFAULT_ANALYZER, local.text
    remote = lab.http("POST", "/api/captures", json={"vrouter": target.compute, "interface": target.port,
                                                    "analyzer": FAR_ANALYZER}).json()
    local = local.json()
    ping_peer(lab, target)
    page.goto(f"{lab.api_url}/#/topology")
    for capture in (local, remote):
        count = lab.wait_for(lambda: lab.http("GET", f"/api/captures/{capture['id']}").json()["packets"] or None,
                             what="copies recorded")
        label = page.locator(f"g.topo-copy[data-capture='{capture['id']}'] text")
        expect(label).to_have_text(re.compile(rf"^#{capture['id']} Juniper UDP 8099 \u00b7 \d+ pkts$"))
        shown = lambda: int(re.search(r"(\d+) pkts$", label.text_content()).group(1))
        ping_peer(lab, target, count=1)  # live: the count follows the analyzer's (the guests add their own)
        total = lab.wait_for(lambda: (now if (now := lab.http("GET", f"/api/captures/{capture['id']}")
                                              .json()["packets"]) > count else None), what="more copies")
        lab.wait_for(lambda: shown() >= total, timeout=10, what=f"the label to show {total} packets or more")
        assert shown() <= lab.http("GET", f"/api/captures/{capture['id']}").json()["packets"]

    fabric_y = svg_box(page, "line.topo-fabric")["y"]
    vrouter = {c.name: svg_box(page, f"rect.topo-vrouter[data-vrouter='{c.name}']") for c in lab.topology.computes}
    vm_box = lambda name: svg_box(page, f"a.topo-vm-link[data-vm='{name}'] rect.topo-vm")
    source = vm_box(target.vm)
    for capture, crosses in ((local, False), (remote, True)):
        points = path_points(page.locator(f"g.topo-copy[data-capture='{capture['id']}'] path").get_attribute("d"))
        hops = capture["analyzer_view"]["path"]
        analyzer_vm, analyzer_compute = hops[-1]["name"], hops[-1]["compute"]
        assert [hop["kind"] for hop in hops] == (["vm", "vrouter", "fabric", "vrouter", "analyzer"] if crosses
                                                 else ["vm", "vrouter", "analyzer"])
        segments = list(zip(points, points[1:]))
        assert inside(points[0], source), "the path starts at the monitored VM"
        assert inside(segments[0][1], vrouter[target.compute]), "down into the VM's vRouter"
        assert inside(points[-1], vm_box(analyzer_vm)), "the path ends at the analyzer VM"
        assert inside(segments[-1][0], vrouter[analyzer_compute]), "up out of the analyzer's vRouter"
        if crosses:
            assert any(inside(start, vrouter[target.compute]) and end[1] > fabric_y and start[0] == end[0]
                       for start, end in segments), "from the VM's vRouter down to the fabric"
            assert any(start[1] > fabric_y and inside(end, vrouter[analyzer_compute]) and start[0] == end[0]
                       for start, end in segments), "from the fabric up into the analyzer's vRouter"
        else:
            assert all(y < fabric_y for _, y in points), "a local analyzer's copies never reach the fabric"
            assert any(inside(start, vrouter[target.compute]) and inside(end, vrouter[target.compute])
                       and start[1] == end[1] for start, end in segments), "across the vRouter to the analyzer"

    sizes = page.locator("svg.topology text").evaluate_all(
        "texts => texts.map(t => parseFloat(getComputedStyle(t).fontSize)"
        " * t.ownerSVGElement.getBoundingClientRect().width / t.ownerSVGElement.viewBox.baseVal.width)")
    assert sizes and min(sizes) >= MIN_TEXT_PX, sorted(sizes)[:5]
    for compute in lab.topology.computes:
        within_viewport(page, page.locator(f"rect.topo-compute[data-compute='{compute.name}']"))
    page.screenshot(path=ARTIFACTS / "ui-topology-copy-paths.png", full_page=True)


# --- 4. what the analyzer receives, and each packet's direction --------------------------------

ECHO = re.compile(r"Echo \(ping\) (request|reply)\s+id=0x[0-9a-f]+, seq=(\d+)/")
WATCH_TIMEOUT_S = 30


def watch_copies(lab, command: str, target: Target, pairs: int = 4,
                 kinds: tuple[str, ...] = ("request", "reply")) -> dict[tuple[int, str], list[list[str]]]:
    """Run the panel's analyzer-side tshark command as pasted (the CLI for `mirrorlab`) while
    the target VM pings its peer every 0.2 s; once it has printed a first echo copy (tshark is
    surely capturing then), the lines it prints for the next `pairs` echoes until each of them
    has shown its copies of `kinds`, each line split into its fields:
    {(sequence number, "request"|"reply"): [fields, ...]}, whatever kinds they are. Copies made
    before tshark was ready never count; every later one must show up."""
    words = shlex.split(command)
    assert words[0] == "mirrorlab"
    lines: queue.Queue[str | None] = queue.Queue()
    with tempfile.TemporaryFile("w+") as errors:
        tshark = subprocess.Popen([sys.executable, "-m", "mirrorlab.cli", *words[1:], "-a", "duration:60"],
                                  env=lab.env, stdout=subprocess.PIPE, stderr=errors, text=True)
        def forward_lines() -> None:  # tshark's lines, then None when it ends
            for line in tshark.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=forward_lines, daemon=True).start()
        pinging = lab.shell_popen(target.vm, f"ping -i 0.2 -c {WATCH_TIMEOUT_S * 5} {target.peer.ip}")
        seen: dict[tuple[int, str], list[list[str]]] = {}
        wanted: set[tuple[int, str]] | None = None
        printed = []
        deadline = time.monotonic() + WATCH_TIMEOUT_S
        try:
            while wanted is None or not wanted <= seen.keys():
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    line = None
                if line is None or time.monotonic() > deadline:
                    errors.seek(0)
                    raise AssertionError(f"{command}\nprinted {printed!r} in {WATCH_TIMEOUT_S} s; wanted "
                                         f"{sorted(wanted or ())}; stderr: {errors.read()}")
                printed.append(line)
                echo = ECHO.search(line)
                if echo is None:
                    continue
                kind, sequence = echo.group(1), int(echo.group(2))
                if wanted is None:
                    wanted = {(n, k) for n in range(sequence + 1, sequence + 1 + pairs) for k in kinds}
                seen.setdefault((sequence, kind), []).append(line.rstrip("\n").split("\t"))
        finally:
            pinging.kill()
            tshark.terminate()
            tshark.wait(timeout=10)
    window = {sequence for sequence, _ in wanted}
    return {key: seen[key] for key in sorted(seen) if key[0] in window}


def test_capture_screen_says_what_the_analyzer_receives_and_its_commands_decode_it(lab, page, target):
    """The panel shows the capture's destination and wrapper (the Juniper header over UDP 8099,
    its mirror index), path and direction line from the API; its Copy button copies the
    command; the analyzer-side command, run in the analyzer VM as pasted while the VM pings,
    decodes every copy once tshark runs: juniper.vn.src names the network (its fq-name) on the requests the
    VM sent, juniper.vn.dst on the replies delivered to it, each exactly once; the pcap command,
    run on the pcapng the screen downloads, shows Outbound and Inbound. The packet details say
    each packet's direction."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.api_url)
    capture = open_capture_screen(page, lab, target)
    view = capture["analyzer_view"]
    panel = page.get_by_role("region", name="What the analyzer receives")
    expect(panel.locator("#receives-destination")).to_have_text(
        f"{capture['mirror_to']['analyzer_ip_address']} udp 8099, Juniper header")
    expect(panel.locator("#receives-wrapper")).to_have_text(f"Juniper header over UDP 8099 \u00b7 {view['tag']}")
    assert re.fullmatch(r"mirror index \d+ \(UDP source ports \d+-\d+ from 192\.168\.100\.\d+, vRouter "
                        + target.compute + r"\)", view["tag"]), view["tag"]
    expect(panel.locator("#receives-path")).to_have_text(view["path_text"])
    assert view["path_text"].startswith(f"{target.vm} \u2192 vRouter {target.compute}")
    expect(panel.locator("#receives-directions")).to_have_text(view["directions"])
    expect(panel.locator("pre").nth(0)).to_have_text(view["tshark_pcap"])
    expect(panel.locator("pre").nth(1)).to_have_text(view["tshark_analyzer"])
    panel.get_by_role("button", name=re.compile("^Copy: Watch")).click()
    expect(panel.locator(".copy-result").nth(1)).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == view["tshark_analyzer"]

    copies = watch_copies(lab, panel.locator("pre").nth(1).inner_text(), target)
    assert {kind for _, kind in copies} == {"request", "reply"}
    network = f"default-domain:{lab.topology.name}:{target.interface.network}"
    for (sequence, kind), lines in copies.items():
        assert len(lines) == 1, f"seq {sequence} {kind}: {lines}"
        vn_src, vn_dst, source, destination, _ = lines[0]
        if kind == "request":  # what the VM sent: an ingress copy
            assert (vn_src, vn_dst, source, destination) == (network, "", str(target.interface.ip),
                                                             str(target.peer.ip)), lines
        else:  # what was delivered to it: an egress copy
            assert (vn_src, vn_dst, source, destination) == ("", network, str(target.peer.ip),
                                                             str(target.interface.ip)), lines

    expect(page.locator(".packet-table tbody tr").filter(has_text="Echo (ping) reply").first).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download pcapng").click()
    assert download.value.suggested_filename == view["pcap_file"] == shlex.split(view["tshark_pcap"])[2]
    directory = ARTIFACTS / "ui-receives"
    directory.mkdir(exist_ok=True)
    download.value.save_as(directory / download.value.suggested_filename)
    read = subprocess.run(shlex.split(panel.locator("pre").nth(0).inner_text()), cwd=directory,
                          capture_output=True, text=True, check=True).stdout
    pings = [line.split("\t") for line in read.splitlines() if "Echo (ping)" in line]
    assert {(flags, info.split()[2]) for _, flags, _, _, info in pings} == \
        {("0x00000002", "request"), ("0x00000001", "reply")}, read

    shown = lab.cli("capture", "show", str(capture["id"])).stdout.splitlines()
    assert f"[{view['destination']}]" in shown[0]
    assert shown[1:] == [f"  copies:     Juniper header over UDP 8099, {view['tag']}", f"  path:       {view['path_text']}",
                         f"  directions: {view['directions']}",
                         f"  the pcap:   mirrorlab capture pcap {capture['id']} -o {view['pcap_file']} && "
                         f"{view['tshark_pcap']}", f"  on {view['receiver']}: {view['tshark_analyzer']}"]

    page.locator(".packet-table tbody tr").filter(has_text="Echo (ping) request").first.click()
    direction = page.locator(".packet-direction")
    expect(direction).to_have_text(f"Direction from {target.vm} \u2014 ingress: the monitored VM sent it (pcapng: Outbound)")
    page.screenshot(path=ARTIFACTS / "ui-capture-receives.png", full_page=True)
    page.locator(".packet-table tbody tr").filter(has_text="Echo (ping) reply").first.click()
    expect(direction).to_have_text(f"Direction to {target.vm} \u2014 egress: it was delivered to the monitored VM "
                                   "(pcapng: Inbound)")


def test_advanced_destination_sends_mirror_to_and_the_probe_receives_that_vxlan(lab, page, target):
    """The capture screen's Advanced destination sends Contrail's mirror_to: a VNI out of range
    is refused, the controller's words next to the VNI field and no capture started; static
    VXLAN with VNI 5000 to the fabric analyzer then runs with that mirror_to in the API; the
    panel says so, and its command, run on the fabric analyzer as pasted while the VM pings,
    shows VNI 5000 on every copy of the next echo pairs (requests from the VM, replies to it).
    The Topology page draws the copies along the fabric into the fabric analyzer and lists the
    destination."""
    probe = lab.topology.fabric_analyzers[0]
    open_capture_screen(page, lab, target)
    page.locator("#capture-destination summary").click()
    page.get_by_label("Next hop").select_option("static")
    expect(page.get_by_label("Juniper header")).not_to_be_checked()
    expect(page.get_by_label("VTEP address")).to_have_value(str(probe.ip))
    expect(page.get_by_label("VTEP MAC")).to_have_value(probe.mac)
    page.get_by_label("VNI").fill("0")
    page.get_by_role("button", name="Capture to this destination").click()
    expect(page.locator("#destination-static_nh_header-vni-error")).to_have_text("0 is out of range (1..16777215)")
    expect(page.get_by_label("VNI")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#capture-status")).to_have_text("Not capturing")
    assert not [c for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()
                if c["interface"] == target.port]
    page.screenshot(path=ARTIFACTS / "ui-destination-refused.png", full_page=True)

    page.get_by_label("VNI").fill("5000")
    page.get_by_role("button", name="Capture to this destination").click()
    expect(page.locator("#capture-status")).to_have_text("Capturing", timeout=START_TIMEOUT_MS)
    expect(page.locator("#destination-static_nh_header-vni-error")).to_be_empty()
    [capture] = [c for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()
                 if c["interface"] == target.port]
    assert capture["analyzer"] == probe.name
    assert {k: capture["mirror_to"][k] for k in ("nh_mode", "juniper_header", "static_nh_header")} == {
        "nh_mode": "static", "juniper_header": False,
        "static_nh_header": {"vtep_dst_ip_address": str(probe.ip), "vtep_dst_mac_address": probe.mac, "vni": 5000}}
    view = capture["analyzer_view"]
    panel = page.get_by_role("region", name="What the analyzer receives")
    expect(panel.locator("#receives-destination")).to_have_text(f"static VXLAN 5000 to {probe.ip}")
    expect(panel.locator("#receives-wrapper")).to_have_text(f"VXLAN VNI 5000 \u00b7 {view['tag']}")
    expect(panel.locator("#receives-path")).to_have_text(
        f"{target.vm} \u2192 vRouter {target.compute} \u2192 fabric {lab.topology.fabric_bridge} \u2192 "
        f"{probe.name} {probe.ip} (fabric analyzer)")
    expect(panel.get_by_role("button", name=f"Copy: Watch the copies arrive, on the fabric analyzer {probe.name}")).to_be_visible()
    command = panel.locator("pre").nth(1).inner_text()
    assert shlex.split(command)[:3] == ["mirrorlab", "exec", probe.name]
    page.screenshot(path=ARTIFACTS / "ui-capture-static-vxlan.png", full_page=True)

    copies = watch_copies(lab, command, target)
    assert {kind for _, kind in copies} == {"request", "reply"}
    for (sequence, kind), lines in copies.items():
        assert len(lines) == 1, f"seq {sequence} {kind}: {lines}"
        vni, source, destination, _ = lines[0]
        addresses = (target.interface.ip, target.peer.ip) if kind == "request" else (target.peer.ip, target.interface.ip)
        assert (vni, source, destination) == ("5000", *map(str, addresses)), lines

    topology = page.context.new_page()  # leaving the capture screen would stop its capture
    topology.goto(f"{lab.api_url}/#/topology")
    route = topology.locator(f"g.topo-copy[data-capture='{capture['id']}'] path")
    expect(route).to_have_count(1)
    end = path_points(route.get_attribute("d"))[-1]
    probe_box = svg_box(topology, f"g.topo-probe[data-fabric-analyzer='{probe.name}'] rect")
    assert inside(end, probe_box), (end, probe_box)
    assert probe_box["y"] > svg_box(topology, "line.topo-fabric")["y"], "the fabric analyzer hangs below the fabric"
    expect(topology.get_by_role("table", name="Active mirroring")).to_contain_text(f"static VXLAN 5000 to {probe.ip}")
    topology.screenshot(path=ARTIFACTS / "ui-topology-static-vxlan.png", full_page=True)


def test_advanced_destination_nic_assisted_mirrors_what_the_vm_sends_to_the_fabric_analyzer(lab, page, target):
    """NIC-assisted with VLAN 100 from the Advanced destination: the API shows that mirror_to;
    the panel's command, run on the fabric analyzer as pasted while the VM pings a peer on
    another compute node, shows each request the VM sent tagged VLAN 100 with its network's
    label, and no reply (what is delivered to the VM never reaches the NIC)."""
    if target.peer.compute == target.compute:
        pytest.skip("NIC-assisted mirroring needs the peer on another compute node")
    open_capture_screen(page, lab, target)
    page.locator("#capture-destination summary").click()
    page.get_by_label("NIC-assisted").check()
    expect(page.get_by_label("VLAN", exact=True)).to_have_value("100")
    page.get_by_role("button", name="Capture to this destination").click()
    expect(page.locator("#capture-status")).to_have_text("Capturing", timeout=START_TIMEOUT_MS)
    [capture] = [c for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()
                 if c["interface"] == target.port]
    probe = lab.topology.fabric_analyzers[0]
    assert (capture["analyzer"], capture["mirror_to"]["nic_assisted_mirroring"],
            capture["mirror_to"]["nic_assisted_mirroring_vlan"]) == (probe.name, True, 100)
    panel = page.get_by_role("region", name="What the analyzer receives")
    expect(panel.locator("#receives-destination")).to_have_text(f"NIC-assisted VLAN 100 to {probe.name} {probe.ip}")
    expect(panel.locator("#receives-wrapper")).to_have_text(
        f"VLAN 100 tag, NIC-assisted \u00b7 mirrored by the fabric to {probe.name} {probe.ip}")
    label = str(lab.topology.network(target.interface.network).label)
    copies = watch_copies(lab, panel.locator("pre").nth(1).inner_text(), target, kinds=("request",))
    assert {kind for _, kind in copies} == {"request"}, copies
    for (sequence, _), lines in copies.items():
        assert [line[:4] for line in lines] == [["100", label, str(target.interface.ip), str(target.peer.ip)]], lines
    page.screenshot(path=ARTIFACTS / "ui-capture-nic-assisted.png", full_page=True)


# --- 5. narrow windows ---------------------------------------------------------------------------

@pytest.mark.parametrize("width", [*NARROW_WIDTHS, VIEWPORT["width"]])
def test_windows_800_1024_and_1400_wide_keep_everything_in_view(lab, browser, clean_lab, target, width):
    """The navigation collapses behind a Menu button in narrow windows (and opens and works);
    the Interfaces table shows its Action column without scrolling sideways and names on one line;
    the packet table keeps Info in view; the Topology scrolls sideways inside its card so every
    compute node can be brought into view; the page never scrolls sideways."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    narrow = width in NARROW_WIDTHS
    running = lab.http("POST", "/api/captures", json={"vrouter": target.compute, "interface": target.port})
    assert running.status_code == 201, running.text  # its chip widens the Mirroring column
    try:
        page.goto(f"{lab.api_url}/#/vrouters/{target.compute}/interfaces")
        sidebar, toggle = page.locator("#sidenav"), page.locator("#nav-toggle")
        rows = page.locator("table[aria-label='Interfaces'] tbody tr")
        expect(rows.first).to_be_visible()
        expect(page.locator(".chip-mirror")).to_have_count(1)
        if narrow:
            expect(sidebar).to_be_hidden()
            expect(toggle).to_be_visible()
        else:
            expect(toggle).to_be_hidden()
            assert sidebar.bounding_box()["width"] == SIDEBAR_PX
        for index in range(rows.count()):
            row = rows.nth(index)
            within_viewport(page, row.get_by_role("button", name=re.compile("^Actions for ")))
            name = row.locator("td").first.locator(".strong")
            lines = name.evaluate("node => { const r = document.createRange(); r.selectNodeContents(node);"
                                  " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }")
            assert lines == 1, f"{name.inner_text()} wraps onto {lines} lines"
        table = page.locator(".table-wrap").first
        assert table.evaluate("node => node.scrollWidth <= node.clientWidth"), "the Interfaces table scrolls sideways"
        no_page_overflow(page)
        page.screenshot(path=ARTIFACTS / f"ui-{width}-interfaces.png", full_page=True)
        if narrow:
            toggle.click()
            expect(sidebar).to_be_visible()
            page.screenshot(path=ARTIFACTS / f"ui-{width}-menu-open.png")
            sidebar.get_by_role("link", name="Topology").click()
            expect(sidebar).to_be_hidden()
        else:
            sidebar.get_by_role("link", name="Topology").click()
        expect(page.locator("#breadcrumb li").last).to_have_text("Topology")

        for compute in lab.topology.computes:
            box = page.locator(f"rect.topo-compute[data-compute='{compute.name}']")
            box.scroll_into_view_if_needed()
            within_viewport(page, box)
        scroller = page.locator(".topology-scroll")
        scrolls = scroller.evaluate("node => node.scrollWidth > node.clientWidth")
        expect(page.locator("#topology-scroll-hint")).to_have_text("wider than the window: scroll sideways"
                                                                   if scrolls else "")
        no_page_overflow(page)
        page.screenshot(path=ARTIFACTS / f"ui-{width}-topology.png", full_page=True)

        lab.http("DELETE", f"/api/captures/{running.json()['id']}")
        page.goto(f"{lab.api_url}/#/vrouters/{target.compute}/interfaces/{target.port}/capture")
        expect(page.locator("#capture-status")).to_have_text("Capturing", timeout=START_TIMEOUT_MS)
        # Link-local IPv6 addresses are the longest the table shows.
        peer = link_local(target.peer.mac)
        result = lab.shell(target.vm, f"ping -6 -c 1 -I {target.interface.name} {peer}")
        assert "1 received" in result.stdout, result.stdout
        request = page.locator(".packet-table tbody tr").filter(has_text="Echo (ping) request").filter(has_text=str(peer))
        expect(request).to_have_count(1)
        info = request.locator("td.info")
        within_viewport(page, info)
        assert info.bounding_box()["width"] >= 150, info.bounding_box()
        packets = page.locator(".packet-scroll")
        assert packets.evaluate("node => node.scrollWidth <= node.clientWidth"), "the packet table scrolls sideways"
        request.click()  # the details: layers and bytes side by side, or stacked when narrow
        expect(page.locator(".packet-direction")).to_contain_text(f"from {target.vm}")
        for pane in (".tree-pane", ".hex-dump"):
            within_viewport(page, page.locator(pane))
        assert page.locator(".tree-pane").bounding_box()["width"] >= 400, "the layers keep room to be read"
        for action in ("Download pcapng", "Stop", "Close"):
            within_viewport(page, page.get_by_role("button" if action != "Download pcapng" else "link",
                                                   name=action, exact=True))
        no_page_overflow(page)
        page.screenshot(path=ARTIFACTS / f"ui-{width}-capture.png", full_page=True)
        page.get_by_role("button", name="Close", exact=True).click()
        expect(page.locator("#breadcrumb li").last).to_have_text("Interfaces")
    finally:
        context.close()
    assert not script_errors, script_errors


# --- 6. the API docs, served by the API itself -----------------------------------------------

@pytest.mark.parametrize("path, rendered", [("/docs", ".swagger-ui .opblock"), ("/redoc", "[data-section-id]")])
def test_api_docs_render_from_the_api_alone(lab, page, path, rendered):
    """Swagger UI and ReDoc render the API's operations in Chromium while every request they
    make goes to the API itself (the browser is refused anything else, as offline)."""
    elsewhere = []

    def only_the_api(route):
        if route.request.url.startswith(lab.api_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_api)
    page.goto(f"{lab.api_url}{path}")
    expect(page.locator(rendered).first).to_be_visible(timeout=30_000)
    expect(page.locator("body")).to_contain_text("/api/captures/{capture_id}/pcap")
    page.screenshot(path=ARTIFACTS / f"ui-api{path.replace('/', '-')}.png")
    assert elsewhere == []
