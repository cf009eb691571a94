"""A software flow table: runs `mirrorlab.controller.flowmodel` flows on dictionary packets, and
a whole lab of them joined by a learning fabric, so tests can ask where a packet would go
without root, Open vSwitch or Mininet:

    from mirrorlab.testing.flowsim import LabSim

    sim = LabSim.of("default", captures=[("vm1", "both")])
    received = sim.where("vm1", sim.frame("vm1", "vm2"))   # {"vm2": [frame], "an1": [copy]}

Frames are dicts of header fields (eth_src, eth_dst, eth_type, arp_*, ip_src, ip_dst, payload;
IPv6 ones under OpenFlow's names: ipv6_src, ipv6_dst, icmpv6_type, ipv6_nd_target; ip_proto
and ip_ttl, the TTL or hop limit, for both). A neighbour discovery message carries its one
link-layer address option as nd_options_type (1 source, 2 target) and nd_option_mac: OpenFlow's
ipv6_nd_sll reads it from a solicitation with a source option, ipv6_nd_tll from an
advertisement with a target option, and setting either writes it only when the packet has that
option (as Open vSwitch's datapath does), so nd_options_type must change first.
Encapsulation nests them: Encap("mpls") gives {"packet_type": "mpls", "mpls_label", "inner"};
Encap("ethernet") adds eth_* fields around that. Semantics follow Open vSwitch: the
highest-priority match wins (two equal-priority matches are an error here, since OVS would pick
one arbitrarily), `resubmit` keeps changes, `clone` does not, output to the input port needs
"in_port" (or an input port cleared with SetField("in_port", 0)).

The lab's mirror encapsulator is simulated too: an MPLS copy a vRouter outputs to ENCAP_PORT
comes back in through ENCAP_PORT as the dict `juniper_copy` makes (the bytes themselves are
lab/juniper.py's, tested on their own), or as it went for a capture without the header.

The fabric switch mirrors a NIC-assisted capture's VLAN to its fabric analyzer, as the lab's
OVS Mirror (select_vlan) does.

Each switch has a connection tracker, as Open vSwitch's `ct()` action uses it: per zone, the
connections committed, by (protocol, source, destination, ports) for TCP and UDP, (1, source,
destination, icmp_id) for ICMP echo. A packet whose reversed key is committed is a reply
(ct_state +trk+est+rpl); one whose key is, +trk+est; else +trk+new; ICMP other than echo
request and reply (or a frame without icmp_type), +trk+inv, never a reply. `ct(table=N)`
continues in table N with that ct_state (registers kept); the actions after it run on the
packet too, without it, as in Open vSwitch. Connection states beyond that (TCP's handshake,
timeouts) are not modelled.

One Open vSwitch 3.1 bug is an error here too: when a clone encapsulates a packet and OVS then
skips the clone's output (to the input port), the pending `encap(ethernet)` leaks out of the
clone and OVS pushes an Ethernet header onto the original packet at its next action, which
aborts ovs-vswitchd (`assertion !dp_packet_is_eth(packet) failed in push_eth()`).
"""
from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass

from pathlib import Path

from mirrorlab.controller.errors import NotFound
from mirrorlab.controller.flowmodel import (
    Clone, Ct, Decap, DecTtl, Encap, Flow, Move, Output, PopVlan, PushVlan, Resubmit, SetField,
)
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer, plan_capture
from mirrorlab.controller.pipeline import capture_encapsulation, nic_mirrors
from mirrorlab.controller.policyflows import desired_flows, policy_encapsulations
from mirrorlab.juniper import EGRESS, INGRESS, Encapsulation
from mirrorlab.topofile import resolve
from mirrorlab.topology import ENCAP_PORT, FABRIC_PORT, Topology

MAX_DEPTH = 64


class AmbiguousMatch(AssertionError):
    """Two flows of one priority match the same packet."""


class SkippedCopyOutput(AssertionError):
    """A clone encapsulated the packet and its output was skipped: Open vSwitch 3.1 aborts."""


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _matches(value, wanted) -> bool:
    if isinstance(wanted, tuple) and isinstance(wanted[0], str) and _is_ip_address(wanted[0]):
        if value is None:
            return False
        address, want, mask = (ipaddress.ip_address(a) for a in (value, *wanted))
        return address.version == want.version and int(address) & int(mask) == int(want) & int(mask)
    if isinstance(wanted, tuple):
        want, mask = wanted
        if isinstance(want, str):
            want_b = bytes.fromhex(want.replace(":", ""))
            mask_b = bytes.fromhex(mask.replace(":", ""))
            if not isinstance(value, str):
                return False
            value_b = bytes.fromhex(value.replace(":", ""))
            return all((v & m) == (w & m) for v, w, m in zip(value_b, want_b, mask_b))
        return value is not None and (value & mask) == (want & mask)
    return value == wanted


# OpenFlow's names for the fields frames carry under other names here; transport ports only
# for their own protocol.
FRAME_FIELDS = {"ipv4_src": "ip_src", "ipv4_dst": "ip_dst"}
TRANSPORT_FIELDS = {"tcp_src": (6, "tp_src"), "tcp_dst": (6, "tp_dst"),
                    "udp_src": (17, "tp_src"), "udp_dst": (17, "tp_dst")}


CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_INVALID, CT_TRACKED = 0x01, 0x02, 0x08, 0x10, 0x20
# (request, reply) ICMP types of echo, by IP protocol: ICMP, ICMPv6.
ECHO_TYPES = {1: (8, 0), 58: (128, 129)}
ND_OPTION_FIELDS = {"ipv6_nd_sll": (135, 1), "ipv6_nd_tll": (136, 2)}  # (ICMPv6 type, option)


def _connection_keys(packet: dict) -> tuple[tuple, tuple] | None:
    """(the key of the connection `packet` would open, the key of the one it would answer), or
    None for a packet the tracker cannot place (not IP, ICMP other than echo)."""
    if packet.get("eth_type") == 0x0800 and "ip_src" in packet:
        src, dst = packet["ip_src"], packet["ip_dst"]
    elif packet.get("eth_type") == 0x86DD and "ipv6_src" in packet:
        src, dst = packet["ipv6_src"], packet["ipv6_dst"]
    else:
        return None
    protocol = packet.get("ip_proto")
    if protocol in ECHO_TYPES:
        kind = packet.get("icmp_type" if protocol == 1 else "icmpv6_type")
        request, reply = ECHO_TYPES[protocol]
        if kind not in (request, reply):
            return None
        ident = packet.get("icmp_id")
        opens = (protocol, src, dst, ident) if kind == request else None
        return opens, (protocol, dst, src, ident) if kind == reply else None
    sport, dport = packet.get("tp_src"), packet.get("tp_dst")
    return (protocol, src, dst, sport, dport), (protocol, dst, src, dport, sport)


def _field(name: str, packet: dict, meta: dict):
    if name in ("in_port", "ct_state") or name.startswith("reg"):
        return meta.get(name, 0)
    if name in TRANSPORT_FIELDS:
        protocol, key = TRANSPORT_FIELDS[name]
        return packet.get(key) if packet.get("ip_proto") == protocol else None
    if name in ND_OPTION_FIELDS:
        return packet.get("nd_option_mac") if _has_nd_option(packet, name) else None
    return packet.get(FRAME_FIELDS.get(name, name))


def _has_nd_option(packet: dict, name: str) -> bool:
    """Whether `packet` is the neighbour discovery message whose link-layer address option
    OpenFlow's field `name` (ipv6_nd_sll or ipv6_nd_tll) stands for."""
    kind, option = ND_OPTION_FIELDS[name]
    return packet.get("icmpv6_type") == kind and packet.get("nd_options_type") == option


class FlowTable:
    """One switch: its flows, looked up per table."""

    def __init__(self, flows):
        self.tables: dict[int, list[Flow]] = {}
        for f in flows:
            self.tables.setdefault(f.table, []).append(f)
        for table in self.tables.values():
            table.sort(key=lambda f: -f.priority)
        self.hits: dict[Flow, int] = {}
        self.connections: set[tuple] = set()  # (zone, key) of every committed connection

    def lookup(self, table: int, packet: dict, meta: dict) -> Flow | None:
        """The flow of `table` that handles the packet, or None (a table miss drops)."""
        found = None
        for f in self.tables.get(table, []):
            if found is not None and f.priority < found.priority:
                break
            if all(_matches(_field(k, packet, meta), v) for k, v in f.match):
                if found is not None:
                    raise AmbiguousMatch(f"{found.ofctl()}\n{f.ofctl()}")
                found = f
        return found

    def process(self, in_port: int, packet: dict) -> list[tuple[int, dict]]:
        """Run a packet arriving on `in_port` through the pipeline; return (port, packet) outputs."""
        outputs: list[tuple[int, dict]] = []
        meta = {"in_port": in_port}
        self._run_table(0, copy.deepcopy(packet), meta, outputs, 0)
        return outputs

    def _run_table(self, table, packet, meta, outputs, depth):
        if depth > MAX_DEPTH:
            raise AssertionError("resubmit depth exceeded")
        f = self.lookup(table, packet, meta)
        if f is None:
            return packet
        self.hits[f] = self.hits.get(f, 0) + 1
        packet = self._run_actions(f.actions, packet, meta, outputs, depth)
        if f.goto is not None:
            packet = self._run_table(f.goto, packet, meta, outputs, depth + 1)
        return packet

    def _track(self, action: Ct, packet: dict) -> int:
        """The packet's ct_state in the action's zone, committing its connection if asked."""
        return _track_state(self.connections, action.zone, packet, action.commit)

    def _run_actions(self, actions, packet, meta, outputs, depth, in_clone=False):
        encapsulated = False
        for action in actions:
            if isinstance(action, Output):
                port = meta["in_port"] if action.port == "in_port" else action.port
                if action.port != "in_port" and port == meta["in_port"]:
                    if encapsulated:
                        raise SkippedCopyOutput(f"output:{port} to the input port skipped after "
                                                f"an encap in a clone: {actions}")
                    continue  # OpenFlow drops output to the input port unless IN_PORT is used
                outputs.append((port, copy.deepcopy(packet)))
            elif isinstance(action, SetField) and action.field in ND_OPTION_FIELDS:
                if packet.get("nd_options_type") == ND_OPTION_FIELDS[action.field][1]:
                    packet["nd_option_mac"] = action.value  # else no such option to write
            elif isinstance(action, SetField):
                target = meta if action.field.startswith("reg") or action.field == "in_port" \
                    else packet
                target[action.field] = action.value
            elif isinstance(action, Move):
                packet[action.dst] = packet.get(action.src)
            elif isinstance(action, Encap):
                packet = _encap(packet, action.header)
                encapsulated = in_clone
            elif isinstance(action, Decap):
                packet = _decap(packet, action.inner_ethernet)
            elif isinstance(action, PushVlan):
                assert "vlan_vid" not in packet, "one VLAN tag is all the lab pushes"
                packet["vlan_vid"] = 0x1000
            elif isinstance(action, PopVlan):
                del packet["vlan_vid"]
            elif isinstance(action, DecTtl):
                packet["ip_ttl"] = packet.get("ip_ttl", 64) - 1
                if packet["ip_ttl"] <= 0:
                    return packet  # dropped; later actions of this list never run
            elif isinstance(action, Clone):
                self._run_actions(action.actions, copy.deepcopy(packet), dict(meta), outputs, depth,
                                  in_clone=True)
            elif isinstance(action, Resubmit):
                packet = self._run_table(action.table, packet, meta, outputs, depth + 1)
            elif isinstance(action, Ct):
                state = self._track(action, packet)
                if action.table is not None:
                    self._run_table(action.table, copy.deepcopy(packet), {**meta, "ct_state": state},
                                    outputs, depth + 1)
            else:
                raise AssertionError(f"unknown action {action!r}")
        return packet


def _track_state(connections: set, zone: int, packet: dict, commit: bool) -> int:
    keys = _connection_keys(packet)
    if keys is None:
        return CT_TRACKED | CT_INVALID
    opens, answers = keys
    if answers is not None and (zone, answers) in connections:
        return CT_TRACKED | CT_ESTABLISHED | CT_REPLY
    if opens is not None and (zone, opens) in connections:
        return CT_TRACKED | CT_ESTABLISHED
    if opens is None:
        return CT_TRACKED | CT_INVALID  # an echo reply to no request
    if commit:
        connections.add((zone, opens))
    return CT_TRACKED | CT_NEW


def _encap(packet: dict, header: str) -> dict:
    if header == "mpls":
        assert packet.get("packet_type", "ethernet") == "ethernet", "MPLS goes around an Ethernet frame here"
        return {"packet_type": "mpls", "mpls_label": 0, "inner": packet}
    assert header == "ethernet" and packet.get("packet_type") == "mpls", "encap(ethernet) needs MPLS"
    return {"packet_type": "ethernet", "eth_src": "00:00:00:00:00:00", "eth_dst": "00:00:00:00:00:00",
            "eth_type": 0x8847, **_mpls_fields(packet), "inner": packet["inner"]}


def _mpls_fields(packet: dict) -> dict:
    """The MPLS label of `packet`, and its traffic class if one was set (0 otherwise)."""
    return {key: packet[key] for key in ("mpls_label", "mpls_tc") if key in packet}


def _decap(packet: dict, inner_ethernet: bool) -> dict:
    if inner_ethernet:
        assert packet.get("packet_type") == "mpls", "this decap pops MPLS"
        return packet["inner"]
    assert packet.get("eth_type") == 0x8847, "decap() pops an Ethernet header around MPLS"
    return {"packet_type": "mpls", **_mpls_fields(packet), "inner": packet["inner"]}


@dataclass
class Delivery:
    """A packet that left a vRouter on a VM port."""

    compute: str
    port: int
    port_name: str
    packet: dict


def juniper_copy(encapsulation: Encapsulation, direction: str, original: dict) -> dict:
    """The dict of a copy the encapsulator made of `original` (sent by the monitored VM when
    `direction` is ingress, delivered to it when egress): Juniper header, or VXLAN for a static
    destination."""
    if encapsulation.vni is not None:
        return {"packet_type": "ethernet", "eth_src": encapsulation.eth_src,
                "eth_dst": encapsulation.eth_dst, "eth_type": 0x0800, "ip_src": encapsulation.ip_src,
                "ip_dst": encapsulation.ip_dst, "udp_dst": encapsulation.udp_port,
                "mirror_index": encapsulation.mirror_index, "vxlan_vni": encapsulation.vni,
                "inner": original}
    vn_field = "juniper_vn_src" if direction == INGRESS else "juniper_vn_dst"
    return {"packet_type": "ethernet", "eth_src": encapsulation.eth_src,
            "eth_dst": encapsulation.eth_dst, "eth_type": 0x0800, "ip_src": encapsulation.ip_src,
            "ip_dst": encapsulation.ip_dst, "udp_dst": encapsulation.udp_port,
            "mirror_index": encapsulation.mirror_index, vn_field: encapsulation.vn,
            "inner": original}


class LabSim:
    """Every vRouter of a topology as a software flow table, joined by a learning fabric, with
    the lab's mirror encapsulator."""

    def __init__(self, topology: Topology, captures=(), flows=None, policies=None):
        """`policies`: the rules of each policed network, as
        `mirrorlab.controller.vncpolicy.attached_rules` gives them."""
        self.topology = topology
        flows = flows if flows is not None else desired_flows(topology, list(captures), policies)
        self.switches = {name: FlowTable(flow_set) for name, flow_set in flows.items()}
        self.fabric_frames: list[tuple[str, dict]] = []
        self.encapsulations = {c.label: capture_encapsulation(topology, c)
                               for c in captures if c.active
                               and not c.mirror_to.nic_assisted_mirroring}
        self.encapsulations.update(policy_encapsulations(topology, policies or {}))
        # The fabric switch's mirrors of NIC-assisted captures: VLAN -> fabric analyzer name.
        self.nic_mirrors = {m.vlan: m.fabric_analyzer for m in nic_mirrors(topology, captures)}
        self.encapsulator_frames: list[tuple[str, dict]] = []
        # (label, direction, original) of what the encapsulator recorded (header-less captures).
        self.recorded_headerless: list[tuple[int, str, dict]] = []

    @classmethod
    def of(cls, topology: str | Path | Topology, captures=()) -> "LabSim":
        """The simulated lab of `topology` (a shipped topology's name such as "default", a
        topology file, or a `Topology`) with `captures`: (vm, direction) pairs, direction
        "ingress", "egress" or "both", each mirroring the VM's first interface to the default
        analyzer, placed where the controller places it (an analyzer VM on the first compute
        node). Raises `TopologyError` for a bad topology, and for a bad capture the refusal the
        API would give (a `mirrorlab.controller.errors.MirrorlabError` naming the problem)."""
        topology = resolve(topology)[0]
        planned = []
        if captures:
            topology = topology.with_vm(plan_analyzer(topology, DEFAULT_ANALYZER, None, None))
        for capture_id, (vm, direction) in enumerate(captures, start=1):
            if not topology.has("vm", vm):
                known = ", ".join(v.name for v in topology.vms if not v.analyzer)
                raise NotFound(f"unknown vm '{vm}' (known: {known})", "vm")
            interface = topology.vm(vm).interfaces[0]
            planned.append(plan_capture(topology, planned, capture_id, interface.compute,
                                        interface.port_name, direction, DEFAULT_ANALYZER, 0.0))
        return cls(topology, planned)

    def frame(self, source_vm: str, destination_vm: str, payload: str = "hello") -> dict:
        """An IPv4 frame from the first interface of `source_vm` to that of `destination_vm`
        (the vRouter answers ARP itself, so a VM addresses it to the peer's MAC)."""
        src = self.topology.vm(source_vm).interfaces[0]
        dst = self.topology.vm(destination_vm).interfaces[0]
        return {"eth_src": src.mac, "eth_dst": dst.mac, "eth_type": 0x0800,
                "ip_src": str(src.ip), "ip_dst": str(dst.ip), "payload": payload}

    def where(self, source_vm: str, frame: dict) -> dict[str, list[dict]]:
        """What each VM receives when the first interface of `source_vm` sends `frame`, by VM
        name (an analyzer VM receives capture copies, as `juniper_copy` describes them, whose
        "inner" is the mirrored frame). A VM that receives nothing is absent."""
        received: dict[str, list[dict]] = {}
        for delivery in self.send(self.topology.vm(source_vm).interfaces[0].port_name, frame):
            vm = self.topology.interface_by_port_name(delivery.port_name).vm
            received.setdefault(vm, []).append(delivery.packet)
        return received

    def send(self, sender_port_name: str, frame: dict) -> list[Delivery]:
        """Everything that reaches a VM or analyzer port after the interface `sender_port_name`
        sends `frame`."""
        interface = self.topology.interface_by_port_name(sender_port_name)
        return self._inject(interface.compute, interface.ofport, frame, 0)

    def _inject(self, compute: str, in_port: int, frame: dict, hops: int) -> list[Delivery]:
        assert hops < 4, "frame bounced around the fabric"
        deliveries = []
        for port, packet in self.switches[compute].process(in_port, frame):
            if port == FABRIC_PORT:
                self.fabric_frames.append((compute, packet))
                mirror_to = self.nic_mirrors.get(packet.get("vlan_vid", 0) & 0xFFF)
                if "vlan_vid" in packet and mirror_to is not None:
                    deliveries.append(Delivery(compute, port, mirror_to, copy.deepcopy(packet)))
                probe = next((p for p in self.topology.fabric_analyzers
                              if p.mac == packet.get("eth_dst")), None)
                if probe is not None:
                    deliveries.append(Delivery(compute, port, probe.name, packet))
                    continue
                target = next((c.name for c in self.topology.computes
                               if c.fabric_mac == packet.get("eth_dst")), None)
                assert target is not None, f"fabric frame to unknown MAC {packet.get('eth_dst')}"
                deliveries += self._inject(target, FABRIC_PORT, packet, hops + 1)
            elif port == ENCAP_PORT:
                self.encapsulator_frames.append((compute, packet))
                assert packet.get("eth_type") == 0x8847, f"non-copy to the encapsulator: {packet}"
                encapsulation = self.encapsulations.get(packet["mpls_label"])
                assert encapsulation is not None, f"copy with unknown label {packet['mpls_label']}"
                direction = EGRESS if packet.get("mpls_tc") == 1 else INGRESS
                self.recorded_headerless += [] if encapsulation.juniper_header else [
                    (packet["mpls_label"], direction, packet["inner"])]
                returned = (juniper_copy(encapsulation, direction, packet["inner"])
                            if encapsulation.juniper_header or encapsulation.vni is not None
                            else packet)
                deliveries += self._inject(compute, ENCAP_PORT, returned, hops + 1)
            else:
                names = [i.port_name for i in self.topology.interfaces_on(compute) if i.ofport == port]
                assert names, f"{compute}: output to unknown port {port}"
                deliveries.append(Delivery(compute, port, names[0], packet))
        return deliveries
