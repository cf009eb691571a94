"""The mirrorlab pytest plugin (registered as the `pytest11` entry point "mirrorlab"): a real
lab as a fixture.

    import pytest

    @pytest.mark.mirrorlab_topology("minimal")
    def test_vm1_reaches_vm2(mirrorlab_lab):
        assert mirrorlab_lab.exec("vm1", "ping", "-c", "1", "10.1.1.4").returncode == 0

`mirrorlab_lab` is a running `mirrorlab.Lab`, brought up once and shared by the tests that ask
for the same topology (the `mirrorlab_topology` marker, else `--mirrorlab-topology`, else
"default"); a test that asks for another one gets it after the previous lab is taken down, and
the last is taken down when the session ends. Captures a test leaves active are stopped after
it. The lab has a state directory (/run/mlpt-PID) and an API port (a free one) of
its own, like every lab its own network namespace and Open vSwitch, so it runs beside a lab the
user has up. A lab needs root and Open vSwitch: without them the test is skipped, or fails when
$CI is set (a skipped suite would pass for one that never ran).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mirrorlab.client import free_port

REQUIRED_TOOLS = ("ovs-vsctl", "ovs-vswitchd", "ovsdb-server", "ovs-ofctl", "nsenter", "ip")


def missing_requirements() -> list[str]:
    """What this machine lacks to run a lab (root, Open vSwitch and Linux tools)."""
    missing = [] if os.geteuid() == 0 else ["root"]
    return missing + [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def in_ci() -> bool:
    """Whether $CI says this is a CI run, where a test that cannot run must fail, not skip."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


class LabKeeper:
    """One running lab at a time for a test session: the lab of the topology last asked for."""

    def __init__(self, state_dir: Path, api_port: int, config_api_port: int,
                 lab_class: type | None = None):
        self.state_dir, self.api_port, self.lab_class = state_dir, api_port, lab_class
        self.config_api_port = config_api_port
        self.lab = None
        self.topology: str | None = None

    def lab_for(self, topology: str):
        """The running lab (a `mirrorlab.Lab`, or of `lab_class`) of `topology`, brought up
        instead of the previous one if need be."""
        if self.lab is not None and self.topology == topology and self.lab.running:
            return self.lab
        self.close()
        # Imported here: pytest loads this plugin in every session of the environment, and
        # most never ask for a lab.
        from mirrorlab.driver import Lab
        lab = (self.lab_class or Lab)(topology, state_dir=self.state_dir, api_port=self.api_port,
                                      config_api_port=self.config_api_port)
        lab.down()  # what an interrupted session left in this state directory
        self.lab, self.topology = lab.up(), topology
        return lab

    def close(self) -> None:
        """Take the running lab down, if any."""
        if self.lab is not None:
            lab, self.lab = self.lab, None
            lab.down()


def pytest_addoption(parser):
    group = parser.getgroup("mirrorlab", "the mirrorlab_lab fixture")
    group.addoption("--mirrorlab-topology", default="default",
                    help="topology of mirrorlab_lab when a test has no mirrorlab_topology marker: "
                         "a shipped topology's name or a file (default: default)")
    group.addoption("--mirrorlab-state-dir", default=None,
                    help="state directory of mirrorlab_lab (default: /run/mlpt-PID)")
    group.addoption("--mirrorlab-api-port", type=int, default=0,
                    help="API port of mirrorlab_lab (default: a free port)")
    group.addoption("--mirrorlab-config-api-port", type=int, default=0,
                    help="port of mirrorlab_lab's Contrail configuration API (default: a free port)")


def pytest_configure(config):
    config.addinivalue_line("markers", "mirrorlab_topology(topology): the topology of the "
                                       "mirrorlab_lab fixture for this test (a name or a file)")


@pytest.fixture(scope="session")
def mirrorlab_keeper(request):
    """The session's `LabKeeper`: its lab is taken down when the session ends."""
    options = request.config.option
    keeper = LabKeeper(Path(options.mirrorlab_state_dir or f"/run/mlpt-{os.getpid()}"),
                       options.mirrorlab_api_port or free_port(),
                       options.mirrorlab_config_api_port or free_port())
    yield keeper
    keeper.close()
    if not options.mirrorlab_state_dir and keeper.state_dir.exists() and not any(keeper.state_dir.iterdir()):
        keeper.state_dir.rmdir()


@pytest.fixture
def mirrorlab_lab(request, mirrorlab_keeper):
    """A running `mirrorlab.Lab` of the test's topology (see the module's docstring)."""
    missing = missing_requirements()
    if missing:
        reason = f"mirrorlab_lab needs {', '.join(missing)}"
        if in_ci():
            pytest.fail(f"{reason} (not skipped: CI is set)", pytrace=False)
        pytest.skip(reason)
    marker = request.node.get_closest_marker("mirrorlab_topology")
    topology = str(marker.args[0]) if marker else request.config.option.mirrorlab_topology
    lab = mirrorlab_keeper.lab_for(topology)
    yield lab
    if lab.controller.running:
        for capture in lab.captures(state="active"):
            capture.stop()
