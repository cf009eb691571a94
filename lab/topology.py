"""The lab's intent: compute nodes, virtual networks and guest VMs, validated and frozen.

A `Topology` is a pure description, like Mininet's `Topo`: it does no I/O. Loading it from YAML
lives in `lab.topofile`; bringing it up lives in `lab.netlab`. Every name the lab creates on the
machine (bridges, ports, namespaces) is derived here, so that bring-up, the controller and
clean-up agree on them.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Iterator

import networkx as nx

# OpenFlow port of every vRouter's fabric uplink; VM interfaces follow from 2 up.
FABRIC_PORT = 1
FIRST_VM_PORT = 2
# Analyzer VMs launched at run time get ports from here, so guest port numbers never move.
FIRST_ANALYZER_PORT = 1000
# OpenFlow port of every vRouter's link to the lab's mirror encapsulator (lab/encapsulator.py),
# above every VM port.
ENCAP_PORT = 0xFEFF

DEFAULT_FABRIC_SUBNET = ipaddress.ip_network("192.168.100.0/24")
ANALYZER_NETWORK_NAME = "svc-vn-left"
ANALYZER_NETWORK_SUBNET = ipaddress.ip_network("10.250.2.0/24")
# Labels of networks that declare none: 100 + position in the file.
# Contrail's domain, the first part of every fq-name; the lab is one project in it.
CONTRAIL_DOMAIN = "default-domain"
FIRST_AUTO_LABEL = 100
MAX_NETWORK_LABEL = 0x7FFFF  # labels above this are kept for mirrored copies


def subnet_gateway(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network):
    """A subnet's gateway: its first address (`.1`, `::1`), answered by the vRouter, as
    Contrail's IPAM makes the first address of a subnet its default gateway."""
    return subnet.network_address + 1


class TopologyError(ValueError):
    """A topology that cannot be built. `problems` holds one line per problem found."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Network:
    """A virtual network (VN): an isolated overlay with its own subnet and MPLS label."""

    name: str
    subnet: ipaddress.IPv4Network
    subnet6: ipaddress.IPv6Network | None
    label: int
    index: int  # 1-based position, the VN's id inside vRouter pipelines
    is_analyzer_network: bool = False

    @property
    def subnets(self) -> tuple:
        """Its subnets: the IPv4 one, then the IPv6 one if it has one."""
        return (self.subnet,) if self.subnet6 is None else (self.subnet, self.subnet6)


@dataclass(frozen=True)
class ComputeNode:
    """A compute node: one vRouter bridge and one uplink into the fabric."""

    name: str
    index: int  # 1-based

    @property
    def vrouter(self) -> str:
        """Name of this node's vRouter bridge."""
        return f"vr-{self.name}"

    @property
    def dpid(self) -> int:
        """OpenFlow datapath id of the vRouter."""
        return self.index

    @property
    def fabric_mac(self) -> str:
        """MAC address of the vRouter's fabric uplink (outer source of overlay frames)."""
        return f"02:fa:00:00:{self.index >> 8:02x}:{self.index & 0xFF:02x}"

    @property
    def fabric_port_name(self) -> str:
        """Name of the vRouter's fabric uplink port."""
        return f"vr-{self.name}-f"

    @property
    def encap_port_name(self) -> str:
        """Name of the vRouter's port towards the mirror encapsulator."""
        return f"vr-{self.name}-m"

    @property
    def encapsulator_interface(self) -> str:
        """Name of the mirror encapsulator's end of the link to this vRouter."""
        return f"mx-{self.name}"

    @property
    def fabric_switch_port_name(self) -> str:
        """Name of the fabric switch's port facing this compute node."""
        return f"fab-{self.name}"


@dataclass(frozen=True)
class Interface:
    """A VM interface (VMI): one vRouter port, one network."""

    vm: str
    index: int
    network: str
    ip: ipaddress.IPv4Address
    prefixlen: int
    ip6: ipaddress.IPv6Address | None
    prefixlen6: int | None
    mac: str
    compute: str
    ofport: int

    @property
    def name(self) -> str:
        """The interface's name inside the VM."""
        return f"{self.vm}-eth{self.index}"

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The interface's IPv4 gateway (`subnet_gateway` of its subnet), the vRouter."""
        return subnet_gateway(ipaddress.ip_interface(f"{self.ip}/{self.prefixlen}").network)

    @property
    def gateway6(self) -> ipaddress.IPv6Address | None:
        """The interface's IPv6 gateway (`subnet_gateway` of its IPv6 subnet), the vRouter;
        None without an IPv6 address."""
        if self.ip6 is None:
            return None
        return subnet_gateway(ipaddress.ip_interface(f"{self.ip6}/{self.prefixlen6}").network)

    @property
    def port_name(self) -> str:
        """The interface's port name on the vRouter (Contrail calls these tap interfaces)."""
        return f"tap-{self.vm}-{self.index}"


@dataclass(frozen=True)
class VM:
    """A guest VM (a Mininet host). `analyzer` names the analyzer instance it runs, if any."""

    name: str
    compute: str
    interfaces: tuple[Interface, ...]
    analyzer: str | None = None


@dataclass(frozen=True)
class FabricAnalyzer:
    """An analyzer host on the fabric (a probe appliance in its own namespace), the VTEP that
    static mirror destinations send their VXLAN to."""

    name: str
    ip: ipaddress.IPv4Address
    index: int  # 1-based

    @property
    def mac(self) -> str:
        """Its MAC address on the fabric."""
        return f"02:fb:00:00:{self.index >> 8:02x}:{self.index & 0xFF:02x}"

    @property
    def interface(self) -> str:
        """Its interface's name inside its namespace."""
        return f"{self.name}-eth0"

    @property
    def fabric_switch_port_name(self) -> str:
        """Name of the fabric switch's port facing it."""
        return f"fab-{self.name}"


@dataclass(frozen=True)
class Topology:
    """A validated lab: immutable; derive changed copies with `with_vm` / `without_vm`."""

    name: str
    source: str
    fabric_subnet: ipaddress.IPv4Network
    computes: tuple[ComputeNode, ...]
    networks: tuple[Network, ...]
    vms: tuple[VM, ...]
    fabric_analyzers: tuple[FabricAnalyzer, ...] = ()
    _by_name: dict = field(default=None, compare=False, repr=False, hash=False)

    def __post_init__(self):
        index = {("compute", c.name): c for c in self.computes}
        index.update({("network", n.name): n for n in self.networks})
        index.update({("vm", v.name): v for v in self.vms})
        index.update({("fabric_analyzer", f.name): f for f in self.fabric_analyzers})
        object.__setattr__(self, "_by_name", index)

    def compute(self, name: str) -> ComputeNode:
        """The compute node called `name` (KeyError if none)."""
        return self._by_name[("compute", name)]

    def network(self, name: str) -> Network:
        """The network called `name` (KeyError if none)."""
        return self._by_name[("network", name)]

    def vm(self, name: str) -> VM:
        """The VM called `name` (KeyError if none)."""
        return self._by_name[("vm", name)]

    def fabric_analyzer(self, name: str) -> FabricAnalyzer:
        """The fabric analyzer called `name` (KeyError if none)."""
        return self._by_name[("fabric_analyzer", name)]

    def has(self, kind: str, name: str) -> bool:
        """Whether a compute node, network, VM or fabric analyzer (`kind`) of that name exists."""
        return (kind, name) in self._by_name

    @property
    def project_fq_name(self) -> tuple[str, str]:
        """The lab's Contrail project: `default-domain` and the lab's name."""
        return (CONTRAIL_DOMAIN, self.name)

    def network_fq_name(self, network: str) -> tuple[str, ...]:
        """The fq-name of `network` as Contrail has it (`default-domain:<lab>:<network>` joined
        with colons): what the config API shows and what the Juniper header's VN TLVs carry."""
        return self.project_fq_name + (network,)

    @property
    def analyzer_network(self) -> Network:
        """The network that holds analyzers unless a user picks another."""
        return next(n for n in self.networks if n.is_analyzer_network)

    def interfaces(self) -> Iterator[Interface]:
        """Every VM interface, in VM order."""
        for vm in self.vms:
            yield from vm.interfaces

    def interfaces_on(self, compute: str) -> list[Interface]:
        """The interfaces plugged into `compute`'s vRouter, by port number."""
        return sorted((i for i in self.interfaces() if i.compute == compute), key=lambda i: i.ofport)

    def interface_by_port_name(self, port_name: str) -> Interface:
        """The interface whose vRouter port is `port_name` (KeyError if none)."""
        for interface in self.interfaces():
            if interface.port_name == port_name:
                return interface
        raise KeyError(port_name)

    @property
    def fabric_bridge(self) -> str:
        """Name of the fabric switch's bridge (named after the lab, so labs can coexist)."""
        return f"mlf-{self.name}"

    def fabric_ip(self, compute: ComputeNode) -> ipaddress.IPv4Address:
        """The compute node's address on the fabric."""
        return self.fabric_subnet.network_address + compute.index

    def with_vm(self, vm: VM) -> "Topology":
        """A copy with `vm` added (names must be free; callers validate addresses)."""
        if self.has("vm", vm.name):
            raise TopologyError([f"vm '{vm.name}' exists already"])
        return replace(self, vms=self.vms + (vm,))

    def without_vm(self, name: str) -> "Topology":
        """A copy without the VM called `name`."""
        return replace(self, vms=tuple(v for v in self.vms if v.name != name))

    def used_addresses(self, network: str) -> set[ipaddress.IPv4Address]:
        """IPv4 addresses taken in `network`."""
        return {i.ip for i in self.interfaces() if i.network == network}

    def graph(self) -> nx.Graph:
        """The lab as a graph. Nodes are "fabric", "compute:NAME", "fabric_analyzer:NAME" (with
        its `ip` and `mac`), "network:NAME" and "vm:NAME" (attributes `kind` and `name`); edges
        join VMs to their compute node (`hosted-on`) and networks (`attached`, with interface
        name and IP), and compute nodes and fabric analyzers to the fabric (`fabric`, with the
        fabric IP)."""
        graph = nx.Graph(name=self.name)
        graph.add_node("fabric", kind="fabric", name=self.fabric_bridge)
        for compute in self.computes:
            node = f"compute:{compute.name}"
            graph.add_node(node, kind="compute", name=compute.name, vrouter=compute.vrouter)
            graph.add_edge(node, "fabric", kind="fabric", ip=str(self.fabric_ip(compute)))
        for probe in self.fabric_analyzers:
            node = f"fabric_analyzer:{probe.name}"
            graph.add_node(node, kind="fabric_analyzer", name=probe.name, ip=str(probe.ip), mac=probe.mac)
            graph.add_edge(node, "fabric", kind="fabric", ip=str(probe.ip))
        for network in self.networks:
            graph.add_node(f"network:{network.name}", kind="network", name=network.name,
                           subnet=str(network.subnet), label=network.label)
        for vm in self.vms:
            node = f"vm:{vm.name}"
            graph.add_node(node, kind="analyzer" if vm.analyzer else "vm", name=vm.name)
            graph.add_edge(node, f"compute:{vm.compute}", kind="hosted-on")
            for interface in vm.interfaces:
                graph.add_edge(node, f"network:{interface.network}", kind="attached",
                               interface=interface.name, ip=str(interface.ip))
        return graph


def interface_mac(ip: ipaddress.IPv4Address) -> str:
    """The MAC the lab gives an interface without one: 02:00 then the four IPv4 bytes,
    readable and unique because subnets may not overlap."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ip.packed)


def ipv6_for(subnet6: ipaddress.IPv6Network, ip: ipaddress.IPv4Address,
             subnet: ipaddress.IPv4Network) -> ipaddress.IPv6Address:
    """The IPv6 address matching an IPv4 one: same host number in the IPv6 subnet."""
    return subnet6.network_address + (int(ip) - int(subnet.network_address))


def vm_to_dict(vm: VM) -> dict:
    """A JSON-ready description of `vm` (for the lab's control socket and the capture store)."""
    return {
        "name": vm.name, "compute": vm.compute, "analyzer": vm.analyzer,
        "interfaces": [{
            "index": i.index, "network": i.network, "ip": str(i.ip), "prefixlen": i.prefixlen,
            "ip6": str(i.ip6) if i.ip6 else None, "prefixlen6": i.prefixlen6, "mac": i.mac,
            "ofport": i.ofport,
        } for i in vm.interfaces],
    }


def vm_from_dict(data: dict) -> VM:
    """The `VM` that `vm_to_dict` described."""
    interfaces = tuple(Interface(
        vm=data["name"], index=i["index"], network=i["network"], ip=ipaddress.ip_address(i["ip"]),
        prefixlen=i["prefixlen"], ip6=ipaddress.ip_address(i["ip6"]) if i["ip6"] else None,
        prefixlen6=i["prefixlen6"], mac=i["mac"], compute=data["compute"], ofport=i["ofport"],
    ) for i in data["interfaces"])
    return VM(name=data["name"], compute=data["compute"], interfaces=interfaces,
              analyzer=data.get("analyzer"))
