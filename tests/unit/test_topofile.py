"""Topology files: the shipped labs, derived names and addresses, the graph, and validation."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mirrorlab.topofile import first_free_address, load, parse
from mirrorlab.topology import TopologyError

# Five lines every VM test builds on; the first VM therefore sits on line 6.
HEADER = """\
computes: [compute1, compute2]
networks:
  - {name: blue, subnet: 10.1.1.0/24}
  - {name: red, subnet: 10.2.2.0/24}
vms:
"""
ALLOWED_TOP = "analyzer_network, computes, fabric, fabric_analyzers, name, networks, vms"
ALLOWED_VM = "compute, interfaces, ip, ip6, mac, name, network"


def problems_of(text: str) -> list[str]:
    """The problems `parse` reports for `text` (fails the test if it parses)."""
    with pytest.raises(TopologyError) as caught:
        parse(text, "t.yaml")
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def macs_and_ips(topology):
    """(vm, ip, ip6, mac, compute, ofport) of every interface, for compact comparisons."""
    return [(i.vm, str(i.ip), str(i.ip6) if i.ip6 else None, i.mac, i.compute, i.ofport)
            for i in topology.interfaces()]


# --- the shipped topologies ---------------------------------------------------------------


def test_default_counts_and_addresses(default_topo):
    """default.yaml: 3 computes, blue/red plus the automatic analyzer network, 5 VMs as written."""
    assert default_topo.name == "default"
    assert [c.name for c in default_topo.computes] == ["compute1", "compute2", "compute3"]
    assert [c.index for c in default_topo.computes] == [1, 2, 3]
    assert [(n.name, str(n.subnet), n.label, n.index, n.is_analyzer_network)
            for n in default_topo.networks] == [
        ("blue", "10.1.1.0/24", 100, 1, False),
        ("red", "10.2.2.0/24", 101, 2, False),
        ("svc-vn-left", "10.250.2.0/24", 102, 3, True),
    ]
    assert default_topo.analyzer_network.name == "svc-vn-left"
    assert default_topo.analyzer_network.subnet6 is None
    assert macs_and_ips(default_topo) == [
        ("vm1", "10.1.1.11", "fd00:1:1::b", "02:00:0a:01:01:0b", "compute1", 2),
        ("vm2", "10.1.1.12", "fd00:1:1::c", "02:00:0a:01:01:0c", "compute2", 2),
        ("vm3", "10.1.1.13", "fd00:1:1::d", "02:00:0a:01:01:0d", "compute1", 3),
        ("vm4", "10.2.2.14", "fd00:2:2::e", "02:00:0a:02:02:0e", "compute2", 3),
        ("vm5", "10.2.2.15", "fd00:2:2::f", "02:00:0a:02:02:0f", "compute3", 2),
    ]
    assert all(vm.analyzer is None for vm in default_topo.vms)


def test_minimal_hands_out_addresses_from_dot_3(topologies_dir):
    """minimal.yaml: one compute, blue without IPv6, automatic addresses .3 and .4."""
    topo = load(topologies_dir / "minimal.yaml")
    assert topo.name == "minimal"
    assert [c.name for c in topo.computes] == ["compute1"]
    assert [(n.name, n.label) for n in topo.networks] == [("blue", 100), ("svc-vn-left", 101)]
    assert macs_and_ips(topo) == [
        ("vm1", "10.1.1.3", None, "02:00:0a:01:01:03", "compute1", 2),
        ("vm2", "10.1.1.4", None, "02:00:0a:01:01:04", "compute1", 3),
    ]
    assert topo.vm("vm1").interfaces[0].prefixlen6 is None


def test_large_spreads_fifty_vms_over_ten_computes(topologies_dir):
    """large.yaml: >= 50 VMs on 10 computes, unique addresses, ports 2.. on every compute."""
    topo = load(topologies_dir / "large.yaml")
    assert len(topo.computes) == 10
    assert len(topo.vms) >= 50
    interfaces = list(topo.interfaces())
    assert len({i.ip for i in interfaces}) == len(interfaces)
    assert len({i.mac for i in interfaces}) == len(interfaces)
    for compute in topo.computes:
        ports = [i.ofport for i in topo.interfaces_on(compute.name)]
        assert ports == list(range(2, 2 + len(ports)))
        assert len(ports) == 5
    vm1 = topo.vm("vm1").interfaces[0]
    assert (vm1.network, str(vm1.ip), str(vm1.ip6), vm1.prefixlen) == (
        "net1", "10.100.0.3", "fd00:100::3", 22)
    assert str(topo.vm("vm6").interfaces[0].ip) == "10.100.0.4"


# --- derived names ---------------------------------------------------------------------------


def test_derived_names(default_topo):
    """vRouter, port, VM-side, fabric names and MACs all derive from the YAML names."""
    compute1 = default_topo.compute("compute1")
    vm1 = default_topo.vm("vm1").interfaces[0]
    assert compute1.vrouter == "vr-compute1"
    assert compute1.dpid == 1
    assert compute1.fabric_mac == "02:fa:00:00:00:01"
    assert compute1.fabric_port_name == "vr-compute1-f"
    assert compute1.fabric_switch_port_name == "fab-compute1"
    assert str(default_topo.fabric_ip(default_topo.compute("compute3"))) == "192.168.100.3"
    assert vm1.port_name == "tap-vm1-0"
    assert vm1.name == "vm1-eth0"
    assert (vm1.mac, vm1.ip6, vm1.prefixlen, vm1.prefixlen6) == (
        "02:00:0a:01:01:0b", ipaddress.ip_address("fd00:1:1::b"), 24, 64)
    assert default_topo.interface_by_port_name("tap-vm4-0").vm == "vm4"
    with pytest.raises(KeyError):
        default_topo.interface_by_port_name("tap-vm9-0")


def test_interfaces_on_sorted_by_port(default_topo):
    """interfaces_on lists a compute's interfaces by OpenFlow port."""
    assert [i.port_name for i in default_topo.interfaces_on("compute1")] == ["tap-vm1-0", "tap-vm3-0"]
    assert [i.port_name for i in default_topo.interfaces_on("compute2")] == ["tap-vm2-0", "tap-vm4-0"]
    assert [i.port_name for i in default_topo.interfaces_on("compute3")] == ["tap-vm5-0"]


def test_multi_interface_vm_numbers_ports_and_names():
    """A VM with `interfaces` gets eth0/eth1, consecutive ports, and addresses per network."""
    topo = parse(HEADER + """\
  - {name: vm1, compute: compute1, network: red}
  - name: vm2
    compute: compute1
    interfaces:
      - {network: blue, ip: 10.1.1.20, mac: "02:aa:00:00:00:01"}
      - {network: red}
""", "t.yaml")
    assert topo.name == "lab"  # no name: the default, whatever the file is called
    assert topo.fabric_bridge == "mlf-lab"
    assert [(i.name, i.port_name, i.network, str(i.ip), i.mac, i.ofport) for i in topo.interfaces()] == [
        ("vm1-eth0", "tap-vm1-0", "red", "10.2.2.3", "02:00:0a:02:02:03", 2),
        ("vm2-eth0", "tap-vm2-0", "blue", "10.1.1.20", "02:aa:00:00:00:01", 3),
        ("vm2-eth1", "tap-vm2-1", "red", "10.2.2.4", "02:00:0a:02:02:04", 4),
    ]


def test_explicit_addresses_are_skipped_by_automatic_ones():
    """Automatic addresses never take an address a later VM asks for explicitly."""
    topo = parse(HEADER + """\
  - {name: vm1, compute: compute1, network: blue}
  - {name: vm2, compute: compute2, network: blue, ip: 10.1.1.3}
""", "t.yaml")
    assert [(i.vm, str(i.ip)) for i in topo.interfaces()] == [("vm1", "10.1.1.4"), ("vm2", "10.1.1.3")]


def test_explicit_labels_fabric_and_analyzer_network():
    """Labels, the fabric subnet and the analyzer network can all be given explicitly."""
    topo = parse("""\
name: custom
fabric: {subnet: 172.16.0.0/24}
computes: [{name: c1}]
networks:
  - {name: blue, subnet: 10.1.1.0/24, label: 4000}
analyzer_network: {name: taps, subnet: 10.9.9.0/24, subnet6: "fd00:9::/64", label: 16}
vms: []
""", "t.yaml")
    assert topo.name == "custom"
    assert str(topo.fabric_ip(topo.compute("c1"))) == "172.16.0.1"
    assert [(n.name, n.label, n.index, n.is_analyzer_network) for n in topo.networks] == [
        ("blue", 4000, 1, False), ("taps", 16, 2, True)]
    assert str(topo.analyzer_network.subnet6) == "fd00:9::/64"


# --- the graph -----------------------------------------------------------------------------


def test_graph_nodes_and_edges(default_topo):
    """The graph has one kind-prefixed node per compute/network/VM plus the fabric, and the
    right edges."""
    graph = default_topo.graph()
    assert graph.graph["name"] == "default"
    nodes = {node: (data["kind"], data["name"]) for node, data in graph.nodes(data=True)}
    assert nodes == {
        "fabric": ("fabric", "mlf-default"),
        "compute:compute1": ("compute", "compute1"), "compute:compute2": ("compute", "compute2"),
        "compute:compute3": ("compute", "compute3"),
        "fabric_analyzer:probe1": ("fabric_analyzer", "probe1"),
        "network:blue": ("network", "blue"), "network:red": ("network", "red"),
        "network:svc-vn-left": ("network", "svc-vn-left"),
        "vm:vm1": ("vm", "vm1"), "vm:vm2": ("vm", "vm2"), "vm:vm3": ("vm", "vm3"),
        "vm:vm4": ("vm", "vm4"), "vm:vm5": ("vm", "vm5"),
    }
    edges = {frozenset((a, b)): kind for a, b, kind in graph.edges(data="kind")}
    assert edges == {
        frozenset(("compute:compute1", "fabric")): "fabric",
        frozenset(("compute:compute2", "fabric")): "fabric",
        frozenset(("compute:compute3", "fabric")): "fabric",
        frozenset(("fabric_analyzer:probe1", "fabric")): "fabric",
        frozenset(("vm:vm1", "compute:compute1")): "hosted-on",
        frozenset(("vm:vm1", "network:blue")): "attached",
        frozenset(("vm:vm2", "compute:compute2")): "hosted-on",
        frozenset(("vm:vm2", "network:blue")): "attached",
        frozenset(("vm:vm3", "compute:compute1")): "hosted-on",
        frozenset(("vm:vm3", "network:blue")): "attached",
        frozenset(("vm:vm4", "compute:compute2")): "hosted-on",
        frozenset(("vm:vm4", "network:red")): "attached",
        frozenset(("vm:vm5", "compute:compute3")): "hosted-on",
        frozenset(("vm:vm5", "network:red")): "attached",
    }
    assert graph.edges["vm:vm1", "network:blue"]["interface"] == "vm1-eth0"
    assert graph.edges["vm:vm1", "network:blue"]["ip"] == "10.1.1.11"
    assert graph.edges["compute:compute2", "fabric"]["ip"] == "192.168.100.2"
    assert graph.nodes["network:blue"]["label"] == 100
    assert graph.nodes["network:blue"]["subnet"] == "10.1.1.0/24"
    assert graph.nodes["compute:compute1"]["vrouter"] == "vr-compute1"


def test_fabric_bridge_is_named_after_the_lab(default_topo, topologies_dir):
    """The fabric bridge is mlf-<lab name>, so labs of different names can coexist."""
    assert default_topo.fabric_bridge == "mlf-default"
    assert load(topologies_dir / "minimal.yaml").fabric_bridge == "mlf-minimal"
    # The longest lab name still gives a 15-character (IFNAMSIZ - 1) bridge name.
    longest = parse("name: abcdefghijk\ncomputes: [c1]\n", "t.yaml")
    assert (longest.name, longest.fabric_bridge) == ("abcdefghijk", "mlf-abcdefghijk")


def test_names_shared_across_kinds_stay_apart_in_the_graph():
    """Names are unique per kind only: a VM and a network named like a compute node, and a
    network named "fabric", each keep their own graph node (no merges, no self-loops)."""
    topo = parse("computes: [c1]\nnetworks:\n"
                 "  - {name: c1, subnet: 10.1.1.0/24}\n"
                 "  - {name: fabric, subnet: 10.2.2.0/24}\n"
                 "vms:\n  - {name: c1, compute: c1, network: c1}\n", "t.yaml")
    graph = topo.graph()
    assert dict(graph.nodes(data="kind")) == {
        "fabric": "fabric", "compute:c1": "compute", "network:c1": "network",
        "network:fabric": "network", "network:svc-vn-left": "network", "vm:c1": "vm"}
    assert {frozenset((a, b)): kind for a, b, kind in graph.edges(data="kind")} == {
        frozenset(("compute:c1", "fabric")): "fabric",
        frozenset(("vm:c1", "compute:c1")): "hosted-on",
        frozenset(("vm:c1", "network:c1")): "attached",
    }  # (a merged node would show as a self-loop: a one-element frozenset)


def test_with_vm_and_without_vm(default_topo):
    """with_vm adds (and refuses an existing name), without_vm removes, the original is untouched."""
    vm5 = default_topo.vm("vm5")
    smaller = default_topo.without_vm("vm5")
    assert [v.name for v in smaller.vms] == ["vm1", "vm2", "vm3", "vm4"]
    assert not smaller.has("vm", "vm5")
    assert default_topo.has("vm", "vm5")
    assert smaller.with_vm(vm5).vms == default_topo.vms
    with pytest.raises(TopologyError) as caught:
        default_topo.with_vm(vm5)
    assert caught.value.problems == ["vm 'vm5' exists already"]
    assert default_topo.used_addresses("red") == {ipaddress.ip_address("10.2.2.14"),
                                                  ipaddress.ip_address("10.2.2.15")}


# --- validation ----------------------------------------------------------------------------

INVALID = {
    "unknown top-level key": (
        "colour: blue\n" + HEADER + "  - {name: vm1, compute: compute1, network: blue}\n",
        [f"t.yaml:1: colour: unknown key 'colour' (allowed: {ALLOWED_TOP})"]),
    "unknown vm key": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, cpu: 2}\n",
        [f"t.yaml:6: vms[0].cpu: unknown key 'cpu' (allowed: {ALLOWED_VM})"]),
    "duplicate vm name": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue}\n"       # line 6
                 "  - {name: vm2, compute: compute1, network: blue}\n"       # line 7
                 "  - {name: vm1, compute: compute2, network: blue}\n",      # line 8
        ["t.yaml:8: vms[2].name: duplicate vm name 'vm1' (first on line 6)"]),
    "duplicate yaml key": (
        HEADER + "  - name: vm1\n"              # line 6
                 "    compute: compute1\n"      # line 7
                 "    network: blue\n"          # line 8
                 "    compute: compute2\n",     # line 9
        ["t.yaml:9: compute: duplicate key (first on line 7)"]),
    "ip outside subnet": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, ip: 10.2.2.5}\n",
        ["t.yaml:6: vms[0].ip: 10.2.2.5 is outside subnet 10.1.1.0/24 of network 'blue'"]),
    "reserved gateway ip": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, ip: 10.1.1.1}\n",
        ["t.yaml:6: vms[0].ip: 10.1.1.1 is reserved in 10.1.1.0/24 (use .3 up to the last but one)"]),
    "reserved ipv6 gateway": (
        HEADER.replace("10.1.1.0/24}", "10.1.1.0/24, subnet6: 'fd00:1:1::/64'}")
        + "  - {name: vm1, compute: compute1, network: blue, ip6: 'fd00:1:1::1'}\n",
        ["t.yaml:6: vms[0].ip6: fd00:1:1::1 is reserved in fd00:1:1::/64 (use ::3 up)"]),
    "reserved broadcast ip": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, ip: 10.1.1.255}\n",
        ["t.yaml:6: vms[0].ip: 10.1.1.255 is reserved in 10.1.1.0/24 (use .3 up to the last but one)"]),
    "duplicate ip": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, ip: 10.1.1.5}\n"
                 "  - {name: vm2, compute: compute2, network: blue, ip: 10.1.1.5}\n",
        ["t.yaml:7: vms[1].ip: 10.1.1.5 is used by vm 'vm1' already"]),
    "unknown compute": (
        HEADER + "  - {name: vm1, compute: compute9, network: blue}\n",
        ["t.yaml:6: vms[0].compute: unknown compute node 'compute9' (known: compute1, compute2)"]),
    "missing compute": (
        HEADER + "  - {name: vm1, network: blue}\n",
        ["t.yaml:6: vms[0]: missing key 'compute'"]),
    "unknown network": (
        HEADER + "  - {name: vm1, compute: compute1, network: green}\n",
        ["t.yaml:6: vms[0].network: unknown network 'green' (known: blue, red, svc-vn-left)"]),
    "missing network": (
        HEADER + "  - {name: vm1, compute: compute1}\n",
        ["t.yaml:6: vms[0]: missing key 'network' (or 'interfaces')"]),
    "interfaces and network": (
        HEADER + "  - name: vm1\n"
                 "    compute: compute1\n"
                 "    network: blue\n"
                 "    interfaces: [{network: red}]\n",   # line 9
        ["t.yaml:9: vms[0].interfaces: give either 'interfaces' or 'network'/'ip'/'ip6'/'mac', not both"]),
    "bad mac": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, mac: '03:00:00:00:00:01'}\n"
                 "  - {name: vm2, compute: compute1, network: blue, mac: 'zz'}\n",
        ["t.yaml:6: vms[0].mac: '03:00:00:00:00:01' is not a unicast MAC address",
         "t.yaml:7: vms[1].mac: 'zz' is not a unicast MAC address"]),
    "automatic mac taken": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, ip: 10.1.1.11,"
                 " mac: '02:00:0a:01:01:03'}\n"
                 "  - {name: vm2, compute: compute1, network: blue}\n",   # gets 10.1.1.3
        ["t.yaml:7: vms[1]: automatic MAC 02:00:0a:01:01:03 is taken by vm 'vm1'"]),
    "ip6 without subnet6": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, ip6: 'fd00::5'}\n",
        ["t.yaml:6: vms[0].ip6: network 'blue' has no subnet6"]),
    "overlapping subnets": (
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.0.0/16}\n"
        "  - {name: red, subnet: 10.1.2.0/24}\n"        # line 4
        "vms: []\n",
        ["t.yaml:4: networks[1].subnet: 10.1.2.0/24 overlaps 10.1.0.0/16 of network 'blue'"]),
    "overlapping subnets, the larger one second": (
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.2.0/24}\n"
        "  - {name: red, subnet: 10.1.0.0/16}\n"        # line 4
        "vms: []\n",
        ["t.yaml:4: networks[1].subnet: 10.1.0.0/16 overlaps 10.1.2.0/24 of network 'blue'"]),
    "overlapping ipv6 subnets, the larger one second": (
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.1.0/24, subnet6: 'fd00:0:0:1::/64'}\n"
        "  - {name: red, subnet: 10.2.2.0/24, subnet6: 'fd00::/48'}\n"
        "vms: []\n",
        ["t.yaml:4: networks[1].subnet6: fd00::/48 overlaps fd00:0:0:1::/64 of network 'blue'"]),
    "same explicit mac twice": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, mac: '02:aa:00:00:00:01'}\n"
                 "  - {name: vm2, compute: compute2, network: red, mac: '02:AA:00:00:00:01'}\n",
        ["t.yaml:7: vms[1].mac: 02:aa:00:00:00:01 is used by vm 'vm1' already"]),
    "same explicit mac on two interfaces of one vm": (
        HEADER + "  - name: vm1\n"
                 "    compute: compute1\n"
                 "    interfaces:\n"
                 "      - {network: blue, mac: '02:aa:00:00:00:01'}\n"
                 "      - {network: red, mac: '02:aa:00:00:00:01'}\n",   # line 10
        ["t.yaml:10: vms[0].interfaces[1].mac: 02:aa:00:00:00:01 is used by vm 'vm1' already"]),
    "a key whose value is a block is reported on the key's line": (
        "computes: [c1]\n"
        "networks:\n"                                   # line 2
        "  name: blue\n"
        "  subnet: 10.1.1.0/24\n"
        "vms: []\n",
        ["t.yaml:2: networks: must be a list"]),
    "a block list is reported on its key's line": (
        HEADER + "  - name: vm1\n"
                 "    compute: compute1\n"
                 "    network: blue\n"
                 "    interfaces:\n"                    # line 9
                 "      - {network: red}\n",
        ["t.yaml:9: vms[0].interfaces: give either 'interfaces' or 'network'/'ip'/'ip6'/'mac', not both"]),
    "a block mapping is reported on its key's line": (
        "computes: [c1, c2, c3]\n"
        "fabric:\n"                                     # line 2
        "  subnet: 10.0.0.0/31\n"
        "networks: []\n",
        ["t.yaml:2: fabric.subnet: 10.0.0.0/31 has too few addresses for 3 compute nodes"]),
    "a compute node that is not a mapping": (
        "computes: [5]\nnetworks: []\n",
        ["t.yaml:1: computes[0]: must be a mapping"]),
    "a network that is not a mapping": (
        "computes: [c1]\nnetworks:\n  - blue\n",
        ["t.yaml:3: networks[0]: must be a mapping"]),
    "a multicast mac whose first byte has a letter": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, mac: '1b:00:00:00:00:01'}\n",
        ["t.yaml:6: vms[0].mac: '1b:00:00:00:00:01' is not a unicast MAC address"]),
    "a duplicate vm is not checked further": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, ip: 10.1.1.20}\n"
                 "  - {name: vm1, compute: compute2, network: blue, ip: 10.1.1.20}\n",
        ["t.yaml:7: vms[1].name: duplicate vm name 'vm1' (first on line 6)"]),
    "an ipv6 subnet as subnet": (
        "computes: [c1]\nnetworks:\n  - {name: blue, subnet: 'fd00::/64'}\n",
        ["t.yaml:3: networks[0].subnet: 'fd00::/64' is not an IPv4 subnet"]),
    "an address that is none": (
        HEADER + "  - {name: vm1, compute: compute1, network: blue, ip: 10.1.1.x}\n",
        ["t.yaml:6: vms[0].ip: '10.1.1.x' is not an IP address"]),
    "empty interfaces": (
        HEADER + "  - {name: vm1, compute: compute1, interfaces: []}\n"
                 "  - {name: vm2, compute: compute1, interfaces: blue}\n",
        ["t.yaml:6: vms[0].interfaces: must be a non-empty list",
         "t.yaml:7: vms[1].interfaces: must be a non-empty list"]),
    "an interface without a network": (
        HEADER + "  - {name: vm1, compute: compute1, interfaces: [{ip: 10.1.1.5}]}\n",
        ["t.yaml:6: vms[0].interfaces[0]: missing key 'network'"]),
    "overlapping ipv6 subnets": (
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.1.0/24, subnet6: 'fd00::/48'}\n"
        "  - {name: red, subnet: 10.2.2.0/24, subnet6: 'fd00:0:0:1::/64'}\n"
        "vms: []\n",
        ["t.yaml:4: networks[1].subnet6: fd00:0:0:1::/64 overlaps fd00::/48 of network 'blue'"]),
    "overlap with the analyzer network": (
        "computes: [c1]\n"                                 # line 1: the automatic entry's line
        "networks:\n"
        "  - {name: blue, subnet: 10.250.0.0/16}\n"
        "vms: []\n",
        ["t.yaml:1: analyzer_network.subnet: 10.250.2.0/24 overlaps 10.250.0.0/16 of network 'blue'"]),
    "subnet too small": (
        "computes: [c1]\nnetworks:\n  - {name: blue, subnet: 10.1.1.0/30}\nvms: []\n",
        ["t.yaml:3: networks[0].subnet: 10.1.1.0/30 is too small (/29 at most)"]),
    "invalid subnet": (
        "computes: [c1]\nnetworks:\n  - {name: blue, subnet: 10.1.1.1/24}\nvms: []\n",
        ["t.yaml:3: networks[0].subnet: '10.1.1.1/24' is not a valid subnet "
         "(10.1.1.1/24 has host bits set)"]),
    "missing subnet": (
        "computes: [c1]\nnetworks:\n  - {name: blue}\nvms: []\n",
        ["t.yaml:3: networks[0]: missing key 'subnet'"]),
    "duplicate label": (
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.1.0/24, label: 500}\n"
        "  - {name: red, subnet: 10.2.2.0/24, label: 500}\n"   # line 4
        "vms: []\n",
        ["t.yaml:4: networks[1].label: label 500 is used by network 'blue' already"]),
    "bad labels": (
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.1.0/24, label: 15}\n"       # below 16
        "  - {name: red, subnet: 10.2.2.0/24, label: 524288}\n"    # 0x80000: capture labels
        "  - {name: green, subnet: 10.3.3.0/24, label: yes}\n"     # a YAML boolean
        "vms: []\n",
        ["t.yaml:3: networks[0].label: '15' is not an MPLS label from 16 to 524287",
         "t.yaml:4: networks[1].label: '524288' is not an MPLS label from 16 to 524287",
         "t.yaml:5: networks[2].label: 'True' is not an MPLS label from 16 to 524287"]),
    "duplicate network name": (
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.1.0/24}\n"
        "  - {name: blue, subnet: 10.2.2.0/24}\n"
        "vms: []\n",
        ["t.yaml:4: networks[1].name: duplicate network name 'blue' (first on line 3)"]),
    "duplicate compute name": (
        "computes:\n  - c1\n  - c2\n  - c1\nnetworks: []\nvms: []\n",
        ["t.yaml:4: computes[2].name: duplicate compute node name 'c1' (first on line 2)"]),
    "bad names": (
        "computes: [Compute1, computeeleven]\n"
        "networks:\n"
        "  - {name: Blue, subnet: 10.1.1.0/24}\n"
        "  - {name: blue_net, subnet: 10.2.2.0/24}\n"
        "vms:\n"
        "  - {name: 1vm, compute: c1, network: blue}\n"
        "  - {name: virtualm1, compute: c1, network: blue}\n",
        ["t.yaml:1: computes[0].name: 'Compute1' is not a valid name "
         "(a lowercase letter, then up to 9 letters or digits)",
         "t.yaml:1: computes[1].name: 'computeeleven' is not a valid name "
         "(a lowercase letter, then up to 9 letters or digits)",
         "t.yaml:3: networks[0].name: 'Blue' is not a valid name "
         "(a lowercase letter, then letters, digits or '-')",
         "t.yaml:4: networks[1].name: 'blue_net' is not a valid name "
         "(a lowercase letter, then letters, digits or '-')",
         "t.yaml:6: vms[0].name: '1vm' is not a valid name "
         "(a lowercase letter, then up to 7 letters or digits)",
         "t.yaml:7: vms[1].name: 'virtualm1' is not a valid name "
         "(a lowercase letter, then up to 7 letters or digits)"]),
    "missing vm name": (
        HEADER + "  - {compute: compute1, network: blue}\n",
        ["t.yaml:6: vms[0]: missing key 'name'"]),
    "invalid yaml (flow list)": (
        "computes: [c1\n"
        "networks: []\n",              # the parser notices on line 2
        ["t.yaml:2: not valid YAML: expected ',' or ']', but got ':'"]),
    "invalid yaml (indentation)": (
        "computes: [c1]\n"
        "networks:\n"
        "  - name: blue\n"
        "   subnet: 10.1.1.0/24\n",    # line 4: one space short
        ["t.yaml:4: not valid YAML: expected <block end>, but found '<block mapping start>'"]),
    "missing computes": (
        "networks:\n  - {name: blue, subnet: 10.1.1.0/24}\nvms: []\n",
        ["t.yaml:1: computes: missing (a non-empty list)"]),
    "empty computes": (
        "name: empty\ncomputes: []\nnetworks: []\nvms: []\n",   # reported at the key: line 2
        ["t.yaml:2: computes: missing (a non-empty list)"]),
    "bad lab name": (
        "name: My_Lab\ncomputes: [c1]\n",
        ["t.yaml:1: name: 'My_Lab' is not a valid lab name "
         "(a lowercase letter, then up to 10 letters, digits or '-')"]),
    "lab name too long": (
        "computes: [c1]\nname: abcdefghijkl\n",                 # 12 characters, on line 2
        ["t.yaml:2: name: 'abcdefghijkl' is not a valid lab name "
         "(a lowercase letter, then up to 10 letters, digits or '-')"]),
    "lab name not a string": (
        "name: 12\ncomputes: [c1]\n",
        ["t.yaml:1: name: '12' is not a valid lab name "
         "(a lowercase letter, then up to 10 letters, digits or '-')"]),
    "ip6 without subnet6 (reported at the ip6 key)": (
        HEADER + "  - name: vm1\n"
                 "    compute: compute1\n"
                 "    network: blue\n"
                 "    ip6: 'fd00::5'\n",                     # line 9
        ["t.yaml:9: vms[0].ip6: network 'blue' has no subnet6"]),
    "unquoted mac read as a number": (
        HEADER + "  - name: vm1\n"
                 "    compute: compute1\n"
                 "    network: blue\n"
                 "    mac: 12:34:56:00:00:01\n",           # line 9: a YAML 1.1 base-60 integer
        ["t.yaml:9: vms[0].mac: write MAC addresses in quotes "
         "(YAML reads an unquoted one made of digits as a number)"]),
    "computes not a list": (
        "computes: compute1\nnetworks: []\nvms: []\n",
        ["t.yaml:1: computes: must be a list"]),
    "vm not a mapping": (
        HEADER + "  - vm1\n",
        ["t.yaml:6: vms[0]: must be a mapping"]),
    "empty file": (
        "",
        [f"t.yaml:1: the file must be a mapping with keys {ALLOWED_TOP}"]),
    "top level list": (
        "- compute1\n",
        [f"t.yaml:1: the file must be a mapping with keys {ALLOWED_TOP}"]),
    "fabric too small": (
        "fabric: {subnet: 10.0.0.0/30}\ncomputes: [c1, c2, c3]\nnetworks: []\nvms: []\n",
        ["t.yaml:1: fabric.subnet: 10.0.0.0/30 has too few addresses for 3 compute nodes"]),
    "no free address": (
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.1.0/29}\n"     # .3 to .6: four addresses
        "vms:\n"
        + "".join(f"  - {{name: vm{n}, compute: c1, network: blue}}\n" for n in range(1, 6)),
        ["t.yaml:9: vms[4]: no free address left in 10.1.1.0/29"]),
}


@pytest.mark.parametrize("text, expected", INVALID.values(), ids=INVALID.keys())
def test_invalid_topology_reports_exact_problem(text, expected):
    """Each invalid file is refused with exactly the expected file:line: path: message lines."""
    assert problems_of(text) == expected


def test_several_problems_are_reported_at_once():
    """Every problem of a file is listed, in file order, not just the first one."""
    text = (
        "# a comment shifts the lines\n"
        "name: multi\n"
        "computes: [c1]\n"
        "networks:\n"
        "  - {name: blue, subnet: 10.1.1.0/24}\n"
        "vms:\n"
        "  - {name: vm1, compute: c2, network: blue}\n"                 # line 7
        "  - {name: vm2, compute: c1, network: green}\n"                # line 8
        "  - {name: vm3, compute: c1, network: blue, ip: 10.1.1.1}\n"   # line 9
        "  - {name: vm4, compute: c1, network: blue, colour: red}\n"    # line 10
    )
    assert problems_of(text) == [
        "t.yaml:7: vms[0].compute: unknown compute node 'c2' (known: c1)",
        "t.yaml:8: vms[1].network: unknown network 'green' (known: blue, svc-vn-left)",
        "t.yaml:9: vms[2].ip: 10.1.1.1 is reserved in 10.1.1.0/24 (use .3 up to the last but one)",
        f"t.yaml:10: vms[3].colour: unknown key 'colour' (allowed: {ALLOWED_VM})",
    ]


def test_duplicate_keys_are_all_reported_before_validation():
    """Duplicate YAML keys anywhere are reported together (and stop validation there)."""
    text = "computes: [c1]\ncomputes: [c2]\nnetworks: []\nvms:\n  - {name: a, name: b}\n"
    assert problems_of(text) == ["t.yaml:2: computes: duplicate key (first on line 1)",
                                 "t.yaml:5: name: duplicate key (first on line 5)"]


def test_load_missing_file(tmp_path):
    """load() of a missing file raises TopologyError naming the path and the OS reason."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(TopologyError) as caught:
        load(path)
    assert caught.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_load_names_the_file_in_problems(tmp_path):
    """load() uses the file path as the source in every message; the lab's name comes from
    its 'name' key (default "lab"), never from the file name."""
    path = tmp_path / "mylab.yaml"
    path.write_text("computes: [c1]\nnetworks: []\nvms: []\nextra: 1\n")
    with pytest.raises(TopologyError) as caught:
        load(path)
    assert caught.value.problems == [
        f"{path}:4: extra: unknown key 'extra' (allowed: {ALLOWED_TOP})"]
    path.write_text("computes: [c1]\nnetworks: []\nvms: []\n")
    assert load(Path(str(path))).name == "lab"
    path.write_text("name: other\ncomputes: [c1]\n")
    assert load(str(path)).name == "other"


def test_networks_and_vms_may_be_empty_or_absent():
    """Only computes is required: without networks and vms the lab holds just the analyzer
    network (label 100, the first position) and no VMs."""
    for text in ("computes: [c1]\n", "computes: [c1]\nnetworks: []\nvms: []\n",
                 "computes: [c1]\nnetworks:\nvms:\n"):
        topo = parse(text, "t.yaml")
        assert topo.name == "lab"
        assert [(n.name, n.label, n.index, n.is_analyzer_network) for n in topo.networks] == [
            ("svc-vn-left", 100, 1, True)], text
        assert topo.vms == (), text


def test_automatic_labels_follow_the_position_in_the_file():
    """A network without a label gets 100 + its position, explicit labels in between do not
    shift it, and the analyzer network comes last."""
    topo = parse("computes: [c1]\nnetworks:\n"
                 "  - {name: blue, subnet: 10.1.1.0/24}\n"
                 "  - {name: red, subnet: 10.2.2.0/24, label: 4000}\n"
                 "  - {name: green, subnet: 10.3.3.0/24}\n", "t.yaml")
    assert [(n.name, n.label, n.index) for n in topo.networks] == [
        ("blue", 100, 1), ("red", 4000, 2), ("green", 102, 3), ("svc-vn-left", 103, 4)]


def test_explicit_label_taking_a_later_automatic_one_is_reported():
    """An explicit label equal to a later network's automatic label is a clash at that network."""
    assert problems_of("computes: [c1]\nnetworks:\n"
                       "  - {name: blue, subnet: 10.1.1.0/24, label: 101}\n"
                       "  - {name: red, subnet: 10.2.2.0/24}\n") == [
        "t.yaml:4: networks[1].label: label 101 is used by network 'blue' already"]


def test_unquoted_mac_with_letters_is_a_string_and_accepted():
    """An unquoted MAC that YAML cannot read as a number is accepted (lower-cased)."""
    topo = parse(HEADER + "  - {name: vm1, compute: compute1, network: blue, mac: 02:AA:00:00:00:01}\n",
                 "t.yaml")
    assert topo.vm("vm1").interfaces[0].mac == "02:aa:00:00:00:01"


def test_first_free_address_asks_the_predicate():
    """first_free_address returns the lowest address from .3 that the predicate does not
    refuse, never the broadcast address, and None when all are refused."""
    subnet = ipaddress.ip_network("10.0.0.0/29")   # hands out .3 to .6
    asked = []

    def taken(ip):
        asked.append(str(ip))
        return str(ip) in {"10.0.0.3", "10.0.0.4"}
    assert first_free_address(subnet, taken) == ipaddress.ip_address("10.0.0.5")
    assert asked == ["10.0.0.3", "10.0.0.4", "10.0.0.5"]
    assert first_free_address(subnet, lambda ip: False) == ipaddress.ip_address("10.0.0.3")
    assert first_free_address(subnet, lambda ip: True) is None


# --- formerly xfail: product bugs found by these tests, since fixed ------------------------


@pytest.mark.parametrize("subnet6", ["", ", subnet6: 'fd00:1:1::/64'"], ids=["v4-only", "dual-stack"])
def test_ipv6_address_given_as_ip_is_refused(subnet6):
    """An IPv6 address under 'ip' is a TopologyError at that key, not an IPv6 'IPv4 address'
    or a crash."""
    text = ("computes: [c1]\nnetworks:\n"
            f"  - {{name: blue, subnet: 10.1.1.0/24{subnet6}}}\n"
            "vms:\n  - {name: vm1, compute: c1, network: blue, ip: 'fd00:1:1::5'}\n")
    assert problems_of(text) == ["t.yaml:5: vms[0].ip: 'fd00:1:1::5' is not an IPv4 address"]


def test_ipv4_address_given_as_ip6_is_refused():
    """An IPv4 address under 'ip6' is a TopologyError at that key."""
    assert problems_of("computes: [c1]\nnetworks:\n"
                       "  - {name: blue, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/64'}\n"
                       "vms:\n  - {name: vm1, compute: c1, network: blue, ip6: 10.1.1.5}\n") == [
        "t.yaml:5: vms[0].ip6: '10.1.1.5' is not an IPv6 address"]


def test_explicit_ip6_clashing_with_a_derived_one_is_refused():
    """vm2's explicit ip6 equal to vm1's derived fd00:1:1::b (from 10.1.1.11) is reported at
    vm1, whose automatic address is the one that cannot be used."""
    assert problems_of("computes: [c1]\nnetworks:\n"
                       "  - {name: blue, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/64'}\n"
                       "vms:\n"
                       "  - {name: vm1, compute: c1, network: blue, ip: 10.1.1.11}\n"
                       "  - {name: vm2, compute: c1, network: blue, ip6: 'fd00:1:1::b'}\n") == [
        "t.yaml:5: vms[0]: automatic IPv6 address fd00:1:1::b is used by vm 'vm2' already"]


def test_explicit_ip6_elsewhere_leaves_derived_ones_alone():
    """An explicit ip6 that no derived address hits changes nothing for the other VMs."""
    topo = parse("computes: [c1]\nnetworks:\n"
                 "  - {name: blue, subnet: 10.1.1.0/24, subnet6: 'fd00:1:1::/64'}\n"
                 "vms:\n"
                 "  - {name: vm1, compute: c1, network: blue, ip: 10.1.1.11}\n"
                 "  - {name: vm2, compute: c1, network: blue, ip6: 'fd00:1:1::99'}\n", "t.yaml")
    assert macs_and_ips(topo) == [
        ("vm1", "10.1.1.11", "fd00:1:1::b", "02:00:0a:01:01:0b", "c1", 2),
        ("vm2", "10.1.1.3", "fd00:1:1::99", "02:00:0a:01:01:03", "c1", 3),
    ]


@pytest.mark.parametrize("vm, problem", [
    ("{name: vm1, compute: c1, network: [blue]}", "t.yaml:5: vms[0].network: must be the name of a network"),
    ("{name: vm1, compute: {name: c1}, network: blue}",
     "t.yaml:5: vms[0].compute: must be the name of a compute node"),
], ids=["network-list", "compute-mapping"])
def test_non_scalar_reference_is_a_topology_error(vm, problem):
    """A non-scalar compute/network reference is one problem at that key, not a crash."""
    assert problems_of("computes: [c1]\nnetworks:\n  - {name: blue, subnet: 10.1.1.0/24}\n"
                       f"vms:\n  - {vm}\n") == [problem]


def test_unknown_tag_reported_on_its_line():
    """An unknown YAML tag on line 3 is reported as t.yaml:3."""
    assert problems_of("computes: [c1]\nnetworks: []\nname: !secret lab\nvms: []\n") == [
        "t.yaml:3: not valid YAML: could not determine a constructor for the tag '!secret'"]


def test_bad_subnet_reports_one_problem_and_no_label_clash():
    """A network refused for its subnet yields that one problem: the networks after it
    (here red and the automatic analyzer network) keep their own automatic labels."""
    for network, problem in [
        ("{name: blue, subnet: 10.1.1.1/24}",
         "t.yaml:3: networks[0].subnet: '10.1.1.1/24' is not a valid subnet "
         "(10.1.1.1/24 has host bits set)"),
        ("{name: blue}", "t.yaml:3: networks[0]: missing key 'subnet'"),
    ]:
        assert problems_of(f"computes: [c1]\nnetworks:\n  - {network}\n"
                           "  - {name: red, subnet: 10.2.2.0/24}\nvms: []\n") == [problem]


# --- product bugs found while writing these tests (see the report) ------------------------


def test_derived_ipv6_address_outside_subnet6_is_refused():
    """A subnet6 too small for the IPv4 host numbers is reported at the interface."""
    assert problems_of("computes: [c1]\nnetworks:\n"
                       "  - {name: blue, subnet: 10.1.0.0/16, subnet6: 'fd00::/120'}\n"
                       "vms:\n  - {name: vm1, compute: c1, network: blue, ip: 10.1.1.3}\n") == [
        "t.yaml:5: vms[0]: automatic IPv6 address fd00::103 (host number of 10.1.1.3) is outside "
        "fd00::/120; give 'ip6' or a larger subnet6"]


def test_limits_are_inclusive():
    """The highest network label is accepted, and a /30 fabric holds two compute nodes."""
    topo = parse("fabric: {subnet: 10.0.0.0/30}\ncomputes: [c1, c2]\n"
                 "networks:\n  - {name: blue, subnet: 10.1.1.0/24, label: 524287}\n", "t.yaml")
    assert (topo.network("blue").label, len(topo.computes)) == (0x7FFFF, 2)


# --- fabric analyzers (VTEPs of static mirror destinations) ---------------------------------


def test_fabric_analyzers_get_addresses_from_the_top_of_the_fabric_subnet():
    """An explicit address is kept; the others get the highest free ones; MACs 02:fb:..."""
    topology = parse(HEADER + "fabric_analyzers:\n  - {name: probe1}\n"
                     "  - {name: probe2, ip: 192.168.100.254}\n  - {name: probe3}\n")
    assert [(p.name, str(p.ip), p.mac, p.interface) for p in topology.fabric_analyzers] == [
        ("probe1", "192.168.100.253", "02:fb:00:00:00:01", "probe1-eth0"),
        ("probe2", "192.168.100.254", "02:fb:00:00:00:02", "probe2-eth0"),
        ("probe3", "192.168.100.252", "02:fb:00:00:00:03", "probe3-eth0")]
    assert topology.fabric_analyzer("probe2").ip == ipaddress.ip_address("192.168.100.254")


@pytest.mark.parametrize("entry, problem", [
    ("{name: probe1, ip: 10.0.0.1}", "fabric_analyzers[0].ip: 10.0.0.1 is not a host address of "
                                     "the fabric subnet 192.168.100.0/24"),
    ("{name: probe1, ip: 192.168.100.2}", "fabric_analyzers[0].ip: 192.168.100.2 is taken (a "
                                          "compute node or another fabric analyzer)"),
    ("{name: probe1, ip: nowhere}", "fabric_analyzers[0].ip: 'nowhere' is not an IPv4 address"),
    ("{name: compute1}", "fabric_analyzers[0].name: 'compute1' is the name of a VM or compute node"),
    ("{name: probe1, vni: 5}", "fabric_analyzers[0].vni: unknown key 'vni' (allowed: ip, name)"),
])
def test_bad_fabric_analyzers_are_reported(entry, problem):
    """Each problem names the entry and its line."""
    assert problems_of(HEADER + f"fabric_analyzers:\n  - {entry}\n") == [f"t.yaml:7: {problem}"]
