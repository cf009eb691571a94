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


def test_a_failing_expectation_fails_the_run(tmp_path):
    """`mirrorlab run` of a scenario with one false expectation: exit code 1, the progress names
    the expectation and what was seen, the JUnit report has exactly that failure, and the lab
    is taken down all the same."""
    path = tmp_path / "failing.yaml"
    path.write_text(FAILING)
    result = subprocess.run([sys.executable, "-m", "mirrorlab.cli", "run", str(path), "--output",
                             str(tmp_path / "out"), "--state-dir", str(SCENARIO_STATE_DIR)],
                            capture_output=True, text=True, timeout=600, env=os.environ.copy())
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
