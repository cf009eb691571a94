"""Topology files: YAML in, a validated `Topology` out, or every problem with file:line.

Validation happens once, here; the `Topology` it returns is frozen.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

from mirrorlab.topology import (
    ANALYZER_NETWORK_NAME, ANALYZER_NETWORK_SUBNET, DEFAULT_FABRIC_SUBNET, FIRST_AUTO_LABEL,
    FIRST_VM_PORT, MAX_NETWORK_LABEL, VM, ComputeNode, FabricAnalyzer, Interface, Network, Topology,
    TopologyError, interface_mac, ipv6_for,
)

COMPUTE_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
VM_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
NETWORK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,10}$")
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# The lab leaves .0-.2 (::0-::2) of each subnet to the network, the gateway and the vRouter's
# services, as Contrail does, and hands out addresses from .3 up.
FIRST_HOST = 3

TOP_KEYS = {"name", "fabric", "computes", "networks", "vms", "analyzer_network", "fabric_analyzers"}
FABRIC_ANALYZER_KEYS = {"name", "ip"}
FABRIC_KEYS = {"subnet"}
COMPUTE_KEYS = {"name"}
NETWORK_KEYS = {"name", "subnet", "subnet6", "label"}
VM_KEYS = {"name", "compute", "network", "ip", "ip6", "mac", "interfaces"}
INTERFACE_KEYS = {"network", "ip", "ip6", "mac"}


@dataclass
class Node:
    """A YAML value with the line it starts on (1-based)."""

    value: Any
    line: int


class _Problems:
    """Problems found in file `source`, one line each; `scope` is the key path of a topology
    embedded in a larger file (a scenario's `topology`), put before every key named."""

    def __init__(self, source: str, scope: str = ""):
        self.source = source
        self.scope = scope
        self.lines: list[str] = []

    def add(self, node_or_line, where: str, message: str) -> None:
        line = node_or_line.line if isinstance(node_or_line, Node) else node_or_line
        where = ".".join(part for part in (self.scope, where) if part)
        self.lines.append(f"{self.source}:{line}: {where}: {message}")


def shipped() -> dict[str, Path]:
    """The topologies that ship with mirrorlab, by name ("default", "minimal", ...)."""
    folder = resources.files("mirrorlab.topologies")
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir()
            if entry.name.endswith(".yaml")}


def locate(topology: str | Path) -> Path:
    """The file of `topology`: a path to a YAML file, or the name of a shipped topology."""
    path = Path(topology)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in str(topology):
        return path
    files = shipped()
    if str(topology) in files:
        return files[str(topology)]
    raise TopologyError([f"{topology}: no such file, and not a shipped topology "
                         f"(shipped: {', '.join(sorted(files))})"])


def resolve(topology: str | Path | Topology) -> tuple[Topology, Path | None]:
    """A `Topology` and the file it came from (None for a `Topology` given as such), from the
    name of a shipped topology ("default"), a path, or a `Topology`. Raises `TopologyError`
    (a `ValueError` listing every problem with file:line) for a bad file."""
    if isinstance(topology, Topology):
        return topology, None
    path = locate(topology).resolve()
    return load(path), path


def load(path: str | Path) -> Topology:
    """Read and validate a topology file; raise `TopologyError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise TopologyError([f"{path}: cannot read: {err.strerror}"]) from None
    return parse(text, str(path))


def parse(text: str, source: str = "<string>") -> Topology:
    """Validate topology YAML `text`; `source` names it in error messages."""
    root = compose(text, source)
    problems = _Problems(source)
    if root is None or not isinstance(root.value, dict):
        raise TopologyError([f"{source}:1: the file must be a mapping with keys "
                             f"{', '.join(sorted(TOP_KEYS))}"])
    topology = _build(root, problems, source)
    if problems.lines:
        raise TopologyError(problems.lines)
    return topology


def _to_nodes(node: yaml.Node | None, problems: _Problems) -> Node | None:
    """Plain Python values wrapped in `Node`s with their lines; duplicate keys are problems."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in mapping:
                problems.add(key_node.start_mark.line + 1, key,
                             f"duplicate key (first on line {mapping[key].line})")
                continue
            value = _to_nodes(value_node, problems)
            mapping[key] = value if value is not None else Node(None, key_node.start_mark.line + 1)
            mapping[key].line = key_node.start_mark.line + 1
        return Node(mapping, line)
    if isinstance(node, yaml.SequenceNode):
        return Node([_to_nodes(item, problems) for item in node.value], line)
    return Node(yaml.SafeLoader("").construct_object(node, deep=True), line)


def _check_keys(node: Node, allowed: set[str], where: str, problems: _Problems) -> bool:
    if not isinstance(node.value, dict):
        problems.add(node, where, "must be a mapping")
        return False
    for key, value in node.value.items():
        if key not in allowed:
            problems.add(value, f"{where}.{key}" if where else key,
                         f"unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
    return True


def _list(root: Node, key: str, problems: _Problems, required: bool = True) -> list[Node]:
    node = root.value.get(key)
    if node is None or node.value is None or (required and node.value == []):
        if required:
            problems.add(node or root, key, "missing (a non-empty list)")
        return []
    if not isinstance(node.value, list):
        problems.add(node, key, "must be a list")
        return []
    return node.value


def _name(node: Node, where: str, pattern: re.Pattern, rule: str, problems: _Problems) -> str | None:
    name_node = node.value.get("name")
    if name_node is None:
        problems.add(node, where, "missing key 'name'")
        return None
    name = name_node.value
    if not isinstance(name, str) or not pattern.match(name):
        problems.add(name_node, f"{where}.name", f"'{name}' is not a valid name ({rule})")
        return None
    return name


def _unique(name: str | None, node: Node, seen: dict[str, int], kind: str, where: str,
            problems: _Problems) -> bool:
    if name is None:
        return False
    if name in seen:
        problems.add(node, f"{where}.name", f"duplicate {kind} name '{name}' (first on line {seen[name]})")
        return False
    seen[name] = node.line
    return True


def _network_field(node: Node, key: str, where: str, version: int, problems: _Problems):
    value = node.value.get(key)
    if value is None:
        return None
    try:
        net = ipaddress.ip_network(str(value.value), strict=True)
    except ValueError as err:
        problems.add(value, f"{where}.{key}", f"'{value.value}' is not a valid subnet ({err})")
        return None
    if net.version != version:
        problems.add(value, f"{where}.{key}", f"'{value.value}' is not an IPv{version} subnet")
        return None
    return net


def _build(root: Node, problems: _Problems, source: str) -> Topology:
    _check_keys(root, TOP_KEYS, "", problems)
    name_node = root.value.get("name")
    name = name_node.value if name_node else "lab"
    if not isinstance(name, str) or not LAB_NAME.match(name):
        problems.add(name_node, "name", f"'{name}' is not a valid lab name (a lowercase letter, "
                                        f"then up to 10 letters, digits or '-')")

    fabric_subnet = DEFAULT_FABRIC_SUBNET
    if "fabric" in root.value:
        fabric = root.value["fabric"]
        if _check_keys(fabric, FABRIC_KEYS, "fabric", problems):
            fabric_subnet = _network_field(fabric, "subnet", "fabric", 4, problems) or fabric_subnet

    computes = _computes(root, problems)
    if len(computes) > fabric_subnet.num_addresses - 2:
        problems.add(root.value.get("fabric", root), "fabric.subnet",
                     f"{fabric_subnet} has too few addresses for {len(computes)} compute nodes")
    networks = _networks(root, problems)
    vms = _vms(root, problems, computes, networks)
    fabric_analyzers = _fabric_analyzers(root, problems, fabric_subnet, len(computes),
                                         {vm.name for vm in vms} | set(computes))
    return Topology(name=name, source=source, fabric_subnet=fabric_subnet,
                    computes=tuple(computes.values()), networks=tuple(networks.values()),
                    vms=tuple(vms), fabric_analyzers=tuple(fabric_analyzers))


def _fabric_analyzers(root: Node, problems: _Problems, fabric_subnet: ipaddress.IPv4Network,
                      compute_count: int, taken_names: set[str]) -> list[FabricAnalyzer]:
    """Analyzer hosts on the fabric (VTEPs of static mirror destinations): each a name and an
    address in the fabric subnet above the compute nodes' (default: the highest free one)."""
    found: list[FabricAnalyzer] = []
    seen: dict[str, int] = {}
    used = {fabric_subnet.network_address + n for n in range(1, compute_count + 1)}
    entries = []
    for position, node in enumerate(_list(root, "fabric_analyzers", problems, required=False)):
        where = f"fabric_analyzers[{position}]"
        if node is None or not _check_keys(node, FABRIC_ANALYZER_KEYS, where, problems):
            continue
        name = _name(node, where, VM_NAME, "a lowercase letter, then up to 7 letters or digits",
                     problems)
        if name in taken_names:
            problems.add(node, f"{where}.name", f"'{name}' is the name of a VM or compute node")
            continue
        if not _unique(name, node, seen, "fabric analyzer", where, problems):
            continue
        ip = None
        if "ip" in node.value:
            ip_node = node.value["ip"]
            try:
                ip = ipaddress.IPv4Address(str(ip_node.value))
            except ValueError:
                problems.add(ip_node, f"{where}.ip", f"'{ip_node.value}' is not an IPv4 address")
                continue
            if ip not in fabric_subnet or ip in (fabric_subnet.network_address,
                                                 fabric_subnet.broadcast_address):
                problems.add(ip_node, f"{where}.ip", f"{ip} is not a host address of the fabric "
                                                     f"subnet {fabric_subnet}")
                continue
            if ip in used:
                problems.add(ip_node, f"{where}.ip", f"{ip} is taken (a compute node or another "
                                                     f"fabric analyzer)")
                continue
            used.add(ip)
        entries.append((name, ip, node, where))
    for name, ip, node, where in entries:
        if ip is None:
            ip = next((fabric_subnet.broadcast_address - n for n in range(1, fabric_subnet.num_addresses - 1)
                       if fabric_subnet.broadcast_address - n not in used), None)
            if ip is None:
                problems.add(node, where, f"no free address left in the fabric subnet {fabric_subnet}")
                continue
            used.add(ip)
        found.append(FabricAnalyzer(name=name, ip=ip, index=len(found) + 1))
    return found


def _computes(root: Node, problems: _Problems) -> dict[str, ComputeNode]:
    computes: dict[str, ComputeNode] = {}
    seen: dict[str, int] = {}
    for position, node in enumerate(_list(root, "computes", problems)):
        where = f"computes[{position}]"
        if node is not None and isinstance(node.value, str):
            node = Node({"name": Node(node.value, node.line)}, node.line)
        if node is None or not _check_keys(node, COMPUTE_KEYS, where, problems):
            continue
        name = _name(node, where, COMPUTE_NAME, "a lowercase letter, then up to 9 letters or digits",
                     problems)
        if _unique(name, node, seen, "compute node", where, problems):
            computes[name] = ComputeNode(name=name, index=len(computes) + 1)
    return computes


def _networks(root: Node, problems: _Problems) -> dict[str, Network]:
    networks: dict[str, Network] = {}
    seen_names: dict[str, int] = {}
    seen_labels: dict[int, str] = {}
    subnets: list[tuple[ipaddress._BaseNetwork, str]] = []
    entries = [(f"networks[{i}]", n, False)
               for i, n in enumerate(_list(root, "networks", problems, required=False))]
    analyzer_node = root.value.get("analyzer_network")
    if analyzer_node is None:
        analyzer_node = Node({"name": Node(ANALYZER_NETWORK_NAME, root.line),
                              "subnet": Node(str(ANALYZER_NETWORK_SUBNET), root.line)}, root.line)
    entries.append(("analyzer_network", analyzer_node, True))

    for position, (where, node, is_analyzer) in enumerate(entries):
        if node is None or not _check_keys(node, NETWORK_KEYS, where, problems):
            continue
        name = _name(node, where, NETWORK_NAME, "a lowercase letter, then letters, digits or '-'",
                     problems)
        if not _unique(name, node, seen_names, "network", where, problems):
            continue
        subnet = _network_field(node, "subnet", where, 4, problems)
        if "subnet" not in node.value:
            problems.add(node, where, "missing key 'subnet'")
        subnet6 = _network_field(node, "subnet6", where, 6, problems)
        for net, key in ((subnet, "subnet"), (subnet6, "subnet6")):
            if net is None:
                continue
            for other, other_name in subnets:
                if other.version == net.version and other.overlaps(net):
                    problems.add(node.value[key], f"{where}.{key}",
                                 f"{net} overlaps {other} of network '{other_name}'")
            subnets.append((net, name))
        if subnet is not None and subnet.prefixlen > 29:
            problems.add(node.value["subnet"], f"{where}.subnet", f"{subnet} is too small (/29 at most)")
        label = FIRST_AUTO_LABEL + position
        if "label" in node.value:
            label_node = node.value["label"]
            label = label_node.value
            if not isinstance(label, int) or isinstance(label, bool) or not 16 <= label <= MAX_NETWORK_LABEL:
                problems.add(label_node, f"{where}.label",
                             f"'{label}' is not an MPLS label from 16 to {MAX_NETWORK_LABEL}")
                continue
        if label in seen_labels:
            problems.add(node.value.get("label", node), f"{where}.label",
                         f"label {label} is used by network '{seen_labels[label]}' already")
            continue
        seen_labels[label] = name
        if subnet is None:
            continue
        networks[name] = Network(name=name, subnet=subnet, subnet6=subnet6, label=label,
                                 index=len(networks) + 1, is_analyzer_network=is_analyzer)
    return networks


def _vms(root: Node, problems: _Problems, computes: dict[str, ComputeNode],
         networks: dict[str, Network]) -> list[VM]:
    seen: dict[str, int] = {}
    used_ips: dict[ipaddress._BaseAddress, str] = {}
    used_macs: dict[str, str] = {}
    next_port = {name: FIRST_VM_PORT for name in computes}
    pending: list[tuple[str, str, list[tuple[str, Node]]]] = []

    # First pass: names, computes and explicit addresses, so automatic ones never collide.
    for position, node in enumerate(_list(root, "vms", problems, required=False)):
        where = f"vms[{position}]"
        if node is None or not _check_keys(node, VM_KEYS, where, problems):
            continue
        name = _name(node, where, VM_NAME, "a lowercase letter, then up to 7 letters or digits",
                     problems)
        if not _unique(name, node, seen, "vm", where, problems):
            continue
        compute_node = node.value.get("compute")
        if compute_node is None:
            problems.add(node, where, "missing key 'compute'")
            continue
        if not isinstance(compute_node.value, str):
            problems.add(compute_node, f"{where}.compute", "must be the name of a compute node")
            continue
        if compute_node.value not in computes:
            problems.add(compute_node, f"{where}.compute",
                         f"unknown compute node '{compute_node.value}' "
                         f"(known: {', '.join(computes) or 'none'})")
            continue
        if "interfaces" in node.value:
            if any(k in node.value for k in ("network", "ip", "ip6", "mac")):
                problems.add(node.value["interfaces"], f"{where}.interfaces",
                             "give either 'interfaces' or 'network'/'ip'/'ip6'/'mac', not both")
                continue
            items = node.value["interfaces"].value
            if not isinstance(items, list) or not items:
                problems.add(node.value["interfaces"], f"{where}.interfaces", "must be a non-empty list")
                continue
            interfaces = [(f"{where}.interfaces[{i}]", item) for i, item in enumerate(items)]
            if not all(_check_keys(item, INTERFACE_KEYS, w, problems) for w, item in interfaces):
                continue
        else:
            if "network" not in node.value:
                problems.add(node, where, "missing key 'network' (or 'interfaces')")
                continue
            interfaces = [(where, node)]
        ok = True
        for iwhere, item in interfaces:
            ok &= _claim_explicit(item, iwhere, name, networks, used_ips, used_macs, problems)
        if ok:
            pending.append((name, compute_node.value, interfaces))

    vms = []
    for name, compute, interfaces in pending:
        built = []
        for index, (iwhere, item) in enumerate(interfaces):
            network = networks[item.value["network"].value]
            ip = _ipv4_address(item, network.subnet, used_ips, name, iwhere, problems)
            if ip is None:
                break
            ip6 = None
            if "ip6" in item.value:
                ip6 = ipaddress.ip_address(str(item.value["ip6"].value))
            elif network.subnet6 is not None:
                ip6 = ipv6_for(network.subnet6, ip, network.subnet)
                if ip6 not in network.subnet6:
                    problems.add(item, iwhere, f"automatic IPv6 address {ip6} (host number of {ip}) "
                                               f"is outside {network.subnet6}; give 'ip6' or a "
                                               f"larger subnet6")
                    break
                if ip6 in used_ips:
                    problems.add(item, iwhere, f"automatic IPv6 address {ip6} is used by "
                                               f"{used_ips[ip6]} already")
                    break
                used_ips[ip6] = f"vm '{name}'"
            mac = item.value["mac"].value.lower() if "mac" in item.value else interface_mac(ip)
            if "mac" not in item.value and mac in used_macs:
                problems.add(item, iwhere, f"automatic MAC {mac} is taken by {used_macs[mac]}")
                break
            used_macs[mac] = f"vm '{name}'"
            built.append(Interface(vm=name, index=index, network=network.name, ip=ip,
                                   prefixlen=network.subnet.prefixlen, ip6=ip6,
                                   prefixlen6=network.subnet6.prefixlen if network.subnet6 else None,
                                   mac=mac, compute=compute, ofport=next_port[compute]))
            next_port[compute] += 1
        else:
            vms.append(VM(name=name, compute=compute, interfaces=tuple(built)))
    return vms


def _claim_explicit(item: Node, where: str, vm: str, networks: dict[str, Network],
                    used_ips: dict, used_macs: dict, problems: _Problems) -> bool:
    network_node = item.value.get("network")
    if network_node is None:
        problems.add(item, where, "missing key 'network'")
        return False
    if not isinstance(network_node.value, str):
        problems.add(network_node, f"{where}.network", "must be the name of a network")
        return False
    network = networks.get(network_node.value)
    if network is None:
        problems.add(network_node, f"{where}.network",
                     f"unknown network '{network_node.value}' (known: {', '.join(networks) or 'none'})")
        return False
    ok = True
    for key, subnet in (("ip", network.subnet), ("ip6", network.subnet6)):
        if key not in item.value:
            continue
        node = item.value[key]
        try:
            ip = ipaddress.ip_address(str(node.value))
        except ValueError:
            problems.add(node, f"{where}.{key}", f"'{node.value}' is not an IP address")
            ok = False
            continue
        version = 4 if key == "ip" else 6
        if ip.version != version:
            problems.add(node, f"{where}.{key}", f"'{node.value}' is not an IPv{version} address")
            ok = False
            continue
        if subnet is None:
            problems.add(node, f"{where}.{key}", f"network '{network.name}' has no subnet6")
            ok = False
            continue
        if ip not in subnet:
            problems.add(node, f"{where}.{key}",
                         f"{ip} is outside subnet {subnet} of network '{network.name}'")
            ok = False
        elif int(ip) - int(subnet.network_address) < FIRST_HOST or (
                ip.version == 4 and ip == subnet.broadcast_address):
            first = "." if ip.version == 4 else "::"
            problems.add(node, f"{where}.{key}",
                         f"{ip} is reserved in {subnet} (use {first}{FIRST_HOST} up"
                         + (" to the last but one)" if ip.version == 4 else ")"))
            ok = False
        elif ip in used_ips:
            problems.add(node, f"{where}.{key}", f"{ip} is used by {used_ips[ip]} already")
            ok = False
        else:
            used_ips[ip] = f"vm '{vm}'"
    if "mac" in item.value:
        node = item.value["mac"]
        mac = str(node.value).lower()
        if not isinstance(node.value, str):
            problems.add(node, f"{where}.mac", "write MAC addresses in quotes (YAML reads an "
                                               "unquoted one made of digits as a number)")
            ok = False
        elif not MAC.match(mac) or int(mac[:2], 16) & 1:
            problems.add(node, f"{where}.mac", f"'{node.value}' is not a unicast MAC address")
            ok = False
        elif mac in used_macs:
            problems.add(node, f"{where}.mac", f"{mac} is used by {used_macs[mac]} already")
            ok = False
        else:
            used_macs[mac] = f"vm '{vm}'"
    return ok


def _ipv4_address(item: Node, subnet: ipaddress.IPv4Network, used: dict, vm: str,
                  where: str, problems: _Problems) -> ipaddress.IPv4Address | None:
    if "ip" in item.value:
        return ipaddress.ip_address(str(item.value["ip"].value))
    ip = first_free_address(subnet, used.__contains__)
    if ip is None:
        problems.add(item, where, f"no free address left in {subnet}")
        return None
    used[ip] = f"vm '{vm}'"
    return ip


def first_free_address(subnet: ipaddress.IPv4Network,
                       is_taken: Callable[[ipaddress.IPv4Address], bool]) -> ipaddress.IPv4Address | None:
    """The lowest address of `subnet` that the lab hands out and `is_taken` does not refuse."""
    for offset in range(FIRST_HOST, subnet.num_addresses - 1):
        ip = subnet.network_address + offset
        if not is_taken(ip):
            return ip
    return None


def compose(text: str, source: str) -> Node | None:
    """YAML `text` as `Node`s that carry their line numbers, for files that embed a topology
    (scenarios); raise `TopologyError` on invalid YAML or a duplicate key, with file:line."""
    problems = _Problems(source)
    try:
        root = _to_nodes(yaml.compose(text), problems)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise TopologyError([f"{source}:{line}: not valid YAML: {getattr(err, 'problem', err)}"]) from None
    if problems.lines:
        raise TopologyError(problems.lines)
    return root


def from_node(node: Node, source: str, where: str) -> Topology:
    """Validate a topology given inline as the mapping `node` of a larger file; problems name
    `source`, their line, and their key under `where`."""
    problems = _Problems(source, scope=where)
    if not isinstance(node.value, dict):
        problems.add(node, "", f"must be a mapping with keys {', '.join(sorted(TOP_KEYS))}")
        raise TopologyError(problems.lines)
    topology = _build(node, problems, source)
    if problems.lines:
        raise TopologyError(problems.lines)
    return topology


def dump(topology: Topology) -> str:
    """`topology` as topology-file YAML that `parse` turns back into an equal `Topology`
    (every address, MAC and label written out; analyzer VMs, which the running lab adds, left
    out)."""
    def network(n: Network) -> dict:
        return {"name": n.name, "subnet": str(n.subnet), "label": n.label,
                **({"subnet6": str(n.subnet6)} if n.subnet6 else {})}

    def interface(i: Interface) -> dict:
        return {"network": i.network, "ip": str(i.ip), "mac": i.mac,
                **({"ip6": str(i.ip6)} if i.ip6 else {})}

    document = {
        "name": topology.name,
        "fabric": {"subnet": str(topology.fabric_subnet)},
        "computes": [c.name for c in topology.computes],
        "networks": [network(n) for n in topology.networks if not n.is_analyzer_network],
        "analyzer_network": network(topology.analyzer_network),
        "vms": [{"name": vm.name, "compute": vm.compute,
                 "interfaces": [interface(i) for i in vm.interfaces]}
                for vm in topology.vms if not vm.analyzer],
    }
    if topology.fabric_analyzers:
        document["fabric_analyzers"] = [{"name": probe.name, "ip": str(probe.ip)}
                                        for probe in topology.fabric_analyzers]
    return yaml.safe_dump(document, sort_keys=False)
