"""End-to-end: network policies written with Contrail's own client (vnc_api) on the real lab:
two networks can talk once a policy passing their traffic is attached to both (the vRouter
routes through the networks' gateway); a mirror rule copies each packet to the analyzer once
from each vRouter of the conversation (twice across compute nodes, once on one node), decoded
by tshark with `-d udp.port==8099,juniper`; a pass rule listed first means no copy; detached,
the networks are apart again and no policy flow is left. A mirror rule's destination is any
capture's but NIC-assisted: without the Juniper header the analyzer VM receives the frames
themselves, and a static destination sends them in VXLAN to the fabric's VTEP (probe1).
IPv6 is routed and policed as IPv4: an IPv6 rule (`icmp` meaning ICMPv6) lets vm1 ping6 vm4
through the networks' IPv6 gateway, and its copies carry the IPv6 frames unchanged."""
from __future__ import annotations

import subprocess
import time

import pytest
from vnc_api.gen.resource_client import NetworkPolicy
from vnc_api.gen.resource_xsd import (
    ActionListType, AddressType, MirrorActionType, PolicyEntriesType, PolicyRuleType, PortType,
    SequenceType, StaticMirrorNhType, VirtualNetworkPolicyType,
)
from vnc_api.exceptions import BadRequest
from vnc_api.vnc_api import VncApi

from tests.e2e.conftest import CONFIG_API_PORT
from tests.e2e.test_capture import DEFAULT_ANALYZER

PROJECT = ["default-domain", "default"]
BLUE, RED = ":".join(PROJECT + ["blue"]), ":".join(PROJECT + ["red"])
VM1, VM3, VM4 = "10.1.1.11", "10.1.1.13", "10.2.2.14"  # vm1, vm3 on compute1; vm4 on compute2
# Their IPv6 addresses (same host numbers), and vm2's (blue, compute2).
VM1_6, VM2_6, VM4_6 = "fd00:1:1::b", "fd00:1:1::c", "fd00:2:2::e"


def rule(src: str, dst: str, protocol: str = "any", mirror: bool = False,
         mirror_to: MirrorActionType | None = None) -> PolicyRuleType:
    """A `<>` pass rule between two networks, mirrored to the default analyzer if `mirror`,
    or to `mirror_to`."""
    if mirror:
        mirror_to = MirrorActionType(analyzer_name=":".join(PROJECT + [DEFAULT_ANALYZER]))
    return PolicyRuleType(
        direction="<>", protocol=protocol,
        src_addresses=[AddressType(virtual_network=src)], dst_addresses=[AddressType(virtual_network=dst)],
        src_ports=[PortType(-1, -1)], dst_ports=[PortType(-1, -1)],
        action_list=ActionListType(simple_action="pass", mirror_to=mirror_to))


@pytest.fixture
def vnc(clean_lab):
    """A vnc_api client; the policies it made are detached and deleted afterwards."""
    client = VncApi(api_server_host="127.0.0.1", api_server_port=CONFIG_API_PORT)
    yield client
    for name in ("blue", "red"):
        network = client.virtual_network_read(fq_name=PROJECT + [name])
        network.set_network_policy_list([], [])
        client.virtual_network_update(network)
    for policy in client.network_policys_list()["network-policys"]:
        client.network_policy_delete(id=policy["uuid"])


def attach(vnc: VncApi, policy: NetworkPolicy, *networks: str) -> None:
    for name in networks:
        network = vnc.virtual_network_read(fq_name=PROJECT + [name])
        network.add_network_policy(policy, VirtualNetworkPolicyType(sequence=SequenceType(0, 0)))
        vnc.virtual_network_update(network)


def reachable(lab, address: str) -> bool:
    return lab.shell("vm1", f"ping -c 2 -i 0.2 -W 1 {address}", check=False).returncode == 0


def default_analyzer(lab) -> dict:
    return next(a for a in lab.http("GET", "/api/analyzers").json() if a["name"] == DEFAULT_ANALYZER)


def seen_during_a_ping(lab, host: str, interface: str, capture_filter: str, address: str,
                       name: str, decode: list[str], fields: list[str],
                       display: str = "icmp") -> list[tuple[str, ...]]:
    """`fields` (tshark's, decoding with `decode`) of every frame `interface` of `host`
    (a VM or fabric analyzer) receives under `capture_filter` and tshark's `display` filter
    (ICMP by default) while vm1 pings `address` (IPv4 or IPv6) 3 times, sorted."""
    pcap = f"/tmp/ml-policy-{name}.pcap"
    sniffer = lab.shell_popen(host, f"timeout 6 tcpdump -n -i {interface} -w {pcap} {capture_filter}")
    time.sleep(1)
    lab.shell("vm1", f"ping -c 3 -i 0.2 {address}")
    sniffer.wait(timeout=15)
    decoded = subprocess.run(["tshark", "-r", pcap, *decode, "-Y", display, "-T", "fields",
                              *[arg for field in fields for arg in ("-e", field)]],
                             capture_output=True, text=True, timeout=60)
    assert decoded.returncode == 0, decoded.stderr
    return sorted(tuple((line.split("\t") + [""] * len(fields))[:len(fields)])
                  for line in decoded.stdout.splitlines())


def copies_of_a_ping(lab, address: str, name: str) -> list[tuple[str, ...]]:
    """(icmp type, juniper.vn.src, juniper.vn.dst) of every copy the default analyzer's own
    interface receives while vm1 pings `address` 3 times (tcpdump in the analyzer VM, tshark
    decoding the Juniper header)."""
    analyzer = default_analyzer(lab)
    return seen_during_a_ping(lab, analyzer["vm"], f"{analyzer['vm']}-eth0", "udp port 8099",
                              address, name, ["-d", "udp.port==8099,juniper"],
                              ["icmp.type", "juniper.vn.src", "juniper.vn.dst"])


def policy_flows(lab) -> list:
    return [f for compute in ("compute1", "compute2", "compute3") for f in lab.flows(compute)
            if f.owner == "policy"]


def test_a_mirror_policy_connects_networks_and_copies_each_packet_from_both_vrouters(clean_lab, vnc):
    lab = clean_lab
    assert not reachable(lab, VM4)  # networks are apart without policies
    project = vnc.project_read(fq_name=PROJECT)
    policy = NetworkPolicy("watch", parent_obj=project, network_policy_entries=PolicyEntriesType(
        [rule(BLUE, RED, mirror=True), rule(BLUE, BLUE, mirror=True)]))
    vnc.network_policy_create(policy)
    assert not reachable(lab, VM4)  # not attached yet
    attach(vnc, policy, "blue")
    assert not reachable(lab, VM4)  # red has no policy passing it
    attach(vnc, policy, "red")
    assert reachable(lab, VM4)

    # vm1 (compute1) <-> vm4 (compute2): each of the 6 packets copied by both vRouters, with
    # the source VN on the sender's copy and the destination VN on the receiver's.
    assert copies_of_a_ping(lab, VM4, "across") == sorted(
        [("8", BLUE, ""), ("8", "", RED), ("0", RED, ""), ("0", "", BLUE)] * 3)
    # vm1 and vm3 share compute1: one vRouter, one copy of each packet.
    assert copies_of_a_ping(lab, VM3, "one-node") == sorted([("8", BLUE, ""), ("0", BLUE, "")] * 3)

    # A pass rule first: the first match wins, so ICMP is passed without a copy.
    policy = vnc.network_policy_read(fq_name=PROJECT + ["watch"])
    policy.set_network_policy_entries(PolicyEntriesType(
        [rule(BLUE, RED, protocol="icmp"), rule(BLUE, RED, mirror=True)]))
    vnc.network_policy_update(policy)
    assert reachable(lab, VM4)
    assert copies_of_a_ping(lab, VM4, "pass-first") == []

    for name in ("blue", "red"):
        network = vnc.virtual_network_read(fq_name=PROJECT + [name])
        network.del_network_policy(policy)
        vnc.virtual_network_update(network)
    assert not reachable(lab, VM4)
    assert policy_flows(lab) == []


def test_a_deny_rule_drops_traffic_within_a_network(clean_lab, vnc):
    lab = clean_lab
    assert reachable(lab, VM3)
    project = vnc.project_read(fq_name=PROJECT)
    deny = rule(BLUE, BLUE, protocol="icmp")
    deny.action_list.simple_action = "deny"
    policy = NetworkPolicy("no-ping", parent_obj=project,
                           network_policy_entries=PolicyEntriesType([deny]))
    vnc.network_policy_create(policy)
    attach(vnc, policy, "blue")
    assert not reachable(lab, VM3)
    assert lab.shell("vm1", f"ping -c 1 -W 1 {VM3}", check=False).returncode != 0


def test_a_mirror_rule_sends_its_copies_to_any_destination_a_capture_takes(clean_lab, vnc):
    """Without the Juniper header the analyzer VM's interface receives vm1's and vm4's frames
    themselves, each from both vRouters (as vm1 sent it, to the gateway's MAC, and as vm4
    received it); to a static destination probe1 receives the same in VXLAN 5000 from both
    compute nodes' fabric addresses; a NIC-assisted rule is refused naming its field."""
    lab = clean_lab
    project = vnc.project_read(fq_name=PROJECT)
    headerless = MirrorActionType(analyzer_name=":".join(PROJECT + [DEFAULT_ANALYZER]),
                                  juniper_header=False)
    policy = NetworkPolicy("watch-frames", parent_obj=project, network_policy_entries=PolicyEntriesType(
        [rule(BLUE, RED, mirror_to=headerless)]))
    vnc.network_policy_create(policy)
    attach(vnc, policy, "blue", "red")
    assert reachable(lab, VM4)
    analyzer = default_analyzer(lab)
    frames = seen_during_a_ping(lab, analyzer["vm"], f"{analyzer['vm']}-eth0",
                                f"icmp and not ether host {analyzer['mac']}", VM4, "headerless", [],
                                ["icmp.type", "ip.src", "ip.dst", "eth.dst"])
    vm1_mac, vm4_mac = lab.interface("vm1").mac, lab.interface("vm4").mac
    gateway_mac = "00:00:5e:00:01:00"
    assert frames == sorted([("8", VM1, VM4, gateway_mac), ("8", VM1, VM4, vm4_mac),
                             ("0", VM4, VM1, gateway_mac), ("0", VM4, VM1, vm1_mac)] * 3)

    probe = lab.topology.fabric_analyzer("probe1")
    static = MirrorActionType(nh_mode="static", juniper_header=False, static_nh_header=StaticMirrorNhType(
        str(probe.ip), probe.mac, 5000))
    policy = vnc.network_policy_read(fq_name=PROJECT + ["watch-frames"])
    policy.set_network_policy_entries(PolicyEntriesType([rule(BLUE, RED, mirror_to=static)]))
    vnc.network_policy_update(policy)
    assert reachable(lab, VM4)
    copies = seen_during_a_ping(lab, "probe1", probe.interface, "udp port 4789", VM4, "static",
                                ["-d", "udp.port==4789,vxlan"],
                                ["icmp.type", "vxlan.vni", "ip.src", "eth.dst"])
    fabric = {"compute1": "192.168.100.1", "compute2": "192.168.100.2"}
    # tshark lists the outer header's field first, then the inner frame's.
    assert copies == sorted(
        [("8", "5000", f"{fabric['compute1']},{VM1}", f"{probe.mac},{gateway_mac}"),
         ("8", "5000", f"{fabric['compute2']},{VM1}", f"{probe.mac},{vm4_mac}"),
         ("0", "5000", f"{fabric['compute2']},{VM4}", f"{probe.mac},{gateway_mac}"),
         ("0", "5000", f"{fabric['compute1']},{VM4}", f"{probe.mac},{vm1_mac}")] * 3)

    nic = MirrorActionType(analyzer_name="probe1", nic_assisted_mirroring=True,
                           nic_assisted_mirroring_vlan=100)
    policy.set_network_policy_entries(PolicyEntriesType([rule(BLUE, RED, mirror_to=nic)]))
    with pytest.raises(BadRequest, match=r"action_list\.mirror_to\.nic_assisted_mirroring: "):
        vnc.network_policy_update(policy)
    assert reachable(lab, VM4)  # the static rule still runs


def one_way_rule(src: str, dst: str, mirror: bool = False) -> PolicyRuleType:
    """A `>` pass rule from network `src` to `dst`, any protocol, mirrored to the default
    analyzer if `mirror`."""
    one_way = rule(src, dst, mirror=mirror)
    one_way.direction = ">"
    return one_way


def test_a_one_way_rule_lets_replies_back_but_not_new_connections(clean_lab, vnc):
    """A `>` rule from blue to red, stateful as Contrail's flow pairs: vm1 pings vm4 and opens
    a TCP connection to it (the echo replies and the SYN-ACK come back through conntrack);
    vm4 can neither ping vm1 nor connect to it. Mirrored, the rule's copies include the
    replies, from both vRouters, as for a `<>` rule."""
    lab = clean_lab
    project = vnc.project_read(fq_name=PROJECT)
    policy = NetworkPolicy("one-way", parent_obj=project, network_policy_entries=PolicyEntriesType(
        [one_way_rule(BLUE, RED)]))
    vnc.network_policy_create(policy)
    attach(vnc, policy, "blue", "red")
    assert reachable(lab, VM4)
    assert lab.shell("vm4", f"ping -c 2 -i 0.2 -W 1 {VM1}", check=False).returncode != 0

    listener = lab.shell_popen("vm4", "timeout 6 nc -l -p 7001")
    time.sleep(0.5)
    lab.shell("vm1", f"echo through-conntrack | nc -w 2 {VM4} 7001")
    out, _ = listener.communicate(timeout=15)
    assert "through-conntrack" in out
    listener = lab.shell_popen("vm1", "timeout 4 nc -l -p 7002")
    time.sleep(0.5)
    assert lab.shell("vm4", f"nc -z -w 2 {VM1} 7002", check=False).returncode != 0
    listener.wait(timeout=15)

    policy = vnc.network_policy_read(fq_name=PROJECT + ["one-way"])
    policy.set_network_policy_entries(PolicyEntriesType([one_way_rule(BLUE, RED, mirror=True)]))
    vnc.network_policy_update(policy)
    assert copies_of_a_ping(lab, VM4, "one-way") == sorted(
        [("8", BLUE, ""), ("8", "", RED), ("0", RED, ""), ("0", "", BLUE)] * 3)
    assert lab.shell("vm4", f"ping -c 2 -i 0.2 -W 1 {VM1}", check=False).returncode != 0


def test_an_ipv6_rule_routes_ping6_between_networks_and_copies_ipv6_frames(clean_lab, vnc):
    """vm1 (blue, compute1) cannot ping6 vm4 (red, compute2) until a rule of ethertype IPv6,
    protocol icmp (ICMPv6, as Contrail reads it), passes it on both networks; the vRouters
    answer the VMs' neighbour solicitations for their gateway (::1, their default route) and
    route between the networks. The rule is IPv6's only: IPv4 ping stays apart. Mirrored, each
    echo request and reply is copied by both vRouters, and the Juniper header's inner frame is
    IPv6 (EtherType 0x86dd, never rewritten to IPv4's)."""
    lab = clean_lab
    ping6 = rule(BLUE, RED, protocol="icmp", mirror=True)
    ping6.ethertype = "IPv6"
    assert not reachable(lab, VM4_6)
    project = vnc.project_read(fq_name=PROJECT)
    policy = NetworkPolicy("ping6", parent_obj=project,
                           network_policy_entries=PolicyEntriesType([ping6]))
    vnc.network_policy_create(policy)
    attach(vnc, policy, "blue", "red")
    assert reachable(lab, VM4_6)
    assert not reachable(lab, VM4)
    neighbours = lab.shell("vm1", "ip -6 neigh show fd00:1:1::1").stdout
    assert "lladdr 00:00:5e:00:01:00" in neighbours and "router" in neighbours
    # Within blue, now policed, IPv6 still passes, neighbour discovery between VMs included.
    for vm in ("vm1", "vm2"):
        lab.shell(vm, "ip -6 neigh flush dev " + lab.interface(vm).name)
    assert reachable(lab, VM2_6)

    analyzer = default_analyzer(lab)
    copies = seen_during_a_ping(lab, analyzer["vm"], f"{analyzer['vm']}-eth0", "udp port 8099",
                                VM4_6, "ipv6", ["-d", "udp.port==8099,juniper"],
                                ["icmpv6.type", "juniper.vn.src", "juniper.vn.dst", "eth.type",
                                 "ipv6.src"], display="icmpv6.type == 128 or icmpv6.type == 129")
    assert copies == sorted([("128", BLUE, "", "0x0800,0x86dd", VM1_6),
                             ("128", "", RED, "0x0800,0x86dd", VM1_6),
                             ("129", RED, "", "0x0800,0x86dd", VM4_6),
                             ("129", "", BLUE, "0x0800,0x86dd", VM4_6)] * 3)
