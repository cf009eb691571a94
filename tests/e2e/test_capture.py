"""End-to-end: interface packet capture (mirroring) on the real lab, through the REST API and CLI."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time

import httpx
import pytest
from scapy.all import ICMP, IP, Ether, rdpcap

from mirrorlab import InstalledFlow, UsageError
from mirrorlab.controller.pipeline import INGRESS_MIRROR
from tests.e2e.conftest import ARTIFACTS

DEFAULT_ANALYZER = "interface-packet-capture"
REMOTE_ANALYZER = "remote-analyzer"


def start(lab, **body) -> dict:
    """Start a capture through the API; return it."""
    response = lab.http("POST", "/api/captures", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def stop(lab, capture_id: int) -> dict:
    """Stop a capture through the API; return it."""
    response = lab.http("DELETE", f"/api/captures/{capture_id}")
    assert response.status_code == 200, response.text
    return response.json()


def packets(lab, capture_id: int) -> int:
    return lab.http("GET", f"/api/captures/{capture_id}").json()["packets"]


def settle(lab, capture_id: int, at_least: int) -> int:
    """Wait until the analyzer recorded `at_least` packets and then nothing more for half a
    second; return the count. Guests may add ARP or neighbour discovery frames of their own,
    so callers count the frames they sent in the pcap, not this total."""
    lab.wait_for(lambda: packets(lab, capture_id) >= at_least, what=f"{at_least} mirrored packets")
    counts = [packets(lab, capture_id)]

    def quiet() -> bool:
        time.sleep(0.5)
        counts.append(packets(lab, capture_id))
        return counts[-1] == counts[-2]

    lab.wait_for(quiet, what="the analyzer to stop receiving")
    return counts[-1]


def frames(lab, capture_id: int, tmp_path) -> list:
    """The frames of the capture's pcap, as downloaded from the API."""
    response = lab.http("GET", f"/api/captures/{capture_id}/pcap")
    assert response.status_code == 200
    path = tmp_path / f"capture-{capture_id}.pcap"
    path.write_bytes(response.content)
    return rdpcap(str(path))


def pings(frame_list) -> list[tuple[str, str, int, int]]:
    """(source IP, destination IP, ICMP type, sequence) of the ICMP echo frames."""
    return [(f[IP].src, f[IP].dst, f[ICMP].type, f[ICMP].seq)
            for f in frame_list if f.haslayer(ICMP) and f[ICMP].type in (0, 8)]


def analyzer_vm(lab, name: str) -> dict:
    return next(a for a in lab.http("GET", "/api/analyzers").json() if a["name"] == name)


def capture_flows(lab, compute: str, capture_id: int | None = None) -> list[InstalledFlow]:
    """The vRouter's flows owned by captures (or by one capture)."""
    return [f for f in lab.flows(compute)
            if f.owner == "capture" and capture_id in (None, f.capture)]


@pytest.fixture(scope="module")
def analyzers(lab):
    """The default analyzer (made by a first capture) and a user-launched one on compute3."""
    lab.stop_all_captures()
    if not any(a["name"] == REMOTE_ANALYZER for a in lab.http("GET", "/api/analyzers").json()):
        created = lab.http("POST", "/api/analyzers", json={"name": REMOTE_ANALYZER, "compute": "compute3"})
        assert created.status_code == 201, created.text
        assert created.json()["compute"] == "compute3"
    if not any(a["name"] == DEFAULT_ANALYZER for a in lab.http("GET", "/api/analyzers").json()):
        stop(lab, start(lab, vm="vm1")["id"])
    lab.shell("vm1", "ping -c 1 -W 1 10.1.1.12; ping -c 1 -W 1 10.1.1.13", check=False)  # warm ARP
    return lab


def test_default_analyzer_is_created_by_the_first_capture(analyzers, clean_lab, tmp_path):
    """Without an analyzer, the first capture launches interface-packet-capture on the monitored
    interface's compute node and mirrors at once."""
    lab = clean_lab
    if any(a["name"] == DEFAULT_ANALYZER for a in lab.http("GET", "/api/analyzers").json()):
        assert lab.http("DELETE", f"/api/analyzers/{DEFAULT_ANALYZER}").status_code == 200
    capture = start(lab, vrouter="compute1", interface="tap-vm1-0")
    assert capture["analyzer"] == DEFAULT_ANALYZER and capture["direction"] == "both"
    assert capture["state"] == "active" and capture["started_at"]
    default = analyzer_vm(lab, DEFAULT_ANALYZER)
    assert default["compute"] == "compute1" and default["network"] == "svc-vn-left"
    assert default["ip"].startswith("10.250.2.")
    lab.shell("vm1", "ping -c 2 -i 0.2 10.1.1.12")
    settle(lab, capture["id"], 4)
    assert len(pings(frames(lab, capture["id"], tmp_path))) == 4


@pytest.mark.parametrize("analyzer", [DEFAULT_ANALYZER, REMOTE_ANALYZER], ids=["local", "remote"])
@pytest.mark.parametrize("direction", ["ingress", "egress", "both"])
def test_direction_gives_exactly_the_requests_replies_or_both(analyzers, clean_lab, tmp_path,
                                                             direction, analyzer):
    """ping -c 5 -s 1200 from vm1: ingress = the 5 requests, egress = the 5 replies, both = all
    10, byte for byte as vm1 sent and received them, no duplicates, nothing of other VMs."""
    lab = clean_lab
    own_view = f"/tmp/mirrorlab-e2e-vm1-{direction}-{analyzer}.pcap"
    sniffer = lab.shell_popen("vm1", f"timeout 8 tcpdump -n -i vm1-eth0 -w {own_view} icmp")
    time.sleep(1)
    capture = start(lab, vrouter="compute1", interface="vm1-eth0", direction=direction,
                    analyzer=analyzer)
    assert capture["interface"] == "tap-vm1-0" and capture["analyzer"] == analyzer
    lab.shell("vm1", "ping -c 5 -s 1200 -i 0.2 10.1.1.12")
    expected = {"ingress": 5, "egress": 5, "both": 10}[direction]
    assert settle(lab, capture["id"], expected) >= expected
    stop(lab, capture["id"])
    sniffer.wait(timeout=15)
    mirrored = frames(lab, capture["id"], tmp_path)
    types = {"ingress": {8}, "egress": {0}, "both": {0, 8}}[direction]
    seen_by_vm1 = [bytes(f) for f in rdpcap(own_view) if f[ICMP].type in types]
    assert sorted(bytes(f) for f in mirrored if f.haslayer(ICMP)) == sorted(seen_by_vm1)
    icmp = pings(mirrored)
    assert len(icmp) == expected == len(set(icmp))
    assert all(len(f) == 14 + 20 + 8 + 1200 for f in mirrored if f.haslayer(ICMP))
    vm1_mac = lab.interface("vm1").mac
    # Everything recorded is vm1's: sent by it, sent to it, or flooded to it (multicast).
    assert all(vm1_mac in (f[Ether].src, f[Ether].dst) or int(f[Ether].dst[:2], 16) & 1
               for f in mirrored)
    # Each packet's direction, seen from vm1: the requests it sent are ingress ("Outbound" in
    # the pcapng), the replies delivered to it egress ("Inbound").
    tshark = subprocess.run(["tshark", "-r", str(tmp_path / f"capture-{capture['id']}.pcap"), "-Y",
                             "icmp", "-T", "fields", "-e", "icmp.type", "-e", "frame.packet_flags_direction"],
                            capture_output=True, text=True)
    assert tshark.returncode == 0, tshark.stderr
    flags = {"8": "0x00000002", "0": "0x00000001"}
    lines = [line.split("\t") for line in tshark.stdout.splitlines()]
    assert len(lines) == expected and all(flags[kind] == flag for kind, flag in lines), lines
    listed = lab.http("GET", f"/api/captures/{capture['id']}/packets").json()["packets"]
    echoes = [(p["summary"].split(" id=")[0], p["direction"], p["direction_text"]) for p in listed
              if p["summary"].startswith("Echo (ping)")]
    assert sorted(set(echoes)) == sorted(
        {8: ("Echo (ping) request", "ingress", "from vm1"),
         0: ("Echo (ping) reply", "egress", "to vm1")}[kind] for kind in types)
    classic = lab.http("GET", f"/api/captures/{capture['id']}/pcap", params={"format": "pcap"})
    assert classic.content[:4] == bytes.fromhex("d4c3b2a1")
    (tmp_path / "classic.pcap").write_bytes(classic.content)
    assert [bytes(f) for f in rdpcap(str(tmp_path / "classic.pcap"))] == [bytes(f) for f in mirrored]
    os.unlink(own_view)


def test_copies_reach_only_the_analyzer(analyzers, clean_lab):
    """While vm1 is mirrored, every other VM sees exactly its normal traffic and no copy (no
    overlay frame, no Juniper-header UDP)."""
    lab = clean_lab
    sniffers = {vm: lab.shell_popen(vm, f"timeout 7 tcpdump -n -e -i {vm}-eth0 2>/dev/null")
                for vm in ("vm2", "vm3", "vm4", "vm5")}
    time.sleep(1)
    capture = start(lab, vm="vm1", analyzer=REMOTE_ANALYZER)
    start(lab, vm="vm1")
    lab.shell("vm1", "ping -c 5 -i 0.2 10.1.1.12")
    settle(lab, capture["id"], 10)
    seen = {vm: process.communicate(timeout=15)[0] for vm, process in sniffers.items()}
    assert seen["vm2"].count("ICMP echo request") == 5
    assert seen["vm2"].count("ICMP echo reply") == 5
    for vm, text in seen.items():
        assert "MPLS" not in text and "8847" not in text and ".8099:" not in text, vm
        if vm != "vm2":
            assert "ICMP echo" not in text, vm


def test_monitoring_the_analyzer_itself_does_not_loop(analyzers, clean_lab, tmp_path):
    """A capture of the analyzer's own interface, sent to that analyzer, records each packet
    once and stops growing when the traffic stops."""
    lab = clean_lab
    local, remote = analyzer_vm(lab, DEFAULT_ANALYZER), analyzer_vm(lab, REMOTE_ANALYZER)
    capture = start(lab, vrouter=local["compute"], interface=local["interface"],
                    analyzer=DEFAULT_ANALYZER)
    lab.shell(local["vm"], f"ping -c 5 -i 0.2 {remote['ip']}")
    settle(lab, capture["id"], 10)
    time.sleep(1)
    icmp = pings(frames(lab, capture["id"], tmp_path))
    assert sorted(t for _s, _d, t, _q in icmp) == [0] * 5 + [8] * 5
    assert len(icmp) == len(set(icmp))


def test_several_captures_at_once(analyzers, clean_lab, tmp_path):
    """One interface to two analyzers, and captures on every compute node, all at once."""
    lab = clean_lab
    to_default = start(lab, vm="vm1", direction="ingress")
    to_remote = start(lab, vm="vm1", direction="ingress", analyzer=REMOTE_ANALYZER)
    on_compute2 = start(lab, vm="vm4", direction="egress", analyzer=DEFAULT_ANALYZER)
    on_compute3 = start(lab, vm="vm5", analyzer=REMOTE_ANALYZER)
    lab.shell("vm1", "ping -c 3 -i 0.2 10.1.1.12")
    lab.shell("vm4", "ping -c 4 -i 0.2 10.2.2.15")
    for capture, count in ((to_default, 3), (to_remote, 3), (on_compute2, 4), (on_compute3, 8)):
        settle(lab, capture["id"], count)
        icmp = pings(frames(lab, capture["id"], tmp_path))
        assert len(icmp) == count == len(set(icmp)), capture
    listed = {c["id"] for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()}
    assert listed == {to_default["id"], to_remote["id"], on_compute2["id"], on_compute3["id"]}
    interfaces = {i["name"]: i for i in lab.http("GET", "/api/vrouters/compute1/interfaces").json()}
    assert sorted(interfaces["tap-vm1-0"]["captures"]) == sorted([to_default["id"], to_remote["id"]])


def test_interface_and_vrouter_limits(analyzers, clean_lab):
    """Eight captures fit on one interface; the ninth is refused with a clear error."""
    lab = clean_lab
    for _ in range(8):
        start(lab, vm="vm3", direction="egress")
    refused = lab.http("POST", "/api/captures", json={"vm": "vm3"})
    assert refused.status_code == 409
    assert refused.json()["error"] == ("interface 'tap-vm3-0' has 8 active captures already, the most "
                                       "one interface holds; stop one first")


def test_stop_restores_the_flow_tables_and_silences_the_analyzer(analyzers, clean_lab):
    """Stop removes exactly the capture's flows on both vRouters; nothing more is recorded."""
    lab = clean_lab
    computes = [c.name for c in lab.topology.computes]
    before = {c: lab.flows(c) for c in computes}
    capture = start(lab, vm="vm1", analyzer=REMOTE_ANALYZER)
    assert len(capture_flows(lab, "compute1", capture["id"])) == 2  # ingress + egress
    assert len(capture_flows(lab, "compute3", capture["id"])) == 1  # delivery to the analyzer
    lab.shell("vm1", "ping -c 2 -i 0.2 10.1.1.12")
    recorded = settle(lab, capture["id"], 4)
    stopped = stop(lab, capture["id"])
    assert stopped["state"] == "stopped" and stopped["stopped_at"]
    assert {c: lab.flows(c) for c in computes} == before
    lab.shell("vm1", "ping -c 3 -i 0.2 10.1.1.12")
    time.sleep(1)
    assert packets(lab, capture["id"]) == recorded
    assert stop(lab, capture["id"])["state"] == "stopped"  # stopping twice is harmless


def test_forwarding_is_unaffected_while_captures_start_and_stop(analyzers, clean_lab):
    """A fast ping loses nothing and stays in order while captures come and go on its path."""
    lab = clean_lab
    pinger = lab.shell_popen("vm1", "ping -c 300 -i 0.02 -W 1 10.1.1.12")
    for round_number in range(6):
        ids = [start(lab, vm="vm1")["id"], start(lab, vm="vm2", analyzer=REMOTE_ANALYZER)["id"]]
        time.sleep(0.2)
        for capture_id in ids:
            stop(lab, capture_id)
    out, _ = pinger.communicate(timeout=60)
    assert "300 received" in out, out
    assert "DUP!" not in out
    sequence = [int(s) for s in re.findall(r"icmp_seq=(\d+)", out)]
    assert sequence == sorted(sequence) == list(range(1, 301))


def test_captures_survive_a_controller_kill(analyzers, clean_lab, tmp_path):
    """kill -9 of the controller: the active capture stays active, its flows are reconciled,
    a stopped capture's orphaned flow is removed, and stop still works."""
    lab = clean_lab
    baseline = {c.name: lab.flows(c.name) for c in lab.topology.computes}
    active = start(lab, vm="vm1", analyzer=REMOTE_ANALYZER)
    stopped = stop(lab, start(lab, vm="vm3")["id"])
    with_capture = {c: lab.flows(c) for c in baseline}
    pid = json.loads(lab.cli("status", "--json").stdout)["controller"]["pid"]
    os.kill(pid, signal.SIGKILL)
    orphan = (f"cookie=0x2{stopped['id']:06x}00000001,table={INGRESS_MIRROR},priority=100,in_port=3,"
              f"actions=goto_table:{INGRESS_MIRROR + 1}")
    lab.netns("ovs-ofctl", "-O", "OpenFlow13", "add-flow", "vr-compute1", orphan)
    lab.shell("vm1", "ping -c 3 -i 0.2 10.1.1.12")  # mirrored while the controller is down
    lab.cli("controller", "start")
    lab.wait_for(lambda: {c: lab.flows(c) for c in baseline} == with_capture, what="reconciliation")
    assert lab.http("GET", f"/api/captures/{active['id']}").json()["state"] == "active"
    assert capture_flows(lab, "compute1", stopped["id"]) == []
    settle(lab, active["id"], 6)
    stop(lab, active["id"])
    assert {c: lab.flows(c) for c in baseline} == baseline


def test_captures_started_while_vrouters_reconnect_are_all_answered(analyzers, clean_lab):
    """Captures start and stop while every vRouter drops its OpenFlow connection, reconnects and
    is reconciled, again and again: every request is answered, at once or with a 503 naming the
    vRouter that could not confirm, and the tables end as they began."""
    lab = clean_lab
    computes = [c.name for c in lab.topology.computes]
    baseline = {c: lab.flows(c) for c in computes}
    done, answered, unconfirmed, failures = threading.Event(), [], [], []

    def checked(response: httpx.Response) -> httpx.Response:
        if response.status_code == 503:
            assert "vrouter 'compute" in response.json()["error"], response.text
            unconfirmed.append(response.json()["error"])
        else:
            assert response.status_code in (200, 201), response.text
        return response

    def churn() -> None:
        with httpx.Client(base_url=lab.api_url, timeout=30) as client:
            while not done.is_set():
                try:
                    started = checked(client.post("/api/captures",
                                                  json={"vm": "vm1", "analyzer": REMOTE_ANALYZER}))
                    if started.status_code == 201:
                        checked(client.delete(f"/api/captures/{started.json()['id']}"))
                    answered.append(started.status_code)
                except Exception as err:  # a hung controller shows as a timeout here
                    failures.append(repr(err))
                    return

    worker = threading.Thread(target=churn)
    worker.start()
    for _ in range(6):
        for compute in computes:
            lab.netns("ovs-appctl", "bridge/reconnect", f"vr-{compute}")
        time.sleep(0.5)
    done.set()
    worker.join(timeout=90)
    assert not worker.is_alive() and failures == [] and len(answered) > 10, (failures, len(answered))
    lab.wait_for(lambda: all(c["connected"] for c in lab.http("GET", "/api/vrouters").json()),
                 what="vRouters to reconnect")
    assert {c: lab.flows(c) for c in computes} == baseline
    # A capture whose flows are in place is reported active; stopped ones left nothing behind.
    assert lab.http("GET", "/api/captures", params={"state": "active"}).json() == []


@pytest.mark.parametrize("body, status, error", [
    ({"vrouter": "nope", "interface": "tap-vm1-0"}, 404,
     "unknown vrouter 'nope' (known: compute1, compute2, compute3)"),
    ({"vrouter": "compute1", "interface": "tap-vm2-0"}, 404,
     "unknown interface 'tap-vm2-0' on vrouter 'compute1' (known: tap-vm1-0, tap-vm3-0"),
    ({"vm": "vm1", "direction": "sideways"}, 400, "bad direction 'sideways' (use ingress, egress or both)"),
    ({"vm": "vm1", "analyzer": "ghost"}, 404, "unknown analyzer 'ghost' (known: "),
    ({"vm": "vm1", "colour": "red"}, 400, "colour: Extra inputs are not permitted"),
    ({"vm": 42}, 400, "vm: Input should be a valid string"),
    ({"interface": "tap-vm1-0"}, 400, "missing 'vrouter'"),
])
def test_bad_capture_requests_get_clear_json_errors(analyzers, clean_lab, body, status, error):
    """Each bad request gets its status and a JSON error naming the problem; nothing starts."""
    lab = clean_lab
    response = lab.http("POST", "/api/captures", json=body)
    assert response.status_code == status
    assert response.json()["error"].startswith(error)
    assert lab.http("GET", "/api/captures", params={"state": "active"}).json() == []


def test_malformed_requests_never_crash_the_server(analyzers, clean_lab):
    """Broken JSON, unknown ids and bad paths are 4xx with JSON bodies; the API keeps serving."""
    lab = clean_lab
    broken = lab.http("POST", "/api/captures", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "error" in broken.json()
    assert lab.http("GET", "/api/captures/99999").status_code == 404
    assert lab.http("GET", "/api/captures/abc").status_code == 400
    assert lab.http("DELETE", "/api/analyzers/ghost").json() == {"error": "unknown analyzer 'ghost'",
                                                               "field": "name"}
    assert lab.http("GET", "/api/vrouters/nope").status_code == 404
    spec = lab.http("GET", "/openapi.json").json()
    assert {"/api/captures", "/api/captures/{capture_id}/pcap", "/api/analyzers"} <= set(spec["paths"])
    assert lab.http("GET", "/api/vrouters").status_code == 200


def test_analyzer_in_use_cannot_be_deleted(analyzers, clean_lab):
    """Deleting an analyzer an active capture uses is refused; once stopped it can go."""
    lab = clean_lab
    created = lab.http("POST", "/api/analyzers", json={"name": "short-lived", "compute": "compute2",
                                                      "network": "blue"})
    assert created.status_code == 201, created.text
    assert created.json()["network"] == "blue"
    capture = start(lab, vm="vm2", analyzer="short-lived")
    refused = lab.http("DELETE", "/api/analyzers/short-lived")
    assert refused.status_code == 409 and "stop them first" in refused.json()["error"]
    stop(lab, capture["id"])
    vm = created.json()["vm"]
    def port_exists() -> bool:
        return lab.netns("test", "-e", f"/sys/class/net/tap-{vm}-0", check=False).returncode == 0

    assert port_exists()
    assert lab.http("DELETE", "/api/analyzers/short-lived").status_code == 200
    assert all(a["name"] != "short-lived" for a in lab.http("GET", "/api/analyzers").json())
    assert not port_exists()
    with pytest.raises(UsageError, match=f"unknown vm '{vm}'"):  # the VM is gone
        lab.shell(vm, "true", check=False)
    assert lab.http("POST", "/api/analyzers", json={"name": REMOTE_ANALYZER}).status_code == 409


def test_cli_capture_session(analyzers, clean_lab, tmp_path):
    """The CLI drives a whole capture: start --vm, show, list, pcap -o, stop, analyzer list."""
    lab = clean_lab
    started = json.loads(lab.cli("capture", "start", "--vm", "vm1", "--direction", "ingress",
                                 "--json").stdout)
    lab.shell("vm1", "ip neigh flush dev vm1-eth0")  # so vm1 ARPs, as it does when its entry goes stale
    lab.shell("vm1", "ping -c 3 -i 0.2 10.1.1.12")
    recorded = settle(lab, started["id"], 4)
    shown = lab.cli("capture", "show", str(started["id"])).stdout
    assert f"capture {started['id']}: active" in shown
    shown_count = int(re.search(r" (\d+) packets, \d+ bytes", shown).group(1))
    assert recorded <= shown_count <= packets(lab, started["id"])
    assert str(started["id"]) in lab.cli("capture", "list").stdout
    listed = lab.cli("capture", "packets", str(started["id"]), "--filter", "icmp").stdout
    assert listed.count("from vm1") == 3 and "to vm1" not in listed, listed
    classic = tmp_path / "cli-classic.pcap"
    lab.cli("capture", "pcap", str(started["id"]), "--classic", "-o", str(classic))
    assert classic.read_bytes()[:4] == bytes.fromhex("d4c3b2a1")
    pcap = tmp_path / "cli.pcapng"
    lab.cli("capture", "pcap", str(started["id"]), "-o", str(pcap))
    assert pcap.read_bytes()[:4] == bytes.fromhex("0a0d0d0a")
    decoded = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "_ws.col.Protocol",
                              "-e", "_ws.col.Info"], capture_output=True, text=True, check=True).stdout
    lines = decoded.splitlines()
    requests = [line for line in lines if "Echo (ping) request" in line]
    housekeeping = [line for line in lines if line.split("\t")[0] in ("ARP", "ICMPv6")]
    assert len(requests) == 3 and any(line.startswith("ARP\tWho has 10.1.1.12?") for line in housekeeping)
    assert len(requests) + len(housekeeping) == len(lines)  # nothing but vm1's own
    assert "stopped" in lab.cli("capture", "stop", str(started["id"])).stdout
    assert DEFAULT_ANALYZER in lab.cli("analyzer", "list").stdout
    bad = lab.cli("capture", "start", "nope", "tap-vm1-0", check=False)
    assert bad.returncode == 2 and "unknown vrouter 'nope'" in bad.stderr
    (ARTIFACTS / "cli-capture.pcap").write_bytes(pcap.read_bytes())
