"""Each packet's direction, seen from the monitored VM: marked in the copy by the mirror table
that made it, recorded by the recorder, served by the REST API and written into pcapng's
enhanced packet block flags (read back by tshark)."""
from __future__ import annotations

import struct
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from mirrorlab.controller.mirroring import analyzers, plan_analyzer, plan_capture
from mirrorlab.controller.pcapfile import PcapIndex
from mirrorlab.pcap import GLOBAL_HEADER, PCAP_HEADER, PCAPNG_HEADER, RECORD_HEADER, pcapng_packet
from mirrorlab.recorder import Recorder, capture_file, directions_file
from mirrorlab.topofile import load
from mirrorlab.testing.flowsim import LabSim
from tests.unit.helpers import ANALYZER_INTERFACE, copy_of, iface, ip_frame

MAC1, MAC2 = "02:00:0a:01:01:0b", "02:00:0a:01:01:0c"
REQUEST = bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.1.1.11", dst="10.1.1.12") / ICMP(type=8))
REPLY = bytes(Ether(src=MAC2, dst=MAC1) / IP(src="10.1.1.12", dst="10.1.1.11") / ICMP(type=0))



def tshark_directions(path) -> list[str]:
    """What tshark reads as each packet's pcapng direction flags (Wireshark's Direction:
    0x1 Inbound, 0x2 Outbound; empty when a packet has none)."""
    result = subprocess.run(["tshark", "-r", str(path), "-T", "fields",
                             "-e", "frame.packet_flags_direction"],
                            capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


@pytest.mark.parametrize("analyzer_compute", ["compute1", "compute2"], ids=["local", "remote"])
def test_ingress_and_egress_copies_carry_source_and_destination_vn(analyzer_compute):
    """On the software flow tables: a copy of what vm1 sends reaches the encapsulator with MPLS
    traffic class 0 and the analyzer with its network as source VN, a copy of what is delivered
    to vm1 with 1 and destination VN, whether the analyzer is local or across the fabric; both
    under the capture's one label."""
    topo = load("topologies/default.yaml")
    topo = topo.with_vm(plan_analyzer(topo, "cap", None, analyzer_compute))
    capture = plan_capture(topo, [], 1, "compute1", "tap-vm1-0", "both", "cap", 0.0)
    analyzer = analyzers(topo)["cap"].interfaces[0]
    sim = LabSim(topo, [capture])
    vm1, vm2 = iface(topo, "vm1"), iface(topo, "vm2")
    for sender, frame, traffic_class, vn_field in [
            ("tap-vm1-0", ip_frame(vm1, vm2), None, "juniper_vn_src"),
            ("tap-vm2-0", ip_frame(vm2, vm1), 1, "juniper_vn_dst")]:
        [copy] = [d.packet for d in sim.send(sender, frame) if d.port_name == analyzer.port_name]
        assert (copy[vn_field], copy["inner"]) == ("default-domain:default:blue", frame)
        [(compute, handed)] = sim.encapsulator_frames[-1:]
        assert (compute, handed["mpls_label"], handed.get("mpls_tc")) == (
            analyzer_compute, capture.label, traffic_class)


def test_recorder_records_each_copy_direction(tmp_path):
    """One direction byte per record: 'i' sent by the VM, 'e' delivered to it; the index gives
    each record its direction."""
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    for traffic_class in (0, 1, 1, 0):
        recorder.write(copy_of(tmp_path, REQUEST, 0x80001, traffic_class), 1000.0)
    recorder.flush()
    assert directions_file(tmp_path, 0x80001).read_bytes() == b"ieei"
    records, total = PcapIndex().records(capture_file(tmp_path, 0x80001), 0, 10)
    assert total == 4
    assert [r.direction for r in records] == ["ingress", "egress", "egress", "ingress"]


def test_restarted_recorder_keeps_one_direction_per_record(tmp_path):
    """A recorder killed between a record and its direction byte: the next one marks that
    record's direction unknown and goes on; a direction byte without its record is cut off."""
    first = Recorder(tmp_path, ANALYZER_INTERFACE)
    first.write(copy_of(tmp_path, REQUEST, 0x80002, 0), 1.0)
    first.flush()
    path = capture_file(tmp_path, 0x80002)
    with open(path, "ab") as pcap:  # a record whose direction byte never made it to disk
        pcap.write(RECORD_HEADER.pack(2, 0, len(REPLY), len(REPLY)) + REPLY)
    assert PcapIndex().count(path) == (1, len(REQUEST))
    second = Recorder(tmp_path, ANALYZER_INTERFACE)
    second.write(copy_of(tmp_path, REPLY, 0x80002, 1), 3.0)
    second.flush()
    assert directions_file(tmp_path, 0x80002).read_bytes() == b"i?e"
    records, _ = PcapIndex().records(path, 0, 10)
    assert [r.direction for r in records] == ["ingress", None, "egress"]

    with open(directions_file(tmp_path, 0x80002), "ab") as directions:
        directions.write(b"e")  # ahead of a record that was never written
    third = Recorder(tmp_path, ANALYZER_INTERFACE)
    third.write(copy_of(tmp_path, REQUEST, 0x80002, 0), 4.0)
    third.flush()
    assert directions_file(tmp_path, 0x80002).read_bytes() == b"i?ei"


def test_pcapng_packets_carry_direction_flags_tshark_reads(tmp_path):
    """Enhanced packet blocks: Outbound (0x2) for what the VM sent, Inbound (0x1) for what was
    delivered to it, no flags when unknown; frames and microsecond times intact."""
    path = tmp_path / "d.pcapng"
    path.write_bytes(PCAPNG_HEADER + pcapng_packet(1000, 250000, REQUEST, "ingress")
                     + pcapng_packet(1001, 7, REPLY + b"x", "egress")
                     + pcapng_packet(1002, 0, REQUEST, None))
    assert tshark_directions(path) == ["0x00000002", "0x00000001", ""]
    frames = rdpcap(str(path))
    assert [bytes(f) for f in frames] == [REQUEST, REPLY + b"x", REQUEST]
    assert [round(float(f.time), 6) for f in frames] == [1000.25, 1001.000007, 1002.0]


@pytest.fixture
def recorded(service):
    """A capture of vm1 whose recorder got a request vm1 sent and the reply delivered to it."""
    capture = service.start_capture("compute1", "tap-vm1-0")
    recorder = Recorder(service.captures_dir, ANALYZER_INTERFACE)
    recorder.write(copy_of(service.captures_dir, REQUEST, capture.label, 0), 1000.0)
    recorder.write(copy_of(service.captures_dir, REPLY, capture.label, 1), 1000.5)
    recorder.flush()
    return capture


def test_api_packets_carry_their_direction(client, recorded):
    """The live list and a packet's details say ingress / "from vm1" and egress / "to vm1"."""
    packets = client.get(f"/api/captures/{recorded.id}/packets").json()["packets"]
    assert [(p["direction"], p["direction_text"], p["summary"].split(" ")[0]) for p in packets] == [
        ("ingress", "from vm1", "Echo"), ("egress", "to vm1", "Echo")]
    detail = client.get(f"/api/captures/{recorded.id}/packets/2").json()
    assert (detail["direction"], detail["direction_text"]) == ("egress", "to vm1")


def test_api_pcap_is_pcapng_with_directions_and_classic_on_request(client, service, recorded,
                                                                    tmp_path):
    """GET .../pcap gives pcapng whose packets tshark reads as Outbound then Inbound;
    ?format=pcap the classic file byte for byte; another format is refused naming it."""
    answer = client.get(f"/api/captures/{recorded.id}/pcap")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-pcapng"
    assert answer.headers["content-disposition"].endswith('.pcapng"')
    pcapng = tmp_path / "download.pcapng"
    pcapng.write_bytes(answer.content)
    assert tshark_directions(pcapng) == ["0x00000002", "0x00000001"]
    assert [bytes(f) for f in rdpcap(str(pcapng))] == [REQUEST, REPLY]

    classic = client.get(f"/api/captures/{recorded.id}/pcap", params={"format": "pcap"})
    assert classic.headers["content-type"] == "application/vnd.tcpdump.pcap"
    assert classic.content[:GLOBAL_HEADER] == PCAP_HEADER
    assert classic.content == capture_file(service.captures_dir, recorded.label).read_bytes()

    wrong = client.get(f"/api/captures/{recorded.id}/pcap", params={"format": "erf"})
    assert wrong.status_code == 400 and wrong.json()["field"] == "query.format"
    assert "pcapng" in wrong.json()["error"], wrong.json()


def test_api_pcap_of_an_empty_capture_is_a_valid_empty_file(client, service, tmp_path):
    """Before any packet: a pcapng with its headers only (tshark reads no packet), or the
    classic global header."""
    capture = service.start_capture("compute1", "tap-vm1-0")
    empty = tmp_path / "empty.pcapng"
    empty.write_bytes(client.get(f"/api/captures/{capture.id}/pcap").content)
    assert empty.read_bytes() == PCAPNG_HEADER and tshark_directions(empty) == []
    classic = client.get(f"/api/captures/{capture.id}/pcap", params={"format": "pcap"}).content
    assert classic == PCAP_HEADER

