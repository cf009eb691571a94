"""The REST API through FastAPI's TestClient: each kind of error maps to its HTTP status with a
JSON body naming the problem and the field, and a good request works."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from mirrorlab.controller.rest import create_app
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.control import LabControlError
from tests.unit.test_service import Clock, FakeLab


class RefusingLab(FakeLab):
    """A lab process that cannot start VMs."""

    def add_vm(self, vm) -> None:
        """Refuse, as an unreachable lab process does."""
        raise LabControlError("the lab process does not answer")


@pytest.fixture
def client(tmp_path, default_topo):
    """A client of the API of a controller with the default analyzer on compute1, whose lab
    process refuses to start further VMs."""
    store = Store(tmp_path / "controller.db")
    store.add_analyzer(plan_analyzer(default_topo, DEFAULT_ANALYZER, None, "compute1"))
    service = ControllerService(default_topo, store, RefusingLab(), tmp_path, clock=Clock())
    with TestClient(create_app(service, lease_seconds=5), base_url="http://127.0.0.1:8080") as client:
        yield client


def test_a_good_capture_request_is_created(client):
    """POST /api/captures starts a capture (201) and GET returns it."""
    response = client.post("/api/captures", json={"vrouter": "compute1", "interface": "tap-vm1-0",
                                                  "direction": "ingress"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert {k: body[k] for k in ("id", "vrouter", "interface", "vm", "direction", "analyzer",
                                 "state", "label")} == {
        "id": 1, "vrouter": "compute1", "interface": "tap-vm1-0", "vm": "vm1",
        "direction": "ingress", "analyzer": DEFAULT_ANALYZER, "state": "active", "label": 0x80001}
    assert client.get("/api/captures/1").json()["state"] == "active"


@pytest.mark.parametrize("method, path, body, status, error, field", [
    ("GET", "/api/vrouters/compute9", None, 404,
     "unknown vrouter 'compute9' (known: compute1, compute2, compute3)", "vrouter"),
    ("GET", "/api/captures/999", None, 404, "unknown capture 999", "id"),
    ("POST", "/api/captures", {"vrouter": "compute1", "interface": "tap-vm9-0"}, 404,
     "unknown interface 'tap-vm9-0' on vrouter 'compute1' (known: tap-vm1-0, tap-vm3-0, tap-an1-0)",
     "interface"),
    ("POST", "/api/captures", {"vrouter": "compute1", "interface": "tap-vm1-0", "analyzer": "nope"},
     404, f"unknown analyzer 'nope' (known: {DEFAULT_ANALYZER})", "analyzer"),
    ("POST", "/api/captures", {"vrouter": "compute1", "interface": "tap-vm1-0", "direction": "sideways"},
     400, "bad direction 'sideways' (use ingress, egress or both)", "direction"),
    ("POST", "/api/captures", {"vm": "vm1", "interface": "tap-vm1-0"}, 400,
     "give either 'interface' or 'vm', not both", "vm"),
    ("POST", "/api/captures", {"vrouter": "compute1"}, 400, "missing 'interface' (or 'vm')", "interface"),
    ("GET", "/api/captures?state=paused", None, 400, "bad state 'paused' (use active, stopped or failed)", "state"),
    ("POST", "/api/analyzers", {"name": DEFAULT_ANALYZER}, 409,
     f"analyzer '{DEFAULT_ANALYZER}' exists already", "name"),
    ("POST", "/api/analyzers", {"name": "second"}, 503,
     "cannot start analyzer 'second': the lab process does not answer", None),
    ("DELETE", "/api/analyzers/nope", None, 404, "unknown analyzer 'nope'", "name"),
])
def test_controller_errors_map_to_their_status(client, method, path, body, status, error, field):
    """Unknown things are 404, bad input 400, conflicts 409, an unreachable lab 503; the body
    names the problem and, where there is one, the field."""
    response = client.request(method, path, json=body)
    expected = {"error": error} if field is None else {"error": error, "field": field}
    assert (response.status_code, response.json()) == (status, expected)


def test_malformed_requests_are_400_naming_the_field(client):
    """A body or path the schema refuses is a 400 naming where, not FastAPI's 422."""
    unknown_key = client.post("/api/captures", json={"vrouter": "compute1", "interface": "tap-vm1-0",
                                                     "colour": "blue"})
    assert (unknown_key.status_code, unknown_key.json()["field"]) == (400, "colour")
    bad_id = client.get("/api/captures/first")
    assert (bad_id.status_code, bad_id.json()["field"]) == (400, "path.capture_id")
    assert "error" in bad_id.json()


def test_a_limit_is_a_conflict(client):
    """The ninth capture of one interface is refused with 409; nothing else changes."""
    for _ in range(8):
        assert client.post("/api/captures", json={"vm": "vm1"}).status_code == 201
    response = client.post("/api/captures", json={"vm": "vm1"})
    assert (response.status_code, response.json()) == (409, {
        "error": "interface 'tap-vm1-0' has 8 active captures already, the most one interface "
                 "holds; stop one first"})
    assert len(client.get("/api/captures", params={"state": "active"}).json()) == 8
