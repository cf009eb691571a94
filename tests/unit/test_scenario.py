"""Scenario files without a lab: validation (every problem at file:line), the frozen model, the
shipped collection, and the Markdown and JUnit reports a run writes."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

from mirrorlab import scenario as scenarios
from mirrorlab.scenario import (
    Attachment, Bound, ExpectAnalyzer, ExpectLoss, ExpectPackets, Fault, Mark, PolicyRule, ScenarioError,
    Show, ShowReceived, StartCapture, WritePolicy,
)
from mirrorlab.scenarioreport import (
    ERROR, FAILED, PASSED, SKIPPED, Outcome, RunResult, describe, junit, markdown,
)

REPO = Path(__file__).resolve().parents[2]
COLLECTION = sorted((REPO / "scenarios").glob("*.yaml"))


def parse(text: str, source: str = "s.yaml"):
    return scenarios.parse(textwrap.dedent(text), source)


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as raised:
        parse(text)
    return raised.value.problems


GOOD = """\
    name: good
    title: A good one
    contrail: the issue
    topology: minimal
    steps:
      - capture: {as: mon, vm: vm1, direction: ingress}
      - ping: {as: pings, from: vm1, to: vm2, count: 4, size: 8000}
      - fault: controller-kill
      - fault: {impair: vm2, loss: 30, rate: 1mbit}
      - fault: {uplink-down: compute1}
      - wait: 0.5
      - expect: {capture: mon, filter: "icmp.type == 8", packets: 4}
      - expect: {traffic: pings, loss: {max: 10}}
      - show: {capture: mon, filter: icmp}
    """


def test_a_good_file_gives_a_frozen_model():
    scenario = parse(GOOD)
    assert scenario.name == "good" and scenario.title == "A good one" and scenario.contrail == "the issue"
    assert scenario.topology.name == "minimal" and scenario.topology_ref == "minimal"
    capture, ping, kill, impair, uplink, wait, packets, loss, show = scenario.steps
    assert capture == StartCapture(6, "mon", "vm1", 0, None, "ingress", None, None)
    assert ping.source.vm == "vm1" and ping.target == "vm2" and (ping.count, ping.size) == (4, 8000)
    assert (kill.action, kill.target) == ("controller-kill", None)
    assert impair == Fault(9, "impair", "vm2", 0, 30, "1mbit")
    assert (uplink.action, uplink.target) == ("uplink-down", "compute1")
    assert wait.seconds == 0.5
    assert packets == ExpectPackets(12, "mon", "icmp.type == 8", Bound(4, 4), 5)
    assert loss == ExpectLoss(13, "pings", Bound(None, 10))
    assert isinstance(show, Show) and scenario.expectations == (packets, loss)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ping.count = 5


def test_every_problem_is_reported_with_file_and_line():
    assert problems("""\
        name: Bad_Name
        topology: default
        colour: blue
        steps:
          - capture: {as: mon, vm: vm9}
          - ping: {from: vm1, to: vm7, count: 0}
          - fault: {uplink-down: compute9}
          - fault: explode
          - expect: {capture: nope, packets: 3}
          - expect: {traffic: p, loss: {min: 5, max: 1}}
          - craft: {from: vm1, packet: "Ether(dst={vm8.mac})/IP("}
          - wait: {capture: mon}
          - bogus: 1
        """) == [
        "s.yaml:3: colour: unknown key 'colour' (allowed: answer, contrail, description, name, "
        "question, steps, title, topology)",
        "s.yaml:1: name: 'Bad_Name' is not valid (a lowercase letter, then up to 39 letters, digits or '-')",
        "s.yaml:5: steps[0].capture.vm: unknown VM 'vm9' (known: vm1, vm2, vm3, vm4, vm5)",
        "s.yaml:6: steps[1].ping.to: 'vm7' is neither an address nor a VM",
        "s.yaml:6: steps[1].ping.count: '0' is not an integer from 1 to 1000",
        "s.yaml:7: steps[2].fault.uplink-down: unknown compute node 'compute9' (known: compute1, "
        "compute2, compute3)",
        "s.yaml:8: steps[3].fault: unknown fault 'explode' (faults: interface-down, interface-up, "
        "uplink-down, uplink-up, vrouter-disconnect, vrouter-reconnect, impair, clear, controller-kill, "
        "controller-restart, controller-stop, controller-start, recorder-kill)",
        "s.yaml:9: steps[4].expect.capture: no capture 'nope' before this step (known: mon)",
        "s.yaml:10: steps[5].expect.traffic: no traffic step 'p' before this step (known: none)",
        "s.yaml:10: steps[5].expect.loss: min 5 is above max 1",
        "s.yaml:11: steps[6].craft.packet: {vm8.mac}: unknown VM 'vm8'",
        "s.yaml:12: steps[7].wait: waiting for a capture needs 'packets'",
        "s.yaml:13: steps[8].bogus: unknown step 'bogus' (steps: capture, stop, analyzer, ping, "
        "iperf3, probe, craft, fault, wait, policy, mark, expect, show)",
    ]


def test_an_inline_topology_is_validated_in_place():
    assert problems("""\
        name: inline
        topology:
          name: tiny
          computes: [c1]
          networks: [{name: blue, subnet: 10.1.1.0/24}]
          vms:
            - {name: vm1, compute: c1, network: blue}
            - {name: vm2, compute: c9, network: blue, ip: 10.9.9.9}
        steps:
          - capture: {as: mon, vm: vm1}
          - expect: {capture: mon, packets: 1}
        """) == ["s.yaml:8: topology.vms[1].compute: unknown compute node 'c9' (known: c1)"]
    scenario = parse("""\
        name: inline
        topology:
          name: tiny
          computes: [c1]
          networks: [{name: blue, subnet: 10.1.1.0/24}]
          vms: [{name: vm1, compute: c1, network: blue}, {name: vm2, compute: c1, network: blue}]
        steps:
          - capture: {as: mon, vm: vm1}
          - expect: {capture: mon, packets: 1}
        """)
    assert scenario.topology.name == "tiny" and scenario.topology_ref == "inline"


def test_a_topology_file_is_found_beside_the_scenario(tmp_path):
    (tmp_path / "lab.yaml").write_text((REPO / "topologies" / "minimal.yaml").read_text())
    (tmp_path / "s.yaml").write_text("name: beside\ntopology: lab.yaml\nsteps:\n"
                                     "  - capture: {as: mon, vm: vm2}\n"
                                     "  - expect: {capture: mon, packets: 0}\n")
    assert scenarios.load(tmp_path / "s.yaml").topology.name == "minimal"
    (tmp_path / "s.yaml").write_text("name: beside\ntopology: nowhere.yaml\nsteps: []\n")
    with pytest.raises(ScenarioError) as raised:
        scenarios.load(tmp_path / "s.yaml")
    assert raised.value.problems[0].startswith(f"{tmp_path / 's.yaml'}:2: topology: {tmp_path / 'nowhere.yaml'}: cannot read")


def test_yaml_and_structure_errors_name_their_line():
    assert problems("name: x\nsteps: [\n") [0].startswith("s.yaml:3: not valid YAML")
    assert problems("name: x\nname: y\n") == ["s.yaml:2: name: duplicate key (first on line 1)"]
    assert problems("- a list\n") == ["s.yaml:1: the file must be a mapping with keys answer, contrail, "
                                      "description, name, question, steps, title, topology"]
    assert problems("name: x\ntopology: minimal\nsteps:\n  - ping: {from: vm1, to: vm2}\n") == [
        "s.yaml:3: steps: no expectation: a scenario must check something (expect: ...)"]
    assert problems("name: x\ntopology: minimal\nquestion: why?\nsteps:\n"
                    "  - capture: {as: c, vm: vm1}\n  - expect: {capture: c, state: active}\n") == [
        "s.yaml:1: question: a training exercise gives both 'question' and 'answer'"]


def test_names_refer_only_to_earlier_steps():
    assert problems("""\
        name: order
        topology: minimal
        steps:
          - expect: {capture: later, packets: 1}
          - capture: {as: later, vm: vm1, analyzer: mine}
          - analyzer: {name: mine}
          - capture: {as: later, vm: vm2, analyzer: mine}
          - capture: {as: loop, of_analyzer: nobody}
          - expect: {traffic: missing, loss: 0}
        """) == [
        "s.yaml:4: steps[0].expect.capture: no capture 'later' before this step (known: none)",
        "s.yaml:5: steps[1].capture.analyzer: no analyzer 'mine' before this step (known: "
        "interface-packet-capture; create one with 'analyzer:')",
        "s.yaml:7: steps[3].capture.as: 'later' is used already (line 5)",
        "s.yaml:8: steps[4].capture.of_analyzer: no analyzer 'nobody' before this step (known: "
        "interface-packet-capture, mine; create one with 'analyzer:')",
        "s.yaml:9: steps[5].expect.traffic: no traffic step 'missing' before this step (known: none)",
    ]


def test_an_analyzer_pings_or_is_pinged_by_name():
    """`from_analyzer`/`to_analyzer` name an analyzer known at that step instead of a VM; a
    ping names one sender and one receiver."""
    loaded = parse("""\
        name: an
        topology: minimal
        steps:
          - analyzer: {name: watcher}
          - ping: {as: p, from_analyzer: watcher, to_analyzer: interface-packet-capture, count: 2}
          - ping: {as: q, from: vm1, to_analyzer: watcher}
          - expect: {traffic: p, loss: 0}
        """)
    first, second = loaded.steps[1], loaded.steps[2]
    assert (first.source, first.source_analyzer, first.target, first.target_analyzer) == (
        None, "watcher", None, "interface-packet-capture")
    assert (first.sender, first.receiver) == ("analyzer watcher", "analyzer interface-packet-capture")
    assert (second.sender, second.receiver) == ("vm1", "analyzer watcher")
    assert problems("""\
        name: an
        topology: minimal
        steps:
          - ping: {as: p, from: vm1, from_analyzer: interface-packet-capture, to: vm2}
          - ping: {as: q, from: vm1}
          - ping: {as: r, from_analyzer: nobody, to: vm2}
          - ping: {as: s, from: vm1, to_analyzer: interface-packet-capture, ipv6: true}
          - expect: {traffic: p, loss: 0}
        """) == [
        "s.yaml:4: steps[0].ping: give either 'from' (a VM) or 'from_analyzer' (an analyzer's own VM)",
        "s.yaml:5: steps[1].ping: give either 'to' (a VM or an address) or 'to_analyzer' (an "
        "analyzer's own VM)",
        "s.yaml:6: steps[2].ping.from_analyzer: no analyzer 'nobody' before this step (known: "
        "interface-packet-capture; create one with 'analyzer:')",
        "s.yaml:7: steps[3].ping.ipv6: analyzers have no IPv6 address",
    ]


def test_ipv6_needs_an_ipv6_subnet_and_placeholders_are_filled():
    assert problems("name: v6\ntopology: minimal\nsteps:\n  - ping: {as: p, from: vm1, to: vm2, ipv6: true}\n"
                    "  - expect: {traffic: p, loss: 0}\n") == [
        "s.yaml:4: steps[0].ping.to: VM 'vm2' has no IPv6 address (give its network a subnet6)"]
    default = parse(GOOD.replace("topology: minimal", "topology: default")).topology
    assert scenarios.fill_placeholders("IPv6(dst={vm2.ip6})/Ether(src={vm1.mac})", default) == \
        "IPv6(dst='fd00:1:1::c')/Ether(src='02:00:0a:01:01:0b')"
    assert scenarios.target_address(default, "vm2", ipv6=True) == "fd00:1:1::c"
    assert scenarios.target_address(default, "10.9.9.9") == "10.9.9.9"


def test_bounds():
    assert Bound(4, 4).holds(4) and not Bound(4, 4).holds(5) and str(Bound(4, 4)) == "exactly 4"
    assert Bound(1, None).holds(10 ** 6) and not Bound(1, None).holds(0) and str(Bound(1, None)) == "at least 1"
    assert Bound(None, 10).holds(0) and not Bound(None, 10).holds(10.5) and str(Bound(None, 10)) == "at most 10"
    assert str(Bound(1, 99)) == "from 1 to 99"


@pytest.mark.parametrize("path", COLLECTION, ids=[p.stem for p in COLLECTION])
def test_every_scenario_of_the_collection_is_valid(path):
    scenario = scenarios.load(path)
    assert scenario.name == path.stem and scenario.expectations
    assert scenario.contrail or scenario.question, "a scenario mirrors a Contrail issue or asks a question"


def test_the_collection_covers_the_field_issues_and_has_exercises():
    names = {p.stem for p in COLLECTION}
    assert {"mirror-loop", "agent-restart", "stale-mirror-state", "large-frames", "ipv6-ethertype",
            "policy-double-copies", "policy-rule-order"} <= names
    assert len([n for n in names if n.startswith("training-")]) >= 2


# --- the reports -------------------------------------------------------------------------------

def run_result(statuses: list[str], error: str | None = None) -> RunResult:
    scenario = parse(GOOD)
    steps = scenario.steps
    outcomes = [Outcome(steps[0], PASSED, "capture 1 on compute1/tap-vm1-0, active", 0.1),
                Outcome(steps[1], PASSED, "4/4 replies", 0.8),
                Outcome(steps[6], statuses[0], "4 packets (capture 1)" if statuses[0] == PASSED
                        else "3 packets, expected exactly 4", 1.2),
                Outcome(steps[7], statuses[1], "0% lost (4/4)", 0.0),
                Outcome(steps[8], PASSED, "4 packets", 0.2, ("   1 from vm1 10.1.1.3 -> 10.1.1.4 ICMP Echo",))]
    return RunResult(scenario, outcomes, error=error, started=1_700_000_000, seconds=12.5)


def test_a_run_passes_only_when_every_expectation_held():
    assert run_result([PASSED, PASSED]).passed
    assert not run_result([FAILED, PASSED]).passed
    assert not run_result([PASSED, ERROR]).passed
    assert not run_result([PASSED, PASSED], error="the lab did not come up").passed
    assert not RunResult(parse(GOOD)).passed  # nothing ran, nothing held


def test_the_markdown_report_says_what_was_reproduced_and_seen():
    report = markdown(run_result([FAILED, PASSED]))
    assert report.startswith("# A good one\n")
    assert "Scenario `good` (s.yaml): **FAILED** in 12.5 s, started 2023-11-14 22:13:20 UTC." in report
    assert "## The Contrail field issue\n\nthe issue\n" in report
    assert ("| 12 | expect capture mon: exactly 4 packets matching 'icmp.type == 8' | failed | "
            "3 packets, expected exactly 4 | 1.2 |") in report
    assert "## Evidence: capture mon\n\n```\n   1 from vm1 10.1.1.3 -> 10.1.1.4 ICMP Echo\n```" in report
    assert "**PASSED**" in markdown(run_result([PASSED, PASSED]))


def test_the_junit_report_has_a_case_per_expectation_and_fails_with_them():
    root = ElementTree.fromstring(junit(run_result([FAILED, PASSED])))
    suite = root.find("testsuite")
    assert suite.get("name") == "scenario.good"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = suite.findall("testcase")
    assert [c.get("line") for c in cases] == ["12", "13"]
    assert cases[0].find("failure").get("message") == "3 packets, expected exactly 4"
    assert cases[1].find("failure") is None
    stopped = ElementTree.fromstring(junit(run_result([PASSED, SKIPPED], error="line 9: boom")))
    suite = stopped.find("testsuite")
    assert (suite.get("errors"), suite.get("skipped")) == ("1", "1")
    assert suite.findall("testcase")[-1].find("error").get("message") == "line 9: boom"


def test_mirrorlab_run_refuses_a_bad_file_with_exit_code_2_and_runs_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntopology: minimal\nsteps:\n  - capture: {as: c, vm: vm1}\n"
                   "  - expect: {capture: c, filter: 'icmp and', packets: 1}\n"
                   "  - expect: {capture: c, packets: -1}\n")
    result = subprocess.run([sys.executable, "-m", "mirrorlab.cli", "run", str(bad), "--output",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MIRRORLAB_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        f"{bad}:6: steps[2].expect.packets: '-1' is not a number from 0 to 10000000"]
    assert not (tmp_path / "out").exists()
    bad.write_text(bad.read_text().replace("packets: -1", "packets: 1"))
    result = subprocess.run([sys.executable, "-m", "mirrorlab.cli", "run", str(bad), "--output",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert result.stderr.startswith(f"{bad}:5: filter: 'icmp and' is not a tshark display filter")
    assert not (tmp_path / "out").exists()


# --- network policies and what an analyzer received ----------------------------------------------

POLICIES = """\
    name: policies
    contrail: the issue
    topology: default
    steps:
      - policy:
          name: watch
          rules:
            - {direction: ">", protocol: tcp, src: [blue, 10.9.0.0/16], dst: any, dst_ports: [80, 8000-8080], mirror_to: interface-packet-capture}
            - {src: local, dst: red, protocol: 17, action: deny}
          attach: [blue, {network: red, major: 2, minor: 1}]
      - mark: {as: before, analyzer: interface-packet-capture}
      - policy: {name: watch, order: [2, 1]}
      - policy: {name: watch, detach: [red]}
      - mark: {as: after, analyzer: interface-packet-capture}
      - expect: {analyzer: interface-packet-capture, filter: icmp, packets: 12, since: before, until: after}
      - expect: {analyzer: interface-packet-capture, packets: {min: 1}}
      - show: {analyzer: interface-packet-capture, filter: icmp, since: after}
    """


def test_policy_steps_give_rules_in_contrails_policy_rule_form():
    scenario = parse(POLICIES)
    write, before, reorder, detach, after, between, anything, show = scenario.steps
    assert write == WritePolicy(5, "watch", (
        PolicyRule(">", "tcp", ("blue", "10.9.0.0/16"), ("any",), (), ((80, 80), (8000, 8080)),
                   "pass", "interface-packet-capture"),
        PolicyRule("<>", "17", ("local",), ("red",), (), (), "deny", None)),
        None, (Attachment("blue", (0, 0)), Attachment("red", (2, 1))), ())
    assert write.rules[0].policy_rule(scenario.topology) == {
        "direction": ">", "protocol": "tcp",
        "src_addresses": [{"virtual_network": "default-domain:default:blue"},
                          {"subnet": {"ip_prefix": "10.9.0.0", "ip_prefix_len": 16}}],
        "dst_addresses": [{"virtual_network": "any"}],
        "src_ports": [{"start_port": -1, "end_port": -1}],
        "dst_ports": [{"start_port": 80, "end_port": 80}, {"start_port": 8000, "end_port": 8080}],
        "action_list": {"simple_action": "pass", "mirror_to": {
            "analyzer_name": "default-domain:default:interface-packet-capture"}}}
    assert write.rules[1].policy_rule(scenario.topology)["src_addresses"] == [{"virtual_network": "local"}]
    assert before == Mark(11, "before", "interface-packet-capture")
    assert (reorder.rules, reorder.order, reorder.attach, reorder.detach) == (None, (2, 1), (), ())
    assert (detach.order, detach.detach) == (None, ("red",))
    assert between == ExpectAnalyzer(15, "interface-packet-capture", "icmp", Bound(12, 12),
                                     "before", "after", 5)
    assert (anything.since, anything.until, anything.count) == (None, None, Bound(1, None))
    assert scenario.expectations == (between, anything)
    assert show == ShowReceived(17, "interface-packet-capture", "icmp", "after", None,
                                "what analyzer interface-packet-capture received")
    assert describe(write) == (
        "policy watch: rules pass tcp blue,10.9.0.0/16 > any port 80,8000-8080 mirror to "
        "interface-packet-capture; deny 17 local <> red; attached to blue (sequence 0.0), "
        "red (sequence 2.1)")
    assert describe(between) == ("expect analyzer interface-packet-capture: exactly 12 packets "
                                 "received matching 'icmp' since before until after")


def test_every_problem_of_a_policy_step_is_reported_with_file_and_line():
    assert problems("""\
        name: bad-policies
        topology: default
        steps:
          - policy: {name: later, order: [1]}
          - policy:
              name: watch
              rules:
                - {direction: "<", protocol: gre, src: green, dst: 10.1.1.5/24, action: drop}
                - {src: any, dst: any, dst_ports: 70000, mirror_to: nowhere, colour: red}
                - {src: [], dst: any, src_ports: "9-1"}
                - {dst: any}
              attach: [blue, purple]
          - policy: {name: ok, rules: [{src: blue, dst: red}], attach: [blue]}
          - policy: {name: ok, rules: [], order: [1]}
          - policy: {name: ok, order: [1, one]}
          - policy: {name: ok, detach: [red]}
          - policy: {name: ok}
          - mark: {as: m, analyzer: watcher}
          - analyzer: {name: watcher}
          - mark: {as: m2, analyzer: watcher}
          - expect: {analyzer: interface-packet-capture, packets: 1, since: m2, until: nope}
          - expect: {analyzer: ghost, filter: icmp}
          - show: {analyzer: interface-packet-capture, until: m2, capture: c}
        """) == [
        "s.yaml:4: steps[0].policy: no policy 'later' before this step: its first step gives its 'rules'",
        "s.yaml:8: steps[1].policy.rules[0].direction: '<' is not a direction ('<>' both ways, '>' one way)",
        "s.yaml:8: steps[1].policy.rules[0].protocol: 'gre' is not a protocol (any, icmp, tcp, udp, "
        "icmp6 or a number 0-255)",
        "s.yaml:8: steps[1].policy.rules[0].src: unknown network 'green' (known: any, local, blue, red, "
        "svc-vn-left; or a CIDR)",
        "s.yaml:8: steps[1].policy.rules[0].dst: '10.1.1.5/24' is not a CIDR (10.1.1.5/24 has host bits set)",
        "s.yaml:8: steps[1].policy.rules[0].action: 'drop' is not pass or deny",
        "s.yaml:9: steps[1].policy.rules[1].colour: unknown key 'colour' (allowed: action, direction, "
        "dst, dst_ports, mirror_to, protocol, src, src_ports)",
        "s.yaml:9: steps[1].policy.rules[1].dst_ports: '70000' is not any, a port (0-65535) or a range "
        "such as 8000-8080",
        "s.yaml:9: steps[1].policy.rules[1].mirror_to: no analyzer 'nowhere' before this step (known: "
        "interface-packet-capture; create one with 'analyzer:')",
        "s.yaml:10: steps[1].policy.rules[2].src: give a network, any, local or a CIDR",
        "s.yaml:10: steps[1].policy.rules[2].src_ports: '9-1' is not any, a port (0-65535) or a range "
        "such as 8000-8080",
        "s.yaml:11: steps[1].policy.rules[3]: missing key 'src'",
        "s.yaml:12: steps[1].policy.attach[1]: unknown network 'purple' (known: blue, red, svc-vn-left)",
        "s.yaml:14: steps[3].policy.order: give 'rules' or 'order', not both (order reorders the rules "
        "written before)",
        "s.yaml:15: steps[4].policy.order: must list the rules' positions 1 to 1, each once, in their "
        "new order (e.g. [1])",
        "s.yaml:16: steps[5].policy.detach[0]: policy 'ok' is not attached to 'red' here (attached: blue)",
        "s.yaml:17: steps[6].policy: give 'rules' (write them), 'order' (reorder them), 'attach' or "
        "'detach' (networks)",
        "s.yaml:18: steps[7].mark.analyzer: no analyzer 'watcher' before this step (known: "
        "interface-packet-capture; create one with 'analyzer:')",
        "s.yaml:21: steps[10].expect.until: no mark 'nope' before this step (known: m2)",
        "s.yaml:21: steps[10].expect.since: mark 'm2' counts analyzer 'watcher', not "
        "'interface-packet-capture'",
        "s.yaml:22: steps[11].expect: missing key 'packets'",
        "s.yaml:22: steps[11].expect.analyzer: no analyzer 'ghost' before this step (known: "
        "interface-packet-capture, watcher; create one with 'analyzer:')",
        "s.yaml:23: steps[12].show.capture: unknown key 'capture' (allowed: analyzer, filter, since, "
        "title, until)",
        "s.yaml:23: steps[12].show.until: mark 'm2' counts analyzer 'watcher', not "
        "'interface-packet-capture'",
    ]


def test_a_value_of_the_wrong_shape_is_quoted_as_the_file_wrote_it():
    assert problems("""\
        name: shapes
        topology: default
        steps:
          - policy: {name: w, rules: [{src: {a: 1}, dst: any, action: [pass]}], attach: [[blue]]}
        """) == [
        "s.yaml:4: steps[0].policy.rules[0].src: '{'a': 1}' is not a network, any, local or a CIDR",
        "s.yaml:4: steps[0].policy.rules[0].action: '['pass']' is not valid (a string)",
        "s.yaml:4: steps[0].policy.attach[0]: unknown network '['blue']' (known: blue, red, svc-vn-left)",
    ]
