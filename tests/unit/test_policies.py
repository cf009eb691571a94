"""Network policies on the software flow table: routing between networks, deny, first match,
policy mirrors (doubled across compute nodes), as controller.policyflows computes them."""
from __future__ import annotations

import pytest

from mirrorlab.controller.errors import InvalidRequest
from mirrorlab.controller.flowmodel import owner_of_cookie
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer, plan_capture
from mirrorlab.controller.pipeline import VROUTER_MAC
from mirrorlab.controller.policyflows import (
    POLICY_MIRROR_INDEX, Match, policy_encapsulations, policy_flows, rule_matches, _port_masks,
)
from mirrorlab.controller.vncpolicy import attached_rules
from mirrorlab.topofile import load
from mirrorlab.testing.flowsim import LabSim
from mirrorlab.topology import Topology
from tests.unit.helpers import iface, ip_frame, neighbour_solicitation

BLUE, RED = "default-domain:default:blue", "default-domain:default:red"
ICMP, TCP, UDP = 1, 6, 17
GUESTS = {"vm1", "vm2", "vm3", "vm4", "vm5"}


@pytest.fixture(scope="module")
def topo() -> Topology:
    topology = load("topologies/default.yaml")
    return topology.with_vm(plan_analyzer(topology, DEFAULT_ANALYZER, None, None))


def rule(action="pass", direction="<>", protocol="any", src=("any",), dst=("any",),
         dst_ports=None, mirror=None) -> dict:
    """A policy_rule as a vnc_api client writes it; addresses are network fq-names, "any",
    "local" or CIDRs; `mirror` an analyzer's name or a whole mirror_to."""
    def addresses(names):
        return [{"subnet": {"ip_prefix": n.split("/")[0], "ip_prefix_len": int(n.split("/")[1])}}
                if "/" in n else {"virtual_network": n} for n in names]
    actions = {"simple_action": action} if action else {}
    if mirror:
        actions["mirror_to"] = mirror if isinstance(mirror, dict) else {"analyzer_name": mirror}
    return {"direction": direction, "protocol": protocol, "src_addresses": addresses(src),
            "dst_addresses": addresses(dst), "src_ports": [{"start_port": -1, "end_port": -1}],
            "dst_ports": [{"start_port": dst_ports[0], "end_port": dst_ports[1]}] if dst_ports
            else [{"start_port": -1, "end_port": -1}], "action_list": actions}


def sim_with(topo, policies: dict[str, list[dict]], attach: dict[str, list[str]]) -> LabSim:
    """The lab with policies (name -> rules) attached to networks (name -> policy names, in
    sequence)."""
    entries = {f"default-domain:default:{name}": {"policy_rule": rules}
               for name, rules in policies.items()}
    attachments = {network: [(f"default-domain:default:{name}", (index, 0))
                             for index, name in enumerate(names)]
                   for network, names in attach.items()}
    return LabSim(topo, policies=attached_rules(topo, entries, attachments))


def routed(topo, source: str, destination: str, protocol=ICMP, port=None) -> dict:
    """What `source` sends to `destination` in another network: to the gateway's MAC."""
    frame = ip_frame(iface(topo, source), iface(topo, destination), eth_dst=VROUTER_MAC)
    frame.update({"ip_proto": protocol, "ip_ttl": 64}, **({"tp_dst": port, "tp_src": 40000}
                                                         if port else {}))
    return frame


def direct(topo, source: str, destination: str, protocol=ICMP, port=None) -> dict:
    """What `source` sends to `destination` in its own network."""
    frame = ip_frame(iface(topo, source), iface(topo, destination))
    frame.update({"ip_proto": protocol, "ip_ttl": 64}, **({"tp_dst": port, "tp_src": 40000}
                                                         if port else {}))
    return frame


BOTH_WAYS = {"blue-red": [rule(src=(BLUE,), dst=(RED,))]}
ATTACHED_TO_BOTH = {"blue": ["blue-red"], "red": ["blue-red"]}


def test_networks_without_policies_cannot_talk(topo):
    sim = sim_with(topo, {}, {})
    assert sim.where("vm1", routed(topo, "vm1", "vm4")) == {}


def test_a_pass_policy_on_both_networks_routes_between_them_through_the_gateway(topo):
    sim = sim_with(topo, BOTH_WAYS, ATTACHED_TO_BOTH)
    there = sim.where("vm1", routed(topo, "vm1", "vm4"))
    assert list(there) == ["vm4"]
    [packet] = there["vm4"]
    assert (packet["eth_src"], packet["eth_dst"], packet["ip_ttl"]) == (
        VROUTER_MAC, iface(topo, "vm4").mac, 63)
    back = sim.where("vm4", routed(topo, "vm4", "vm1"))
    assert list(back) == ["vm1"] and back["vm1"][0]["eth_dst"] == iface(topo, "vm1").mac


def test_routing_within_one_compute_node(topo):
    """vm4 and vm5 are on compute2 and compute3; vm1 and vm3 on compute1: route blue->red on
    the sender's node, whichever node the receiver is on."""
    sim = sim_with(topo, BOTH_WAYS, ATTACHED_TO_BOTH)
    assert list(sim.where("vm3", routed(topo, "vm3", "vm5"))) == ["vm5"]


def test_a_policy_attached_to_one_network_only_does_not_connect_them(topo):
    sim = sim_with(topo, BOTH_WAYS, {"blue": ["blue-red"]})
    assert sim.where("vm1", routed(topo, "vm1", "vm4")) == {}
    assert sim.where("vm4", routed(topo, "vm4", "vm1")) == {}


def test_a_one_way_rule_passes_one_direction_only(topo):
    sim = sim_with(topo, {"blue-to-red": [rule(direction=">", src=(BLUE,), dst=(RED,))]},
                   {"blue": ["blue-to-red"], "red": ["blue-to-red"]})
    assert list(sim.where("vm1", routed(topo, "vm1", "vm4"))) == ["vm4"]
    assert sim.where("vm4", routed(topo, "vm4", "vm1")) == {}


def test_the_first_matching_rule_wins(topo):
    policies = {"no-icmp": [rule("deny", protocol="icmp"), rule("pass")]}
    sim = sim_with(topo, policies, {"blue": ["no-icmp"], "red": ["no-icmp"]})
    assert sim.where("vm1", routed(topo, "vm1", "vm4", ICMP)) == {}
    assert list(sim.where("vm1", routed(topo, "vm1", "vm4", TCP, 22))) == ["vm4"]
    policies = {"pass-first": [rule("pass"), rule("deny", protocol="icmp")]}
    sim = sim_with(topo, policies, {"blue": ["pass-first"], "red": ["pass-first"]})
    assert list(sim.where("vm1", routed(topo, "vm1", "vm4", ICMP))) == ["vm4"]


def test_policies_apply_in_sequence(topo):
    policies = {"deny-all": [rule("deny")], "pass-all": [rule("pass")]}
    sim = sim_with(topo, policies, {"blue": ["deny-all", "pass-all"], "red": ["pass-all"]})
    assert sim.where("vm1", routed(topo, "vm1", "vm4")) == {}
    sim = sim_with(topo, policies, {"blue": ["pass-all", "deny-all"], "red": ["pass-all"]})
    assert list(sim.where("vm1", routed(topo, "vm1", "vm4"))) == ["vm4"]


def test_traffic_within_a_network_passes_unless_a_rule_denies_it(topo):
    policies = {"no-web": [rule("deny", protocol="tcp", dst_ports=(80, 80))]}
    sim = sim_with(topo, policies, {"blue": ["no-web"]})
    assert sim.where("vm1", direct(topo, "vm1", "vm2", TCP, 80)) == {}
    assert list(sim.where("vm1", direct(topo, "vm1", "vm2", TCP, 81))) == ["vm2"]
    assert list(sim.where("vm1", direct(topo, "vm1", "vm3", ICMP))) == ["vm3"]


def test_port_ranges(topo):
    policies = {"range": [rule(protocol="udp", dst_ports=(1000, 1999))]}
    sim = sim_with(topo, policies, {"blue": ["range"], "red": ["range"]})
    for port, arrives in [(999, False), (1000, True), (1500, True), (1999, True), (2000, False)]:
        assert bool(sim.where("vm1", routed(topo, "vm1", "vm4", UDP, port))) is arrives, port


def test_a_cidr_address_matches_its_addresses_only(topo):
    policies = {"one-host": [rule(src=("10.1.1.11/32",), dst=(RED,))]}
    sim = sim_with(topo, policies, {"blue": ["one-host"], "red": ["one-host"]})
    assert list(sim.where("vm1", routed(topo, "vm1", "vm4"))) == ["vm4"]
    assert sim.where("vm3", routed(topo, "vm3", "vm4")) == {}


def copies(received: dict) -> list[dict]:
    """What the analyzer received."""
    return [packet for name, packets in received.items() if name not in GUESTS for packet in packets]


MIRRORED = {"watch": [rule(src=(BLUE,), dst=(RED,), mirror=DEFAULT_ANALYZER)]}


def test_a_mirror_rule_copies_at_both_vrouters_across_compute_nodes(topo):
    """vm1 (compute1) -> vm4 (compute2): both vRouters mirror, so two copies of each packet,
    one as sent (source VN blue) and one as received (destination VN red), each way."""
    sim = sim_with(topo, MIRRORED, {"blue": ["watch"], "red": ["watch"]})
    there = sim.where("vm1", routed(topo, "vm1", "vm4"))
    assert len(there["vm4"]) == 1
    sent, received = sorted(copies(there), key=lambda c: "juniper_vn_dst" in c)
    assert sent["juniper_vn_src"] == BLUE and received["juniper_vn_dst"] == RED
    assert sent["inner"]["eth_dst"] == VROUTER_MAC  # as vm1 sent it
    assert received["inner"]["eth_dst"] == iface(topo, "vm4").mac  # as vm4 got it
    assert {c["mirror_index"] for c in (sent, received)} == {POLICY_MIRROR_INDEX}
    assert {c["ip_src"] for c in (sent, received)} == {"192.168.100.1", "192.168.100.2"}
    assert len(copies(sim.where("vm4", routed(topo, "vm4", "vm1")))) == 2


def test_a_mirror_rule_copies_once_on_one_compute_node(topo):
    policies = {"watch-blue": [rule(mirror=DEFAULT_ANALYZER)]}
    sim = sim_with(topo, policies, {"blue": ["watch-blue"]})
    assert len(copies(sim.where("vm1", direct(topo, "vm1", "vm3")))) == 1  # both on compute1
    assert len(copies(sim.where("vm1", direct(topo, "vm1", "vm2")))) == 2  # compute1 -> 2


def test_a_pass_rule_before_the_mirror_rule_means_no_copy(topo):
    policies = {"pass-then-watch": [rule("pass", protocol="icmp"),
                                    rule(src=(BLUE,), dst=(RED,), mirror=DEFAULT_ANALYZER)]}
    sim = sim_with(topo, policies, {"blue": ["pass-then-watch"], "red": ["pass-then-watch"]})
    icmp = sim.where("vm1", routed(topo, "vm1", "vm4", ICMP))
    assert list(icmp) == ["vm4"] and copies(icmp) == []
    assert len(copies(sim.where("vm1", routed(topo, "vm1", "vm4", TCP, 80)))) == 2


def test_a_one_way_mirror_copies_one_direction(topo):
    policies = {"watch-out": [rule(direction=">", src=(BLUE,), dst=(RED,), mirror=DEFAULT_ANALYZER),
                              rule("pass")]}
    sim = sim_with(topo, policies, {"blue": ["watch-out"], "red": ["watch-out"]})
    assert len(copies(sim.where("vm1", routed(topo, "vm1", "vm4")))) == 2
    back = sim.where("vm4", routed(topo, "vm4", "vm1"))
    assert list(back) == ["vm1"] and copies(back) == []


def test_an_interface_capture_sees_a_routed_packet_once_as_sent(topo):
    interface = iface(topo, "vm1")
    capture = plan_capture(topo, [], 1, interface.compute, interface.port_name, "both",
                           DEFAULT_ANALYZER, 0.0)
    entries = {"default-domain:default:p": {"policy_rule": [rule()]}}
    rules = attached_rules(topo, entries, {n: [("default-domain:default:p", (0, 0))]
                                           for n in ("blue", "red")})
    sim = LabSim(topo, [capture], policies=rules)
    there = sim.where("vm1", routed(topo, "vm1", "vm4"))
    [copy] = copies(there)
    assert copy["inner"]["eth_dst"] == VROUTER_MAC and copy["juniper_vn_src"] == BLUE


def test_denied_traffic_is_still_seen_by_an_interface_capture(topo):
    interface = iface(topo, "vm1")
    capture = plan_capture(topo, [], 1, interface.compute, interface.port_name, "ingress",
                           DEFAULT_ANALYZER, 0.0)
    sim = LabSim(topo, [capture], policies=attached_rules(
        topo, {"default-domain:default:deny": {"policy_rule": [rule("deny")]}},
        {"blue": [("default-domain:default:deny", (0, 0))]}))
    received = sim.where("vm1", direct(topo, "vm1", "vm3"))
    assert "vm3" not in received and len(copies(received)) == 1


def test_policy_flows_have_their_own_owner_and_leave_other_flows_alone(topo):
    rules = attached_rules(topo, {"default-domain:default:p": {"policy_rule": [rule()]}},
                           {"blue": [("default-domain:default:p", (0, 0))]})
    flows = policy_flows(topo, rules)
    assert {owner_of_cookie(f.cookie) for fs in flows.values() for f in fs} == {"policy"}
    assert policy_flows(topo, {}) == {c.name: [] for c in topo.computes}


def test_a_mirror_to_an_unknown_analyzer_is_refused_naming_the_rule(topo):
    rules = attached_rules(topo, {"default-domain:default:p": {"policy_rule": [
        rule(mirror="nowhere")]}}, {"blue": [("default-domain:default:p", (0, 0))]})
    with pytest.raises(InvalidRequest, match="p rule 1 of default-domain:default:p: unknown analyzer 'nowhere'"):
        policy_flows(topo, rules)


def test_both_way_rule_matches_both_ways():
    import ipaddress
    from mirrorlab.controller.vncpolicy import PolicyRule
    a, b = ipaddress.ip_network("10.1.1.0/24"), ipaddress.ip_network("10.2.2.0/24")
    both = PolicyRule("p", 0, True, 6, (a,), (b,), (), ((80, 80),), "pass")
    assert rule_matches(both) == [Match(6, a, b, None, (80, 80)), Match(6, b, a, (80, 80), None)]
    anything = PolicyRule("p", 0, True, None, (), (), (), (), "pass")
    assert rule_matches(anything) == [Match()]


@pytest.mark.parametrize("ports, masks", [
    ((80, 80), [80]), ((0, 65535), [None]), ((1000, 1999), None), ((1, 6), [1, (2, 0xFFFE), (4, 0xFFFE), 6])])
def test_port_ranges_become_masks_covering_exactly_the_range(ports, masks):
    found = _port_masks(ports)
    if masks is not None:
        assert found == masks
    covered = set()
    for entry in found:
        if entry is None:
            covered |= set(range(65536))
        elif isinstance(entry, int):
            covered.add(entry)
        else:
            value, mask = entry
            covered |= {p for p in range(65536) if p & mask == value}
    assert covered == set(range(ports[0], ports[1] + 1))


def test_rule_addresses_as_networks_of_both_ip_versions(topo):
    """No address is any; an IPv6 CIDR is kept; a network stands for both its subnets, or
    for the one of its rule's ethertype; `icmp` in an IPv6 rule is ICMPv6."""
    entries = {"default-domain:default:p": {"policy_rule": [
        {**rule(), "src_addresses": [], "dst_addresses": []},
        rule("deny", src=("fd00:1:1::/64",)),
        rule(src=(BLUE,)),
        {**rule(protocol="icmp", src=(BLUE,)), "ethertype": "IPv6"},
        {**rule(protocol="icmp", src=(BLUE,)), "ethertype": "IPv4"}]}}
    anything, cidr, both, icmp6, icmp4 = attached_rules(
        topo, entries, {"blue": [("default-domain:default:p", (0, 0))]})["blue"]
    assert (anything.action, anything.sources, anything.destinations) == ("pass", (), ())
    assert [str(n) for n in cidr.sources] == ["fd00:1:1::/64"]
    assert [str(n) for n in both.sources] == ["10.1.1.0/24", "fd00:1:1::/64"]
    assert ([str(n) for n in icmp6.sources], icmp6.protocol) == (["fd00:1:1::/64"], 58)
    assert ([str(n) for n in icmp4.sources], icmp4.protocol) == (["10.1.1.0/24"], 1)


PROBE = {"ip": "192.168.100.254", "mac": "02:fb:00:00:00:01"}
STATIC = {"nh_mode": "static", "juniper_header": False, "static_nh_header": {
    "vtep_dst_ip_address": PROBE["ip"], "vtep_dst_mac_address": PROBE["mac"], "vni": 5000}}


def mirrored_sim(topo, mirror_to: dict) -> LabSim:
    """blue <-> red passed and mirrored to `mirror_to`, the policy on both networks."""
    return sim_with(topo, {"watch": [rule(src=(BLUE,), dst=(RED,), mirror=mirror_to)]},
                    {"blue": ["watch"], "red": ["watch"]})


def test_a_mirror_rule_to_another_udp_port_copies_there(topo):
    sim = mirrored_sim(topo, {"analyzer_name": DEFAULT_ANALYZER, "udp_port": 9000})
    there = sim.where("vm1", routed(topo, "vm1", "vm4"))
    assert len(there["vm4"]) == 1
    assert [c["udp_dst"] for c in copies(there)] == [9000, 9000]


def test_a_mirror_rule_without_the_juniper_header_delivers_the_frames_themselves(topo):
    """Header-less: the analyzer's port gets the original frames, as the VM sent them and as
    the peer received them, from both vRouters; the encapsulator records none of them (they
    belong to no capture, lab/encapsulator.py)."""
    sim = mirrored_sim(topo, {"analyzer_name": DEFAULT_ANALYZER, "juniper_header": False})
    sent = routed(topo, "vm1", "vm4")
    there = sim.where("vm1", sent)
    [delivered] = there["vm4"]
    assert sorted((c["eth_dst"], c["ip_src"]) for c in copies(there)) == sorted(
        [(VROUTER_MAC, sent["ip_src"]), (delivered["eth_dst"], sent["ip_src"])])
    assert all("juniper_vn_src" not in c and "juniper_vn_dst" not in c for c in copies(there))
    on_one_node = sim_with(topo, {"watch-blue": [rule(mirror={
        "analyzer_name": DEFAULT_ANALYZER, "juniper_header": False})]}, {"blue": ["watch-blue"]})
    [copy] = copies(on_one_node.where("vm1", direct(topo, "vm1", "vm3")))
    assert copy == {**direct(topo, "vm1", "vm3")}


def test_a_mirror_rule_to_a_static_vtep_sends_vxlan_over_the_fabric_from_both_vrouters(topo):
    sim = mirrored_sim(topo, STATIC)
    deliveries = sim.send(iface(topo, "vm1").port_name, routed(topo, "vm1", "vm4"))
    at_probe = [d.packet for d in deliveries if d.port_name == "probe1"]
    assert sorted((c["ip_src"], c["ip_dst"], c["vxlan_vni"], c["mirror_index"]) for c in at_probe) == [
        ("192.168.100.1", PROBE["ip"], 5000, POLICY_MIRROR_INDEX),
        ("192.168.100.2", PROBE["ip"], 5000, POLICY_MIRROR_INDEX)]
    assert sorted(c["inner"]["eth_dst"] for c in at_probe) == sorted(
        [VROUTER_MAC, iface(topo, "vm4").mac])
    assert [d.port_name for d in deliveries if d.port_name != "probe1"] == ["tap-vm4-0"]


def test_a_changed_destination_gets_labels_of_its_own(topo):
    """The mirror encapsulator keeps what it read for a label: a rule whose destination
    changes must not reuse the old labels."""
    def labels(mirror_to):
        return set(policy_encapsulations(topo, attached_rules(
            topo, {"default-domain:default:w": {"policy_rule": [rule(mirror=mirror_to)]}},
            {"blue": [("default-domain:default:w", (0, 0))]})))
    juniper = labels({"analyzer_name": DEFAULT_ANALYZER})
    assert juniper and juniper.isdisjoint(labels({"analyzer_name": DEFAULT_ANALYZER,
                                                  "juniper_header": False}))
    assert juniper.isdisjoint(labels({"analyzer_name": DEFAULT_ANALYZER, "udp_port": 9000}))
    assert juniper.isdisjoint(labels(STATIC))


WHERE = "network_policy_entries.policy_rule[0].action_list.mirror_to"


@pytest.mark.parametrize("mirror_to, field, message", [
    ({"analyzer_name": DEFAULT_ANALYZER, "nic_assisted_mirroring": True,
      "nic_assisted_mirroring_vlan": 100}, "nic_assisted_mirroring", "a policy rule cannot mirror NIC-assisted"),
    ({**STATIC, "juniper_header": True}, "juniper_header", "a static destination takes no Juniper header"),
    ({**STATIC, "static_nh_header": {**STATIC["static_nh_header"], "vni": 0}},
     "static_nh_header.vni", "0 is out of range"),
    ({**STATIC, "static_nh_header": {**STATIC["static_nh_header"], "vtep_dst_ip_address": "192.168.100.200"}},
     "static_nh_header.vtep_dst_ip_address", "no VTEP of this lab has address 192.168.100.200"),
    ({"analyzer_name": DEFAULT_ANALYZER, "udp_port": 70000}, "udp_port", "70000 is out of range"),
    ({"analyzer_name": "nowhere"}, "analyzer_name", "unknown service instance 'nowhere'"),
    ({"juniper_header": False}, "analyzer_name", "missing: name a service instance"),
    ({"analyzer_name": DEFAULT_ANALYZER, "sideways": 1}, "sideways", "unknown field"),
])
def test_a_bad_mirror_to_in_a_rule_is_refused_naming_its_field(topo, mirror_to, field, message):
    from mirrorlab.controller.vncpolicy import parse_policy_entries
    with pytest.raises(InvalidRequest) as refused:
        parse_policy_entries({"policy_rule": [rule(mirror=mirror_to)]}, topo)
    assert refused.value.field == f"{WHERE}.{field}"
    assert refused.value.message.startswith(f"{WHERE}.{field}") and message in refused.value.message


def echo(frame: dict, kind: int, ident: int = 7) -> dict:
    """`frame` as an ICMP echo request (kind 8) or reply (0) with identifier `ident`."""
    return {**frame, "ip_proto": ICMP, "icmp_type": kind, "icmp_id": ident}


def tcp(frame: dict, sport: int, dport: int) -> dict:
    return {**frame, "ip_proto": TCP, "tp_src": sport, "tp_dst": dport}


ONE_WAY = {"blue-to-red": [rule(direction=">", src=(BLUE,), dst=(RED,))]}
ONE_WAY_ATTACHED = {"blue": ["blue-to-red"], "red": ["blue-to-red"]}


@pytest.mark.parametrize("sender, receiver", [("vm1", "vm4"), ("vm2", "vm4")],
                         ids=["across compute nodes", "on one compute node"])
def test_a_one_way_pass_rule_lets_the_replies_back_but_not_new_connections(topo, sender, receiver):
    """As the vRouter's flow pairs: vm4 answers vm1's ping and TCP connection; vm4 cannot ping
    vm1 or open a connection of its own, and an echo reply nobody asked for is dropped."""
    sim = sim_with(topo, ONE_WAY, ONE_WAY_ATTACHED)
    assert sim.where(receiver, echo(routed(topo, receiver, sender), 8)) == {}
    assert list(sim.where(sender, echo(routed(topo, sender, receiver), 8))) == [receiver]
    assert list(sim.where(receiver, echo(routed(topo, receiver, sender), 0))) == [sender]
    assert sim.where(receiver, echo(routed(topo, receiver, sender), 0, ident=8)) == {}
    assert sim.where(receiver, echo(routed(topo, receiver, sender), 8)) == {}
    assert list(sim.where(sender, tcp(routed(topo, sender, receiver), 40000, 80))) == [receiver]
    assert list(sim.where(receiver, tcp(routed(topo, receiver, sender), 80, 40000))) == [sender]
    assert sim.where(receiver, tcp(routed(topo, receiver, sender), 80, 40001)) == {}
    assert sim.where(receiver, tcp(routed(topo, receiver, sender), 40000, 22)) == {}


def test_a_reply_is_judged_by_the_rule_that_passed_its_connection(topo):
    """A deny rule for red -> blue does not stop vm4's replies to a connection blue's rule
    passed (the reverse flow takes its forward flow's action)."""
    policies = {"blue-to-red": [rule(direction=">", src=(BLUE,), dst=(RED,))],
                "no-red": [rule("deny", direction=">", src=(RED,), dst=(BLUE,)), rule("pass")]}
    sim = sim_with(topo, policies, {"blue": ["blue-to-red"], "red": ["no-red"]})
    assert list(sim.where("vm1", echo(routed(topo, "vm1", "vm4"), 8))) == ["vm4"]
    assert list(sim.where("vm4", echo(routed(topo, "vm4", "vm1"), 0))) == ["vm1"]
    assert sim.where("vm4", echo(routed(topo, "vm4", "vm1"), 8, ident=9)) == {}


def test_a_one_way_mirror_rule_copies_the_replies_of_its_connections(topo):
    """The reverse flow takes its forward flow's mirror: vm4's replies are copied by both
    vRouters (sender's with red as source VN, receiver's with blue as destination VN); vm4's
    own requests are neither passed nor copied."""
    policies = {"watch-out": [rule(direction=">", src=(BLUE,), dst=(RED,), mirror=DEFAULT_ANALYZER)]}
    sim = sim_with(topo, policies, {"blue": ["watch-out"], "red": ["watch-out"]})
    assert len(copies(sim.where("vm1", echo(routed(topo, "vm1", "vm4"), 8)))) == 2
    back = sim.where("vm4", echo(routed(topo, "vm4", "vm1"), 0))
    assert len(back["vm1"]) == 1
    assert sorted((c.get("juniper_vn_src", ""), c.get("juniper_vn_dst", "")) for c in copies(back)) == [
        ("", BLUE), (RED, "")]
    assert sim.where("vm4", echo(routed(topo, "vm4", "vm1"), 8, ident=3)) == {}


# --- IPv6 ------------------------------------------------------------------------------------


def routed6(topo, source: str, destination: str, protocol=58, port=None) -> dict:
    """What `source` sends over IPv6 to `destination` in another network: to the gateway's
    MAC (the vRouter answers the solicitation for ::1)."""
    frame = {"eth_src": iface(topo, source).mac, "eth_dst": VROUTER_MAC, "eth_type": 0x86DD,
             "ipv6_src": str(iface(topo, source).ip6), "ipv6_dst": str(iface(topo, destination).ip6),
             "ip_proto": protocol, "ip_ttl": 64, "payload": "hello6"}
    return {**frame, **({"tp_dst": port, "tp_src": 40000} if port else {})}


def direct6(topo, source: str, destination: str, protocol=58, port=None) -> dict:
    """What `source` sends over IPv6 to `destination` in its own network."""
    return {**routed6(topo, source, destination, protocol, port),
            "eth_dst": iface(topo, destination).mac}


def echo6(frame: dict, kind: int, ident: int = 7) -> dict:
    """`frame` as an ICMPv6 echo request (kind 128) or reply (129) with identifier `ident`."""
    return {**frame, "ip_proto": 58, "icmpv6_type": kind, "icmp_id": ident}


@pytest.mark.parametrize("sender, receiver", [("vm1", "vm4"), ("vm3", "vm5"), ("vm2", "vm4")],
                         ids=["compute1 to 2", "compute1 to 3", "on compute2"])
def test_a_pass_policy_routes_ipv6_both_ways_through_the_gateway(topo, sender, receiver):
    """ping6 across networks and compute nodes: the vRouter routes it (its MAC as source, hop
    limit down by one) to the receiver's MAC, and the reply back."""
    sim = sim_with(topo, BOTH_WAYS, ATTACHED_TO_BOTH)
    there = sim.where(sender, echo6(routed6(topo, sender, receiver), 128))
    assert list(there) == [receiver]
    [packet] = there[receiver]
    assert (packet["eth_src"], packet["eth_dst"], packet["ip_ttl"], packet["ipv6_dst"]) == (
        VROUTER_MAC, iface(topo, receiver).mac, 63, str(iface(topo, receiver).ip6))
    back = sim.where(receiver, echo6(routed6(topo, receiver, sender), 129))
    assert list(back) == [sender] and back[sender][0]["eth_dst"] == iface(topo, sender).mac


def test_ipv6_between_networks_needs_a_policy_on_both(topo):
    assert sim_with(topo, {}, {}).where("vm1", echo6(routed6(topo, "vm1", "vm4"), 128)) == {}
    sim = sim_with(topo, BOTH_WAYS, {"blue": ["blue-red"]})
    assert sim.where("vm1", echo6(routed6(topo, "vm1", "vm4"), 128)) == {}


def test_ipv6_rules_deny_first_match_and_cidrs(topo):
    """icmp in an IPv6 rule is ICMPv6: denied first, while TCP over IPv6 and IPv4 ICMP pass;
    an ethertype IPv4 rule does not pass IPv6; an IPv6 CIDR matches its addresses only."""
    no_ping6 = {"p": [{**rule("deny", protocol="icmp"), "ethertype": "IPv6"}, rule("pass")]}
    sim = sim_with(topo, no_ping6, {"blue": ["p"], "red": ["p"]})
    assert sim.where("vm1", echo6(routed6(topo, "vm1", "vm4"), 128)) == {}
    assert list(sim.where("vm1", routed6(topo, "vm1", "vm4", TCP, 22))) == ["vm4"]
    assert list(sim.where("vm1", echo(routed(topo, "vm1", "vm4"), 8))) == ["vm4"]
    ipv4_only = {"p": [{**rule(src=(BLUE,), dst=(RED,)), "ethertype": "IPv4"}]}
    sim = sim_with(topo, ipv4_only, {"blue": ["p"], "red": ["p"]})
    assert sim.where("vm1", echo6(routed6(topo, "vm1", "vm4"), 128)) == {}
    assert list(sim.where("vm1", echo(routed(topo, "vm1", "vm4"), 8))) == ["vm4"]
    one_host = {"p": [rule(src=(f"{iface(topo, 'vm1').ip6}/128",), dst=(RED,))]}
    sim = sim_with(topo, one_host, {"blue": ["p"], "red": ["p"]})
    assert list(sim.where("vm1", echo6(routed6(topo, "vm1", "vm4"), 128))) == ["vm4"]
    assert sim.where("vm3", echo6(routed6(topo, "vm3", "vm4"), 128)) == {}


def test_a_one_way_rule_lets_ipv6_replies_back_but_not_new_connections(topo):
    sim = sim_with(topo, ONE_WAY, ONE_WAY_ATTACHED)
    assert sim.where("vm4", echo6(routed6(topo, "vm4", "vm1"), 128)) == {}
    assert list(sim.where("vm1", echo6(routed6(topo, "vm1", "vm4"), 128))) == ["vm4"]
    assert list(sim.where("vm4", echo6(routed6(topo, "vm4", "vm1"), 129))) == ["vm1"]
    assert sim.where("vm4", echo6(routed6(topo, "vm4", "vm1"), 129, ident=8)) == {}
    assert list(sim.where("vm1", routed6(topo, "vm1", "vm4", TCP, 80))) == ["vm4"]
    assert list(sim.where("vm4", {**routed6(topo, "vm4", "vm1", TCP), "tp_src": 80,
                                  "tp_dst": 40000})) == ["vm1"]


def test_within_a_network_ipv6_is_policed_but_neighbour_discovery_and_link_local_pass(topo):
    """A deny-all rule on blue stops IPv6 between its VMs, but not what keeps the network
    working: neighbour solicitations and advertisements, link-local traffic."""
    sim = sim_with(topo, {"deny-all": [rule("deny")]}, {"blue": ["deny-all"]})
    assert sim.where("vm1", echo6(direct6(topo, "vm1", "vm2"), 128)) == {}
    for kind in (135, 136):
        unicast = {**direct6(topo, "vm1", "vm2"), "icmpv6_type": kind}
        assert list(sim.where("vm1", unicast)) == ["vm2"], kind
    link_local = {**echo6(direct6(topo, "vm1", "vm3"), 128), "ipv6_src": "fe80::1",
                  "ipv6_dst": "fe80::2"}
    assert list(sim.where("vm1", link_local)) == ["vm3"]
    assert sim.where("vm1", echo(direct(topo, "vm1", "vm2"), 8)) == {}


def test_an_ipv6_mirror_rule_copies_at_both_vrouters_with_the_ipv6_frame_inside(topo):
    """The analyzer gets each routed IPv6 packet twice across compute nodes, each copy's inner
    frame IPv6 as the VM sent it (to the gateway) and as the peer got it."""
    sim = sim_with(topo, MIRRORED, {"blue": ["watch"], "red": ["watch"]})
    there = sim.where("vm1", echo6(routed6(topo, "vm1", "vm4"), 128))
    assert len(there["vm4"]) == 1
    sent, received = sorted(copies(there), key=lambda c: "juniper_vn_dst" in c)
    assert sent["juniper_vn_src"] == BLUE and received["juniper_vn_dst"] == RED
    assert {c["inner"]["eth_type"] for c in (sent, received)} == {0x86DD}
    assert (sent["inner"]["eth_dst"], received["inner"]["eth_dst"]) == (
        VROUTER_MAC, iface(topo, "vm4").mac)
    assert len(copies(sim.where("vm4", echo6(routed6(topo, "vm4", "vm1"), 129)))) == 2


def test_the_ipv6_gateway_answers_neighbour_solicitations_in_a_policed_network(topo):
    """Policies never stand between a VM and its gateway."""
    sim = sim_with(topo, {"deny-all": [rule("deny")]}, {"blue": ["deny-all"]})
    [advert] = sim.where("vm1", neighbour_solicitation(iface(topo, "vm1"), "fd00:1:1::1"))["vm1"]
    assert (advert["icmpv6_type"], advert["nd_option_mac"]) == (136, VROUTER_MAC)
