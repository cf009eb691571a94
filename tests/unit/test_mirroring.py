"""Interface mirroring: capture planning and limits, and what the capture flows do on flowsim."""
from __future__ import annotations

import ipaddress

import itertools

import pytest

from mirrorlab.controller.errors import Conflict, InvalidRequest, NotFound
from mirrorlab.controller.flowmodel import OWNER_MASK, Output, SetField, capture_owner
from mirrorlab.controller.mirrorto import MirrorTo, StaticNhHeader
from mirrorlab.juniper import EGRESS, INGRESS
from mirrorlab.controller.mirroring import (
    CAPTURE_LABEL_BASE, MAX_CAPTURE_ID, Capture, Direction, analyzers, find_interface,
    parse_direction, plan_analyzer, plan_capture,
)
from mirrorlab.controller.pipeline import (
    CLASSIFY, EGRESS_MIRROR, INGRESS_MIRROR, VROUTER_MAC, capture_flows,
)
from mirrorlab.controller.policyflows import desired_flows
from mirrorlab.topofile import parse
from mirrorlab.topology import ENCAP_PORT, FABRIC_PORT
from mirrorlab.testing.flowsim import LabSim
from tests.unit.helpers import (
    IPV4, MPLS, arp_request, broadcast_frame, iface, ip_frame, may_overlap, multicast_frame,
    one_compute_text, overlay,
)

DIRECTIONS = ["ingress", "egress", "both"]


# --- helpers -------------------------------------------------------------------------------


def with_analyzers(topology, *placements):
    """`topology` plus analyzer VMs, each placement (instance name, compute, network or None)."""
    for name, compute, network in placements:
        topology = topology.with_vm(plan_analyzer(topology, name, network, compute))
    return topology


def start(topology, port, direction="both", analyzer="cap", capture_id=1, captures=(), now=10.0):
    """Plan a capture of vRouter port `port` (on whichever compute it is)."""
    compute = topology.interface_by_port_name(port).compute
    return plan_capture(topology, list(captures), capture_id, compute, port, direction, analyzer, now)


def analyzer_iface(topology, instance="cap"):
    """The interface of analyzer instance `instance`."""
    return analyzers(topology)[instance].interfaces[0]


def mirrored(topo, packet: dict, capture: Capture, analyzer, delivered: bool = False) -> dict:
    """The copy of `packet` that `capture` hands to the analyzer's port, as the encapsulator made
    it: from the vRouter to the analyzer's MAC and address, UDP 8099, from the monitored
    vRouter's fabric address, its VN's fq-name as source VN (what the VM sent) or as destination VN (what
    was `delivered` to it)."""
    vn = f"default-domain:{topo.name}:{topo.interface_by_port_name(capture.interface).network}"
    return {"packet_type": "ethernet", "eth_src": VROUTER_MAC, "eth_dst": analyzer.mac,
            "eth_type": IPV4, "ip_src": str(topo.fabric_ip(topo.compute(capture.compute))),
            "ip_dst": str(analyzer.ip), "udp_dst": 8099, "mirror_index": capture.mirror_index,
            ("juniper_vn_dst" if delivered else "juniper_vn_src"): vn, "inner": packet}


def split(deliveries, port_name):
    """(packets delivered to `port_name`, every other delivery as (port, packet))."""
    mine = [d.packet for d in deliveries if d.port_name == port_name]
    rest = [(d.port_name, d.packet) for d in deliveries if d.port_name != port_name]
    return mine, rest


def vm1_traffic(topo):
    """(sending port, frame) pairs exercising everything vm1 sends and receives, and more."""
    vm1, vm2, vm3, vm4, vm5 = (iface(topo, f"vm{n}") for n in range(1, 6))
    return [
        ("tap-vm1-0", ip_frame(vm1, vm3, "vm1->vm3 local")),
        ("tap-vm1-0", ip_frame(vm1, vm2, "vm1->vm2 remote")),
        ("tap-vm1-0", ip_frame(vm1, vm4, "vm1->vm4 isolated, dropped after the copy")),
        ("tap-vm3-0", ip_frame(vm3, vm1, "vm3->vm1 local")),
        ("tap-vm2-0", ip_frame(vm2, vm1, "vm2->vm1 over the fabric")),
        ("tap-vm1-0", broadcast_frame(vm1)),
        ("tap-vm2-0", broadcast_frame(vm2, "flood from the fabric")),
        ("tap-vm3-0", multicast_frame(vm3)),
        ("tap-vm1-0", arp_request(vm1, vm2.ip)),   # the vRouter's reply is delivered to vm1
        ("tap-vm3-0", arp_request(vm3, vm1.ip)),   # the reply goes to vm3, not vm1
        ("tap-vm3-0", ip_frame(vm3, vm2, "vm3->vm2")),
        ("tap-vm4-0", ip_frame(vm4, vm5, "red")),
    ]


# --- what a capture copies -----------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("analyzer_compute", ["compute1", "compute2", "compute3"],
                         ids=["analyzer-local", "analyzer-on-compute2", "analyzer-on-compute3"])
def test_capture_copies_exactly_the_monitored_traffic(default_topo, analyzer_compute, direction):
    """Ingress copies what vm1 sends, egress what it receives, both both; nothing else changes."""
    # Copies are MPLS-marked with the capture's label around the unchanged frame; egress
    # includes traffic from the fabric and the vRouter's ARP replies.
    topo = with_analyzers(default_topo, ("cap", analyzer_compute, None))
    capture = start(topo, "tap-vm1-0", direction)
    analyzer = analyzer_iface(topo)
    baseline, sim = LabSim(topo), LabSim(topo, [capture])
    for sender, frame in vm1_traffic(topo):
        plain = baseline.send(sender, frame)
        copies, others = split(sim.send(sender, frame), analyzer.port_name)
        expected = []
        if capture.direction.copies_ingress and sender == "tap-vm1-0":
            expected.append(mirrored(topo, frame, capture, analyzer))
        if capture.direction.copies_egress:
            expected += [mirrored(topo, d.packet, capture, analyzer, delivered=True) for d in plain
                         if d.port_name == "tap-vm1-0"]
        assert copies == expected, (sender, frame)
        assert others == [(d.port_name, d.packet) for d in plain], (sender, frame)


@pytest.mark.parametrize("analyzer_compute", ["compute1", "compute2"], ids=["local", "remote"])
def test_without_the_header_the_analyzer_gets_the_original_frames(default_topo, analyzer_compute):
    """juniper_header false: the analyzer's port receives exactly the frames vm1 sent and
    received, unwrapped, and the encapsulator records each with its direction; nothing else
    changes and no other port sees a copy."""
    topo = with_analyzers(default_topo, ("cap", analyzer_compute, None))
    capture = plan_capture(topo, [], 1, "compute1", "tap-vm1-0", "both", "cap", 10.0,
                           mirror_to=MirrorTo(juniper_header=False))
    analyzer = analyzer_iface(topo)
    baseline, sim = LabSim(topo), LabSim(topo, [capture])
    for sender, frame in vm1_traffic(topo):
        plain = baseline.send(sender, frame)
        recorded_before = len(sim.recorded_headerless)
        copies, others = split(sim.send(sender, frame), analyzer.port_name)
        expected = ([(INGRESS, frame)] if sender == "tap-vm1-0" else []) + [
            (EGRESS, d.packet) for d in plain if d.port_name == "tap-vm1-0"]
        assert copies == [packet for _, packet in expected], (sender, frame)
        assert sim.recorded_headerless[recorded_before:] == [
            (capture.label, direction, packet) for direction, packet in expected]
        assert others == [(d.port_name, d.packet) for d in plain], (sender, frame)


def test_static_copies_travel_in_vxlan_over_the_fabric_to_the_vtep(default_topo):
    """nh_mode static: each copy of what vm1 sent or received leaves vm1's vRouter over the
    fabric as VXLAN with the VNI, from compute1's fabric address and MAC to the VTEP's; the
    encapsulator records each with its direction; no port of the lab gets a copy."""
    topo = default_topo
    probe = topo.fabric_analyzer("probe1")
    vtep = StaticNhHeader(str(probe.ip), probe.mac, 5000)
    capture = plan_capture(topo, [], 1, "compute1", "tap-vm1-0", "both", None, 10.0,
                           mirror_to=MirrorTo(juniper_header=False, nh_mode="static",
                                              static_nh_header=vtep))
    assert capture.analyzer == "probe1"
    compute1 = topo.compute("compute1")
    baseline, sim = LabSim(topo), LabSim(topo, [capture])
    for sender, frame in vm1_traffic(topo):
        plain = baseline.send(sender, frame)
        recorded_before = len(sim.recorded_headerless)
        copies, others = split(sim.send(sender, frame), "probe1")
        expected = ([(INGRESS, frame)] if sender == "tap-vm1-0" else []) + [
            (EGRESS, d.packet) for d in plain if d.port_name == "tap-vm1-0"]
        assert copies == [{"packet_type": "ethernet", "eth_src": compute1.fabric_mac,
                           "eth_dst": probe.mac, "eth_type": IPV4, "ip_src": "192.168.100.1",
                           "ip_dst": "192.168.100.254", "udp_dst": 4789,
                           "mirror_index": capture.mirror_index, "vxlan_vni": 5000,
                           "inner": packet} for _, packet in expected], (sender, frame)
        assert sim.recorded_headerless[recorded_before:] == [
            (capture.label, direction, packet) for direction, packet in expected]
        assert others == [(d.port_name, d.packet) for d in plain], (sender, frame)


def test_nic_assisted_tags_what_the_vm_sends_to_the_fabric_and_the_fabric_mirrors_it(default_topo):
    """NIC-assisted, VLAN 100: the vRouter makes no copy; what vm1 sends over the fabric is
    tagged, reaches its peer untagged and unchanged, and the fabric's mirror hands the tagged
    overlay frame to probe1. Same-node traffic (vm1 -> vm3) and what vm1 receives are not
    mirrored; other VMs' traffic is not tagged."""
    topo = default_topo
    capture = plan_capture(topo, [], 1, "compute1", "tap-vm1-0", "both", None, 10.0,
                           mirror_to=MirrorTo(nic_assisted_mirroring=True,
                                              nic_assisted_mirroring_vlan=100))
    assert capture.analyzer == "probe1"
    assert all(f.table < EGRESS_MIRROR for flows in capture_flows(topo, capture).values()
               for f in flows)
    baseline, sim = LabSim(topo), LabSim(topo, [capture])
    vm1, vm2, vm3 = (iface(topo, f"vm{n}") for n in range(1, 4))
    c1, c2, c3 = (topo.compute(f"compute{n}") for n in range(1, 4))
    for sender, frame, mirrored_over in [
            ("tap-vm1-0", ip_frame(vm1, vm2), [c2]),
            ("tap-vm1-0", broadcast_frame(vm1), [c2]),   # flooded to blue's remote node
            ("tap-vm1-0", ip_frame(vm1, vm3), []),
            ("tap-vm2-0", ip_frame(vm2, vm1), []),
            ("tap-vm3-0", ip_frame(vm3, vm2), [])]:
        copies, others = split(sim.send(sender, frame), "probe1")
        assert others == [(d.port_name, d.packet) for d in baseline.send(sender, frame)], frame
        assert copies == [overlay(frame, 100, c1, target) | {"vlan_vid": 0x1000 | 100}
                          for target in mirrored_over], frame


@pytest.mark.parametrize("peer", ["vm2", "vm3"], ids=["remote-peer", "local-peer"])
@pytest.mark.parametrize("direction, copies", [("ingress", 1), ("egress", 0), ("both", 1)])
def test_ingress_copy_of_unicast_comes_after_the_original(default_topo, direction, copies, peer):
    """vm1 -> vm2 (over the fabric) and vm1 -> vm3 (same vRouter): the peer receives the
    identical frame first, then the analyzer its copy."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    capture = start(topo, "tap-vm1-0", direction)
    frame = ip_frame(iface(topo, "vm1"), iface(topo, peer))
    deliveries = LabSim(topo, [capture]).send("tap-vm1-0", frame)
    assert [(d.port_name, d.packet) for d in deliveries] == (
        [(f"tap-{peer}-0", frame)] + [("tap-an1-0", mirrored(topo, frame, capture, analyzer_iface(topo)))] * copies)


def test_egress_copy_of_arp_reply(default_topo):
    """The vRouter's ARP reply to vm1 is copied by an egress capture, the request is not."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    capture = start(topo, "tap-vm1-0", "egress")
    vm1, vm2 = iface(topo, "vm1"), iface(topo, "vm2")
    copies, others = split(LabSim(topo, [capture]).send("tap-vm1-0", arp_request(vm1, vm2.ip)),
                           "tap-an1-0")
    [(port, reply)] = others
    assert port == "tap-vm1-0" and reply["arp_op"] == 2 and reply["arp_sha"] == vm2.mac
    assert copies == [mirrored(topo, reply, capture, analyzer_iface(topo), delivered=True)]


def test_copy_to_remote_analyzer_crosses_fabric_with_capture_label(default_topo):
    """A copy for an analyzer on compute2 travels the fabric under label 0x80000 + id."""
    topo = with_analyzers(default_topo, ("cap", "compute2", None))
    capture = start(topo, "tap-vm1-0", "ingress", capture_id=7)
    assert capture.label == CAPTURE_LABEL_BASE + 7 == 0x80007
    frame = ip_frame(iface(topo, "vm1"), iface(topo, "vm3"))
    sim = LabSim(topo, [capture])
    sim.send("tap-vm1-0", frame)
    c1, c2 = topo.compute("compute1"), topo.compute("compute2")
    assert sim.fabric_frames == [("compute1", overlay(frame, capture.label, c1, c2))]


def test_egress_copy_of_fabric_traffic_goes_back_out_to_remote_analyzer(default_topo):
    """vm2 -> vm1 arrives from the fabric; the copy for an analyzer on compute2 goes back out."""
    topo = with_analyzers(default_topo, ("cap", "compute2", None))
    capture = start(topo, "tap-vm1-0", "egress")
    frame = ip_frame(iface(topo, "vm2"), iface(topo, "vm1"))
    sim = LabSim(topo, [capture])
    copies, others = split(sim.send("tap-vm2-0", frame), "tap-an1-0")
    assert others == [("tap-vm1-0", frame)]
    assert copies == [mirrored(topo, frame, capture, analyzer_iface(topo), delivered=True)]
    c1, c2 = topo.compute("compute1"), topo.compute("compute2")
    assert sim.fabric_frames == [("compute2", overlay(frame, 100, c2, c1)),
                                 ("compute1", overlay(frame, capture.label, c1, c2) | {"mpls_tc": 1})]


@pytest.mark.parametrize("analyzer_compute", ["compute1", "compute2"])
def test_traffic_of_other_interfaces_is_not_copied(default_topo, analyzer_compute):
    """A capture of vm1 copies nothing of traffic neither sent by nor delivered to vm1."""
    topo = with_analyzers(default_topo, ("cap", analyzer_compute, None))
    sim = LabSim(topo, [start(topo, "tap-vm1-0", "both")])
    vm2, vm3, vm4, vm5 = (iface(topo, f"vm{n}") for n in range(2, 6))
    for sender, frame in [("tap-vm3-0", ip_frame(vm3, vm2)), ("tap-vm2-0", ip_frame(vm2, vm3)),
                          ("tap-vm4-0", broadcast_frame(vm4)), ("tap-vm5-0", ip_frame(vm5, vm4)),
                          ("tap-vm3-0", arp_request(vm3, vm2.ip))]:
        copies, _ = split(sim.send(sender, frame), "tap-an1-0")
        assert copies == [], (sender, frame)


def contains_a_copy(packet: dict) -> bool:
    """Whether `packet`, or anything it wraps, is a mirrored copy (an MPLS-wrapped frame)."""
    inner = packet.get("inner")
    return inner is not None and (inner.get("eth_type") == MPLS or "inner" in inner)


@pytest.mark.parametrize("second_analyzer", ["cap", "cap2"], ids=["to-itself", "to-another"])
def test_copy_landing_on_a_remote_analyzer_is_not_mirrored_again(default_topo, second_analyzer):
    """vm1 is captured to an analyzer on compute3 whose own port is captured (egress) too:
    a copy arriving over the fabric goes straight to the analyzer's port, so the analyzer's
    egress capture never copies a copy, while it still copies the analyzer's own traffic."""
    topo = with_analyzers(default_topo, ("cap", "compute3", None), ("cap2", "compute2", None))
    analyzer = analyzer_iface(topo, "cap")
    of_vm1 = start(topo, "tap-vm1-0", "both", "cap", capture_id=1)
    of_analyzer = start(topo, analyzer.port_name, "egress", second_analyzer, capture_id=2,
                        captures=[of_vm1])
    sim = LabSim(topo, [of_vm1, of_analyzer])
    for sender, frame in vm1_traffic(topo):
        deliveries = sim.send(sender, frame)
        for delivery in deliveries:
            assert not contains_a_copy(delivery.packet), (sender, frame, delivery)
        if sender == "tap-vm1-0":
            assert [d.packet for d in deliveries if d.port_name == analyzer.port_name][0] == \
                mirrored(topo, frame, of_vm1, analyzer)
    other = analyzer_iface(topo, "cap2")
    frame = ip_frame(other, analyzer)
    copy_port = analyzer_iface(topo, second_analyzer).port_name
    assert [(d.port_name, d.packet) for d in sim.send(other.port_name, frame)] == [
        (analyzer.port_name, frame),
        (copy_port, mirrored(topo, frame, of_analyzer, analyzer_iface(topo, second_analyzer), delivered=True))]


def test_copies_reach_only_the_analyzer(default_topo):
    """No MPLS-marked copy is ever delivered to a port other than the analyzer's."""
    topo = with_analyzers(default_topo, ("cap", "compute2", None))
    captures = [start(topo, "tap-vm1-0", "both", capture_id=1),
                start(topo, "tap-vm2-0", "both", capture_id=2)]
    sim = LabSim(topo, captures)
    for sender, frame in vm1_traffic(topo):
        for delivery in sim.send(sender, frame):
            if delivery.port_name != "tap-an1-0":
                assert delivery.packet.get("eth_type") != MPLS and "inner" not in delivery.packet


# --- several captures, analyzers' own interfaces -------------------------------------------


def test_two_captures_on_one_interface_to_two_analyzers(default_topo):
    """Two captures of vm1 (slots 0 and 1) give each analyzer one copy with its own label."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None), ("cap2", "compute2", None))
    first = start(topo, "tap-vm1-0", "both", "cap", capture_id=1)
    second = start(topo, "tap-vm1-0", "both", "cap2", capture_id=2, captures=[first])
    assert (first.slot, second.slot) == (0, 1)
    one, two = analyzer_iface(topo, "cap"), analyzer_iface(topo, "cap2")
    sim = LabSim(topo, [first, second])
    vm1, vm2, vm3 = (iface(topo, f"vm{n}") for n in range(1, 4))
    for sender, frame in [("tap-vm1-0", ip_frame(vm1, vm3)), ("tap-vm2-0", ip_frame(vm2, vm1))]:
        deliveries = sim.send(sender, frame)
        delivered = sender != "tap-vm1-0"
        assert [d.packet for d in deliveries if d.port_name == "tap-an1-0"] == [
            mirrored(topo, frame, first, one, delivered)]
        assert [d.packet for d in deliveries if d.port_name == "tap-an2-0"] == [
            mirrored(topo, frame, second, two, delivered)]


def test_eight_captures_on_one_interface_give_eight_copies(default_topo):
    """All eight mirror slots of vm1 chain: one packet, eight copies, labels of captures 1-8."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    captures = []
    for capture_id in range(1, 9):
        captures.append(start(topo, "tap-vm1-0", "ingress", capture_id=capture_id, captures=captures))
    assert [c.slot for c in captures] == list(range(8))
    frame = ip_frame(iface(topo, "vm1"), iface(topo, "vm2"))
    copies, others = split(LabSim(topo, captures).send("tap-vm1-0", frame), "tap-an1-0")
    assert copies == [mirrored(topo, frame, c, analyzer_iface(topo)) for c in captures]
    assert others == [("tap-vm2-0", frame)]


def test_capture_of_analyzer_own_interface_does_not_loop(default_topo):
    """Capturing the analyzer's own interface: what it receives is copied once, not again."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None), ("cap2", "compute2", None))
    capture = start(topo, "tap-an1-0", "both", "cap")
    an1, an2 = analyzer_iface(topo, "cap"), analyzer_iface(topo, "cap2")
    sim = LabSim(topo, [capture])
    for frame in (ip_frame(an2, an1), broadcast_frame(an2)):
        delivered = [d.packet for d in sim.send("tap-an2-0", frame)]
        assert delivered == [frame, mirrored(topo, frame, capture, an1, delivered=True)]


def test_capture_of_analyzer_own_interface_copies_what_it_sends(default_topo):
    """Capturing the analyzer's own interface: what it sends is copied to it once."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None), ("cap2", "compute2", None))
    capture = start(topo, "tap-an1-0", "ingress", "cap")
    an1, an2 = analyzer_iface(topo, "cap"), analyzer_iface(topo, "cap2")
    frame = ip_frame(an1, an2)
    delivered = [(d.port_name, d.packet) for d in LabSim(topo, [capture]).send("tap-an1-0", frame)]
    assert delivered == [("tap-an2-0", frame), ("tap-an1-0", mirrored(topo, frame, capture, an1))]


def test_egress_copy_of_traffic_sent_by_the_analyzer(default_topo):
    """An analyzer in blue on compute1 sending to vm1 gets the egress copy of that frame."""
    topo = with_analyzers(default_topo, ("cap", "compute1", "blue"))
    capture = start(topo, "tap-vm1-0", "egress")
    analyzer = analyzer_iface(topo)
    frame = ip_frame(analyzer, iface(topo, "vm1"))
    copies, others = split(LabSim(topo, [capture]).send(analyzer.port_name, frame), analyzer.port_name)
    assert others == [("tap-vm1-0", frame)]
    assert copies == [mirrored(topo, frame, capture, analyzer, delivered=True)]


def test_egress_copy_of_broadcast_sent_by_the_analyzer(default_topo):
    """A broadcast from an analyzer in blue on compute1 reaches vm1, whose egress copy goes back
    out of the analyzer's own port; vm1 and the other blue VMs get the frame unchanged."""
    topo = with_analyzers(default_topo, ("cap", "compute1", "blue"))
    capture = start(topo, "tap-vm1-0", "egress")
    analyzer = analyzer_iface(topo)
    frame = broadcast_frame(analyzer)
    copies, others = split(LabSim(topo, [capture]).send(analyzer.port_name, frame), analyzer.port_name)
    assert sorted(port for port, _ in others) == ["tap-vm1-0", "tap-vm2-0", "tap-vm3-0"]
    assert all(packet == frame for _, packet in others)
    assert copies == [mirrored(topo, frame, capture, analyzer, delivered=True)]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("analyzer_compute, analyzer_network",
                         [("compute2", None), ("compute1", None), ("compute1", "blue")],
                         ids=["analyzer-remote", "analyzer-local", "analyzer-local-sending-to-vm1"])
def test_no_copy_output_is_skipped_while_a_capture_starts_or_stops(default_topo, direction,
                                                                   analyzer_compute,
                                                                   analyzer_network):
    """The controller adds and deletes a capture's flows one flow mod at a time, so for a moment
    a vRouter holds any subset of them, next to another capture of the same interface. In no
    such moment may a copy's output be skipped: Open vSwitch 3.1 then pushes the copy's
    Ethernet header onto the original packet and aborts (flowsim raises SkippedCopyOutput)."""
    topo = with_analyzers(default_topo, ("cap", analyzer_compute, analyzer_network))
    churned = start(topo, "tap-vm1-0", direction, capture_id=1)
    steady = start(topo, "tap-vm1-0", "both", capture_id=2, captures=[churned])
    assert (churned.slot, steady.slot) == (0, 1)
    analyzer = analyzer_iface(topo)
    traffic = vm1_traffic(topo)
    if analyzer_network == "blue":
        traffic += [(analyzer.port_name, ip_frame(analyzer, iface(topo, "vm1"))),
                    (analyzer.port_name, broadcast_frame(analyzer))]
    full = desired_flows(topo, [churned, steady])
    for compute, own in capture_flows(topo, churned).items():
        for size in range(len(own) + 1):
            for subset in itertools.combinations(own, size):
                flows = {**full, compute: (full[compute] - set(own)) | set(subset)}
                sim = LabSim(topo, [churned, steady], flows=flows)
                for sender, frame in traffic:
                    sim.send(sender, frame)


# --- flows of captures ---------------------------------------------------------------------


@pytest.mark.parametrize("analyzer_compute", ["compute1", "compute2"])
def test_stop_restores_the_baseline_flows(default_topo, analyzer_compute):
    """Starting then stopping captures returns desired_flows exactly to the baseline."""
    topo = with_analyzers(default_topo, ("cap", analyzer_compute, None))
    baseline = desired_flows(topo, [])
    first = start(topo, "tap-vm1-0", "both", capture_id=1)
    second = start(topo, "tap-vm2-0", "ingress", capture_id=2, captures=[first])
    assert desired_flows(topo, [first, second]) != baseline
    assert desired_flows(topo, [first.stopped(20.0), second]) == desired_flows(topo, [second])
    assert desired_flows(topo, [first.stopped(20.0), second.stopped(21.0)]) == baseline


def test_capture_state_and_label(default_topo):
    """A capture is active until stopped; stopping keeps everything else; label = base + id."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    capture = plan_capture(topo, [], 42, "vr-compute1", "vm1-eth0", None, "cap", 5.0)
    assert capture == Capture(id=42, compute="compute1", interface="tap-vm1-0",
                              direction=Direction.BOTH, analyzer="cap", slot=0, started_at=5.0,
                              mirror_to=MirrorTo(analyzer_name="cap", analyzer_ip_address="10.250.2.3",
                                                 analyzer_mac_address="02:00:0a:fa:02:03",
                                                 routing_instance="svc-vn-left"),
                              mirror_index=42)
    assert (capture.active, capture.state, capture.label) == (True, "active", 0x80000 + 42)
    stopped = capture.stopped(9.5)
    assert (stopped.active, stopped.state, stopped.stopped_at) == (False, "stopped", 9.5)
    assert capture.active  # frozen: the original is unchanged


@pytest.mark.parametrize("direction, analyzer_compute, tables", [
    ("ingress", "compute1", {"compute1": [(INGRESS_MIRROR, 100)]}),
    ("egress", "compute1", {"compute1": [(EGRESS_MIRROR, 100)]}),
    ("both", "compute1", {"compute1": [(INGRESS_MIRROR, 100), (EGRESS_MIRROR, 100)]}),
    ("ingress", "compute3", {"compute1": [(INGRESS_MIRROR, 100)], "compute3": [(CLASSIFY, 200)]}),
    ("egress", "compute3", {"compute1": [(EGRESS_MIRROR, 100)], "compute3": [(CLASSIFY, 200)]}),
    ("both", "compute3", {"compute1": [(INGRESS_MIRROR, 100), (EGRESS_MIRROR, 100)],
                          "compute3": [(CLASSIFY, 200)]}),
])
def test_capture_flows_are_owned_by_the_capture(default_topo, direction, analyzer_compute, tables):
    """A capture adds exactly its capture_flows, each with capture_owner(id) as cookie owner."""
    topo = with_analyzers(default_topo, ("cap", analyzer_compute, None))
    capture = start(topo, "tap-vm1-0", direction, capture_id=5)
    baseline, with_capture = desired_flows(topo, []), desired_flows(topo, [capture])
    added = {name: with_capture[name] - baseline[name] for name in baseline}
    own = capture_flows(topo, capture)
    assert {name: flows for name, flows in added.items() if flows} == {
        name: frozenset(flows) for name, flows in own.items()}
    assert {name: sorted((f.table, f.priority) for f in flows) for name, flows in own.items()} == {
        name: sorted(slots) for name, slots in tables.items()}
    for name in baseline:
        assert baseline[name] <= with_capture[name]
        for f in added[name]:
            assert f.cookie >> 32 == capture_owner(5) == 0x02000005
            assert f.cookie & OWNER_MASK == capture_owner(5) << 32


def test_capture_in_slot_uses_that_slots_tables(default_topo):
    """The capture in slot 3 copies in egress table 3+3 and ingress table 11+3."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    captures = []
    for capture_id in range(1, 5):
        captures.append(start(topo, "tap-vm1-0", "both", capture_id=capture_id, captures=captures))
    assert captures[3].slot == 3
    assert sorted((f.table, f.priority) for f in capture_flows(topo, captures[3])["compute1"]) == [
        (6, 100), (14, 100)]


def copy_actions(f):
    """The actions of the copy that flow `f` clones."""
    [clone] = f.actions
    return clone.actions


@pytest.mark.parametrize("analyzer_compute, exit_port", [("compute1", ENCAP_PORT), ("compute2", FABRIC_PORT)],
                         ids=["analyzer-local", "analyzer-remote"])
def test_copy_clears_its_input_port_and_leaves_by_the_exit_port(default_topo, analyzer_compute,
                                                                 exit_port):
    """One flow per direction: ingress on in_port = the port, egress on reg1 = the port. Each
    copy clears its input port first and outputs to the exit port by number, so the output is
    never skipped as output to the input port (whatever the packet came in on) and no flow for
    packets that came in on the exit port is needed."""
    topo = with_analyzers(default_topo, ("cap", analyzer_compute, None))
    assert analyzer_iface(topo).ofport == 1000
    capture = start(topo, "tap-vm1-0", "both")
    port = iface(topo, "vm1").ofport
    flows = sorted(capture_flows(topo, capture)["compute1"], key=lambda f: (f.table, f.priority))
    assert [(f.table, f.priority, f.match, f.goto) for f in flows] == [
        (EGRESS_MIRROR, 100, (("reg1", port),), EGRESS_MIRROR + 1),
        (INGRESS_MIRROR, 100, (("in_port", port),), INGRESS_MIRROR + 1),
    ]
    for f in flows:
        actions = copy_actions(f)
        assert (actions[0], actions[-1]) == (SetField("in_port", 0), Output(exit_port))
        assert Output("in_port") not in actions
    egress, ingress = (list(copy_actions(f)) for f in flows)
    marker = egress.index(SetField("mpls_tc", 1))  # egress copies say so; ingress ones carry 0
    assert egress[:marker] + egress[marker + 1:] == ingress


def test_ingress_copy_of_local_analyzer_own_port_goes_to_the_encapsulator(default_topo):
    """Capturing the local analyzer's own port: what it sends is copied to the encapsulator's
    port by number (the clone's input port is cleared), and the encapsulated copy comes back
    to the analyzer, without passing a mirror table again."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    capture = start(topo, "tap-an1-0", "ingress")
    [only] = capture_flows(topo, capture)["compute1"]
    assert (only.table, only.priority, only.match) == (INGRESS_MIRROR, 100, (("in_port", 1000),))
    assert (copy_actions(only)[0], copy_actions(only)[-1]) == (SetField("in_port", 0),
                                                              Output(ENCAP_PORT))
    analyzer = analyzer_iface(topo)
    frame = broadcast_frame(analyzer)
    assert [(d.port_name, d.packet) for d in LabSim(topo, [capture]).send("tap-an1-0", frame)] \
        == [("tap-an1-0", mirrored(topo, frame, capture, analyzer))]


def flows_are_consistent(flow_sets):
    """Assert unique (table, priority, cookie) keys and no equal-priority overlaps per vRouter."""
    for compute, flows in flow_sets.items():
        keys = [f.key for f in flows]
        assert len(set(keys)) == len(keys), compute
        groups = {}
        for f in flows:
            groups.setdefault((f.table, f.priority), []).append(f)
        for group in groups.values():
            for first, second in itertools.combinations(group, 2):
                assert not may_overlap(first, second), f"{first.ofctl()}\n{second.ofctl()}"


def test_flows_with_many_captures_stay_consistent(default_topo):
    """With captures on every VM (local and remote analyzers), keys stay unique, no overlaps."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None), ("cap2", "compute3", None))
    captures = []
    for capture_id, (port, direction, analyzer) in enumerate(itertools.product(
            ["tap-vm1-0", "tap-vm2-0", "tap-vm3-0", "tap-vm4-0", "tap-vm5-0", "tap-an1-0"],
            DIRECTIONS, ["cap", "cap2"]), start=1):
        captures.append(start(topo, port, direction, analyzer, capture_id, captures))
    flows_are_consistent(desired_flows(topo, captures))


# --- limits --------------------------------------------------------------------------------


def test_ninth_capture_on_one_interface_conflicts(default_topo):
    """An interface holds 8 active captures; the 9th is refused until one stops."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    captures = []
    for capture_id in range(1, 9):
        captures.append(start(topo, "tap-vm1-0", capture_id=capture_id, captures=captures))
    with pytest.raises(Conflict) as caught:
        start(topo, "tap-vm1-0", capture_id=9, captures=captures)
    assert caught.value.message == ("interface 'tap-vm1-0' has 8 active captures already, "
                                    "the most one interface holds; stop one first")
    assert caught.value.status == 409
    assert start(topo, "tap-vm3-0", capture_id=9, captures=captures).slot == 0
    captures[2] = captures[2].stopped(11.0)
    assert start(topo, "tap-vm1-0", capture_id=9, captures=captures).slot == 2


def test_256th_capture_on_one_vrouter_conflicts():
    """A vRouter holds 255 active captures: over 32 interfaces, the 256th is refused."""
    topo = parse(one_compute_text(32), "many.yaml")
    topo = with_analyzers(topo, ("cap", "compute1", None))
    ports = [f"tap-vm{n}-0" for n in range(1, 33)]
    captures = []
    for index in range(255):
        captures.append(start(topo, ports[index // 8], "ingress", capture_id=index + 1,
                              captures=captures))
    assert captures[-1].interface == "tap-vm32-0" and captures[-1].slot == 6
    with pytest.raises(Conflict) as caught:
        start(topo, "tap-vm32-0", capture_id=256, captures=captures)  # its slot 7 is free
    assert caught.value.message == ("vrouter 'compute1' has 255 active mirror entries already, "
                                    "the most a vRouter holds; stop one first")
    captures[0] = captures[0].stopped(12.0)
    assert start(topo, "tap-vm32-0", capture_id=256, captures=captures).slot == 7
    flows_are_consistent(desired_flows(topo, captures))


def test_the_vrouter_limit_counts_only_that_vrouters_captures():
    """With compute1 full (255 captures), a capture on compute2 is still accepted."""
    text = one_compute_text(32).replace("computes: [compute1]", "computes: [compute1, compute2]")
    topo = parse(text + "  - {name: far, compute: compute2, network: blue}\n", "two.yaml")
    topo = with_analyzers(topo, ("cap", "compute1", None))
    captures = []
    for index in range(255):
        captures.append(start(topo, f"tap-vm{index // 8 + 1}-0", "ingress", capture_id=index + 1,
                              captures=captures))
    with pytest.raises(Conflict):
        start(topo, "tap-vm32-0", capture_id=256, captures=captures)
    remote = start(topo, "tap-far-0", "ingress", capture_id=256, captures=captures)
    assert (remote.compute, remote.slot) == ("compute2", 0)


def test_capture_owners_keep_every_bit_of_the_capture_id(default_topo):
    """Captures 1 and 65537 (which share their low 16 bits) own different cookies."""
    assert [capture_owner(n) for n in (1, 2, 6, 65537)] == [0x02000001, 0x02000002, 0x02000006,
                                                          0x02010001]
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    one = start(topo, "tap-vm1-0", capture_id=1)
    other = start(topo, "tap-vm1-0", capture_id=65537, captures=[one])
    owners = {capture.id: {f.cookie >> 32 for f in capture_flows(topo, capture)["compute1"]}
              for capture in (one, other)}
    assert owners == {1: {0x02000001}, 65537: {0x02010001}}


def test_capture_ids_are_bounded():
    """Capture ids above MAX_CAPTURE_ID are refused: their label would not fit 20 bits."""
    assert CAPTURE_LABEL_BASE + MAX_CAPTURE_ID == 0xFFFFF
    topo = with_analyzers(parse(one_compute_text(1), "one.yaml"), ("cap", "compute1", None))
    assert start(topo, "tap-vm1-0", capture_id=MAX_CAPTURE_ID).label == 0xFFFFF
    with pytest.raises(Conflict) as caught:
        start(topo, "tap-vm1-0", capture_id=MAX_CAPTURE_ID + 1)
    assert caught.value.message == "capture ids are exhausted; reset the lab's capture store"


# --- request errors and lookups ------------------------------------------------------------


def test_find_interface_accepts_port_vm_side_and_bridge_names(default_topo):
    """tap-vm1-0, vm1-eth0, and vrouter compute1 or vr-compute1 all name vm1's interface."""
    vm1 = iface(default_topo, "vm1")
    for vrouter, name in itertools.product(["compute1", "vr-compute1"], ["tap-vm1-0", "vm1-eth0"]):
        assert find_interface(default_topo, vrouter, name) == vm1


@pytest.mark.parametrize("vrouter, interface, message, field", [
    ("compute9", "tap-vm1-0", "unknown vrouter 'compute9' (known: compute1, compute2, compute3)",
     "vrouter"),
    ("vr-compute9", "tap-vm1-0",
     "unknown vrouter 'vr-compute9' (known: compute1, compute2, compute3)", "vrouter"),
    ("compute1", "tap-vm2-0",
     "unknown interface 'tap-vm2-0' on vrouter 'compute1' (known: tap-vm1-0, tap-vm3-0, tap-an1-0)",
     "interface"),
    ("vr-compute1", "eth0",
     "unknown interface 'eth0' on vrouter 'compute1' (known: tap-vm1-0, tap-vm3-0, tap-an1-0)",
     "interface"),
])
def test_unknown_vrouter_or_interface_is_not_found(default_topo, vrouter, interface, message, field):
    """Unknown vRouters and interfaces (vm2 lives on compute2) raise NotFound naming the known ones."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    with pytest.raises(NotFound) as caught:
        plan_capture(topo, [], 1, vrouter, interface, "both", "cap", 0.0)
    assert (caught.value.message, caught.value.field, caught.value.status) == (message, field, 404)


def test_only_the_vr_prefix_names_a_vrouter_by_its_bridge(default_topo):
    """vr-compute1 is compute1's bridge; any other prefix is an unknown vRouter."""
    with pytest.raises(NotFound):
        find_interface(default_topo, "xx-compute1", "tap-vm1-0")


@pytest.mark.parametrize("lease_seconds, accepted", [(0, False), (-1, False), (0.5, True),
                                                     (3600, True), (3600.5, False)])
def test_lease_seconds_are_bounded(default_topo, lease_seconds, accepted):
    """A lease lasts more than 0 and at most 3600 seconds."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    request = (topo, [], 1, "compute1", "tap-vm1-0", None, "cap", 0.0, lease_seconds)
    if accepted:
        assert plan_capture(*request).lease_expires_at == lease_seconds
    else:
        with pytest.raises(InvalidRequest, match="bad lease_seconds"):
            plan_capture(*request)


def test_captures_are_immutable(default_topo):
    """A capture is a value: stopping or renewing gives a new one."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    capture = start(topo, "tap-vm1-0")
    with pytest.raises(AttributeError):
        capture.slot = 3


def test_unknown_analyzer_is_not_found(default_topo):
    """A capture to an analyzer that does not exist raises NotFound listing the analyzers."""
    with pytest.raises(NotFound) as caught:
        plan_capture(default_topo, [], 1, "compute1", "tap-vm1-0", "both", "cap", 0.0)
    assert (caught.value.message, caught.value.field) == ("unknown analyzer 'cap' (known: none)", "analyzer")
    topo = with_analyzers(default_topo, ("cap", "compute1", None), ("zz", "compute2", None))
    with pytest.raises(NotFound) as caught:
        plan_capture(topo, [], 1, "compute1", "tap-vm1-0", "both", "nope", 0.0)
    assert caught.value.message == "unknown analyzer 'nope' (known: cap, zz)"


@pytest.mark.parametrize("direction", ["sideways", "INGRESS", "", "in"])
def test_bad_direction_is_invalid(default_topo, direction):
    """Directions other than ingress, egress, both raise InvalidRequest (400)."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    with pytest.raises(InvalidRequest) as caught:
        start(topo, "tap-vm1-0", direction)
    assert (caught.value.message, caught.value.field, caught.value.status) == (
        f"bad direction '{direction}' (use ingress, egress or both)", "direction", 400)


def test_parse_direction():
    """None means both; the three names map to their Direction and what it copies."""
    assert parse_direction(None) is Direction.BOTH
    assert [(d.copies_ingress, d.copies_egress) for d in map(parse_direction, DIRECTIONS)] == [
        (True, False), (False, True), (True, True)]


# --- analyzers -----------------------------------------------------------------------------


def test_plan_analyzer_allocates_name_address_and_port(default_topo):
    """Analyzers are an1, an2...: next free address of the network, ports from 1000 per compute."""
    first = plan_analyzer(default_topo, "cap", None, None)
    [one] = first.interfaces
    assert (first.name, first.compute, first.analyzer) == ("an1", "compute1", "cap")
    assert (one.network, str(one.ip), one.mac, one.ofport, one.port_name, one.ip6) == (
        "svc-vn-left", "10.250.2.3", "02:00:0a:fa:02:03", 1000, "tap-an1-0", None)
    topo = default_topo.with_vm(first)
    second = plan_analyzer(topo, "cap2", None, "compute1")
    [two] = second.interfaces
    assert (second.name, str(two.ip), two.ofport) == ("an2", "10.250.2.4", 1001)
    third = plan_analyzer(topo, "cap3", "blue", "compute2")
    [three] = third.interfaces
    assert (third.name, three.network, str(three.ip), str(three.ip6), three.ofport) == (
        "an2", "blue", "10.1.1.3", "fd00:1:1::3", 1000)
    graph = topo.graph()
    assert (graph.nodes["vm:an1"]["kind"], graph.nodes["vm:an1"]["name"]) == ("analyzer", "an1")
    assert {b: kind for _, b, kind in graph.edges("vm:an1", data="kind")} == {
        "compute:compute1": "hosted-on", "network:svc-vn-left": "attached"}


def test_analyzer_names_may_have_63_characters(default_topo):
    """63 characters is the longest analyzer name."""
    assert plan_analyzer(default_topo, "x" * 63, None, None).analyzer == "x" * 63


@pytest.mark.parametrize("name, network, compute, error, message", [
    ("", None, None, InvalidRequest, "bad analyzer name '' (1-63 letters, digits, '-', '_', '.')"),
    ("a b", None, None, InvalidRequest, "bad analyzer name 'a b' (1-63 letters, digits, '-', '_', '.')"),
    ("x" * 64, None, None, InvalidRequest,
     f"bad analyzer name '{'x' * 64}' (1-63 letters, digits, '-', '_', '.')"),
    ("cap", None, None, Conflict, "analyzer 'cap' exists already"),
    ("new", "green", None, NotFound, "unknown network 'green' (known: blue, red, svc-vn-left)"),
    ("new", None, "compute9", NotFound,
     "unknown compute node 'compute9' (known: compute1, compute2, compute3)"),
])
def test_plan_analyzer_errors(default_topo, name, network, compute, error, message):
    """Bad names, taken names, unknown networks and computes are refused with clear messages."""
    topo = with_analyzers(default_topo, ("cap", "compute1", None))
    with pytest.raises(error) as caught:
        plan_analyzer(topo, name, network, compute)
    assert caught.value.message == message


def test_plan_analyzer_full_network_conflicts():
    """A /29 analyzer network holds four analyzers (.3-.6); the fifth is a Conflict."""
    topo = parse("computes: [c1]\nnetworks: []\nvms: []\n"
                 "analyzer_network: {name: taps, subnet: 10.9.9.0/29}\n", "t.yaml")
    topo = with_analyzers(topo, *[(f"a{n}", None, None) for n in range(4)])
    assert sorted(str(i.ip) for i in topo.interfaces()) == [f"10.9.9.{n}" for n in range(3, 7)]
    with pytest.raises(Conflict) as caught:
        plan_analyzer(topo, "a4", None, None)
    assert caught.value.message == "network 'taps' has no free address left"


def test_plan_analyzer_never_reuses_a_mac():
    """An address whose derived MAC a VM already has (set explicitly) is skipped: 10.1.1.3
    would give 02:00:0a:01:01:03, vm1's MAC, so the analyzer gets 10.1.1.4."""
    topo = parse("computes: [c1]\nnetworks:\n  - {name: blue, subnet: 10.1.1.0/24}\nvms:\n"
                 "  - {name: vm1, compute: c1, network: blue, ip: 10.1.1.11, mac: '02:00:0a:01:01:03'}\n",
                 "t.yaml")
    [interface] = plan_analyzer(topo, "cap", "blue", "c1").interfaces
    assert (str(interface.ip), interface.mac) == ("10.1.1.4", "02:00:0a:01:01:04")


def test_plan_analyzer_skips_macs_taken_in_other_networks():
    """The MAC check covers every interface of the lab, not only those of the same network."""
    topo = parse("computes: [c1]\nnetworks:\n  - {name: blue, subnet: 10.1.1.0/24}\nvms:\n"
                 "  - {name: vm1, compute: c1, network: blue, mac: '02:00:0a:fa:02:03'}\n",
                 "t.yaml")
    [interface] = plan_analyzer(topo, "cap", None, None).interfaces
    assert (interface.network, str(interface.ip), interface.mac) == (
        "svc-vn-left", "10.250.2.4", "02:00:0a:fa:02:04")


def test_plan_analyzer_conflicts_when_every_free_address_has_a_taken_mac():
    """With .3-.6 of a /29 blocked by MACs set on VMs elsewhere, no address is left."""
    macs = "".join(f"  - {{name: vm{n}, compute: c1, network: blue, mac: '02:00:0a:09:09:0{n}'}}\n"
                   for n in range(3, 7))
    topo = parse("computes: [c1]\nnetworks:\n  - {name: blue, subnet: 10.1.1.0/24}\nvms:\n"
                 + macs + "analyzer_network: {name: taps, subnet: 10.9.9.0/29}\n", "t.yaml")
    with pytest.raises(Conflict) as caught:
        plan_analyzer(topo, "cap", None, None)
    assert caught.value.message == "network 'taps' has no free address left"


def test_plan_analyzer_never_reuses_an_ipv6_address():
    """An analyzer's derived IPv6 address that a VM already has explicitly is avoided or refused."""
    topo = parse("computes: [c1]\nnetworks:\n"
                 "  - {name: blue, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/64'}\nvms:\n"
                 "  - {name: vm1, compute: c1, network: blue, ip: 10.1.1.11, ip6: 'fd00:1:1::3'}\n",
                 "t.yaml")
    analyzer = plan_analyzer(topo, "cap", "blue", "c1")
    assert (analyzer.interfaces[0].ip, analyzer.interfaces[0].ip6) == (
        ipaddress.ip_address("10.1.1.4"), ipaddress.ip_address("fd00:1:1::4"))
