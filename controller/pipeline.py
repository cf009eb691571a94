"""Pure flow computation: topology and captures in, the flows each vRouter should hold out.

Every vRouter runs the same pipeline:

  table 0  CLASSIFY        VM port -> reg0 = network id, reg1 = the port (where ARP replies go);
                           fabric + network label -> strip the overlay, reg0 = network id;
                           fabric + capture label -> hand the copy to the local analyzer.
  table 1  FORWARD         per network: ARP (and neighbour solicitations for the gateway)
                           answered locally, unicast to a local port or over
                           the fabric, multicast/broadcast flooded within the network; then on
                           to the ingress mirror tables.
  table 2  DELIVER         reg1 -> output port; then on to the egress mirror tables.
  tables 3-10  EGRESS      one table per mirror slot: copy what was delivered to a VM (reg1).
  tables 11-18 INGRESS     one table per mirror slot: copy what a VM sent.
  tables 19-22 POLICY, ROUTE, POLICY_AT_DESTINATION, POLICY_ARRIVAL: network policies
                           (controller.policyflows).
  table 23 GATEWAY_ADVERT  the gateway's neighbour advertisements get its MAC, then DELIVER.

Originals are sent before their copies: the forwarding actions never change the packet outside
a clone, and the mirror tables come after them. When the single-threaded userspace datapath is
overloaded, what a queue drops is then the copies, not the monitored traffic.

Overlay: a frame to another compute node keeps its Ethernet header and travels as
Ethernet-in-MPLS (label = the network's label) inside an outer Ethernet header between the
fabric MACs of the two compute nodes.

Mirrored copies: a mirror table wraps the copy the same way, with the capture's label instead
(and MPLS traffic class 1 for a copy of what was delivered to the VM, 0 for one of what it
sent), and sends it to the lab's mirror encapsulator (lab/encapsulator.py) on the analyzer's
compute node: through the vRouter's ENCAP_PORT when the analyzer is local, else across the
fabric to the analyzer's vRouter, which hands it to its ENCAP_PORT. The encapsulator turns it
into Contrail's wire format (IPv4/UDP, Juniper header, the original frame: lab/juniper.py,
addressed as `capture_encapsulation` says) and hands it back through ENCAP_PORT, where table 0
outputs it to the analyzer's port. A capture without the Juniper header gets its copies back
unchanged, under its label: table 0 unwraps them and outputs the original frame to the
analyzer's port. Copies never pass a mirror table again, so a copy is never mirrored.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from mirrorlab.controller.flowmodel import (
    Clone, Decap, Encap, Flow, Move, Output, PopVlan, PushVlan, Resubmit, SetField, capture_owner,
    flow,
)
from mirrorlab.controller.mirroring import MAX_CAPTURES_PER_INTERFACE, Capture, analyzers
from mirrorlab.controller.mirrorto import MirrorTo
from mirrorlab.juniper import VXLAN_PORT, Encapsulation
from mirrorlab.recorder import EGRESS_TC, INGRESS_TC
from mirrorlab.topology import (
    ENCAP_PORT, FABRIC_PORT, ComputeNode, Interface, Network, Topology, subnet_gateway,
)

CLASSIFY = 0
FORWARD = 1
DELIVER = 2
EGRESS_MIRROR = 3
INGRESS_MIRROR = EGRESS_MIRROR + MAX_CAPTURES_PER_INTERFACE
# Network policies (controller.policyflows).
POLICY = INGRESS_MIRROR + MAX_CAPTURES_PER_INTERFACE
ROUTE = POLICY + 1
POLICY_AT_DESTINATION = POLICY + 2
POLICY_ARRIVAL = POLICY + 3
# A neighbour solicitation for the gateway, turned into an advertisement, gets its target
# link-layer address here: Open vSwitch sets that field only in a flow matching an
# advertisement (its prerequisite), which the packet has become by then.
GATEWAY_ADVERT = POLICY + 4

VLAN_PRESENT = 0x1000  # OpenFlow's vlan_vid bit for "a tag is there"
REG_NETWORK = "reg0"
REG_OUT_PORT = "reg1"
REG_POLICY = "reg2"  # how far network policies got with a packet (controller.policyflows)
# The source MAC of frames the vRouter itself makes (ARP replies, neighbour advertisements,
# copies to analyzers). It is also every network's gateway (.1 and ::1), as in Contrail.
VROUTER_MAC = "00:00:5e:00:01:00"
MULTICAST = ("01:00:00:00:00:00", "01:00:00:00:00:00")
IPV6 = 0x86DD
ICMPV6 = 58
ND_SOLICIT, ND_ADVERT = 135, 136  # ICMPv6 types of neighbour discovery
ND_ROUTER_SOLICITED_OVERRIDE = 0xE0000000  # a neighbour advertisement's R, S and O flags
ND_OPTION_TARGET_LLA = 2


def _next_slot(table: int) -> int | None:
    """The mirror table after `table`, or None after the last slot of its direction."""
    first = EGRESS_MIRROR if table < INGRESS_MIRROR else INGRESS_MIRROR
    return table + 1 if table + 1 < first + MAX_CAPTURES_PER_INTERFACE else None


def overlay_encap(label: int, source: ComputeNode, vlan: int | None = None) -> list:
    """Actions wrapping a frame into the overlay (tagged with `vlan`, for a NIC-assisted
    capture); the caller sets eth_dst and outputs."""
    tag = [PushVlan(), SetField("vlan_vid", VLAN_PRESENT | vlan)] if vlan is not None else []
    return [Encap("mpls"), SetField("mpls_label", label), Encap("ethernet"),
            SetField("eth_src", source.fabric_mac)] + tag


def forwarding_flows(topology: Topology, compute: ComputeNode) -> list[Flow]:
    """The base pipeline of `compute`'s vRouter: classification, forwarding, delivery."""
    flows = [flow(CLASSIFY, 0), flow(DELIVER, 0)]  # anything unknown is dropped
    # The VLAN of a NIC-assisted capture (what the compute node's NIC mirrors) ends at the
    # fabric: a tagged overlay frame loses its tag, then is classified as any other.
    flows.append(flow(CLASSIFY, 250, in_port=FABRIC_PORT, vlan_vid=(VLAN_PRESENT, VLAN_PRESENT),
                      actions=[PopVlan(), Resubmit(CLASSIFY)]))
    for first in (EGRESS_MIRROR, INGRESS_MIRROR):
        for table in range(first, first + MAX_CAPTURES_PER_INTERFACE):
            flows.append(flow(table, 0, goto=_next_slot(table)))
    # What the vRouter does not forward (unknown destinations, ARP for unknown addresses) is
    # dropped, but a VM still sent it: the ingress mirror tables see it.
    flows.append(flow(FORWARD, 0, goto=INGRESS_MIRROR))
    flows.append(flow(GATEWAY_ADVERT, 100, eth_type=IPV6, ip_proto=ICMPV6, icmpv6_type=ND_ADVERT,
                      icmpv6_code=0, actions=[SetField("ipv6_nd_tll", VROUTER_MAC),
                                              Resubmit(DELIVER)]))

    local = topology.interfaces_on(compute.name)
    # Copies coming back from the mirror encapsulator go to their analyzer's port, nowhere else,
    # or, in VXLAN to a fabric analyzer (a static destination), out to the fabric.
    for vm in topology.vms:
        if vm.analyzer and vm.compute == compute.name:
            flows.append(flow(CLASSIFY, 200, in_port=ENCAP_PORT, eth_dst=vm.interfaces[0].mac,
                              actions=[Output(vm.interfaces[0].ofport)]))
    for probe in topology.fabric_analyzers:
        flows.append(flow(CLASSIFY, 200, in_port=ENCAP_PORT, eth_dst=probe.mac,
                          actions=[Output(FABRIC_PORT)]))
    by_network: dict[str, list[Interface]] = defaultdict(list)
    for interface in topology.interfaces():
        by_network[interface.network].append(interface)

    for interface in local:
        network = topology.network(interface.network)
        flows.append(flow(CLASSIFY, 100, in_port=interface.ofport, eth_src=interface.mac,
                          actions=[SetField(REG_NETWORK, network.index),
                                   SetField(REG_OUT_PORT, interface.ofport)],
                          goto=FORWARD))
        flows.append(flow(DELIVER, 110, in_port=interface.ofport, **{REG_OUT_PORT: interface.ofport},
                          actions=[Output("in_port")], goto=EGRESS_MIRROR))
        flows.append(flow(DELIVER, 100, **{REG_OUT_PORT: interface.ofport},
                          actions=[Output(interface.ofport)], goto=EGRESS_MIRROR))

    for network in topology.networks:
        members = by_network.get(network.name, [])
        local_members = [i for i in members if i.compute == compute.name]
        if not local_members:
            continue
        flows.append(flow(CLASSIFY, 100, in_port=FABRIC_PORT, eth_type=0x8847,
                          mpls_label=network.label,
                          actions=[Decap(), Decap(inner_ethernet=True),
                                   SetField(REG_NETWORK, network.index)],
                          goto=FORWARD))
        flows += _network_forwarding(topology, compute, network, members, local_members)
    return flows


def _network_forwarding(topology: Topology, compute: ComputeNode, network: Network,
                        members: list[Interface], local_members: list[Interface]) -> list[Flow]:
    in_network = {REG_NETWORK: network.index}
    flows = []
    # ARP: the vRouter answers for every address of the network, as Contrail's does, so ARP
    # never floods; a request for an unknown address is dropped. The request is copied (ingress
    # mirror tables) before it is turned into the reply, so copies keep the order of events.
    gateway = subnet_gateway(network.subnet)
    for mac, address in [(m.mac, m.ip) for m in members] + [(VROUTER_MAC, gateway)]:
        flows.append(flow(FORWARD, 300, eth_type=0x0806, arp_op=1, arp_tpa=str(address),
                          **in_network,
                          actions=[Resubmit(INGRESS_MIRROR)] + arp_reply(mac, address)
                          + [Resubmit(DELIVER)]))
    # IPv6: the vRouter is the gateway (::1) too, and its flows answer the neighbour
    # solicitations for it; those for VMs' addresses are flooded within the network, as ever.
    if network.subnet6 is not None:
        gateway6 = subnet_gateway(network.subnet6)
        flows.append(flow(FORWARD, 300, eth_type=IPV6, ip_proto=ICMPV6, icmpv6_type=ND_SOLICIT,
                          icmpv6_code=0, ipv6_nd_target=str(gateway6), **in_network,
                          actions=[Resubmit(INGRESS_MIRROR)] + nd_advert(gateway6)
                          + [Resubmit(GATEWAY_ADVERT)]))
    flows.append(flow(FORWARD, 250, eth_type=0x0806, **in_network, goto=INGRESS_MIRROR))
    for member in local_members:
        flows.append(flow(FORWARD, 200, eth_dst=member.mac, **in_network,
                          actions=_deliver_each([member]), goto=INGRESS_MIRROR))
    # From the fabric: only local delivery (above) and local flooding; never back out.
    flows.append(flow(FORWARD, 150, in_port=FABRIC_PORT, eth_dst=MULTICAST, **in_network,
                      actions=_deliver_each(local_members)))
    flows.append(flow(FORWARD, 140, in_port=FABRIC_PORT, **in_network))

    flows += _to_the_fabric(topology, compute, network, members, local_members)
    return flows


def _to_the_fabric(topology: Topology, compute: ComputeNode, network: Network,
                   members: list[Interface], senders: list[Interface], vlan: int | None = None,
                   owner: int | None = None) -> list[Flow]:
    """Unicast to each remote member of `network` (from any port), and multicast from each of
    `senders` (delivered to the other local members, sent to every remote compute node). With
    `vlan` (a NIC-assisted capture, `owner`): only what `senders` send, tagged, one priority up."""
    in_network = {REG_NETWORK: network.index}
    tagged = {} if vlan is None else {"owner": owner}
    step = 0 if vlan is None else 5
    remote_computes = sorted({m.compute for m in members if m.compute != compute.name},
                             key=lambda name: topology.compute(name).index)
    flows = []
    for member in members:
        if member.compute == compute.name:
            continue
        remote = topology.compute(member.compute)
        from_port = {} if vlan is None else {"in_port": senders[0].ofport}
        flows.append(flow(FORWARD, 100 + step, eth_dst=member.mac, **in_network, **from_port,
                          goto=INGRESS_MIRROR, **tagged,
                          actions=[Clone(tuple(overlay_encap(network.label, compute, vlan)
                                               + [SetField("eth_dst", remote.fabric_mac),
                                                  Output(FABRIC_PORT)]))]))
    local_members = [m for m in members if m.compute == compute.name]
    for source in senders:
        others = [m for m in local_members if m is not source]
        actions = _deliver_each(others)
        if remote_computes:
            overlay = overlay_encap(network.label, compute, vlan)
            for name in remote_computes:
                overlay += [SetField("eth_dst", topology.compute(name).fabric_mac),
                            Output(FABRIC_PORT)]
            actions.append(Clone(tuple(overlay)))
        flows.append(flow(FORWARD, 90 + step, in_port=source.ofport, eth_dst=MULTICAST,
                          **in_network, actions=actions, goto=INGRESS_MIRROR, **tagged))
    return flows


def _deliver_each(interfaces: list[Interface]) -> list:
    """Actions delivering the packet to each interface, each followed by its egress copies."""
    actions = []
    for interface in interfaces:
        actions += [SetField(REG_OUT_PORT, interface.ofport), Resubmit(DELIVER)]
    return actions


def arp_reply(mac: str, address) -> list:
    """Actions turning an ARP request for `address` (owned by `mac`) into the reply, in place."""
    return [
        Move("eth_src", "eth_dst"), SetField("eth_src", mac),
        SetField("arp_op", 2),
        Move("arp_sha", "arp_tha"), SetField("arp_sha", mac),
        Move("arp_spa", "arp_tpa"), SetField("arp_spa", str(address)),
    ]


def nd_advert(address) -> list:
    """Actions turning an IPv6 neighbour solicitation for the gateway `address` into the
    solicited advertisement, in place, but for its target link-layer address
    (GATEWAY_ADVERT's flow sets that): from the vRouter back to the sender, flags router,
    solicited and override, its one option (the solicitation's source link-layer address)
    becoming the target link-layer address. Open vSwitch fixes the ICMPv6 checksum."""
    return [
        Move("eth_src", "eth_dst"), SetField("eth_src", VROUTER_MAC),
        Move("ipv6_src", "ipv6_dst"), SetField("ipv6_src", str(address)),
        SetField("icmpv6_type", ND_ADVERT), SetField("nd_reserved", ND_ROUTER_SOLICITED_OVERRIDE),
        SetField("nd_options_type", ND_OPTION_TARGET_LLA),
    ]


def capture_flows(topology: Topology, capture: Capture) -> dict[str, list[Flow]]:
    """The flows of one active capture, by compute node: the copies on the monitored
    interface's vRouter and, for an analyzer elsewhere, its delivery on the analyzer's. A
    NIC-assisted capture makes no copy: its vRouter tags what the VM sends to the fabric with
    the capture's VLAN (the fabric switch's mirror does the rest, see `nic_mirrors`)."""
    owner = capture_owner(capture.id)
    source = topology.compute(capture.compute)
    monitored = topology.interface_by_port_name(capture.interface)
    port = monitored.ofport
    flows: dict[str, list[Flow]] = defaultdict(list)
    if capture.mirror_to.nic_assisted_mirroring:
        network = topology.network(monitored.network)
        members = [i for i in topology.interfaces() if i.network == network.name]
        flows[source.name] = _to_the_fabric(topology, source, network, members, [monitored],
                                            capture.mirror_to.nic_assisted_mirroring_vlan, owner)
        return dict(flows)

    # The copy first clears its input port (only the clone's: the original keeps it), so its
    # output is never to "the input port", which OpenFlow would skip. Open vSwitch 3.1 cannot
    # skip an output after encap(ethernet) in a clone: the pending Ethernet push leaks out of
    # the clone onto the original packet, and ovs-vswitchd aborts at the packet's next action
    # (`assertion !dp_packet_is_eth(packet) failed in push_eth()`). A copy's flow must not
    # depend on another flow (one for "came in on the exit port") being installed at the same
    # moment either: the controller adds and deletes flows one at a time.
    delivery, path_flows = copy_path(topology, capture.mirror_to, capture.analyzer, source,
                                     capture.label, owner)
    for name, extra in path_flows.items():
        flows[name] += extra

    # The copy's MPLS traffic class tells the encapsulator its direction (lab/recorder.py
    # EGRESS_TC): the label stays one per capture, and the fabric hop keeps the MPLS header.
    # encap(mpls) starts at traffic class 0, INGRESS_TC.
    def copy(traffic_class: int) -> Clone:
        marked = [SetField("mpls_tc", traffic_class)] if traffic_class != INGRESS_TC else []
        return Clone(tuple([SetField("in_port", 0), Encap("mpls"),
                            SetField("mpls_label", capture.label)] + marked
                           + [Encap("ethernet")] + delivery))

    if capture.direction.copies_ingress:
        table = INGRESS_MIRROR + capture.slot
        flows[source.name].append(flow(table, 100, in_port=port, owner=owner,
                                       actions=[copy(INGRESS_TC)], goto=_next_slot(table)))
    if capture.direction.copies_egress:
        table = EGRESS_MIRROR + capture.slot
        flows[source.name].append(flow(table, 100, **{REG_OUT_PORT: port}, owner=owner,
                                       actions=[copy(EGRESS_TC)], goto=_next_slot(table)))
    return dict(flows)


def copy_path(topology: Topology, destination: MirrorTo, analyzer: str, source: ComputeNode,
              label: int, owner: int) -> tuple[list, dict[str, list[Flow]]]:
    """How a copy wrapped under `label` on `source`'s vRouter reaches the mirror encapsulator
    that builds it for `destination` (resolved; `analyzer` is its analyzer instance, unused for
    a static one): the actions that end the copy's clone, and the flows (of `owner`) its path
    needs, by compute node. A dynamic copy goes to the encapsulator of the analyzer's compute
    node (across the fabric when that is another one, whose vRouter hands it over); without the
    Juniper header it comes back unchanged under its label, and the analyzer's vRouter unwraps
    it for the analyzer's port. A static copy is built on `source` itself (VXLAN to the VTEP,
    which table 0 sends out to the fabric)."""
    flows: dict[str, list[Flow]] = defaultdict(list)
    if destination.nh_mode == "static":
        analyzer_interface, target = None, source
    else:
        analyzer_interface = analyzers(topology)[analyzer].interfaces[0]
        target = topology.compute(analyzer_interface.compute)
    delivery = [SetField("eth_src", source.fabric_mac), SetField("eth_dst", target.fabric_mac),
                Output(ENCAP_PORT if target.name == source.name else FABRIC_PORT)]
    if target.name != source.name:
        flows[target.name].append(flow(
            CLASSIFY, 200, in_port=FABRIC_PORT, eth_type=0x8847, mpls_label=label,
            owner=owner, actions=[Output(ENCAP_PORT)]))
    if analyzer_interface is not None and not destination.juniper_header:
        flows[target.name].append(flow(
            CLASSIFY, 210, in_port=ENCAP_PORT, eth_type=0x8847, mpls_label=label, owner=owner,
            actions=[Decap(), Decap(inner_ethernet=True), Output(analyzer_interface.ofport)]))
    return delivery, dict(flows)


def destination_encapsulation(topology: Topology, destination: MirrorTo, source: ComputeNode,
                              network: str, mirror_index: int) -> Encapsulation:
    """How the mirror encapsulator wraps copies that `source`'s vRouter makes of `network`'s
    packets for `destination` (resolved): from the vRouter (eth_src) to the analyzer (its MAC
    and address, the destination's UDP port), with the compute node's fabric address as the
    outer source, `mirror_index`, and the network's fq-name as the VN (as Contrail writes it,
    and as the config API shows it); for a static destination, VXLAN with its VNI from the
    compute node's fabric address and MAC to the VTEP's."""
    vn = ":".join(topology.network_fq_name(network))
    if destination.nh_mode == "static":
        vtep = destination.static_nh_header
        return Encapsulation(eth_src=source.fabric_mac, eth_dst=vtep.vtep_dst_mac_address,
                             ip_src=str(topology.fabric_ip(source)), ip_dst=vtep.vtep_dst_ip_address,
                             udp_port=VXLAN_PORT, mirror_index=mirror_index,
                             vn=vn, juniper_header=False, vni=vtep.vni)
    return Encapsulation(eth_src=VROUTER_MAC, eth_dst=destination.analyzer_mac_address,
                         ip_src=str(topology.fabric_ip(source)),
                         ip_dst=destination.analyzer_ip_address, udp_port=destination.udp_port,
                         mirror_index=mirror_index, vn=vn,
                         juniper_header=destination.juniper_header)


def capture_encapsulation(topology: Topology, capture: Capture) -> Encapsulation:
    """How the mirror encapsulator wraps `capture`'s copies (`destination_encapsulation` of its
    destination, from the monitored interface's compute node, for its network, with the
    capture's mirror index)."""
    monitored = topology.interface_by_port_name(capture.interface)
    return destination_encapsulation(topology, capture.mirror_to, topology.compute(capture.compute),
                                     monitored.network, capture.mirror_index)


@dataclass(frozen=True)
class NicMirror:
    """The fabric switch's mirror of one NIC-assisted capture: frames tagged `vlan` go to
    `fabric_analyzer` too (an OVS Mirror with select_vlan, named `name`)."""

    name: str
    vlan: int
    fabric_analyzer: str


def nic_mirrors(topology: Topology, captures: list[Capture]) -> list[NicMirror]:
    """The fabric mirrors the active NIC-assisted captures need."""
    return [NicMirror(f"nic-{c.id}", c.mirror_to.nic_assisted_mirroring_vlan, c.analyzer)
            for c in captures if c.active and c.mirror_to.nic_assisted_mirroring]
