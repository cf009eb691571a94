"""The base vRouter pipeline, run on mirrorlab.testing.flowsim: forwarding, ARP, flooding, isolation, flows."""
from __future__ import annotations

import itertools

import pytest

from mirrorlab.controller.flowmodel import (
    BASE_OWNER, OWNER_MASK, Clone, Decap, Encap, Move, Output, Resubmit, SetField, flow,
)
from mirrorlab.controller.pipeline import (
    CLASSIFY, DELIVER, EGRESS_MIRROR, FORWARD, GATEWAY_ADVERT, INGRESS_MIRROR, VROUTER_MAC,
)
from mirrorlab.controller.policyflows import desired_flows
from mirrorlab.topofile import load, parse
from mirrorlab.topology import FABRIC_PORT
from mirrorlab.testing.flowsim import LabSim
from tests.unit.helpers import (
    BROADCAST, arp_reply_for, arp_request, broadcast_frame, iface, ip_frame, may_overlap,
    multicast_frame, neighbour_solicitation, overlay, received,
)

NETWORK_PEERS = {"vm1": {"vm2", "vm3"}, "vm2": {"vm1", "vm3"}, "vm3": {"vm1", "vm2"},
                 "vm4": {"vm5"}, "vm5": {"vm4"}}


@pytest.fixture
def sim(default_topo) -> LabSim:
    """A fresh simulated default lab without captures."""
    return LabSim(default_topo)


@pytest.fixture(scope="module")
def base_flows(default_topo):
    """The default lab's flows without captures, by compute node."""
    return desired_flows(default_topo, [])


def tap(vm: str) -> str:
    """The vRouter port name of `vm`'s first interface."""
    return f"tap-{vm}-0"


# --- layout --------------------------------------------------------------------------------


def test_table_layout():
    """Classify 0, forward 1, deliver 2, egress mirror 3-10, ingress mirror 11-18."""
    assert (CLASSIFY, FORWARD, DELIVER, EGRESS_MIRROR, INGRESS_MIRROR) == (0, 1, 2, 3, 11)


def test_desired_flows_per_compute_and_deterministic(default_topo, base_flows):
    """One frozen flow set per compute node, identical on every computation."""
    assert set(base_flows) == {"compute1", "compute2", "compute3"}
    assert all(isinstance(flows, frozenset) for flows in base_flows.values())
    assert desired_flows(default_topo, []) == base_flows
    for flows in base_flows.values():
        assert {f.table for f in flows} == set(range(19)) | {GATEWAY_ADVERT}


# --- unicast -------------------------------------------------------------------------------


def test_unicast_same_compute(default_topo, sim):
    """vm1 -> vm3 (both on compute1) reaches vm3 only, unchanged, without touching the fabric."""
    frame = ip_frame(iface(default_topo, "vm1"), iface(default_topo, "vm3"))
    deliveries = sim.send(tap("vm1"), frame)
    assert [(d.compute, d.port, d.port_name, d.packet) for d in deliveries] == [
        ("compute1", 3, "tap-vm3-0", frame)]
    assert sim.fabric_frames == []


@pytest.mark.parametrize("src, dst, src_compute, dst_compute", [
    ("vm1", "vm2", "compute1", "compute2"),
    ("vm2", "vm3", "compute2", "compute1"),
    ("vm5", "vm4", "compute3", "compute2"),
])
def test_unicast_across_computes(default_topo, sim, src, dst, src_compute, dst_compute):
    """Across computes the frame travels as Ethernet-in-MPLS with the network's label."""
    sender, receiver = iface(default_topo, src), iface(default_topo, dst)
    frame = ip_frame(sender, receiver)
    deliveries = sim.send(tap(src), frame)
    assert [(d.compute, d.port_name, d.packet) for d in deliveries] == [(dst_compute, tap(dst), frame)]
    label = default_topo.network(sender.network).label
    assert sim.fabric_frames == [(src_compute, overlay(frame, label, default_topo.compute(src_compute),
                                                      default_topo.compute(dst_compute)))]
    fabric_frame = sim.fabric_frames[0][1]
    assert (fabric_frame["eth_type"], fabric_frame["mpls_label"]) == (0x8847, label)


def test_blue_label_used_for_vm1_to_vm2(default_topo, sim):
    """The fabric frame of vm1 -> vm2 carries blue's label 100 between the two fabric MACs."""
    sim.send(tap("vm1"), ip_frame(iface(default_topo, "vm1"), iface(default_topo, "vm2")))
    [(compute, packet)] = sim.fabric_frames
    assert (compute, packet["eth_src"], packet["eth_dst"], packet["mpls_label"]) == (
        "compute1", "02:fa:00:00:00:01", "02:fa:00:00:00:02", default_topo.network("blue").label)
    assert default_topo.network("blue").label == 100


@pytest.mark.parametrize("src, dst", [("vm1", "vm4"), ("vm4", "vm1"), ("vm3", "vm5"), ("vm2", "vm4")])
def test_networks_are_isolated(default_topo, sim, src, dst):
    """A VM never reaches a VM of another network, even addressing its MAC directly."""
    frame = ip_frame(iface(default_topo, src), iface(default_topo, dst))
    assert sim.send(tap(src), frame) == []
    assert sim.fabric_frames == []


def test_unknown_unicast_is_dropped(default_topo, sim):
    """A frame to a MAC no VM of the network has goes nowhere (no flooding)."""
    vm1 = iface(default_topo, "vm1")
    assert sim.send(tap("vm1"), ip_frame(vm1, vm1, eth_dst="02:00:0a:01:01:63")) == []
    assert sim.fabric_frames == []


@pytest.mark.parametrize("eth_src", ["02:00:0a:01:01:0d", "02:00:0a:02:02:0e", "02:de:ad:be:ef:01"],
                         ids=["other-local-vm", "other-network-vm", "made-up"])
def test_spoofed_source_mac_is_dropped(default_topo, sim, eth_src):
    """Frames whose source MAC is not the sending port's are dropped, unicast, broadcast or ARP."""
    vm1, vm2 = iface(default_topo, "vm1"), iface(default_topo, "vm2")
    for frame in (ip_frame(vm1, vm2), broadcast_frame(vm1), arp_request(vm1, vm2.ip)):
        assert sim.send(tap("vm1"), dict(frame, eth_src=eth_src)) == []
    assert sim.fabric_frames == []


# --- ARP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("asker, owner", [("vm1", "vm2"), ("vm1", "vm3"), ("vm4", "vm5"), ("vm5", "vm4")])
def test_arp_answered_by_vrouter(default_topo, sim, asker, owner):
    """An ARP request is answered by the vRouter with the owner's MAC, to the asker only."""
    asking, owning = iface(default_topo, asker), iface(default_topo, owner)
    deliveries = sim.send(tap(asker), arp_request(asking, owning.ip))
    assert received(deliveries) == [(tap(asker), arp_reply_for(asking, owning))]
    assert deliveries[0].packet["arp_sha"] == owning.mac
    assert sim.fabric_frames == []


def test_arp_for_the_gateway_is_answered_with_the_vrouter_mac(default_topo, sim):
    """The network's .1 is its gateway, the vRouter itself (Contrail's vRouter MAC)."""
    asking = iface(default_topo, "vm1")
    deliveries = sim.send(tap("vm1"), arp_request(asking, "10.1.1.1"))
    assert [(d.port_name, d.packet["arp_op"], d.packet["arp_sha"], d.packet["arp_spa"])
            for d in deliveries] == [(tap("vm1"), 2, VROUTER_MAC, "10.1.1.1")]
    assert sim.fabric_frames == []


def test_a_neighbour_solicitation_for_the_ipv6_gateway_is_answered_by_the_vrouter(default_topo, sim):
    """The network's ::1 is its IPv6 gateway: the vRouter turns the solicitation into a
    solicited advertisement from its MAC (router, solicited, override; target link-layer
    address option), back to the asker alone."""
    asking = iface(default_topo, "vm1")
    assert str(asking.gateway6) == "fd00:1:1::1"
    [delivery] = sim.send(tap("vm1"), neighbour_solicitation(asking, "fd00:1:1::1"))
    assert delivery.port_name == tap("vm1")
    advert = delivery.packet
    assert (advert["eth_src"], advert["eth_dst"], advert["ipv6_src"], advert["ipv6_dst"]) == (
        VROUTER_MAC, asking.mac, "fd00:1:1::1", str(asking.ip6))
    assert (advert["icmpv6_type"], advert["ipv6_nd_target"], advert["nd_reserved"]) == (
        136, "fd00:1:1::1", 0xE0000000)
    assert (advert["nd_options_type"], advert["nd_option_mac"]) == (2, VROUTER_MAC)
    assert sim.fabric_frames == []


def test_neighbour_solicitations_between_vms_still_flood_within_the_network(default_topo, sim):
    """A solicitation for a VM's address is not the vRouter's to answer: it reaches the
    network's other members (vm3 here, vm2 over the fabric), untouched."""
    asking = iface(default_topo, "vm1")
    solicitation = neighbour_solicitation(asking, str(iface(default_topo, "vm3").ip6))
    assert {d.port_name: d.packet for d in sim.send(tap("vm1"), solicitation)} == {
        tap("vm2"): solicitation, tap("vm3"): solicitation}


@pytest.mark.parametrize("target", ["10.1.1.99", "10.2.2.14"], ids=["unknown", "other-network"])
def test_arp_for_address_outside_network_members_is_dropped(default_topo, sim, target):
    """ARP for an address no member of the asker's network has gets no answer and never floods."""
    assert sim.send(tap("vm1"), arp_request(iface(default_topo, "vm1"), target)) == []
    assert sim.fabric_frames == []


def test_arp_replies_from_vms_are_dropped(default_topo, sim):
    """Only requests are handled; ARP replies a VM sends are dropped (the vRouter answers)."""
    vm1, vm3 = iface(default_topo, "vm1"), iface(default_topo, "vm3")
    assert sim.send(tap("vm3"), arp_reply_for(vm1, vm3)) == []


# --- broadcast and multicast ---------------------------------------------------------------


@pytest.mark.parametrize("sender", sorted(NETWORK_PEERS))
@pytest.mark.parametrize("eth_dst", [BROADCAST, "33:33:ff:01:01:0c", "01:00:5e:00:00:fb"],
                         ids=["broadcast", "ipv6-solicited-node", "ipv4-mdns"])
def test_multicast_flooded_within_network(default_topo, sim, sender, eth_dst):
    """Broadcast/multicast reaches every other member of the network once; not the sender or others."""
    frame = multicast_frame(iface(default_topo, sender), eth_dst=eth_dst)
    deliveries = sim.send(tap(sender), frame)
    assert received(deliveries) == [(tap(peer), frame) for peer in sorted(NETWORK_PEERS[sender])]


def test_flood_crosses_fabric_once_per_compute_with_members(default_topo, sim):
    """vm1's broadcast goes over the fabric to compute2 only (compute3 has no blue VM)."""
    frame = broadcast_frame(iface(default_topo, "vm1"))
    sim.send(tap("vm1"), frame)
    assert sim.fabric_frames == [("compute1", overlay(frame, 100, default_topo.compute("compute1"),
                                                      default_topo.compute("compute2")))]


SPREAD = """\
computes: [c1, c2, c3]
networks:
  - {name: blue, subnet: 10.1.1.0/24}
vms:
  - {name: a, compute: c1, network: blue}
  - {name: b, compute: c1, network: blue}
  - {name: c, compute: c2, network: blue}
  - {name: d, compute: c3, network: blue}
  - {name: e, compute: c3, network: blue}
"""


@pytest.mark.parametrize("sender", ["a", "c", "d"])
def test_flood_reaches_every_compute_of_the_network(sender):
    """A broadcast in a network on three computes reaches all, crossing to each other compute once."""
    topo = parse(SPREAD, "spread.yaml")
    frame = broadcast_frame(iface(topo, sender))
    sim = LabSim(topo)
    deliveries = sim.send(tap(sender), frame)
    assert received(deliveries) == [(tap(vm), frame) for vm in "abcde" if vm != sender]
    source = topo.compute(topo.vm(sender).compute)
    assert sorted(sim.fabric_frames, key=lambda item: item[1]["eth_dst"]) == [
        (source.name, overlay(frame, 100, source, target))
        for target in topo.computes if target != source]


def test_large_topology_floods_to_all_network_members(topologies_dir):
    """On large.yaml a broadcast from vm1 reaches exactly the other nine net1 VMs."""
    topo = load(topologies_dir / "large.yaml")
    frame = broadcast_frame(iface(topo, "vm1"))
    deliveries = LabSim(topo).send(tap("vm1"), frame)
    expected = sorted(i.port_name for i in topo.interfaces() if i.network == "net1" and i.vm != "vm1")
    assert [name for name, _ in received(deliveries)] == expected
    assert len(expected) == 9
    assert all(d.packet == frame for d in deliveries)


# --- the fabric side -----------------------------------------------------------------------


@pytest.mark.parametrize("compute", ["compute1", "compute2", "compute3"])
def test_fabric_frames_never_go_back_to_the_fabric(default_topo, sim, compute):
    """Whatever arrives from the fabric leaves only on VM ports, for every label and destination."""
    source = next(c for c in default_topo.computes if c.name != compute)
    here = default_topo.compute(compute)
    vm1, vm4 = iface(default_topo, "vm1"), iface(default_topo, "vm4")
    inner_frames = [
        broadcast_frame(vm1), multicast_frame(vm4), arp_request(vm1, "10.1.1.13"),
        ip_frame(vm1, vm4),  # unicast to a red VM, sent under blue's label
    ] + [ip_frame(vm1, i) for i in default_topo.interfaces()] + [
        ip_frame(vm4, i) for i in default_topo.interfaces()]
    for label in (100, 101, 102, 999):
        for inner in inner_frames:
            outputs = sim.switches[compute].process(FABRIC_PORT, overlay(inner, label, source, here))
            assert all(port != FABRIC_PORT for port, _ in outputs), (label, inner)


def test_fabric_frame_delivered_to_local_member_only(default_topo, sim):
    """A blue frame from the fabric for vm1 reaches vm1 decapsulated; for vm2 (remote) nothing."""
    c1, c2 = default_topo.compute("compute1"), default_topo.compute("compute2")
    vm1, vm2, vm3 = (iface(default_topo, v) for v in ("vm1", "vm2", "vm3"))
    switch = sim.switches["compute1"]
    to_vm1 = ip_frame(vm2, vm1)
    assert switch.process(FABRIC_PORT, overlay(to_vm1, 100, c2, c1)) == [(vm1.ofport, to_vm1)]
    assert switch.process(FABRIC_PORT, overlay(ip_frame(vm3, vm2), 100, c2, c1)) == []
    flood = broadcast_frame(vm2)
    assert sorted(switch.process(FABRIC_PORT, overlay(flood, 100, c2, c1)), key=lambda o: o[0]) == [
        (vm1.ofport, flood), (vm3.ofport, flood)]
    # red has no member on compute1: its label is not even classified there
    assert switch.process(FABRIC_PORT, overlay(ip_frame(vm2, vm1), 101, c2, c1)) == []


# --- the flows themselves ------------------------------------------------------------------


def test_flow_keys_unique_per_vrouter(base_flows):
    """(table, priority, cookie) identifies one flow on each vRouter, as reconciliation needs."""
    for compute, flows in base_flows.items():
        keys = [f.key for f in flows]
        assert len(set(keys)) == len(keys), compute


def test_no_overlapping_flows_of_equal_priority(base_flows):
    """No two flows of one table and priority can match the same packet (OVS would pick one)."""
    for compute, flows in base_flows.items():
        by_slot = {}
        for f in flows:
            by_slot.setdefault((f.table, f.priority), []).append(f)
        assert len({(f.table, f.priority, f.match) for f in flows}) == len(flows), compute
        for group in by_slot.values():
            for first, second in itertools.combinations(group, 2):
                assert not may_overlap(first, second), f"{compute}:\n{first.ofctl()}\n{second.ofctl()}"


def test_overlap_checker_detects_overlaps():
    """The checker used above does see overlaps (masked MAC vs exact, wildcard vs exact)."""
    multicast = flow(FORWARD, 90, eth_dst=("01:00:00:00:00:00", "01:00:00:00:00:00"), reg0=1)
    assert may_overlap(multicast, flow(FORWARD, 90, eth_dst="ff:ff:ff:ff:ff:ff"))
    assert not may_overlap(multicast, flow(FORWARD, 90, eth_dst="02:00:00:00:00:01"))
    assert may_overlap(flow(DELIVER, 100, reg1=2), flow(DELIVER, 100, in_port=2, reg1=2))
    assert not may_overlap(flow(DELIVER, 100, reg1=2), flow(DELIVER, 100, reg1=3))


def test_base_cookies_carry_the_base_owner(base_flows):
    """Every base flow's cookie has BASE_OWNER 0x01000000 in its high 32 bits."""
    for flows in base_flows.values():
        for f in flows:
            assert f.cookie >> 32 == 0x01000000 == BASE_OWNER
            assert f.cookie & OWNER_MASK == BASE_OWNER << 32


def test_cookie_is_owner_plus_content_digest():
    """Equal flows share a cookie; content changes the low bits, the owner the high bits."""
    one = flow(DELIVER, 100, reg1=2, actions=[Output(2)])
    assert one.cookie == flow(DELIVER, 100, reg1=2, actions=[Output(2)]).cookie
    other = flow(DELIVER, 100, reg1=2, actions=[Output(3)])
    assert other.cookie != one.cookie and other.cookie >> 32 == one.cookie >> 32
    owned = flow(DELIVER, 100, reg1=2, actions=[Output(2)], owner=0x02000007)
    assert owned.cookie == (0x02000007 << 32) | (one.cookie & 0xFFFFFFFF)
    assert owned.key == (DELIVER, 100, owned.cookie)


def test_ofctl_rendering():
    """Flow.ofctl() prints ovs-ofctl add-flow syntax: cookie, table, priority, match, actions."""
    f = flow(FORWARD, 200, eth_dst="02:00:0a:01:01:0b", reg0=1,
             actions=[SetField("reg1", 2)], goto=EGRESS_MIRROR)
    assert f.ofctl(with_cookie=False) == (
        "table=1,priority=200,eth_dst=02:00:0a:01:01:0b,reg0=1 actions=set_field:2->reg1,goto_table:3")
    assert f.ofctl() == f"cookie={f.cookie:#x}," + f.ofctl(with_cookie=False)
    assert f.ofctl().startswith("cookie=0x1000000")
    assert flow(CLASSIFY, 0).ofctl(with_cookie=False) == "table=0,priority=0 actions=drop"
    masked = flow(FORWARD, 150, in_port=1, eth_dst=("01:00:00:00:00:00", "01:00:00:00:00:00"),
                  actions=[SetField("reg1", 3), Resubmit(DELIVER)])
    assert masked.ofctl(with_cookie=False) == (
        "table=1,priority=150,eth_dst=01:00:00:00:00:00/01:00:00:00:00:00,in_port=1 "
        "actions=set_field:3->reg1,resubmit(,2)")
    actions = flow(CLASSIFY, 100, in_port=1, eth_type=0x8847, mpls_label=100, actions=[
        Decap(), Decap(inner_ethernet=True), Encap("mpls"), SetField("mpls_label", 524289),
        Encap("ethernet"), Move("eth_src", "eth_dst"), Clone((Output("in_port"), Output(1000)))])
    assert actions.ofctl(with_cookie=False) == (
        "table=0,priority=100,eth_type=34887,in_port=1,mpls_label=100 actions=decap(),"
        "decap(packet_type(ns=0,type=0)),encap(mpls),set_field:524289->mpls_label,"
        "encap(ethernet),move:eth_src->eth_dst,clone(IN_PORT,output:1000)")


def test_every_base_flow_renders(base_flows):
    """Each computed flow renders to one line with its own cookie, table and priority first."""
    for flows in base_flows.values():
        for f in flows:
            text = f.ofctl()
            assert text.startswith(f"cookie={f.cookie:#x},table={f.table},priority={f.priority}")
            assert text.count(" actions=") == 1 and "\n" not in text
