"""Fixtures shared by the unit tests: the shipped topologies, loaded once."""
from __future__ import annotations

from pathlib import Path

import pytest

from fastapi.testclient import TestClient

from mirrorlab.controller import rest
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.control import LabControl
from mirrorlab.topofile import load
from mirrorlab.topology import Topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


@pytest.fixture(scope="session")
def topologies_dir() -> Path:
    """The directory holding the shipped topology files."""
    return TOPOLOGIES


@pytest.fixture(scope="session")
def default_topo() -> Topology:
    """topologies/default.yaml: 3 computes, blue and red, vm1-vm5 (a frozen, shareable value)."""
    return load(TOPOLOGIES / "default.yaml")


@pytest.fixture
def service(tmp_path, default_topo):
    """A controller service on default.yaml whose default analyzer exists (so nothing asks the
    lab for a VM), with no lab process behind it."""
    store = Store(tmp_path / "controller.db")
    store.add_analyzer(plan_analyzer(default_topo, DEFAULT_ANALYZER, None, "compute1"))
    return ControllerService(default_topo, store, LabControl(tmp_path / "no.sock"), tmp_path)


@pytest.fixture
def client(service):
    """The REST API of `service`, as a browser on this machine reaches it."""
    return TestClient(rest.create_app(service, lease_seconds=5), base_url="http://127.0.0.1")
