"""End-to-end fixtures: one real lab (Open vSwitch, Mininet, os-ken) for the whole session,
driven by `mirrorlab.Lab`.

The lab runs from its own state directory and API port, and like every lab in its own network
namespace with its own Open vSwitch, so it never touches a lab a user started, even one with the
same names. Set MIRRORLAB_E2E_TOPOLOGY, MIRRORLAB_E2E_STATE_DIR, MIRRORLAB_E2E_API_PORT and
MIRRORLAB_E2E_CONFIG_API_PORT to run it elsewhere.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from mirrorlab import ExecResult, Lab
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER
from mirrorlab.testing.pytest_plugin import LabKeeper, in_ci
from mirrorlab.testing.pytest_plugin import missing_requirements as lab_requirements_missing
from mirrorlab.topology import Interface

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = Path(os.environ.get("MIRRORLAB_E2E_TOPOLOGY", REPO / "topologies" / "default.yaml"))
STATE_DIR = Path(os.environ.get("MIRRORLAB_E2E_STATE_DIR", "/run/mirrorlab-e2e"))
API_PORT = int(os.environ.get("MIRRORLAB_E2E_API_PORT", "8090"))
# Contrail's configuration API of the lab: the port after API_PORT unless set, never 8082, which
# a user's lab serves.
CONFIG_API_PORT = int(os.environ.get("MIRRORLAB_E2E_CONFIG_API_PORT", API_PORT + 1))
ARTIFACTS = REPO / "artifacts"


# Tools every end-to-end test drives besides the lab's own; a test module naming a CHROMIUM
# executable needs it too.
REQUIRED_TOOLS = ("tshark",)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def missing_requirements(item) -> list[str]:
    """What this machine lacks to run the end-to-end test `item`."""
    missing = lab_requirements_missing()
    missing += [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    chromium = getattr(item.module, "CHROMIUM", None)
    if chromium is not None and not os.access(chromium, os.X_OK):
        missing.append(chromium)
    return missing


def must_not_skip(config) -> bool:
    """Whether a test that cannot run here fails the run: under CI, or with --require-e2e.
    A skipped end-to-end suite would otherwise pass for one that never ran."""
    return config.getoption("--require-e2e") or in_ci()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    missing = missing_requirements(item)
    if missing:
        reason = f"end-to-end tests need {', '.join(missing)}"
        if must_not_skip(item.config):
            pytest.fail(f"{reason} (not skipped: CI is set or --require-e2e was given)", pytrace=False)
        pytest.skip(reason)


class E2ELab(Lab):
    """The session's `mirrorlab.Lab`, with what tests of the CLI and of raw HTTP need: `cli`
    runs `mirrorlab` against it, `http` returns httpx responses (any status, any body), and
    `shell`/`shell_popen` run shell lines in a VM (`shell(vm, "ping -c 1 x")`)."""

    def __init__(self, topology=TOPOLOGY, **settings):
        super().__init__(topology, **settings)
        self.env = {**os.environ, "MIRRORLAB_STATE_DIR": str(self.state_dir)}
        self.http_client = httpx.Client(base_url=self.api_url, timeout=120)

    def cli(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run `mirrorlab ARGS` against this lab."""
        result = subprocess.run([sys.executable, "-m", "mirrorlab.cli", *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"mirrorlab {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def shell(self, vm: str, command: str, check: bool = True, timeout: float = 120) -> ExecResult:
        """Run the shell line `command` inside a VM (`Lab.exec` with sh -c)."""
        return self.exec(vm, "sh", "-c", command, check=check, timeout=timeout)

    def shell_popen(self, vm: str, command: str) -> subprocess.Popen:
        """Start the shell line `command` inside a VM without waiting; text pipes for its output."""
        return self.popen(vm, "sh", "-c", command, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

    def http(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A request to the controller's REST API, its response whatever the status."""
        return self.http_client.request(method, path, **kwargs)

    def interface(self, vm: str):
        """The first interface of `vm`."""
        return self.topology.vm(vm).interfaces[0]

    def wait_for(self, condition, timeout: float = 20.0, interval: float = 0.2, what: str = "condition"):
        """Poll `condition()` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def stop_all_captures(self) -> None:
        """Stop every active capture (between tests)."""
        for capture in self.captures(state="active"):
            capture.stop()


@pytest.fixture(scope="session")
def lab():
    """The session's lab: brought up once, torn down at the end."""
    ARTIFACTS.mkdir(exist_ok=True)
    keeper = LabKeeper(STATE_DIR, API_PORT, CONFIG_API_PORT, lab_class=E2ELab)
    running = keeper.lab_for(str(TOPOLOGY))
    yield running
    keep_logs(ARTIFACTS / "lab-logs")
    keeper.close()


def keep_logs(destination: Path) -> None:
    """Copy the lab's process logs (controller, lab, recorders) out of the state directory, which
    `down` empties, so a failed run can be read afterwards."""
    destination.mkdir(parents=True, exist_ok=True)
    for log in STATE_DIR.glob("*.log"):
        shutil.copyfile(log, destination / log.name)


@pytest.fixture
def clean_lab(lab):
    """The lab with no capture active before and after the test."""
    lab.stop_all_captures()
    yield lab
    lab.stop_all_captures()


FAR_ANALYZER = "far-analyzer"


@pytest.fixture(scope="module")
def only_the_default_analyzer(lab):
    """No analyzer instance but the default one when a module starts: the capture screen picks
    its analyzer by a rule, and other modules' instances would change its pick."""
    lab.stop_all_captures()
    for analyzer in lab.http("GET", "/api/analyzers").json():
        if analyzer["name"] != DEFAULT_ANALYZER:
            response = lab.http("DELETE", f"/api/analyzers/{analyzer['name']}")
            assert response.status_code == 200, response.text


@pytest.fixture
def far_analyzer(clean_lab, target):
    """An analyzer instance (FAR_ANALYZER) on another compute node than the target's; removed
    after the test."""
    response = clean_lab.http("POST", "/api/analyzers", json={"name": FAR_ANALYZER, "compute": target.other_compute})
    assert response.status_code == 201, response.text
    yield response.json()
    clean_lab.stop_all_captures()
    clean_lab.http("DELETE", f"/api/analyzers/{FAR_ANALYZER}")


# --- the browser (one Playwright per session, shared by every module) -----------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}


@dataclass(frozen=True)
class Target:
    """The interface the tests capture on, and a peer in its network to ping."""

    compute: str
    interface: Interface
    peer: Interface
    other_compute: str  # where a chosen analyzer goes: another compute node when there is one

    @property
    def vm(self) -> str:
        """The VM whose interface is captured."""
        return self.interface.vm

    @property
    def port(self) -> str:
        """The interface's vRouter port name (tap-VM-0)."""
        return self.interface.port_name


@pytest.fixture(scope="session")
def target(lab) -> Target:
    """The first compute node with a guest VM, its first guest VM, and a peer in its network."""
    topology = lab.topology
    for compute in topology.computes:
        for vm in (v for v in topology.vms if v.compute == compute.name and not v.analyzer):
            interface = vm.interfaces[0]
            peers = [i for i in topology.interfaces() if i.network == interface.network and i.vm != vm.name]
            if peers:
                others = [c.name for c in topology.computes if c.name != compute.name]
                return Target(compute.name, interface, peers[0], (others or [compute.name])[0])
    pytest.skip("the topology has no guest VM with a peer in its network")


@pytest.fixture(scope="session")
def playwright():
    """Playwright's synchronous API, for the whole session."""
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright):
    """Headless Chromium (Debian's), driven by Playwright."""
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser, clean_lab):
    """A fresh browser tab on a lab without active captures; fails the test on a script error."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    tab = context.new_page()
    script_errors = []
    tab.on("pageerror", lambda error: script_errors.append(str(error)))
    yield tab
    context.close()
    assert not script_errors, script_errors
