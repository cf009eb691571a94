"""What the Policies page and the Topology show of network policies (controller.policyview):
the connections and mirrors derived from the vRouters' own policy decisions, the rules as
written, and GET /api/policies (FastAPI's TestClient on a real service, store and
configuration API, no vRouter connected)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mirrorlab.cli import _policies_text
from mirrorlab.controller import rest
from mirrorlab.controller.errors import NotFound
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from mirrorlab.controller.service import ControllerService
from mirrorlab.control import LabControl
from mirrorlab.controller.policyview import NetworkLink, describe_rule, policy_links
from mirrorlab.controller.vncmodel import object_uuid
from mirrorlab.controller.vncpolicy import attached_rules
from mirrorlab.controller.vncserver import ConfigApi
from mirrorlab.topofile import parse
from tests.unit.test_policies import BLUE, RED, rule, topo  # noqa: F401 (topo is a fixture)

ANALYZER = f"default-domain:default:{DEFAULT_ANALYZER}"


def links(topo, policies: dict[str, list[dict]], attach: dict[str, list[str]]):
    """policy_links of policies (name -> rules) attached to networks (name -> policy names,
    in sequence)."""
    entries = {f"default-domain:default:{name}": {"policy_rule": rules}
               for name, rules in policies.items()}
    attachments = {network: [(f"default-domain:default:{name}", (index, 0))
                             for index, name in enumerate(names)]
                   for network, names in attach.items()}
    return policy_links(topo, attached_rules(topo, entries, attachments))


def test_no_policy_connects_or_mirrors_nothing(topo):
    assert links(topo, {}, {}) == ([], [])


def test_a_pass_policy_on_both_networks_connects_them_both_ways(topo):
    connections, mirrors = links(topo, {"p": [rule(src=[BLUE], dst=[RED])]}, {"blue": ["p"], "red": ["p"]})
    assert connections == [NetworkLink("blue", "red", True)]
    assert mirrors == []


def test_a_policy_on_one_network_only_connects_nothing(topo):
    assert links(topo, {"p": [rule(src=[BLUE], dst=[RED])]}, {"blue": ["p"]}) == ([], [])


def test_a_one_way_rule_connects_one_way(topo):
    connections, _ = links(topo, {"p": [rule(direction=">", src=[RED], dst=[BLUE])]},
                           {"blue": ["p"], "red": ["p"]})
    assert connections == [NetworkLink("red", "blue", False)]


def test_a_deny_rule_listed_first_hides_the_pass_rule_after_it(topo):
    """The pass rule's flows exist, below the deny's: no packet reaches them, so no link."""
    policy = [rule("deny"), rule(src=[BLUE], dst=[RED], mirror=ANALYZER)]
    assert links(topo, {"p": policy}, {"blue": ["p"], "red": ["p"]}) == ([], [])


def test_a_deny_of_icmp_first_leaves_the_rest_connected_and_mirrored(topo):
    policy = [rule("deny", protocol="icmp"), rule(src=[BLUE], dst=[RED], mirror=ANALYZER)]
    connections, mirrors = links(topo, {"p": policy}, {"blue": ["p"], "red": ["p"]})
    assert connections == [NetworkLink("blue", "red", True)]
    assert mirrors == [NetworkLink("blue", "red", True, DEFAULT_ANALYZER)]


@pytest.mark.parametrize("denied", [(0, 1023), (1024, 65535)])
def test_a_deny_of_some_ports_first_leaves_the_other_ports_connected(topo, denied):
    """Only TCP to some ports is denied: TCP to the others still passes."""
    policy = [rule("deny", protocol="tcp", dst_ports=denied), rule(protocol="tcp", src=[BLUE], dst=[RED])]
    connections, _ = links(topo, {"p": policy}, {"blue": ["p"], "red": ["p"]})
    assert connections == [NetworkLink("blue", "red", True)]
    everything = [rule("deny", protocol="tcp", dst_ports=(0, 65535)), rule(protocol="tcp", src=[BLUE], dst=[RED])]
    assert links(topo, {"p": everything}, {"blue": ["p"], "red": ["p"]}) == ([], [])


def test_a_pass_rule_for_everything_first_means_no_mirror(topo):
    policy = [rule(src=[BLUE], dst=[RED]), rule(src=[BLUE], dst=[RED], mirror=ANALYZER)]
    connections, mirrors = links(topo, {"p": policy}, {"blue": ["p"], "red": ["p"]})
    assert connections == [NetworkLink("blue", "red", True)]
    assert mirrors == []


def test_a_rule_for_addresses_no_vm_of_the_network_has_connects_nothing(topo):
    """A rule from 10.9.9.0/24 (no VM's address) passes no packet a VM of blue sends."""
    policy = [rule(src=["10.9.9.0/24"], dst=[RED])]
    assert links(topo, {"p": policy}, {"blue": ["p"], "red": ["p"]}) == ([], [])


def test_mirrors_within_a_network_and_between_networks(topo):
    """A mirror within blue is a mirror from blue to blue. A `>` rule connects one way, but
    its mirror copies the replies too (they are judged by the rule that passed their
    connection), so the mirror is both ways."""
    blue_only = {"p": [rule(src=[BLUE], dst=[BLUE], mirror=ANALYZER)]}
    assert links(topo, blue_only, {"blue": ["p"]}) == ([], [NetworkLink("blue", "blue", True, DEFAULT_ANALYZER)])
    one_way = {"p": [rule(direction=">", src=[BLUE], dst=[RED], mirror=ANALYZER)]}
    assert links(topo, one_way, {"blue": ["p"], "red": ["p"]}) == (
        [NetworkLink("blue", "red", False)], [NetworkLink("blue", "red", True, DEFAULT_ANALYZER)])


def test_a_static_destination_is_named_by_its_fabric_analyzer_and_vni(topo):
    # As vnc_api writes it: every field, those not set null.
    static = {"analyzer_name": None, "encapsulation": None, "nh_mode": "static", "juniper_header": False, "static_nh_header": {
        "vtep_dst_ip_address": "192.168.100.254", "vtep_dst_mac_address": "00:00:00:00:fe:01",
        "vni": 5000}}
    policy = {"p": [rule(src=[BLUE], dst=[RED], mirror=static)]}
    assert links(topo, policy, {"blue": ["p"], "red": ["p"]})[1] == [
        NetworkLink("blue", "red", True, "probe1 (VNI 5000)")]
    described = describe_rule(topo, 1, policy["p"][0])
    assert described["analyzer"] == "probe1 (VNI 5000)"
    assert described["text"].endswith("mirror to probe1 (VNI 5000)")


def test_a_rule_is_described_as_written(topo):
    written = rule("deny", direction=">", protocol="tcp", src=["10.1.1.0/24"], dst=[RED], dst_ports=(80, 80))
    assert describe_rule(topo, 2, written) == {
        "number": 2, "direction": ">", "protocol": "tcp", "ethertype": "any",
        "source_addresses": ["10.1.1.0/24"], "source_ports": ["any"],
        "destination_addresses": [RED], "destination_ports": ["80"], "action": "deny",
        "analyzer": None, "mirror_to": None,
        "text": f"deny protocol tcp network 10.1.1.0/24 ports any > network {RED} ports 80"}
    mirrored = describe_rule(topo, 1, rule(action=None, src=["any"], dst=["local"], dst_ports=(1000, 2000),
                                     mirror=ANALYZER))
    assert mirrored["action"] == "pass" and mirrored["analyzer"] == DEFAULT_ANALYZER
    as_vnc_api_writes = rule(mirror={"analyzer_name": ANALYZER, "encapsulation": None,
                                     "udp_port": None, "nh_mode": None})
    assert describe_rule(topo, 1, as_vnc_api_writes)["analyzer"] == DEFAULT_ANALYZER
    assert mirrored["mirror_to"] == {"analyzer_name": ANALYZER}
    assert mirrored["text"] == (f"pass protocol any network any ports any <> network local ports "
                                f"1000-2000 mirror to {DEFAULT_ANALYZER}")


def test_an_ipv6_rule_connects_and_mirrors_and_is_described_with_its_cidrs(topo):
    """A rule of ethertype IPv6 between blue's IPv6 subnet and red connects and mirrors them
    (IPv6 entries are reached); the Policies page and the CLI show its CIDR and ethertype."""
    ipv6 = {**rule(src=["fd00:1:1::/64"], dst=[RED], mirror=ANALYZER), "ethertype": "IPv6"}
    connections, mirrors = links(topo, {"p": [ipv6]}, {"blue": ["p"], "red": ["p"]})
    assert connections == [NetworkLink("blue", "red", True)]
    assert mirrors == [NetworkLink("blue", "red", True, DEFAULT_ANALYZER)]
    described = describe_rule(topo, 1, ipv6)
    assert (described["ethertype"], described["source_addresses"]) == ("IPv6", ["fd00:1:1::/64"])
    assert described["text"] == (f"pass protocol any ethertype IPv6 network fd00:1:1::/64 ports any "
                                 f"<> network {RED} ports any mirror to {DEFAULT_ANALYZER}")


def test_a_deny_of_one_ip_version_first_hides_nothing_of_the_other(topo):
    """IPv4 and IPv6 are apart: a deny-all of IPv6 listed first leaves IPv4 connected (and the
    other way round); a deny-all of both hides everything."""
    for version in ("IPv4", "IPv6"):
        policy = [{**rule("deny"), "ethertype": version}, rule(src=[BLUE], dst=[RED])]
        connections, _ = links(topo, {"p": policy}, {"blue": ["p"], "red": ["p"]})
        assert connections == [NetworkLink("blue", "red", True)], version
    policy = [rule("deny"), rule(src=[BLUE], dst=[RED])]
    assert links(topo, {"p": policy}, {"blue": ["p"], "red": ["p"]}) == ([], [])


def test_ipv6_addresses_numbered_as_ipv4_ones_are_another_address_space():
    """Networks whose IPv6 subnets count as their IPv4 ones (::a01:100/120 is 10.1.1.0/24's
    number): a deny-all of IPv6 first still leaves IPv4 connected."""
    twins = parse("""name: twins
computes: [compute1]
networks:
  - {name: blue, subnet: 10.1.1.0/24, subnet6: "::a01:100/120"}
  - {name: red, subnet: 10.2.2.0/24, subnet6: "::a02:200/120"}
vms:
  - {name: vm1, compute: compute1, network: blue, ip: 10.1.1.11}
  - {name: vm4, compute: compute1, network: red, ip: 10.2.2.14}
""")
    twin_blue, twin_red = "default-domain:twins:blue", "default-domain:twins:red"
    policy = [{**rule("deny"), "ethertype": "IPv6"}, rule(src=[twin_blue], dst=[twin_red])]
    entries = {"default-domain:twins:p": {"policy_rule": policy}}
    attachments = {name: [("default-domain:twins:p", (0, 0))] for name in ("blue", "red")}
    connections, _ = policy_links(twins, attached_rules(twins, entries, attachments))
    assert connections == [NetworkLink("blue", "red", True)]


# --- GET /api/policies ---------------------------------------------------------------------------

@pytest.fixture
def config(service):
    """The configuration API of `service` (no HTTP: its methods)."""
    return ConfigApi(service)


@pytest.fixture
def policy_client(service, config):
    """The REST API of `service` with `config`'s policies, as a browser on this machine reaches it."""
    app = rest.create_app(service, lease_seconds=5, policies=config.policy_view, config_api_port=8082)
    return TestClient(app, base_url="http://127.0.0.1")


def set_refs(config, network: str, policies: list[tuple[str, int]]) -> None:
    """Attach to `network` exactly `policies` (name, sequence major), as a vnc_api PUT does."""
    config.update("virtual-network", object_uuid("virtual-network", ("default-domain", "default", network)),
                  {"network_policy_refs": [{"to": ["default-domain", "default", name],
                                            "attr": {"sequence": {"major": major, "minor": 0}}}
                                           for name, major in policies]})


def test_the_endpoint_lists_policies_rules_in_order_and_networks_in_sequence(policy_client, config):
    assert policy_client.get("/api/policies").json() == {
        "config_api_port": 8082, "policies": [], "connections": [], "mirrors": [], "problem": None}
    config.create("network-policy", {"fq_name": ["default-domain", "default", "watch"],
                                     "network_policy_entries": {"policy_rule": [
                                         rule(protocol="icmp", src=[BLUE], dst=[RED]),
                                         rule(src=[BLUE], dst=[RED], mirror=ANALYZER)]}})
    config.create("network-policy", {"fq_name": ["default-domain", "default", "apart"]})
    unattached = policy_client.get("/api/policies").json()
    assert [p["name"] for p in unattached["policies"]] == ["apart", "watch"]
    assert [r["text"] for r in unattached["policies"][1]["rules"]] == [
        f"pass protocol icmp network {BLUE} ports any <> network {RED} ports any",
        f"pass protocol any network {BLUE} ports any <> network {RED} ports any mirror to {DEFAULT_ANALYZER}"]
    assert unattached["policies"][1]["networks"] == [] and unattached["connections"] == []

    set_refs(config, "red", [("apart", 0), ("watch", 5)])
    set_refs(config, "blue", [("watch", 2)])
    answer = policy_client.get("/api/policies").json()
    watch = answer["policies"][1]
    assert watch["uuid"] == object_uuid("network-policy", ("default-domain", "default", "watch"))
    assert [(a["network"], a["fq_name"], a["sequence"]) for a in watch["networks"]] == [
        ("blue", BLUE, {"major": 2, "minor": 0}), ("red", RED, {"major": 5, "minor": 0})]
    assert answer["connections"] == [{"source": "blue", "destination": "red", "both_ways": True}]
    assert answer["mirrors"] == [{"source": "blue", "destination": "red", "both_ways": True,
                                  "analyzer": DEFAULT_ANALYZER}]

    set_refs(config, "red", [])  # detached from red: blue and red are apart again
    detached = policy_client.get("/api/policies").json()
    assert [a["network"] for a in detached["policies"][1]["networks"]] == ["blue"]
    assert detached["connections"] == [] and detached["mirrors"] == []


def test_without_the_configuration_api_there_are_no_policies(client):
    assert client.get("/api/policies").json() == {
        "config_api_port": None, "policies": [], "connections": [], "mirrors": [], "problem": None}


def test_a_failure_reading_the_policies_is_a_json_error(service):
    """What goes wrong answers through the API's one error mapper, never a bare 500."""
    def failing():
        raise NotFound("the policy store is gone", "policies")
    client = TestClient(rest.create_app(service, 5, policies=failing), base_url="http://127.0.0.1")
    answer = client.get("/api/policies")
    assert answer.status_code == 404
    assert answer.json() == {"error": "the policy store is gone", "field": "policies"}
    assert client.get("/api/policies?detail=1").json()["field"] == "query.detail"


def test_the_cli_prints_each_policy_its_networks_rules_connections_and_mirrors(policy_client, config):
    """`mirrorlab policies` prints what the endpoint answers (its --json prints it whole)."""
    assert _policies_text(policy_client.get("/api/policies").json()) == (
        "no network policies (write them with vnc_api to the configuration API, port 8082)")
    config.create("network-policy", {"fq_name": ["default-domain", "default", "watch"],
                                     "network_policy_entries": {"policy_rule": [
                                         rule(direction=">", src=[BLUE], dst=[RED], mirror=ANALYZER)]}})
    set_refs(config, "red", [("watch", 1)])
    set_refs(config, "blue", [("watch", 0)])
    assert _policies_text(policy_client.get("/api/policies").json()).splitlines() == [
        "policy default-domain:default:watch: attached to blue (sequence 0.0), red (sequence 1.0)",
        f"    1  pass protocol any network {BLUE} ports any > network {RED} ports any mirror to {DEFAULT_ANALYZER}",
        "connections: blue -> red (replies pass)",
        f"mirrors:     blue <-> red to {DEFAULT_ANALYZER}"]  # replies are copied too
    assert _policies_text({"config_api_port": None, "policies": [], "connections": [], "mirrors": []}) \
        == "no network policies: this lab does not serve the configuration API (--config-api-port)"


def test_stored_policies_the_controller_cannot_apply_show_as_a_problem_until_a_write_applies(
        service, tmp_path, default_topo):
    """A controller that starts on stored policies it cannot apply (here: their analyzer is no
    longer in its store) applies none and says why in GET /api/policies and `mirrorlab
    policies`, until a client's write applies (here: a rule mirroring elsewhere)."""
    def restarted() -> ConfigApi:
        return ConfigApi(ControllerService(default_topo, service.store, LabControl(tmp_path / "no.sock"),
                                           tmp_path))
    service.store.add_analyzer(plan_analyzer(service.topology, "far", None, "compute2"))
    config = restarted()
    config.create("network-policy", {"fq_name": ["default-domain", "default", "watch"],
                                     "network_policy_entries": {"policy_rule": [
                                         rule(src=[BLUE], dst=[RED], mirror="default-domain:default:far")]}})
    set_refs(config, "blue", [("watch", 0)])
    set_refs(config, "red", [("watch", 0)])
    assert config.policy_view()["problem"] is None and config.service.policies

    service.store.remove_analyzer("far")
    config = restarted()
    assert config.service.policies == {}
    problem = config.policy_view()["problem"]
    assert problem.startswith("the stored network policies are not applied") and "'far'" in problem
    client = TestClient(rest.create_app(config.service, lease_seconds=5, policies=config.policy_view,
                                        config_api_port=8082), base_url="http://127.0.0.1")
    answer = client.get("/api/policies").json()
    assert answer["problem"] == problem
    assert _policies_text(answer).splitlines()[0] == f"PROBLEM: {problem}"

    config.update("network-policy", object_uuid("network-policy", ("default-domain", "default", "watch")),
                  {"network_policy_entries": {"policy_rule": [rule(src=[BLUE], dst=[RED], mirror=ANALYZER)]}})
    assert config.policy_view()["problem"] is None and config.service.policies
