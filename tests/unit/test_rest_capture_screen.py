"""The REST endpoints of the capture screen, on a real service and recorded pcap files
(FastAPI's TestClient; no vRouter is connected): filtered packets, packet details, and the
analyzer a one-click capture goes to."""
from __future__ import annotations

import struct

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether

from mirrorlab.controller import packettree, rest
from mirrorlab.controller.analyzerchoice import ANALYZER_RULE, preferred_analyzer
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER
from mirrorlab.controller.service import ControllerService
from mirrorlab.recorder import PCAP_HEADER
from mirrorlab.topofile import load

MAC1, MAC2 = "02:00:0a:01:01:0b", "02:00:0a:01:01:0c"
PING = bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.1.1.11", dst="10.1.1.12") / ICMP(id=7, seq=1))
ARP_ASK = bytes(Ether(src=MAC1, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.1.1.11", pdst="10.1.1.12"))
WEB = bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.1.1.11", dst="10.1.1.13") / TCP(dport=80))


def record(service: ControllerService, capture_id: int, frames: list[bytes]) -> None:
    """Write `frames` as the analyzer's pcap of capture `capture_id`, one a second from t=1000."""
    with open(service.pcap_path(service.capture(capture_id)), "wb") as pcap:
        pcap.write(PCAP_HEADER)
        for n, frame in enumerate(frames):
            pcap.write(struct.pack("<IIII", 1000 + n, 0, len(frame), len(frame)) + frame)


def test_filter_narrows_the_packets_and_keeps_their_numbers(client, service):
    """?filter= returns only matching packets, numbered as in the whole capture; next_after says
    where to continue; without a filter everything comes back as before."""
    capture = service.start_capture("compute1", "tap-vm1-0")
    record(service, capture.id, [ARP_ASK, PING, WEB, PING, ARP_ASK])
    url = f"/api/captures/{capture.id}/packets"
    everything = client.get(url).json()
    assert [p["index"] for p in everything["packets"]] == [1, 2, 3, 4, 5]
    assert everything["next_after"] == 5 and everything["total"] == 5
    icmp = client.get(url, params={"filter": "icmp and host 10.1.1.12"}).json()
    assert [(p["index"], p["protocol"]) for p in icmp["packets"]] == [(2, "ICMP"), (4, "ICMP")]
    assert icmp["next_after"] == 5 and icmp["total"] == 5
    first = client.get(url, params={"filter": "icmp or arp", "limit": 2}).json()
    assert [p["index"] for p in first["packets"]] == [1, 2] and first["next_after"] == 2
    rest_of = client.get(url, params={"filter": "icmp or arp", "after": 2}).json()
    assert [p["index"] for p in rest_of["packets"]] == [4, 5]
    assert client.get(url, params={"filter": "tcp port 80"}).json()["packets"][0]["index"] == 3
    assert client.get(url, params={"filter": ""}).json()["next_after"] == 5


def test_filtered_requests_read_at_most_the_scan_limit(client, service, monkeypatch):
    """A filter matching nothing reads a bounded number of packets per request and says how far
    it got, so the screen goes on where it stopped."""
    monkeypatch.setattr(rest, "FILTER_SCAN_LIMIT", 4)
    monkeypatch.setattr(rest, "FILTER_CHUNK", 2)
    capture = service.start_capture("compute1", "tap-vm1-0")
    record(service, capture.id, [ARP_ASK] * 9 + [PING])
    url = f"/api/captures/{capture.id}/packets"
    assert client.get(url, params={"filter": "icmp"}).json() == {"total": 10, "packets": [], "next_after": 4,
                                                                 "first_time": 1000.0}
    last = client.get(url, params={"filter": "icmp", "after": 8}).json()
    assert [p["index"] for p in last["packets"]] == [10] and last["next_after"] == 10


def test_a_bad_filter_is_a_400_naming_the_word_and_where(client, service):
    """The screen shows this message as it is."""
    capture = service.start_capture("compute1", "tap-vm1-0")
    refused = client.get(f"/api/captures/{capture.id}/packets", params={"filter": "icmp and hots 1.2.3.4"})
    assert refused.status_code == 400
    assert refused.json()["field"] == "filter"
    assert refused.json()["error"].startswith("bad filter: unknown word 'hots' at character 10")


def test_packet_details_give_bytes_and_the_layer_tree(client, service):
    """GET .../packets/N: the frame's bytes in hex and tshark's tree with byte offsets; an
    unknown number is a 404 saying how many there are."""
    capture = service.start_capture("compute1", "tap-vm1-0")
    record(service, capture.id, [ARP_ASK, PING])
    details = client.get(f"/api/captures/{capture.id}/packets/2").json()
    assert details["index"] == 2 and details["time"] == 1001.0
    assert bytes.fromhex(details["bytes"]) == PING and details["length"] == len(PING)
    assert [layer["field"] for layer in details["layers"]] == ["frame", "eth", "ip", "icmp"]
    icmp = details["layers"][3]
    assert icmp["children"][0] == {"label": "Type: 8 (Echo (ping) request)", "field": "icmp.type",
                                   "offset": 34, "length": 1, "children": []}
    for number in (0, 3):
        missing = client.get(f"/api/captures/{capture.id}/packets/{number}")
        assert missing.status_code == 404
        assert missing.json() == {"error": f"capture {capture.id} has no packet {number} "
                                           f"(it has 2, numbered from 1)", "field": "number"}


def test_packet_details_without_tshark_say_so(client, service, monkeypatch):
    """A missing tshark is a 503 with the reason, not a traceback."""
    monkeypatch.setattr(packettree, "TSHARK", "/nonexistent/tshark")
    capture = service.start_capture("compute1", "tap-vm1-0")
    record(service, capture.id, [PING])
    failed = client.get(f"/api/captures/{capture.id}/packets/1")
    assert failed.status_code == 503
    assert failed.json() == {"error": "packet details need tshark, which is not installed "
                                      "(apt-get install tshark)"}


def test_preferred_analyzer_follows_the_rule(client, service, monkeypatch):
    """The default analyzer while it is the only one; an instance someone launched once there is
    one; of several, the one the latest capture used."""
    url = "/api/analyzer-choice"
    assert client.get(url).json() == {"analyzer": DEFAULT_ANALYZER, "running": True, "rule": ANALYZER_RULE,
                                      "reason": "the default analyzer; no other instance is running"}
    monkeypatch.setattr(service, "_set_topology", lambda topology: setattr(service, "topology", topology) or [])
    monkeypatch.setattr(service.lab, "add_vm", lambda vm: None)
    service.create_analyzer("zeta", compute="compute2")
    chosen = client.get(url).json()
    assert (chosen["analyzer"], chosen["reason"]) == ("zeta", "the analyzer instance already running")
    service.create_analyzer("alpha", compute="compute3")
    chosen = client.get(url).json()
    assert (chosen["analyzer"], chosen["reason"]) == \
        ("alpha", "the first by name of the 2 running instances; none was used yet")
    service.start_capture("compute1", "tap-vm1-0", analyzer="alpha")
    used = service.start_capture("compute1", "tap-vm1-0", analyzer="zeta")
    service.start_capture("compute1", "tap-vm1-0")  # the default analyzer does not count
    chosen = client.get(url).json()
    assert (chosen["analyzer"], chosen["reason"]) == \
        ("zeta", f"the running instance the latest capture used (#{used.id})")


def test_without_any_analyzer_the_default_is_launched():
    """No analyzer running at all: the default one, to be launched by the capture."""
    choice = preferred_analyzer(load("topologies/default.yaml"), [])
    assert (choice.analyzer, choice.running) == (DEFAULT_ANALYZER, False)
    assert choice.reason == "the default analyzer, launched now; no analyzer instance is running"
