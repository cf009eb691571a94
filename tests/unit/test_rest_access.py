"""Who may use the REST API, and what a refused request gets back: the lab's own host names
only, state changes from the API's own origin only, the bearer token, a capture's secret for
its beacon stop and lease, a size limit on request bodies, and error messages that echo input
only cut short. The API application runs in process (httpx over ASGI), without a lab."""
from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from mirrorlab.controller.rest import (
    MAX_ERROR_CHARS, MAX_REQUEST_BYTES, TOKEN_COOKIE, ApiAccess, create_app, host_name, is_loopback,
)
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.control import LabControl
from mirrorlab.topofile import load

TOKEN = "s3cret-token"
CAPTURE = {"vrouter": "compute1", "interface": "tap-vm1-0", "lease_seconds": 60}


def make_service(directory: Path) -> ControllerService:
    """A controller on the default topology with the default analyzer in its store (so no
    capture asks the absent lab process for a VM)."""
    topology = load("topologies/default.yaml")
    store = Store(directory / "controller.db")
    if not store.analyzers():
        store.add_analyzer(plan_analyzer(topology, DEFAULT_ANALYZER, None, "compute1"))
    return ControllerService(topology, store, LabControl(directory / "no.sock"), directory)


def request(app, method: str, url: str, host: str = "127.0.0.1:8080", **kwargs) -> httpx.Response:
    """One request to `app` through its ASGI interface, with the Host header `host`."""
    async def send():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
            return await client.request(method, url, **kwargs)
    return asyncio.run(send())


@pytest.fixture
def service(tmp_path):
    """A controller service without a lab."""
    return make_service(tmp_path)


@pytest.fixture
def app(service):
    """The API with the default access: loopback names, no token."""
    return create_app(service, 5.0)


@pytest.mark.parametrize("value, name", [
    ("127.0.0.1:8080", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:8080", "::1"),
    ("::1", "::1"), ("lab.example.:80", "lab.example"), ("[fd00::1]", "fd00::1"),
])
def test_host_name_drops_port_brackets_and_case(value, name):
    """Host headers and --allowed-host values compare by host name alone."""
    assert host_name(value) == name


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("lab.example", False),
])
def test_is_loopback(host, loopback):
    """Only loopback addresses and localhost count as loopback (a wildcard does not)."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "localhost"])
def test_loopback_hosts_are_served(app, host):
    """The lab's own loopback names are served, at any port."""
    assert request(app, "GET", "/api/vrouters", host=host).status_code == 200


@pytest.mark.parametrize("method, url", [("GET", "/api/captures"), ("POST", "/api/captures"),
                                         ("GET", "/"), ("DELETE", "/api/captures/1")])
def test_a_foreign_host_name_gets_nothing(app, service, method, url):
    """A page that DNS rebinding points at 127.0.0.1 sends its own name as Host: refused
    (403, JSON) before anything runs, reads or changes."""
    service.start_capture("compute1", "tap-vm1-0")
    response = request(app, method, url, host="attacker.example:8080", json=CAPTURE)
    assert response.status_code == 403
    assert response.json() == {"error": "host 'attacker.example:8080' is not one of this lab's "
                                        "(allowed: 127.0.0.1, ::1, localhost; see --allowed-host)",
                               "field": "Host"}
    assert [c.id for c in service.active_captures()] == [1]


def test_allowed_hosts_are_configurable(service):
    """--allowed-host adds names and addresses; the loopback names stay."""
    app = create_app(service, 5.0, ApiAccess.of(["Lab.Example:9000", "10.0.0.5"]))
    for host in ("lab.example:8080", "10.0.0.5:8080", "127.0.0.1:8080"):
        assert request(app, "GET", "/api/vrouters", host=host).status_code == 200
    assert request(app, "GET", "/api/vrouters", host="other.example").status_code == 403


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.2:8000"}, {"Origin": "http://127.0.0.1:9999"},
    {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"},
])
def test_state_changes_from_a_foreign_origin_are_refused(app, service, headers):
    """A page of another origin (another port of the same host counts) can neither start nor
    stop captures, not even with a form or a beacon's text/plain."""
    capture = service.start_capture("compute1", "tap-vm1-0", lease_seconds=60)
    assert request(app, "POST", "/api/captures", json=CAPTURE, headers=headers).status_code == 403
    stop = request(app, "POST", f"/api/captures/{capture.id}/stop", params={"secret": capture.secret},
                   content=b"", headers={**headers, "Content-Type": "text/plain"})
    assert stop.status_code == 403 and stop.json()["field"] == "Origin"
    assert request(app, "DELETE", f"/api/captures/{capture.id}", headers=headers).status_code == 403
    assert [c.id for c in service.active_captures()] == [capture.id]


def test_the_api_own_origin_and_clients_without_origin_may_change_state(app):
    """The UI's own page (same origin) and curl or the CLI (no Origin) start captures."""
    own = {"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}
    assert request(app, "POST", "/api/captures", json=CAPTURE, headers=own).status_code == 201
    assert request(app, "POST", "/api/captures", json=CAPTURE).status_code == 201


def test_the_capture_secret_comes_with_the_start_only(app):
    """The response that starts a capture carries its secret; nothing else shows it."""
    started = request(app, "POST", "/api/captures", json=CAPTURE).json()
    assert len(started["secret"]) >= 32
    assert "secret" not in request(app, "GET", f"/api/captures/{started['id']}").json()
    assert all("secret" not in c for c in request(app, "GET", "/api/captures").json())


def test_beacon_stop_and_lease_renewal_need_the_capture_secret(app, service):
    """Without its secret (or with another capture's) a capture can be neither stopped by POST
    nor kept alive; with it, both work. DELETE (no browser can send it cross-origin) does not
    need it."""
    first = request(app, "POST", "/api/captures", json=CAPTURE).json()
    second = request(app, "POST", "/api/captures", json=CAPTURE).json()
    for secret in (None, "guess", second["secret"]):
        params = {} if secret is None else {"secret": secret}
        stop = request(app, "POST", f"/api/captures/{first['id']}/stop", params=params)
        lease = request(app, "POST", f"/api/captures/{first['id']}/lease", params=params)
        assert (stop.status_code, lease.status_code) == ((400, 400) if secret is None else (403, 403))
        assert stop.json()["field"] == lease.json()["field"] == ("query.secret" if secret is None
                                                                 else "secret")
    assert service.capture(first["id"]).active
    renewed = request(app, "POST", f"/api/captures/{first['id']}/lease", params={"secret": first["secret"]})
    assert renewed.status_code == 200
    stopped = request(app, "POST", f"/api/captures/{first['id']}/stop", params={"secret": first["secret"]})
    assert stopped.json()["state"] == "stopped"
    assert request(app, "DELETE", f"/api/captures/{second['id']}").json()["state"] == "stopped"


def test_the_capture_secret_survives_a_controller_restart(tmp_path):
    """The secret is stored with the capture: after a restart the page's beacon still works."""
    started = request(create_app(make_service(tmp_path), 5.0), "POST", "/api/captures", json=CAPTURE).json()
    restarted = create_app(make_service(tmp_path), 5.0)
    stop = request(restarted, "POST", f"/api/captures/{started['id']}/stop",
                   params={"secret": started["secret"]})
    assert stop.status_code == 200 and stop.json()["state"] == "stopped"


def test_with_a_token_every_api_request_needs_it(service):
    """With a bearer token, /api requests without it (or with a wrong one) are 401; the header
    or the cookie of the one-time /?token= login let them through."""
    app = create_app(service, 5.0, ApiAccess.of(token=TOKEN))
    refused = request(app, "GET", "/api/captures")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.json()["field"] == "Authorization"
    assert request(app, "GET", "/api/captures", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert request(app, "POST", "/api/captures", json=CAPTURE).status_code == 401
    assert service.active_captures() == []
    assert request(app, "GET", "/api/captures", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert request(app, "GET", "/?token=nope").status_code == 401
    login = request(app, "GET", f"/?token={TOKEN}")
    assert login.status_code == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}={TOKEN};") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    with_cookie = request(app, "GET", "/api/captures", headers={"Cookie": f"{TOKEN_COOKIE}={TOKEN}"})
    assert with_cookie.status_code == 200
    assert request(app, "GET", "/").status_code == 200  # the page itself holds no lab data


def test_bodies_larger_than_the_limit_are_refused_unread(app, service):
    """A body over MAX_REQUEST_BYTES is 413 whether Content-Length announces it or it arrives
    in chunks without one; nothing starts."""
    huge = b'{"vrouter": "' + b"x" * MAX_REQUEST_BYTES + b'"}'
    announced = request(app, "POST", "/api/captures", content=huge,
                        headers={"Content-Type": "application/json"})
    assert announced.status_code == 413 and "larger than" in announced.json()["error"]

    def chunks():
        for start in range(0, len(huge), 4096):
            yield huge[start:start + 4096]

    async def streamed():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
            async def body():
                for chunk in chunks():
                    yield chunk
            return await client.post("/api/captures", content=body(),
                                      headers={"Content-Type": "application/json"})
    response = asyncio.run(streamed())
    assert response.status_code == 413 and "larger than" in response.json()["error"]
    assert service.active_captures() == []
    assert request(app, "POST", "/api/captures", json=CAPTURE).status_code == 201


@pytest.mark.parametrize("method, url, body", [
    ("POST", "/api/analyzers", {"name": "ü" * 1_000_000}),
    ("POST", "/api/captures", {"vrouter": "x" * 30_000, "interface": "tap-vm1-0"}),
    ("DELETE", "/api/analyzers/" + "y" * 7000, None),
    ("POST", "/api/captures", {"vm": "vm1", "z" * 30_000: 1}),
])
def test_errors_echo_input_cut_short(app, method, url, body, monkeypatch):
    """An error names what was asked for, but a huge value comes back cut short, with its
    start and end."""
    monkeypatch.setattr("mirrorlab.controller.rest.MAX_REQUEST_BYTES", 10 * 1024 * 1024)
    response = request(app, method, url, json=body)
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert len(error) <= MAX_ERROR_CHARS + 40 and "characters cut)..." in error
    assert len(response.content) < 2 * MAX_ERROR_CHARS + 200


def test_unknown_query_parameters_and_wrong_methods_are_json_errors(app):
    """A misspelt query parameter is named, not ignored; a wrong method is 405 naming every
    method the path takes."""
    misspelt = request(app, "GET", "/api/captures", params={"sate": "active"})
    assert misspelt.status_code == 400
    assert misspelt.json() == {"error": "unknown query parameter 'sate' (this route takes: state)",
                               "field": "query.sate"}
    wrong = request(app, "PUT", "/api/captures")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, POST"
    assert wrong.json() == {"error": "Method Not Allowed"}
    assert request(app, "GET", "/api/nothing").json() == {"error": "Not Found"}


def test_openapi_documents_the_real_statuses(app):
    """Every operation documents its errors with the one error schema, and none the 422
    FastAPI assumes."""
    document = request(app, "GET", "/openapi.json").json()
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len(operations) == 20
    for operation in operations:
        statuses = set(operation["responses"])
        assert "422" not in statuses and {"400", "401", "403", "413"} <= statuses
        for status in statuses - {"200", "201"}:
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert {"503", "409", "404"} <= set(document["paths"]["/api/captures"]["post"]["responses"])
    assert "HTTPValidationError" not in document["components"]["schemas"]
