"""Network policies as Contrail's configuration API takes them: validation, no I/O.

A network-policy holds `network_policy_entries.policy_rule`, an ordered list of rules (Contrail's
PolicyRuleType): `direction` `<>` or `>`, `protocol`, `src_addresses`/`dst_addresses`,
`src_ports`/`dst_ports`, `action_list` {`simple_action` pass | deny, `mirror_to`}. Virtual
networks attach policies by `network_policy_refs`, each with `attr.sequence` {major, minor}.

`attached_rules` turns what clients wrote into the frozen rules each network applies, in order
(`PolicyRule`); `controller.policyflows` turns those into flows.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Mapping

from mirrorlab.controller.errors import InvalidRequest, MirrorlabError
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, analyzers, requested_destination
from mirrorlab.controller.mirrorto import MirrorTo, parse_mirror_to, refusal_within
from mirrorlab.controller.vncmodel import require_object, service_mirror_to
from mirrorlab.topology import Topology

RULE_FIELDS = ("rule_sequence", "rule_uuid", "direction", "protocol", "src_addresses", "src_ports",
               "application", "dst_addresses", "dst_ports", "action_list", "ethertype", "created",
               "last_modified")
ADDRESS_FIELDS = ("subnet", "virtual_network", "security_group", "network_policy", "subnet_list")
ACTION_FIELDS = ("simple_action", "gateway_name", "apply_service", "mirror_to",
                 "assign_routing_instance", "log", "alert", "qos_action", "host_based_service")
SIMPLE_ACTIONS = ("pass", "deny")
ETHERTYPES = ("IPv4", "IPv6")
PROTOCOL_NUMBERS = {"any": None, "icmp": 1, "tcp": 6, "udp": 17, "icmp6": 58}
ICMPV6 = 58  # what `icmp` means in a rule of ethertype IPv6
PROTOCOL_NAMES = tuple(PROTOCOL_NUMBERS)
ANY_PORT = (0, 65535)


@dataclass(frozen=True)
class PolicyRule:
    """One rule as a network applies it: what it matches and what it does. Addresses are IPv4
    and IPv6 networks (`()` for any; a virtual network stands for both its subnets), ports
    inclusive ranges (`()` for any), `protocol` an IP protocol number (None for any);
    `version` the IP version its `ethertype` restricts it to (None: both);
    `bidirectional` for Contrail's `<>`; `action` "pass" or "deny"; `analyzer` the analyzer
    instance its matches are mirrored to, if any."""

    policy: str  # the policy's fq-name string
    number: int  # the rule's position in its policy, from 0
    bidirectional: bool
    protocol: int | None
    sources: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    destinations: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    source_ports: tuple[tuple[int, int], ...]
    destination_ports: tuple[tuple[int, int], ...]
    action: str
    mirror_to: MirrorTo | None = None
    version: int | None = None

    @property
    def analyzer(self) -> str | None:
        """The analyzer instance the rule mirrors to (None for none, or for a static
        destination, a VTEP on the fabric)."""
        if self.mirror_to is None or self.mirror_to.to_fabric:
            return None
        return self.mirror_to.analyzer_name or DEFAULT_ANALYZER

    @property
    def name(self) -> str:
        """How the rule is named in messages: its policy's name and its number from 1."""
        return f"{self.policy.rsplit(':', 1)[-1]} rule {self.number + 1}"


def attached_rules(topology: Topology, policies: Mapping[str, dict],
                   attachments: Mapping[str, list[tuple[str, tuple[int, int]]]]
                   ) -> dict[str, tuple[PolicyRule, ...]]:
    """The rules each network applies, first to last: its attached policies by sequence
    (major, then minor; ties by policy name), each policy's rules in order. `policies` maps a
    policy's fq-name string to its checked network_policy_entries; `attachments` maps a network
    name to (policy fq-name string, (major, minor)) pairs. Networks without policies are absent.
    A rule whose addresses on one side are all of another IP version than its `ethertype`
    (a network without an IPv6 subnet in an IPv6 rule) matches nothing and is left out."""
    rules_by_network = {}
    for network, attached in attachments.items():
        if not attached or not topology.has("network", network):
            continue
        rules = []
        for policy, _sequence in sorted(attached, key=lambda entry: (entry[1], entry[0])):
            for number, rule in enumerate(policies.get(policy, {}).get("policy_rule", [])):
                compiled = _compile_rule(topology, network, policy, number, rule)
                if compiled is not None:
                    rules.append(compiled)
        rules_by_network[network] = tuple(rules)
    return rules_by_network


def _compile_rule(topology: Topology, network: str, policy: str, number: int,
                  rule: dict) -> PolicyRule | None:
    version = {"IPv4": 4, "IPv6": 6}.get(rule.get("ethertype"))
    protocol = rule.get("protocol")
    sides = {}
    for side in ("src", "dst"):
        given = rule.get(f"{side}_addresses") or []
        found = [_address_networks(topology, network, address) for address in given]
        if not given or None in found:  # none given, or one is any
            sides[side] = ()
            continue
        addresses = tuple(cidr for cidrs in found for cidr in cidrs
                          if version in (None, cidr.version))
        if not addresses:
            return None
        sides[side] = addresses
    protocol_number = PROTOCOL_NUMBERS[protocol] if protocol in PROTOCOL_NUMBERS else int(protocol)
    if protocol == "icmp" and version == 6:
        protocol_number = ICMPV6  # as Contrail reads `icmp` in an IPv6 rule
    actions = rule.get("action_list") or {}
    mirror_to = actions.get("mirror_to")
    return PolicyRule(
        policy=policy, number=number, bidirectional=rule.get("direction") == "<>",
        protocol=protocol_number, version=version,
        sources=sides["src"], destinations=sides["dst"],
        source_ports=_port_ranges(rule.get("src_ports")),
        destination_ports=_port_ranges(rule.get("dst_ports")),
        action=actions.get("simple_action") or "pass",
        mirror_to=(policy_mirror_to(mirror_to, f"{policy} rule {number + 1}.action_list",
                                    topology.project_fq_name) if mirror_to else None))


def _address_networks(topology: Topology, network: str,
                      address: dict) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """The networks an AddressType stands for: None for any; a CIDR; a virtual network's
    subnets, IPv4 and IPv6 (`local`: the network the policy is attached to)."""
    named = address.get("virtual_network")
    subnet = address.get("subnet")
    if subnet is not None:
        return [ipaddress.ip_network(f"{subnet['ip_prefix']}/{subnet['ip_prefix_len']}",
                                     strict=False)]
    if named in (None, "any"):
        return None
    name = network if named == "local" else named.rsplit(":", 1)[-1]
    return list(topology.network(name).subnets)


def _port_ranges(ports) -> tuple[tuple[int, int], ...]:
    ranges = []
    for port in ports or []:
        start, end = port.get("start_port", 0), port.get("end_port", 65535)
        if -1 in (start, end) or (start, end) == ANY_PORT:
            return ()
        ranges.append((start, end))
    return tuple(ranges)


def parse_policy_entries(value, topology: Topology) -> dict:
    """`value`, a network_policy_entries object, checked against the running lab `topology`:
    every rule names known fields, a direction and protocol Contrail accepts, addresses that
    are `any`, `local`, one of its virtual networks (fq_name strings) or a valid CIDR, port
    ranges within -1..65535, and an action pass or deny and/or a mirror (`policy_mirror_to`)
    to a known analyzer or VTEP. Returns it with rules as given. Raises `InvalidRequest` (or
    `Conflict`, for a destination that disagrees with its analyzer) naming the field at fault."""
    where = "network_policy_entries"
    if value is None:
        return {"policy_rule": []}
    require_object(value, where, ("policy_rule",))
    rules = value.get("policy_rule") or []
    if not isinstance(rules, list):
        raise InvalidRequest(f"{where}.policy_rule: expected a list", f"{where}.policy_rule")
    networks = {":".join(topology.network_fq_name(n.name)) for n in topology.networks}
    for index, rule in enumerate(rules):
        _check_rule(rule, f"{where}.policy_rule[{index}]", networks, topology)
    return {"policy_rule": rules}


def _check_rule(rule, where: str, networks: set[str], topology: Topology) -> None:
    require_object(rule, where, RULE_FIELDS)
    if rule.get("direction") not in ("<>", ">"):
        raise InvalidRequest(f"{where}.direction: bad value {rule.get('direction')!r} (use '<>' or "
                             f"'>')", f"{where}.direction")
    protocol = rule.get("protocol")
    if not (protocol in PROTOCOL_NAMES or (isinstance(protocol, str) and protocol.isdigit()
                                           and int(protocol) <= 255)):
        raise InvalidRequest(f"{where}.protocol: bad value {protocol!r} (use any, icmp, tcp, udp, "
                             f"icmp6 or a number 0-255)", f"{where}.protocol")
    if rule.get("ethertype") not in (None, *ETHERTYPES):
        raise InvalidRequest(f"{where}.ethertype: bad value {rule['ethertype']!r} (use IPv4 or "
                             f"IPv6)", f"{where}.ethertype")
    if rule.get("application"):
        raise InvalidRequest(f"{where}.application is not supported by this lab",
                             f"{where}.application")
    for side in ("src", "dst"):
        addresses = rule.get(f"{side}_addresses") or []
        if not isinstance(addresses, list):
            raise InvalidRequest(f"{where}.{side}_addresses: expected a list", f"{where}.{side}_addresses")
        for index, address in enumerate(addresses):
            _check_address(address, f"{where}.{side}_addresses[{index}]", networks,
                           rule.get("ethertype"))
        ports = rule.get(f"{side}_ports") or []
        if not isinstance(ports, list):
            raise InvalidRequest(f"{where}.{side}_ports: expected a list", f"{where}.{side}_ports")
        for index, port in enumerate(ports):
            _check_ports(port, f"{where}.{side}_ports[{index}]")
    _check_actions(rule.get("action_list"), f"{where}.action_list", topology)


def _check_address(address, where: str, networks: set[str], ethertype: str | None) -> None:
    require_object(address, where, ADDRESS_FIELDS)
    for name in ("security_group", "network_policy", "subnet_list"):
        if address.get(name):
            raise InvalidRequest(f"{where}.{name} is not supported by this lab (use virtual_network "
                                 f"or subnet)", f"{where}.{name}")
    network = address.get("virtual_network")
    if network is not None and network not in ("any", "local") and network not in networks:
        raise InvalidRequest(f"{where}.virtual_network: unknown virtual network '{network}' (known: "
                             f"any, local, {', '.join(sorted(networks))})", f"{where}.virtual_network")
    subnet = address.get("subnet")
    if subnet is not None:
        require_object(subnet, f"{where}.subnet", ("ip_prefix", "ip_prefix_len"))
        cidr = f"{subnet.get('ip_prefix')}/{subnet.get('ip_prefix_len')}"
        try:
            version = ipaddress.ip_network(cidr).version
        except ValueError as err:
            raise InvalidRequest(f"{where}.subnet: bad CIDR '{cidr}' ({err})", f"{where}.subnet") from None
        if ethertype is not None and ethertype != f"IPv{version}":
            # As contrail-api refuses it.
            raise InvalidRequest(f"{where}.subnet: rule subnet {cidr} doesn't match ethertype "
                                 f"{ethertype}", f"{where}.subnet")


def _check_ports(port, where: str) -> None:
    require_object(port, where, ("start_port", "end_port"))
    start, end = port.get("start_port", 0), port.get("end_port", 65535)
    for name, number in (("start_port", start), ("end_port", end)):
        if not isinstance(number, int) or isinstance(number, bool) or not -1 <= number <= 65535:
            raise InvalidRequest(f"{where}.{name}: bad port {number!r} (-1 for any, or 0-65535)",
                                 f"{where}.{name}")
    if -1 not in (start, end) and start > end:
        raise InvalidRequest(f"{where}: start_port {start} is above end_port {end}", where)


def _check_actions(actions, where: str, topology: Topology) -> None:
    if actions is None:
        raise InvalidRequest(f"{where} is missing: say pass, deny or mirror_to", where)
    require_object(actions, where, ACTION_FIELDS)
    for name in ("gateway_name", "apply_service", "assign_routing_instance", "qos_action"):
        if actions.get(name):
            raise InvalidRequest(f"{where}.{name} is not supported by this lab", f"{where}.{name}")
    simple = actions.get("simple_action")
    if simple is not None and simple not in SIMPLE_ACTIONS:
        raise InvalidRequest(f"{where}.simple_action: bad value {simple!r} (use pass or deny)",
                             f"{where}.simple_action")
    if actions.get("mirror_to") is not None:
        mirror_to = policy_mirror_to(actions["mirror_to"], where, topology.project_fq_name)
        if mirror_to.analyzer_name not in (*analyzers(topology), DEFAULT_ANALYZER, None):
            known = ", ".join(sorted({*analyzers(topology), DEFAULT_ANALYZER}))
            raise InvalidRequest(f"{where}.mirror_to.analyzer_name: unknown service instance "
                                 f"'{actions['mirror_to']['analyzer_name']}' (known: {known})",
                                 f"{where}.mirror_to.analyzer_name")
        if mirror_to.analyzer_name != DEFAULT_ANALYZER or mirror_to.to_fabric:
            # The default analyzer is launched when a policy first mirrors to it: until then
            # there is nothing to check its address against.
            try:
                requested_destination(topology, mirror_to)
            except MirrorlabError as err:
                raise refusal_within(err, where) from None
    elif simple is None:
        raise InvalidRequest(f"{where}: give simple_action (pass or deny) or mirror_to", where)


def policy_mirror_to(value, where: str, project: tuple[str, ...]) -> MirrorTo:
    """A policy rule's MirrorActionType (`value`, within the action_list at `where`) as the
    lab's `MirrorTo`: translated as a VMI's (`vncmodel.service_mirror_to`) and checked by the
    one `mirror_to` parser, its refusals naming the field within `where`. A dynamic destination
    names its analyzer (`analyzer_name`, a service instance), as Contrail's agent looks it up.
    NIC-assisted mirroring is refused: it tags what one VM's port sends for the compute node's
    NIC to mirror, which is not a copy of the flows a rule matches."""
    translated = service_mirror_to(value, f"{where}.mirror_to", project)
    try:
        mirror_to = parse_mirror_to(translated)
    except MirrorlabError as err:
        raise refusal_within(err, where) from None
    if mirror_to.nic_assisted_mirroring:
        raise InvalidRequest(f"{where}.mirror_to.nic_assisted_mirroring: a policy rule cannot "
                             f"mirror NIC-assisted (that tags one VM port's traffic for the "
                             f"compute node's NIC, not the flows a rule matches); use a dynamic "
                             f"or a static destination", f"{where}.mirror_to.nic_assisted_mirroring")
    if mirror_to.nh_mode == "dynamic" and not mirror_to.analyzer_name:
        raise InvalidRequest(f"{where}.mirror_to.analyzer_name is missing: name a service instance",
                             f"{where}.mirror_to.analyzer_name")
    return mirror_to
