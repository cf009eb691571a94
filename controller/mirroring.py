"""Captures and analyzers: the validated, immutable intent of interface mirroring. No I/O.

A capture copies one guest interface's traffic (Contrail's `interface_mirror`) to an analyzer
instance. Analyzers are VMs of the topology whose `analyzer` field names the instance.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from mirrorlab.controller.errors import Conflict, InvalidRequest, NotFound
from mirrorlab.controller.mirrorto import MirrorTo, not_on_the_wire_yet
from mirrorlab.recorder import DEFAULT_LIMIT_BYTES
from mirrorlab.topofile import first_free_address
from mirrorlab.topology import (
    ENCAP_PORT, FIRST_ANALYZER_PORT, VM, FabricAnalyzer, ComputeNode, Interface, Topology, interface_mac, ipv6_for,
)

DEFAULT_ANALYZER = "interface-packet-capture"
# Contrail keeps at most 255 mirror entries per vRouter.
MAX_CAPTURES_PER_VROUTER = 255
# Each capture on an interface takes one of its mirror slots (one flow table per slot and
# direction), so the copies of several captures of one interface never depend on each other.
MAX_CAPTURES_PER_INTERFACE = 8
# Mirrored copies travel as Ethernet-in-MPLS with label CAPTURE_LABEL_BASE + capture id, which
# tells the analyzer's recorder which capture a copy belongs to.
CAPTURE_LABEL_BASE = 0x80000
MAX_CAPTURE_ID = 0xFFFFF - CAPTURE_LABEL_BASE
# A capture's pcap file may not be smaller than this: room for its header and a few frames.
MIN_LIMIT_BYTES = 1024


class Direction(str, enum.Enum):
    """Seen from the vRouter, as in Contrail: ingress = what the VM sends, egress = what is
    delivered to it."""

    INGRESS = "ingress"
    EGRESS = "egress"
    BOTH = "both"

    @property
    def copies_ingress(self) -> bool:
        """Whether packets the VM sends are copied."""
        return self is not Direction.EGRESS

    @property
    def copies_egress(self) -> bool:
        """Whether packets delivered to the VM are copied."""
        return self is not Direction.INGRESS


# Who may say they start a capture: the capture screen, the CLI, any other API client.
REQUEST_ORIGINS = ("screen", "cli", "api")
# A capture configured on the port: a virtual-machine-interface's interface_mirror, set through
# the configuration API (controller.vncserver); it has no lease and lasts until unset.
PORT_ORIGIN = "port"


@dataclass(frozen=True)
class Capture:
    """One capture: which interface, which direction, to which analyzer, in which slot."""

    id: int
    compute: str
    interface: str  # the vRouter port name
    direction: Direction
    analyzer: str
    slot: int
    started_at: float
    stopped_at: float | None = None
    # A leased capture (the web UI's) stops by itself unless renewed within lease_seconds.
    lease_seconds: float | None = None
    lease_expires_at: float | None = None
    # The most bytes its pcap file may hold; the analyzer's recorder stops writing there.
    limit_bytes: int = DEFAULT_LIMIT_BYTES
    # Why it stopped, when not by a user's request (a limit, its lease, its recorder's failure).
    stop_reason: str | None = None
    failed: bool = False
    # What a browser presents to stop the capture by beacon or renew its lease: known only to
    # whoever started it (kept out of repr, so it stays out of logs).
    secret: str | None = field(default=None, repr=False)
    # Who started it: the capture screen, the CLI, another API client, or a port's
    # interface_mirror (PORT_ORIGIN).
    origin: str = "api"
    # Where its copies go and how they travel (Contrail's mirror_to), the analyzer filled in.
    mirror_to: MirrorTo = MirrorTo()
    # Its entry in its vRouter's mirror table (0..254, one per active capture of the vRouter),
    # carried in the copies' UDP source port (see lab/juniper.py).
    mirror_index: int = 0

    @property
    def active(self) -> bool:
        """Whether the capture still mirrors."""
        return self.stopped_at is None

    @property
    def state(self) -> str:
        """"active", "stopped", or "failed" (stopped because something broke)."""
        if self.active:
            return "active"
        return "failed" if self.failed else "stopped"

    @property
    def label(self) -> int:
        """MPLS label that marks this capture's copies."""
        return CAPTURE_LABEL_BASE + self.id

    def stopped(self, at: float, reason: str | None = None, failed: bool = False) -> "Capture":
        """A copy of this capture, stopped at time `at` (for `reason`; `failed` if something
        broke)."""
        return replace(self, stopped_at=at, stop_reason=reason, failed=failed)

    def renewed(self, at: float) -> "Capture":
        """A copy of this leased capture whose lease runs from time `at`."""
        if self.lease_seconds is None:
            raise Conflict(f"capture {self.id} has no lease to renew", "id")
        return replace(self, lease_expires_at=at + self.lease_seconds)

    def lease_expired(self, now: float) -> bool:
        """Whether this capture is active on a lease that ran out."""
        return self.active and self.lease_expires_at is not None and now >= self.lease_expires_at


def analyzers(topology: Topology) -> dict[str, VM]:
    """Analyzer instances of the lab, by name."""
    return {vm.analyzer: vm for vm in topology.vms if vm.analyzer}


def find_compute(topology: Topology, vrouter: str) -> ComputeNode:
    """The compute node whose vRouter is `vrouter` (the compute node's name, or the bridge's)."""
    compute = vrouter[3:] if vrouter.startswith("vr-") and not topology.has("compute", vrouter) else vrouter
    if not topology.has("compute", compute):
        known = ", ".join(c.name for c in topology.computes)
        raise NotFound(f"unknown vrouter '{vrouter}' (known: {known})", "vrouter")
    return topology.compute(compute)


def find_interface(topology: Topology, vrouter: str, interface: str) -> Interface:
    """The interface `interface` (port name like tap-vm1-0, or VM-side name like vm1-eth0)
    on the vRouter of compute node `vrouter` (its bridge name vr-NAME works too)."""
    compute = find_compute(topology, vrouter).name
    for candidate in topology.interfaces_on(compute):
        if interface in (candidate.port_name, candidate.name):
            return candidate
    known = ", ".join(i.port_name for i in topology.interfaces_on(compute)) or "none"
    raise NotFound(f"unknown interface '{interface}' on vrouter '{compute}' (known: {known})",
                   "interface")


def parse_origin(value: str) -> str:
    """`value` if it is an origin a capture request may claim (one of REQUEST_ORIGINS: the
    port origin belongs to the configuration API alone)."""
    if value not in REQUEST_ORIGINS:
        raise InvalidRequest(f"bad origin '{value}' (use {', '.join(REQUEST_ORIGINS[:-1])} "
                             f"or {REQUEST_ORIGINS[-1]})", "origin")
    return value


def parse_direction(value: str | None) -> Direction:
    """The `Direction` named by `value` (default both)."""
    if value is None:
        return Direction.BOTH
    try:
        return Direction(value)
    except ValueError:
        raise InvalidRequest(f"bad direction '{value}' (use ingress, egress or both)",
                             "direction") from None


MAX_LEASE_SECONDS = 3600.0


def named_analyzer(topology: Topology, analyzer: str | None, mirror_to: MirrorTo) -> str | None:
    """The analyzer a capture request names: `analyzer`, or mirror_to's `analyzer_name`, or
    the analyzer whose address is mirror_to's `analyzer_ip_address`; None when it names none
    (the default analyzer then, launched if need be)."""
    if analyzer is not None and mirror_to.analyzer_name is not None:
        raise InvalidRequest("give either 'analyzer' or 'mirror_to.analyzer_name', not both",
                             "mirror_to.analyzer_name")
    name = analyzer or mirror_to.analyzer_name
    if name is None and mirror_to.analyzer_ip_address is not None:
        by_address = [n for n, vm in analyzers(topology).items()
                      if str(vm.interfaces[0].ip) == mirror_to.analyzer_ip_address]
        if not by_address:
            raise NotFound(f"no analyzer has address {mirror_to.analyzer_ip_address} (known: "
                           f"{_known_analyzers(topology)})", "mirror_to.analyzer_ip_address")
        name = by_address[0]
    return name


def find_vtep(topology: Topology, mirror_to: MirrorTo) -> FabricAnalyzer:
    """The fabric analyzer a static destination's VTEP address names (its MAC must agree):
    every address of the lab lives in a namespace the lab made, so a VTEP is one of them."""
    vtep = mirror_to.static_nh_header
    where = "mirror_to.static_nh_header."
    for probe in topology.fabric_analyzers:
        if str(probe.ip) == vtep.vtep_dst_ip_address:
            if probe.mac != vtep.vtep_dst_mac_address:
                raise Conflict(f"{where}vtep_dst_mac_address '{vtep.vtep_dst_mac_address}' is not "
                               f"VTEP {probe.name}'s ({probe.mac})", where + "vtep_dst_mac_address")
            return probe
    known = ", ".join(f"{p.name} {p.ip} {p.mac}" for p in topology.fabric_analyzers) or \
        "none; declare one under fabric_analyzers in the topology file"
    raise NotFound(f"no VTEP of this lab has address {vtep.vtep_dst_ip_address} (fabric "
                   f"analyzers: {known})", where + "vtep_dst_ip_address")


def find_nic_analyzer(topology: Topology, mirror_to: MirrorTo) -> FabricAnalyzer:
    """The fabric analyzer a NIC-assisted capture's mirror goes to: the one mirror_to names
    (analyzer_name or analyzer_ip_address), else the lab's first."""
    for probe in topology.fabric_analyzers:
        if mirror_to.analyzer_name in (None, probe.name) and \
                mirror_to.analyzer_ip_address in (None, str(probe.ip)):
            return probe
    known = ", ".join(f"{p.name} {p.ip}" for p in topology.fabric_analyzers) or \
        "none; declare one under fabric_analyzers in the topology file"
    raise NotFound(f"NIC-assisted mirroring goes to a fabric analyzer; none matches (fabric "
                   f"analyzers: {known})", "mirror_to.analyzer_name")


def _known_analyzers(topology: Topology) -> str:
    return ", ".join(f"{name} {vm.interfaces[0].ip}" for name, vm in sorted(analyzers(topology).items())) or "none"


def resolve_destination(topology: Topology, analyzer: str | None,
                        mirror_to: MirrorTo) -> tuple[str, MirrorTo]:
    """Where a capture asking for `analyzer` (an analyzer instance, already named; None for a
    static or NIC-assisted destination) and `mirror_to` sends its copies: the analyzer instance
    or fabric analyzer, and `mirror_to` with that analyzer's address, MAC and network filled
    in. Raises naming the field at fault."""
    unsupported = not_on_the_wire_yet(mirror_to)
    if unsupported is not None:
        raise unsupported
    if mirror_to.nh_mode == "static":
        if analyzer is not None or mirror_to.analyzer_name is not None:
            raise InvalidRequest("a static destination goes to its VTEP (static_nh_header), not "
                                 "to an analyzer instance",
                                 "mirror_to.analyzer_name" if analyzer is None else "analyzer")
        analyzer, destination = find_vtep(topology, mirror_to).name, mirror_to
    elif mirror_to.nic_assisted_mirroring:
        if analyzer is not None:
            raise InvalidRequest("NIC-assisted mirroring goes to a fabric analyzer "
                                 "(mirror_to.analyzer_name), not to an analyzer instance", "analyzer")
        probe = find_nic_analyzer(topology, mirror_to)
        analyzer = probe.name
        destination = replace(mirror_to, analyzer_name=probe.name,
                              analyzer_ip_address=str(probe.ip), analyzer_mac_address=probe.mac)
    elif analyzer not in analyzers(topology):
        known = ", ".join(sorted(analyzers(topology))) or "none"
        raise NotFound(f"unknown analyzer '{analyzer}' (known: {known})",
                       "mirror_to.analyzer_name" if mirror_to.analyzer_name else "analyzer")
    else:
        analyzer_interface = analyzers(topology)[analyzer].interfaces[0]
        destination = mirror_to.for_analyzer(analyzer, str(analyzer_interface.ip),
                                             analyzer_interface.mac, analyzer_interface.network)
    return analyzer, destination


def requested_destination(topology: Topology, mirror_to: MirrorTo) -> tuple[str, MirrorTo]:
    """Where copies sent to `mirror_to` alone go (`resolve_destination`): the analyzer it
    names (by name or address; the default analyzer when it names none), or the fabric analyzer
    of a static or NIC-assisted destination, and `mirror_to` filled in."""
    analyzer = None if mirror_to.to_fabric else (
        named_analyzer(topology, None, mirror_to) or DEFAULT_ANALYZER)
    return resolve_destination(topology, analyzer, mirror_to)


def plan_capture(topology: Topology, captures: list[Capture], capture_id: int, vrouter: str,
                 interface: str, direction: str | None, analyzer: str | None, now: float,
                 lease_seconds: float | None = None,
                 limit_bytes: int = DEFAULT_LIMIT_BYTES, secret: str | None = None,
                 origin: str = "api", mirror_to: MirrorTo = MirrorTo()) -> Capture:
    """A new capture, checked against the topology, its analyzers and the active captures;
    `secret` is what its beacon stop and lease renewals must present; `origin` says who
    starts it (one of REQUEST_ORIGINS, or PORT_ORIGIN); `mirror_to` is its destination (from
    `parse_mirror_to`), which gets `analyzer`'s address, MAC and network; a static one names
    no analyzer (`analyzer` None) but its VTEP, a fabric analyzer."""
    if origin != PORT_ORIGIN:
        parse_origin(origin)
    if limit_bytes < MIN_LIMIT_BYTES:
        raise InvalidRequest(f"bad limit_bytes {limit_bytes} (at least {MIN_LIMIT_BYTES})",
                             "limit_bytes")
    if lease_seconds is not None and not 0 < lease_seconds <= MAX_LEASE_SECONDS:
        raise InvalidRequest(f"bad lease_seconds {lease_seconds} (more than 0, at most "
                             f"{MAX_LEASE_SECONDS:.0f})", "lease_seconds")
    target = find_interface(topology, vrouter, interface)
    parsed_direction = parse_direction(direction)
    analyzer, destination = resolve_destination(topology, analyzer, mirror_to)
    if capture_id > MAX_CAPTURE_ID:
        raise Conflict("capture ids are exhausted; reset the lab's capture store")
    active = [c for c in captures if c.active]
    on_vrouter = [c for c in active if c.compute == target.compute]
    if len(on_vrouter) >= MAX_CAPTURES_PER_VROUTER:
        raise Conflict(f"vrouter '{target.compute}' has {MAX_CAPTURES_PER_VROUTER} active mirror "
                       f"entries already, the most a vRouter holds; stop one first")
    # Indexes go round (from the capture id on), so one freed is taken again only when all the
    # others were: copies still on their way after a stop never land in a newer capture.
    taken_indexes = {c.mirror_index for c in on_vrouter}
    mirror_index = next(i % MAX_CAPTURES_PER_VROUTER
                        for i in range(capture_id, capture_id + MAX_CAPTURES_PER_VROUTER)
                        if i % MAX_CAPTURES_PER_VROUTER not in taken_indexes)
    if mirror_to.nic_assisted_mirroring:
        vlan = mirror_to.nic_assisted_mirroring_vlan
        clash = next((c for c in active if c.mirror_to.nic_assisted_mirroring
                      and (c.mirror_to.nic_assisted_mirroring_vlan == vlan
                           or c.interface == target.port_name)), None)
        if clash is not None:
            raise Conflict(f"active NIC-assisted capture {clash.id} uses VLAN "
                           f"{clash.mirror_to.nic_assisted_mirroring_vlan} on {clash.interface}; "
                           f"one VLAN, and one NIC-assisted capture, per interface at a time",
                           "mirror_to.nic_assisted_mirroring_vlan")
    taken = {c.slot for c in on_vrouter if c.interface == target.port_name}
    free = [slot for slot in range(MAX_CAPTURES_PER_INTERFACE) if slot not in taken]
    if not free:
        raise Conflict(f"interface '{target.port_name}' has {MAX_CAPTURES_PER_INTERFACE} active "
                       f"captures already, the most one interface holds; stop one first")
    return Capture(id=capture_id, compute=target.compute, interface=target.port_name,
                   direction=parsed_direction, analyzer=analyzer, slot=free[0], started_at=now,
                   lease_seconds=lease_seconds,
                   lease_expires_at=now + lease_seconds if lease_seconds is not None else None,
                   limit_bytes=limit_bytes, secret=secret, origin=origin, mirror_to=destination,
                   mirror_index=mirror_index)


def plan_analyzer(topology: Topology, name: str, network: str | None, compute: str | None) -> VM:
    """A new analyzer VM: named an<N>, in `network` (default: the analyzer network), on
    `compute` (default: the first compute node), with the next free address and port."""
    if not name or len(name) > 63 or not all(ch.isascii() and ch.isalnum() or ch in "-_." for ch in name):
        raise InvalidRequest(f"bad analyzer name '{name}' (1-63 letters, digits, '-', '_', '.')",
                             "name")
    if name in analyzers(topology):
        raise Conflict(f"analyzer '{name}' exists already", "name")
    network_name = network or topology.analyzer_network.name
    if not topology.has("network", network_name):
        known = ", ".join(n.name for n in topology.networks)
        raise NotFound(f"unknown network '{network_name}' (known: {known})", "network")
    compute_name = compute or topology.computes[0].name
    if not topology.has("compute", compute_name):
        known = ", ".join(c.name for c in topology.computes)
        raise NotFound(f"unknown compute node '{compute_name}' (known: {known})", "compute")
    net = topology.network(network_name)
    taken_macs = {i.mac for i in topology.interfaces()}
    taken_ip6 = {i.ip6 for i in topology.interfaces() if i.ip6}
    used = topology.used_addresses(network_name)

    def is_taken(address) -> bool:
        return (address in used or interface_mac(address) in taken_macs
                or (net.subnet6 is not None and ipv6_for(net.subnet6, address, net.subnet) in taken_ip6))

    ip = first_free_address(net.subnet, is_taken)
    if ip is None:
        raise Conflict(f"network '{network_name}' has no free address left", "network")
    taken_ports = {i.ofport for i in topology.interfaces_on(compute_name)}
    ofport = next(p for p in range(FIRST_ANALYZER_PORT, ENCAP_PORT) if p not in taken_ports)
    vm_name = next(f"an{n}" for n in range(1, 10**6) if not topology.has("vm", f"an{n}"))
    interface = Interface(vm=vm_name, index=0, network=network_name, ip=ip,
                          prefixlen=net.subnet.prefixlen,
                          ip6=ipv6_for(net.subnet6, ip, net.subnet) if net.subnet6 else None,
                          prefixlen6=net.subnet6.prefixlen if net.subnet6 else None,
                          mac=interface_mac(ip), compute=compute_name, ofport=ofport)
    return VM(name=vm_name, compute=compute_name, interfaces=(interface,), analyzer=name)
