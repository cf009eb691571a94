"""Fixtures shared by the unit tests: the shipped topologies, loaded once."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.topofile import load
from lab.topology import Topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


@pytest.fixture(scope="session")
def topologies_dir() -> Path:
    """The directory holding the shipped topology files."""
    return TOPOLOGIES


@pytest.fixture(scope="session")
def default_topo() -> Topology:
    """topologies/default.yaml: 3 computes, blue and red, vm1-vm5 (a frozen, shareable value)."""
    return load(TOPOLOGIES / "default.yaml")
