"""End-to-end: every scenario of the collection (`scenarios/`) runs through the runner on a lab
of its own and passes; a scenario whose expectation does not hold fails `mirrorlab run` with
exit code 1 and says which expectation, in its reports too.

The scenario labs use a state directory of their own beside the session's lab
(MIRRORLAB_E2E_STATE_DIR with "-s" appended) and a free API port, so they run while it runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from xml.etree import ElementTree

import pytest

from mirrorlab import runner, scenario as scenarios
from tests.e2e.conftest import ARTIFACTS, REPO, STATE_DIR

SCENARIO_STATE_DIR = STATE_DIR.with_name(STATE_DIR.name + "-s")
COLLECTION = sorted((REPO / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", COLLECTION, ids=[p.stem for p in COLLECTION])
def test_the_scenario_passes(path):
    """The scenario's expectations all hold; its reports say so and its pcaps are kept."""
    loaded = scenarios.load(path)
    output = ARTIFACTS / "scenarios" / loaded.name
    lines: list[str] = []
    result = runner.run(loaded, output, state_dir=SCENARIO_STATE_DIR, progress=lines.append)
    failed = [f"line {o.step.line}: {o.status}: {o.detail}" for o in result.outcomes if o.status != "passed"]
    assert result.passed, "\n".join([result.error or "", *failed, "", *lines])
    assert len(result.outcomes) == len(loaded.steps)
    suite = ElementTree.parse(output / "junit.xml").getroot().find("testsuite")
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")
    assert int(suite.get("tests")) == len(loaded.expectations)
    assert "**PASSED**" in (output / "report.md").read_text()
    captures = {step.name for step in loaded.steps if isinstance(step, scenarios.StartCapture)}
    assert {p.stem for p in (output / "pcaps").glob("*.pcapng")} == captures
    assert any(line.startswith("[") and " line " in line for line in lines)  # progress, step by step
    assert not SCENARIO_STATE_DIR.joinpath("lab.json").exists(), "the scenario's lab was not taken down"


FAILING = """\
name: failing
title: An expectation that cannot hold
topology: minimal
steps:
  - capture: {as: mon, vm: vm1, direction: ingress}
  - ping: {as: pings, from: vm1, to: vm2, count: 2}
  - expect: {traffic: pings, loss: 0}
  - expect: {capture: mon, filter: "icmp.type == 8", packets: 2}
  # Ingress mirrors only what vm1 sends: no reply can be there.
  - expect: {capture: mon, filter: "icmp.type == 0", packets: 2, within: 1}
"""


def mirrorlab_run(paths: list, output) -> subprocess.CompletedProcess:
    """`mirrorlab run` of the scenario files `paths`, with its output in `output`, in the
    scenarios' state directory."""
    return subprocess.run([sys.executable, "-m", "mirrorlab.cli", "run", *map(str, paths), "--output",
                           str(output), "--state-dir", str(SCENARIO_STATE_DIR)],
                          capture_output=True, text=True, timeout=900, env=os.environ.copy())


def run_scenario_text(tmp_path, name: str, text: str) -> subprocess.CompletedProcess:
    """`mirrorlab run` of the scenario `text`, written to tmp_path/NAME.yaml, with its output in
    tmp_path/out."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return mirrorlab_run([path], tmp_path / "out")


def test_a_failing_expectation_fails_the_run(tmp_path):
    """`mirrorlab run` of a scenario with one false expectation: exit code 1, the progress names
    the expectation and what was seen, the JUnit report has exactly that failure, and the lab
    is taken down all the same."""
    result = run_scenario_text(tmp_path, "failing", FAILING)
    assert result.returncode == 1, result
    assert "line 10: expect capture mon: exactly 2 packets matching 'icmp.type == 0'\n" \
           "         FAILED: 0 packets, expected exactly 2" in result.stdout, result.stdout
    assert "scenario failing: FAILED (2 of 3 expectations held)" in result.stdout
    suite = ElementTree.parse(tmp_path / "out" / "failing" / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")
    failure = [case for case in suite.findall("testcase") if case.find("failure") is not None]
    assert [case.get("line") for case in failure] == ["10"]
    assert "**FAILED**" in (tmp_path / "out" / "failing" / "report.md").read_text()
    assert (tmp_path / "out" / "failing" / "pcaps" / "mon.pcapng").stat().st_size > 0
    assert not SCENARIO_STATE_DIR.joinpath("lab.json").exists()


POLICY_SCENARIOS = {"policy-double-copies": "13 of 13", "policy-rule-order": "9 of 9"}


def policy_copies(pcap, display_filter: str) -> int:
    """How many frames of the analyzer's raw capture `pcap` tshark, decoding the Juniper
    header, finds under `display_filter`."""
    decoded = subprocess.run(["tshark", "-n", "-r", str(pcap), "-d", "udp.port==8099,juniper",
                              "-Y", display_filter], capture_output=True, text=True, timeout=60)
    assert decoded.returncode == 0, decoded.stderr
    return len(decoded.stdout.splitlines())


def test_the_policy_scenarios_pass_through_mirrorlab_run(tmp_path):
    """`mirrorlab run` of both policy scenarios: each writes its policy through the lab's
    configuration API and every count of what the analyzer received holds (exit code 0); the
    analyzer's raw capture is kept, and tshark reads in it the policy copies the scenarios
    counted: 12 across compute nodes and 6 on one node; 12 once the mirror rule comes first."""
    result = mirrorlab_run([REPO / "scenarios" / f"{name}.yaml" for name in POLICY_SCENARIOS], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, held in POLICY_SCENARIOS.items():
        assert f"scenario {name}: PASSED ({held} expectations held)" in result.stdout
        assert "**PASSED**" in (tmp_path / name / "report.md").read_text()
    policy_copy = "icmp && udp.srcport >= 65472"
    received = "pcaps/analyzer-interface-packet-capture.pcap"
    assert policy_copies(tmp_path / "policy-double-copies" / received, policy_copy) == 18
    assert policy_copies(tmp_path / "policy-rule-order" / received, policy_copy) == 12
    assert not SCENARIO_STATE_DIR.joinpath("lab.json").exists()


SINGLE_COPIES = """\
name: single-copies
title: Expecting one copy of each packet across compute nodes
topology: default
steps:
  - policy:
      name: watch
      rules: [{src: blue, dst: red, mirror_to: interface-packet-capture}]
      attach: [blue, red]
  - mark: {as: start, analyzer: interface-packet-capture}
  - ping: {as: across, from: vm1, to: vm4, count: 2}
  - expect: {traffic: across, loss: 0}
  # Both vRouters mirror: the analyzer receives 8, not 4.
  - expect: {analyzer: interface-packet-capture, filter: icmp, packets: 4, since: start, within: 1}
"""


def test_an_analyzer_count_that_does_not_hold_fails_the_run(tmp_path):
    """A policy scenario expecting one copy per packet across compute nodes fails with exit
    code 1, naming the expectation and the 8 copies the analyzer received."""
    result = run_scenario_text(tmp_path, "single-copies", SINGLE_COPIES)
    assert result.returncode == 1, result
    assert "line 13: expect analyzer interface-packet-capture: exactly 4 packets received matching " \
           "'icmp' since start\n         FAILED: 8 packets, expected exactly 4" in result.stdout, result.stdout
    assert "scenario single-copies: FAILED (1 of 2 expectations held)" in result.stdout
    assert not SCENARIO_STATE_DIR.joinpath("lab.json").exists()
