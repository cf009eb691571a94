"""Network policies as people read them (the web UI's Policies page, its Topology, `mirrorlab
policies`): each policy's rules and the networks it is attached to, which networks the policies
connect, and which network pairs they mirror to which analyzer. Pure: no I/O.

What connects and what mirrors is read from `controller.policyflows.policy_entries`, the very
decisions the vRouters' flows are made of, less the entries no packet reaches (every packet
they match is matched first by an entry above them: a `deny any` rule listed first hides the
pass rules after it).
"""
from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Mapping

from mirrorlab.controller.mirrorto import MirrorTo
from mirrorlab.controller.policyflows import Match, PolicyEntry, policy_entries
from mirrorlab.controller.vncpolicy import PolicyRule, policy_mirror_to
from mirrorlab.topology import Topology

ANY = "any"
# One dimension of a Match as an inclusive integer interval, and a Match as six of them: IP
# version (0 for IPv4, 1 for IPv6: the two address spaces apart), protocol, source address,
# destination address, source ports, destination ports.
Interval = tuple[int, int]
Box = tuple[Interval, ...]
VERSION_AXIS = {4: 0, 6: 1}
WHOLE = ((0, 1), (0, 255), (0, 2**128 - 1), (0, 2**128 - 1), (0, 65535), (0, 65535))


@dataclass(frozen=True)
class NetworkLink:
    """Traffic between two networks: from `source` to `destination`, and back too when
    `both_ways`. For a mirror, `analyzer` receives the copies (a mirror within one network has
    `source` == `destination`)."""

    source: str
    destination: str
    both_ways: bool
    analyzer: str | None = None


def _box(match: Match) -> Box:
    def network(value: ipaddress.IPv4Network | ipaddress.IPv6Network | None,
                whole: Interval) -> Interval:
        return whole if value is None else (int(value.network_address), int(value.broadcast_address))
    version = VERSION_AXIS.get(match.version)
    return (WHOLE[0] if version is None else (version, version),
            WHOLE[1] if match.protocol is None else (match.protocol, match.protocol),
            network(match.source, WHOLE[2]), network(match.destination, WHOLE[3]),
            match.source_ports or WHOLE[4], match.destination_ports or WHOLE[5])


def _minus(box: Box, other: Box) -> list[Box]:
    """The part of `box` outside `other`, as boxes that do not overlap."""
    if any(high < low for (low, high) in
           ((max(a[0], b[0]), min(a[1], b[1])) for a, b in zip(box, other))):
        return [box]
    pieces, rest = [], list(box)
    for axis, ((low, high), (cut_low, cut_high)) in enumerate(zip(box, other)):
        if low < cut_low:
            pieces.append(tuple(rest[:axis]) + ((low, cut_low - 1),) + tuple(rest[axis + 1:]))
        if high > cut_high:
            pieces.append(tuple(rest[:axis]) + ((cut_high + 1, high),) + tuple(rest[axis + 1:]))
        rest[axis] = (max(low, cut_low), min(high, cut_high))
    return pieces


def reached_entries(topology: Topology, entries: list[PolicyEntry]) -> list[PolicyEntry]:
    """The entries some packet reaches: one a VM of the entry's source network can send (its
    source address in one of that network's subnets, IPv4 or IPv6) that no entry of the same
    pair and kind (reply or not) with a higher priority matches first."""
    reached = []
    for entry in entries:
        sent = [match for subnet in topology.network(entry.source).subnets
                if (match := entry.match & Match(source=subnet)) is not None]
        left = [_box(match) for match in sent]
        for other in entries:
            if (other.source, other.destination, other.reply) == \
                    (entry.source, entry.destination, entry.reply) and other.priority > entry.priority:
                left = [piece for box in left for piece in _minus(box, _box(other.match))]
                if not left:
                    break
        if left:
            reached.append(entry)
    return reached


def _links(pairs: set[tuple[str, str]], order: dict[str, int], analyzer: str | None) -> list[NetworkLink]:
    links = []
    for source, destination in sorted(pairs, key=lambda pair: (order[pair[0]], order[pair[1]])):
        back = (destination, source) in pairs
        if back and order[destination] < order[source]:
            continue  # listed once, from the network that comes first
        links.append(NetworkLink(source, destination, back, analyzer))
    return links


def policy_links(topology: Topology, rules: dict[str, tuple[PolicyRule, ...]]
                 ) -> tuple[list[NetworkLink], list[NetworkLink]]:
    """What the policies the vRouters apply (`rules`, each network's, as
    `controller.vncpolicy.attached_rules` gives them) do between networks: the connections (two
    networks whose policies both pass some traffic from one to the other) and the mirrors (a
    network pair, or one network, whose traffic some rule copies to an analyzer), each in the
    topology's network order."""
    entries = reached_entries(topology, policy_entries(topology, rules))
    order = {network.name: index for index, network in enumerate(topology.networks)}
    # Replies pass only within connections opened the other way: they connect nothing new.
    connections = _links({(e.source, e.destination) for e in entries
                          if e.routed and not e.reply and e.verdict.passes}, order, None)
    destinations = {e: [destination_name(topology, mirror) for mirror in e.verdict.mirrors]
                    for e in entries}
    mirrors = []
    for analyzer in sorted({name for names in destinations.values() for name in names}):
        mirrors += _links({(e.source, e.destination) for e in entries
                           if analyzer in destinations[e]}, order, analyzer)
    return connections, sorted(mirrors, key=lambda m: (order[m.source], order[m.destination],
                                                       m.analyzer))


def destination_name(topology: Topology, mirror: MirrorTo) -> str:
    """Where a rule's copies go, for people: its analyzer's name, or for a static destination
    the fabric analyzer at its VTEP address (else that address) and the VNI."""
    if mirror.analyzer_name:
        return mirror.analyzer_name.rsplit(":", 1)[-1]
    vtep = mirror.static_nh_header
    probes = {str(probe.ip): probe.name for probe in topology.fabric_analyzers}
    return f"{probes.get(vtep.vtep_dst_ip_address, vtep.vtep_dst_ip_address)} (VNI {vtep.vni})"


def _addresses(addresses: list[dict] | None) -> list[str]:
    """A rule side's addresses as written: a network's fq-name, any, local, or a CIDR."""
    texts = []
    for address in addresses or []:
        subnet = address.get("subnet")
        if subnet is not None:
            texts.append(f"{subnet['ip_prefix']}/{subnet['ip_prefix_len']}")
        else:
            texts.append(address.get("virtual_network") or ANY)
    return texts or [ANY]


def _ports(ports: list[dict] | None) -> list[str]:
    """A rule side's port ranges as written: any (-1 or the whole range), N, or N-M."""
    texts = []
    for port in ports or []:
        start, end = port.get("start_port", 0), port.get("end_port", 65535)
        if -1 in (start, end) or (start, end) == (0, 65535):
            return [ANY]
        texts.append(str(start) if start == end else f"{start}-{end}")
    return texts or [ANY]


def describe_rule(topology: Topology, number: int, rule: dict) -> dict:
    """One policy_rule as written (checked by `controller.vncpolicy`), for people: its number
    from 1, direction, protocol, addresses and ports of each side, action, mirror, and the line
    Contrail's UI shows for it."""
    actions = rule.get("action_list") or {}
    mirror_to = actions.get("mirror_to")
    # Translated as the vRouters' rules are: vnc_api writes unset fields as null, and
    # `encapsulation`, which Contrail does not use.
    analyzer = destination_name(topology, policy_mirror_to(
        mirror_to, f"rule {number}.action_list", topology.project_fq_name)) if mirror_to else None
    described = {
        "number": number, "direction": rule["direction"], "protocol": str(rule["protocol"]),
        # No ethertype: the rule matches both IP versions (controller.vncpolicy).
        "ethertype": rule.get("ethertype") or ANY,
        "source_addresses": _addresses(rule.get("src_addresses")),
        "source_ports": _ports(rule.get("src_ports")),
        "destination_addresses": _addresses(rule.get("dst_addresses")),
        "destination_ports": _ports(rule.get("dst_ports")),
        # A rule that only mirrors passes what it mirrors, as controller.vncpolicy compiles it.
        "action": actions.get("simple_action") or "pass",
        "analyzer": analyzer, "mirror_to": mirror_to,
    }
    side = lambda which: (f"network {' '.join(described[f'{which}_addresses'])} "
                          f"ports {' '.join(described[f'{which}_ports'])}")
    ethertype = "" if described["ethertype"] == ANY else f" ethertype {described['ethertype']}"
    described["text"] = (f"{described['action']} protocol {described['protocol']}{ethertype} "
                         f"{side('source')} "
                         f"{described['direction']} {side('destination')}"
                         + (f" mirror to {analyzer}" if analyzer else ""))
    return described


def policies_view(topology: Topology, policies: Mapping[str, dict], uuids: Mapping[str, str],
                  attachments: Mapping[str, list[tuple[str, tuple[int, int]]]],
                  rules: dict[str, tuple[PolicyRule, ...]]) -> dict:
    """Everything the Policies page shows: each policy (by fq-name; `policies` maps it to its
    network_policy_entries, `uuids` to its uuid) with its rules in order and the networks
    `attachments` attach it to (network name -> [(policy fq-name, (major, minor))]) in
    sequence order; and the connections and mirrors of the `rules` the vRouters apply."""
    attached_to: dict[str, list[dict]] = {name: [] for name in policies}
    for network, refs in attachments.items():
        for policy, (major, minor) in refs:
            if policy in attached_to:
                attached_to[policy].append({
                    "network": network, "fq_name": ":".join(topology.network_fq_name(network)),
                    "sequence": {"major": major, "minor": minor}})
    connections, mirrors = policy_links(topology, rules)
    return {
        "policies": [{
            "fq_name": name, "name": name.rsplit(":", 1)[-1], "uuid": uuids[name],
            "rules": [describe_rule(topology, number, rule) for number, rule in
                      enumerate((policies[name] or {}).get("policy_rule") or [], start=1)],
            "networks": sorted(attached_to[name], key=lambda a: (
                a["sequence"]["major"], a["sequence"]["minor"], a["network"])),
        } for name in sorted(policies)],
        "connections": [{"source": link.source, "destination": link.destination,
                         "both_ways": link.both_ways} for link in connections],
        "mirrors": [asdict(link) for link in mirrors],
    }
