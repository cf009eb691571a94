"""Pure flow computation for network policies: routing between networks, deny, policy mirrors.

Contrail's semantics, as `controller.vncpolicy.attached_rules` gives each network its rules:
- Traffic within a network passes unless its first matching rule denies it.
- Traffic from network A to network B is routed by the vRouter, the networks' gateway (`.1`
  and `::1`, answered with the vRouter's MAC), only when the first matching rule of A and the
  first matching rule of B both pass it. A packet no rule of a network matches is denied.
- A passing rule with a mirror copies what it matches (both ways for `<>`) to its destination,
  any `mirror_to` a capture takes but NIC-assisted (controller.vncpolicy.policy_mirror_to),
  built as a capture's copies are (`controller.pipeline.copy_path`,
  `destination_encapsulation`); a packet goes to the destinations of both first matches, so at
  most 2.
- Both vRouters of a conversation mirror: the sender's as the packet leaves the VM, the
  receiver's as it arrives from the fabric. Across compute nodes the analyzer receives each
  packet twice, as in Contrail; on one compute node once.

Routing is stateful, as Contrail's vRouter, whose flows come in pairs: a packet the policies
route from A to B is committed to Open vSwitch's connection tracker (zone: the compute node's
index) by the sender's vRouter and by the receiver's as it arrives, and a packet answering it
(ct_state +rpl, a reply) is judged by the entry that passed its connection, reversed: so a `>`
pass rule from A to B lets B's replies through, while B cannot open a connection to A, and a
`>` mirror rule copies the replies too (the reverse flow takes its forward flow's action,
mirror included).

IPv4 and IPv6 alike: each entry's match is of one IP version (a rule without ethertype gives
entries of both, through each network's subnets), and its flows match that version's
EtherType and addresses. Neighbour solicitations and advertisements and link-local IPv6 are
never policed (`_unpoliced_ipv6`): the vRouter's own business, as ARP is.

Tables added to the pipeline (controller.pipeline):

  FORWARD (1)   IP unicast a local VM of a policed network sent -> conntrack, POLICY; IP
                from the overlay into a network routed or mirrored into -> committed to
                conntrack, POLICY_ARRIVAL.
  POLICY_ARRIVAL  delivered, then POLICY_AT_DESTINATION for the receiver's copies.
  POLICY        every (rule of A, rule of B) pair as one flow, highest priority first: deny
                (the VM still sent it: the ingress mirror tables see it), pass within the
                network (then the sender's policy copies), or route: the ingress mirror
                tables and the sender's policy copies see the packet as the VM sent it, then
                it is rewritten for B in place and forwarded by ROUTE. (Routing in a clone
                before the copies lost every copy after it in Open vSwitch 3.1.)
  ROUTE         a routed packet's destination address -> its VM's MAC, delivered to it or
                sent over the overlay of B.
  POLICY_AT_DESTINATION  the same pairs, matched on the receiver's side: its policy copies.
  Routed entries match ct_state -rpl; each has a reply entry (`PolicyEntry.reply`), its match
  reversed, matching +rpl.

REG_POLICY says how far a packet got: a VM sent it (UNCHECKED), the policies passed it
(CHECKED), or it came over the overlay into a policed network (FROM_OVERLAY), so a packet is
policed once, at its sender's vRouter.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from itertools import product

from mirrorlab.controller.errors import InvalidRequest, MirrorlabError, NotFound
from mirrorlab.controller.flowmodel import (
    CT_REPLY, CT_TRACKED, POLICY_OWNER, Clone, Ct, Decap, DecTtl, Encap, Flow, Output, Resubmit,
    SetField, flow,
)
from mirrorlab.controller.mirroring import Capture, requested_destination
from mirrorlab.controller.mirrorto import MirrorTo
from mirrorlab.controller.pipeline import (
    CLASSIFY, DELIVER, FORWARD, ICMPV6, INGRESS_MIRROR, ND_ADVERT, ND_SOLICIT, REG_OUT_PORT,
    capture_flows, copy_path,
    destination_encapsulation, forwarding_flows, overlay_encap, POLICY, POLICY_ARRIVAL,
    POLICY_AT_DESTINATION, REG_NETWORK, REG_POLICY, ROUTE, VROUTER_MAC,
)
from mirrorlab.controller.vncpolicy import PolicyRule
from mirrorlab.juniper import Encapsulation
from mirrorlab.recorder import EGRESS_TC
from mirrorlab.topology import FABRIC_PORT, ComputeNode, Interface, Topology

UNCHECKED, CHECKED, FROM_OVERLAY = 0, 1, 2  # values of REG_POLICY
UNICAST = ("00:00:00:00:00:00", "01:00:00:00:00:00")
ETHERTYPES = {4: 0x0800, 6: 0x86DD}  # by IP version
ICMP_VERSIONS = {1: 4, 58: 6}  # the IP version of each ICMP protocol
LINK_LOCAL6 = ipaddress.ip_network("fe80::/10")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Copies of policy mirrors carry labels from here up (captures' labels stay below), one per
# destination, mirroring vRouter and network, derived from what the label stands for (the
# destination whole), so that a label the mirror encapsulator has read never comes to mean
# anything else.
POLICY_LABEL_BASE = 0xC0000
POLICY_LABEL_BITS = 18
# Policy copies carry the mirror index no capture takes (captures use 0..254), in their UDP
# source port (lab/juniper.py), so an analyzer's recorder never files them under a capture.
POLICY_MIRROR_INDEX = 255
FIRST_PRIORITY = 10
MAX_PRIORITY = 0xFFFF


@dataclass(frozen=True)
class Match:
    """The packets one side of a rule matches: IP protocol, source and destination networks,
    source and destination port ranges, IP version (4 or 6); None anywhere means any. The
    addresses and the ICMP protocols (1 is IPv4's, 58 IPv6's) fix the version: a match
    mixing versions cannot be made (`ValueError`; `Match.of` gives None)."""

    protocol: int | None = None
    source: IPNetwork | None = None
    destination: IPNetwork | None = None
    source_ports: tuple[int, int] | None = None
    destination_ports: tuple[int, int] | None = None
    version: int | None = None

    def __post_init__(self):
        versions = {n.version for n in (self.source, self.destination) if n is not None}
        versions |= {v for v in (self.version, ICMP_VERSIONS.get(self.protocol)) if v is not None}
        if len(versions) > 1:
            raise ValueError(f"a match cannot mix IP versions: {self}")
        object.__setattr__(self, "version", versions.pop() if versions else None)

    @classmethod
    def of(cls, **fields) -> "Match | None":
        """The match of `fields`, or None when they mix IP versions (no packet matches)."""
        try:
            return cls(**fields)
        except ValueError:
            return None

    def __and__(self, other: "Match") -> "Match | None":
        """The packets both match, or None if none."""
        if None not in (self.protocol, other.protocol) and self.protocol != other.protocol:
            return None
        if None not in (self.version, other.version) and self.version != other.version:
            return None
        fields = {"protocol": self.protocol if self.protocol is not None else other.protocol,
                  "version": self.version if self.version is not None else other.version}
        for name in ("source", "destination"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is None or theirs is None:
                fields[name] = mine or theirs
            elif mine.subnet_of(theirs):
                fields[name] = mine
            elif theirs.subnet_of(mine):
                fields[name] = theirs
            else:
                return None
        for name in ("source_ports", "destination_ports"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is None or theirs is None:
                fields[name] = mine or theirs
            else:
                low, high = max(mine[0], theirs[0]), min(mine[1], theirs[1])
                if low > high:
                    return None
                fields[name] = (low, high)
        return Match.of(**fields)

    def covers(self, other: "Match") -> bool:
        """Whether every packet `other` matches, this matches too."""
        return self & other == other

    def reversed(self) -> "Match":
        """What packets answering these match: source and destination swapped."""
        return Match(self.protocol, self.destination, self.source, self.destination_ports,
                     self.source_ports, self.version)


def rule_matches(rule: PolicyRule) -> list[Match]:
    """What `rule` matches, as a list of `Match` (both ways for `<>`), none inside another."""
    matches = []
    for sources, destinations, source_ports, destination_ports in (
            [(rule.sources, rule.destinations, rule.source_ports, rule.destination_ports)]
            + ([(rule.destinations, rule.sources, rule.destination_ports, rule.source_ports)]
               if rule.bidirectional else [])):
        for source, destination, sports, dports in product(
                sources or (None,), destinations or (None,), source_ports or (None,),
                destination_ports or (None,)):
            protocols = [rule.protocol]
            if rule.protocol is None and (sports or dports):
                protocols = [6, 17]  # ports mean TCP or UDP
            for protocol in protocols:
                match = Match.of(protocol=protocol, source=source, destination=destination,
                                 source_ports=sports, destination_ports=dports,
                                 version=rule.version)
                if match is not None:  # an IPv4 source with an IPv6 destination matches nothing
                    matches.append(match)
    unique = list(dict.fromkeys(matches))
    return [match for match in unique
            if not any(other != match and other.covers(match) for other in unique)]


@dataclass(frozen=True)
class Verdict:
    """What happens to the packets of one pair of first matches: passed or denied, and where
    they are mirrored to (each `mirror_to` as its rule says it)."""

    passes: bool
    mirrors: tuple[MirrorTo, ...] = ()


@dataclass(frozen=True)
class PolicyEntry:
    """Packets from network `source` to network `destination` that `match` selects get
    `verdict`; entries of one source network are tried highest `priority` first. A `reply`
    entry is for packets answering a routed connection (ct_state +rpl): the entry that judged
    the connection, reversed."""

    source: str
    destination: str
    priority: int
    match: Match
    verdict: Verdict
    reply: bool = False

    @property
    def routed(self) -> bool:
        """Whether its packets are routed from one network to another."""
        return self.source != self.destination


def _rule_verdict(rule: PolicyRule | None, default: bool) -> Verdict:
    if rule is None:
        return Verdict(default)
    passes = rule.action == "pass"
    return Verdict(passes, (rule.mirror_to,) if passes and rule.mirror_to else ())


def policy_entries(topology: Topology, rules: dict[str, tuple[PolicyRule, ...]]) -> list[PolicyEntry]:
    """Every policy decision of the lab, as entries: within each policed network, and from each
    policed network to each other. Raises `InvalidRequest` when a network's rules need more
    priorities than OpenFlow has."""
    entries = []
    for source, source_rules in rules.items():
        subnets = topology.network(source).subnets
        for number, rule in enumerate([*source_rules, None]):
            priority = FIRST_PRIORITY + len(source_rules) - number
            for match, subnet in product(rule_matches(rule) if rule else [Match()], subnets):
                within = match & Match(destination=subnet)
                if within is not None:
                    entries.append(PolicyEntry(source, source, priority, within,
                                               _rule_verdict(rule, default=True)))
        for destination, destination_rules in rules.items():
            if destination == source:
                continue
            towards = [Match(destination=subnet)
                       for subnet in topology.network(destination).subnets]
            width = len(destination_rules) + 1
            for (i, rule), (j, other) in product(enumerate([*source_rules, None]),
                                                 enumerate([*destination_rules, None])):
                priority = (FIRST_PRIORITY + (len(source_rules) - i) * width
                            + len(destination_rules) - j)
                if priority > MAX_PRIORITY:
                    raise InvalidRequest(
                        f"network '{source}' and '{destination}' have too many policy rules "
                        f"between them for one vRouter table ({len(source_rules)} and "
                        f"{len(destination_rules)})", "network_policy_refs")
                mine, theirs = _rule_verdict(rule, False), _rule_verdict(other, False)
                verdict = Verdict(mine.passes and theirs.passes,
                                  tuple(dict.fromkeys(mine.mirrors + theirs.mirrors))
                                  if mine.passes and theirs.passes else ())
                for left, right, toward in product(rule_matches(rule) if rule else [Match()],
                                                   rule_matches(other) if other else [Match()],
                                                   towards):
                    both = left & right
                    both = both & toward if both is not None else None
                    if both is not None:
                        entries.append(PolicyEntry(source, destination, priority, both, verdict))
    entries = _without_shadowed_duplicates(entries)
    return entries + _reply_entries(topology, entries)


def _reply_entries(topology: Topology, entries: list[PolicyEntry]) -> list[PolicyEntry]:
    """For each routed entry, the entry of the packets answering the connections it judged:
    the other way, its match reversed, same priority and verdict."""
    replies = []
    for entry in entries:
        if not entry.routed:
            continue
        for subnet in topology.network(entry.source).subnets:
            back = entry.match.reversed() & Match(destination=subnet)
            if back is not None:
                replies.append(PolicyEntry(entry.destination, entry.source, entry.priority, back,
                                           entry.verdict, reply=True))
    return replies


def _without_shadowed_duplicates(entries: list[PolicyEntry]) -> list[PolicyEntry]:
    """The entries, less those an entry of the same priority and pair already covers (two
    rule sides can intersect to one match)."""
    kept: list[PolicyEntry] = []
    for entry in entries:
        if not any(k.source == entry.source and k.destination == entry.destination
                   and k.reply == entry.reply
                   and k.priority == entry.priority and k.match.covers(entry.match) for k in kept):
            kept.append(entry)
    return kept


@dataclass(frozen=True)
class PolicyTap:
    """Where one vRouter sends the policy copies of one network's packets to one destination:
    what the label of those copies stands for. `analyzer` is the analyzer instance, or for a
    static destination the fabric analyzer (VTEP); `destination` the `mirror_to` filled in."""

    analyzer: str
    destination: MirrorTo
    compute: str
    network: str
    label: int


def policy_destinations(topology: Topology, rules: dict[str, tuple[PolicyRule, ...]]
                        ) -> dict[MirrorTo, tuple[str, MirrorTo]]:
    """Where each rule's `mirror_to` sends its copies in the running lab: (analyzer or VTEP,
    the destination filled in), by the mirror_to as rules say it
    (`controller.mirroring.requested_destination`). Raises `InvalidRequest` (or `Conflict`)
    naming the rule when one cannot be resolved, such as a mirror to an unknown analyzer."""
    resolved = {}
    for network_rules in rules.values():
        for rule in network_rules:
            if rule.mirror_to is None or rule.mirror_to in resolved:
                continue
            try:
                resolved[rule.mirror_to] = requested_destination(topology, rule.mirror_to)
            except MirrorlabError as err:
                refusal = InvalidRequest if isinstance(err, NotFound) else type(err)
                raise refusal(f"{rule.name} of {rule.policy}: {err.message}", err.field) from None
    return resolved


def policy_taps(topology: Topology, entries: list[PolicyEntry],
                destinations: dict[MirrorTo, tuple[str, MirrorTo]]) -> dict[tuple, PolicyTap]:
    """Every tap the entries need, by (mirror_to, compute, network): each vRouter with a member
    of an entry's source network copies that network's packets it sends, and each vRouter with a
    member of its destination network those it receives; `destinations` as
    `policy_destinations` resolves them. Raises `InvalidRequest` in the rare case two taps'
    labels collide."""
    taps: dict[tuple, PolicyTap] = {}
    for entry in entries:
        for mirror_to in entry.verdict.mirrors:
            analyzer, destination = destinations[mirror_to]
            for network in (entry.source, entry.destination):
                for compute in sorted({i.compute for i in topology.interfaces()
                                       if i.network == network}):
                    key = (mirror_to, compute, network)
                    if key not in taps:
                        taps[key] = PolicyTap(analyzer, destination, compute, network,
                                              _tap_label(analyzer, destination, compute, network))
    labels: dict[int, PolicyTap] = {}
    for tap in taps.values():
        if tap.label in labels:
            raise InvalidRequest(f"policy mirror labels collide ({labels[tap.label]} and {tap}); "
                                 f"rename the analyzer", "analyzer_name")
        labels[tap.label] = tap
    return taps


def _tap_label(analyzer: str, destination: MirrorTo, compute: str, network: str) -> int:
    identity = json.dumps([analyzer, destination.to_dict(), compute, network], sort_keys=True)
    digest = int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=4).digest(), "big")
    return POLICY_LABEL_BASE | (digest & ((1 << POLICY_LABEL_BITS) - 1))


def tap_encapsulation(topology: Topology, tap: PolicyTap) -> Encapsulation:
    """How the mirror encapsulator wraps a tap's copies: as a capture's to the same destination
    (`controller.pipeline.destination_encapsulation`) from the mirroring vRouter, with the
    tap's network as the VN (source VN on copies of what a VM sent, destination VN on those of
    what it received) and mirror index POLICY_MIRROR_INDEX."""
    return destination_encapsulation(topology, tap.destination, topology.compute(tap.compute),
                                     tap.network, POLICY_MIRROR_INDEX)


def policy_encapsulations(topology: Topology,
                          rules: dict[str, tuple[PolicyRule, ...]]) -> dict[int, Encapsulation]:
    """How the mirror encapsulator wraps the copies of every policy tap, by label."""
    taps = policy_taps(topology, policy_entries(topology, rules),
                       policy_destinations(topology, rules))
    return {tap.label: tap_encapsulation(topology, tap) for tap in taps.values()}


def policy_flows(topology: Topology, rules: dict[str, tuple[PolicyRule, ...]]) -> dict[str, list[Flow]]:
    """Every policy flow of the lab, by compute node (see the module's description)."""
    entries = policy_entries(topology, rules)
    taps = policy_taps(topology, entries, policy_destinations(topology, rules))
    flows: dict[str, list[Flow]] = {c.name: [] for c in topology.computes}
    members: dict[str, list[Interface]] = {}
    for interface in topology.interfaces():
        members.setdefault(interface.network, []).append(interface)
    mirrored_pairs = {(e.source, e.destination) for e in entries if e.verdict.mirrors}
    mirrored_into = {destination for _source, destination in mirrored_pairs}
    routed_into = {e.destination for e in entries if e.routed and e.verdict.passes}
    for compute in topology.computes:
        local = {i.network for i in topology.interfaces_on(compute.name)}
        out = flows[compute.name]
        for name in rules:
            network = topology.network(name)
            if name not in local:
                continue
            out.append(_policy_flow(CLASSIFY, 101, in_port=FABRIC_PORT, eth_type=0x8847,
                                    mpls_label=network.label,
                                    actions=[Decap(), Decap(inner_ethernet=True),
                                             SetField(REG_NETWORK, network.index),
                                             SetField(REG_POLICY, FROM_OVERLAY)], goto=FORWARD))
            arrivals = name in mirrored_into or name in routed_into
            for version in (4, 6) if network.subnet6 is not None else (4,):
                out.append(_policy_flow(FORWARD, 260, eth_type=ETHERTYPES[version], eth_dst=UNICAST,
                                        **{REG_NETWORK: network.index, REG_POLICY: UNCHECKED},
                                        actions=[Ct(compute.index, table=POLICY)]))
                if arrivals:
                    # Committed as it arrives, so that this vRouter knows the replies its VMs
                    # send.
                    out.append(_policy_flow(FORWARD, 260, eth_type=ETHERTYPES[version],
                                            eth_dst=UNICAST,
                                            **{REG_NETWORK: network.index,
                                               REG_POLICY: FROM_OVERLAY},
                                            actions=[Ct(compute.index, commit=True,
                                                        table=POLICY_ARRIVAL)]))
            if network.subnet6 is not None:
                out += _unpoliced_ipv6(network, (UNCHECKED, FROM_OVERLAY) if arrivals
                                       else (UNCHECKED,))
            if arrivals:
                out.append(_policy_flow(POLICY_ARRIVAL, 100, **{REG_NETWORK: network.index},
                                        actions=[SetField(REG_POLICY, CHECKED), Resubmit(FORWARD)]
                                        + ([Resubmit(POLICY_AT_DESTINATION)]
                                           if name in mirrored_into else [])))
        for name in routed_into:
            network = topology.network(name)
            for member in members.get(name, []):
                if member.compute == compute.name:
                    onward = [SetField(REG_OUT_PORT, member.ofport), Resubmit(DELIVER)]
                else:
                    onward = overlay_encap(network.label, compute) + [
                        SetField("eth_dst", topology.compute(member.compute).fabric_mac),
                        Output(FABRIC_PORT)]
                addresses = [(4, "ipv4_dst", member.ip)] + (
                    [(6, "ipv6_dst", member.ip6)] if member.ip6 is not None else [])
                for version, field, address in addresses:
                    out.append(_policy_flow(ROUTE, 100, eth_type=ETHERTYPES[version],
                                            **{field: str(address), REG_NETWORK: network.index},
                                            actions=[SetField("eth_dst", member.mac)] + onward))
        for entry in entries:
            source, destination = topology.network(entry.source), topology.network(entry.destination)
            if entry.source in local:
                out += _at_sender(topology, compute, entry, source, destination, taps)
            if entry.destination in local and (entry.source, entry.destination) in mirrored_pairs:
                # Every entry of a mirrored pair, copies or none: each shadows those below it.
                copies = [_copy(topology, compute, taps[(m, compute.name, entry.destination)], True)
                          for m in entry.verdict.mirrors]
                out += [_policy_flow(POLICY_AT_DESTINATION, entry.priority, actions=copies,
                                     **{REG_NETWORK: destination.index},
                                     **_connection(entry), **fields)
                        for subnet in source.subnets
                        for fields in _of_matches(entry.match & Match(source=subnet))]
    # Where copies arrive: the mirror encapsulator of the analyzer's compute node; header-less
    # ones, back from it, the analyzer's port.
    for tap in taps.values():
        _delivery, path_flows = copy_path(topology, tap.destination, tap.analyzer,
                                          topology.compute(tap.compute), tap.label, POLICY_OWNER)
        for name, extra in path_flows.items():
            flows[name] += extra
    return {name: list(dict.fromkeys(out)) for name, out in flows.items()}


def _at_sender(topology: Topology, compute: ComputeNode, entry: PolicyEntry, source, destination,
               taps) -> list[Flow]:
    copies = [_copy(topology, compute, taps[(m, compute.name, entry.source)], False)
              for m in entry.verdict.mirrors]
    if not entry.verdict.passes:
        actions = [Resubmit(INGRESS_MIRROR)]
    elif entry.routed:
        # The copies are made of the packet as the VM sent it, before it is routed in place;
        # its connection is committed so that the replies pass.
        commit = [] if entry.reply else [Ct(compute.index, commit=True)]
        actions = [Resubmit(INGRESS_MIRROR)] + copies + commit + [
            SetField(REG_NETWORK, destination.index), SetField(REG_POLICY, CHECKED),
            SetField("eth_src", VROUTER_MAC), DecTtl(), Resubmit(ROUTE)]
    else:
        actions = [SetField(REG_POLICY, CHECKED), Resubmit(FORWARD)] + copies
    extra = {"eth_dst": VROUTER_MAC} if entry.routed else {}
    return [_policy_flow(POLICY, entry.priority, actions=actions,
                         **{REG_NETWORK: source.index}, **extra, **_connection(entry), **fields)
            for fields in _of_matches(entry.match)]


def _unpoliced_ipv6(network, stages) -> list[Flow]:
    """What policies leave alone in a policed network's IPv6, in the FORWARD table above the
    policy hooks: neighbour solicitations and advertisements (neighbour discovery, which
    Contrail's vRouter handles itself, as it does ARP) and link-local traffic, which stay in
    the network. They go on as checked packets, for each of `stages` (REG_POLICY values)."""
    onward = [SetField(REG_POLICY, CHECKED), Resubmit(FORWARD)]
    flows = []
    for stage in stages:
        where = {REG_NETWORK: network.index, REG_POLICY: stage}
        flows.append(_policy_flow(FORWARD, 265, eth_type=ETHERTYPES[6], actions=onward,
                                  ipv6_dst=(str(LINK_LOCAL6.network_address),
                                            str(LINK_LOCAL6.netmask)), **where))
        flows += [_policy_flow(FORWARD, 265, eth_type=ETHERTYPES[6], ip_proto=ICMPV6,
                               icmpv6_type=kind, actions=onward, **where)
                  for kind in (ND_SOLICIT, ND_ADVERT)]
    return flows


def _connection(entry: PolicyEntry) -> dict:
    """The ct_state match of an entry's packets: a routed entry's are not replies (-rpl), a
    reply entry's are (+rpl); within a network, any."""
    if not entry.routed:
        return {}
    return {"ct_state": (CT_TRACKED | (CT_REPLY if entry.reply else 0), CT_TRACKED | CT_REPLY)}


def _copy(topology: Topology, compute: ComputeNode, tap: PolicyTap, received: bool) -> Clone:
    """A policy copy, as a capture's copy travels (`controller.pipeline.copy_path`):
    Ethernet-in-MPLS under the tap's label (the traffic class says the receiver's side) to the
    mirror encapsulator that builds it."""
    delivery, _path_flows = copy_path(topology, tap.destination, tap.analyzer, compute, tap.label,
                                      POLICY_OWNER)
    marked = [SetField("mpls_tc", EGRESS_TC)] if received else []
    return Clone(tuple([SetField("in_port", 0), Encap("mpls"), SetField("mpls_label", tap.label)]
                       + marked + [Encap("ethernet")] + delivery))


def _of_matches(match: Match | None) -> list[dict]:
    """OpenFlow match fields for `match`, of one IP version as every entry's is (several when a
    port range needs several masks)."""
    if match is None:
        return []
    fields: dict = {"eth_type": ETHERTYPES[match.version]}
    if match.protocol is not None:
        fields["ip_proto"] = match.protocol
    prefix = f"ipv{match.version}"
    for name, network in ((f"{prefix}_src", match.source), (f"{prefix}_dst", match.destination)):
        if network is not None and network.prefixlen:
            fields[name] = (str(network.network_address), str(network.netmask)) \
                if network.prefixlen < network.max_prefixlen else str(network.network_address)
    if match.protocol not in (6, 17):
        return [fields]
    transport = "tcp" if match.protocol == 6 else "udp"
    sources = _port_masks(match.source_ports)
    destinations = _port_masks(match.destination_ports)
    result = []
    for sport, dport in product(sources, destinations):
        extra = {}
        if sport is not None:
            extra[f"{transport}_src"] = sport
        if dport is not None:
            extra[f"{transport}_dst"] = dport
        result.append({**fields, **extra})
    return result


def _port_masks(ports: tuple[int, int] | None) -> list:
    """A port range as OpenFlow (value, mask) pairs (a single port as itself); [None] for any."""
    if ports is None or ports == (0, 65535):
        return [None]
    low, high = ports
    masks = []
    while low <= high:
        size = 1
        while low % (size * 2) == 0 and low + size * 2 - 1 <= high and size < 65536:
            size *= 2
        masks.append(low if size == 1 else (low, 0xFFFF & ~(size - 1)))
        low += size
    return masks


def _policy_flow(table: int, priority: int, actions=(), goto: int | None = None, **match) -> Flow:
    return flow(table, priority, actions=actions, goto=goto, owner=POLICY_OWNER, **match)


def desired_flows(topology: Topology, captures: list[Capture],
                  policies: dict[str, tuple[PolicyRule, ...]] | None = None) -> dict[str, frozenset[Flow]]:
    """Every flow every vRouter should hold, by compute node name: the base pipeline, the
    active captures' flows, and those of the network `policies` (each network's rules, as
    `controller.vncpolicy.attached_rules` gives them)."""
    flows = {c.name: set(forwarding_flows(topology, c)) for c in topology.computes}
    for capture in captures:
        if capture.active:
            for compute, capture_set in capture_flows(topology, capture).items():
                flows[compute].update(capture_set)
    for compute, policy_set in policy_flows(topology, policies or {}).items():
        flows[compute].update(policy_set)
    return {name: frozenset(flow_set) for name, flow_set in flows.items()}
