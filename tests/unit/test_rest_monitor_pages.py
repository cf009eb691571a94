"""The REST parts of the monitor's Analyzers and Captures pages and of the capture screen's
small things (FastAPI's TestClient on a real service and store; no vRouter is connected): who
started a capture, stopping a stopped capture, and API docs that load nothing from elsewhere."""
from __future__ import annotations

import re
import sqlite3

import pytest

from mirrorlab.controller.store import Store
from mirrorlab.controller.wire import analyzer_view

CAPTURE = {"vrouter": "compute1", "interface": "tap-vm1-0"}


@pytest.mark.parametrize("origin", ["screen", "cli", "api"])
def test_a_capture_keeps_who_started_it_across_a_restart(client, service, tmp_path, origin):
    """The origin in the request is in the answer, the list, and the store a restarted
    controller reads."""
    started = client.post("/api/captures", json=CAPTURE | {"origin": origin})
    assert started.status_code == 201, started.text
    assert started.json()["origin"] == origin
    assert [c["origin"] for c in client.get("/api/captures").json()] == [origin]
    restarted = Store(tmp_path / "controller.db").captures()
    assert [c.origin for c in restarted] == [origin]


def test_a_capture_without_origin_was_started_by_the_api(client):
    """Any client that does not say who it is counts as "api"."""
    assert client.post("/api/captures", json=CAPTURE).json()["origin"] == "api"


def test_a_bad_origin_is_refused_naming_the_field(client, service):
    """An origin other than screen, cli or api is a 400 naming the field; nothing starts."""
    refused = client.post("/api/captures", json=CAPTURE | {"origin": "port"})
    assert refused.status_code == 400
    assert refused.json() == {"error": "bad origin 'port' (use screen, cli or api)", "field": "origin"}
    assert service.active_captures() == []


def test_a_store_from_before_origins_reads_as_api(tmp_path):
    """A store written before the origin column gets it, and its captures read as "api"."""
    path = tmp_path / "old.db"
    Store(path)
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE captures DROP COLUMN origin")
    db.execute("INSERT INTO captures (id, compute, interface, direction, analyzer, slot, started_at)"
               " VALUES (1, 'compute1', 'tap-vm1-0', 'both', 'a', 0, 1.0)")
    db.commit()
    db.close()
    assert [c.origin for c in Store(path).captures()] == ["api"]


def test_stopping_a_stopped_capture_says_so(client):
    """The first stop answers already_stopped false, the second true, both 200."""
    capture_id = client.post("/api/captures", json=CAPTURE).json()["id"]
    first = client.delete(f"/api/captures/{capture_id}")
    assert first.status_code == 200 and first.json()["already_stopped"] is False
    assert first.json()["state"] == "stopped"
    second = client.delete(f"/api/captures/{capture_id}")
    assert second.status_code == 200 and second.json()["already_stopped"] is True


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_only_from_the_api_itself(client, path):
    """The documentation pages name no other host, every script and style they load is served
    by the API, and their policy keeps the browser from fetching anything elsewhere (ReDoc's
    bundle names its logo on cdn.redoc.ly; the e2e test watches Chromium's requests)."""
    page = client.get(path)
    assert page.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["img-src"] == "'self' data:"
    assert not re.findall(r"https?://", page.text), page.text
    assets = re.findall(r"""(?:src|href)=["']?(/[^"'\s>]+)""", page.text)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_every_capture_carries_what_its_analyzer_receives(client, service):
    """GET /api/captures and /api/captures/{id} carry `analyzer_view` (controller/wire.py), and the
    pcap download is named as its tshark command reads it."""
    capture_id = client.post("/api/captures", json=CAPTURE).json()["id"]
    expected = analyzer_view(service.capture(capture_id), service.topology)
    assert client.get(f"/api/captures/{capture_id}").json()["analyzer_view"] == expected
    listed = next(c for c in client.get("/api/captures").json() if c["id"] == capture_id)
    assert listed["analyzer_view"] == expected
    download = client.get(f"/api/captures/{capture_id}/pcap").headers["content-disposition"]
    assert f'filename="{expected["pcap_file"]}"' in download
