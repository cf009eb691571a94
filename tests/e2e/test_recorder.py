"""End-to-end: the analyzers' recorders under supervision, and capture size limits, on the real
lab, through the REST API and the CLI.

A recorder killed with kill -9 is restarted and its capture keeps recording into the same
file; a recorder that keeps dying fails its captures, with the reason; a capture that reaches
its limit stops, with the reason, and its flows go.
"""
from __future__ import annotations

import os
import re
import signal

import pytest
from playwright.sync_api import expect
from scapy.all import rdpcap

from mirrorlab import InstalledFlow
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER
from mirrorlab.supervisor import MAX_RESTARTS
from tests.e2e.conftest import STATE_DIR
from tests.e2e.test_capture import frames, pings, settle, start

FRAGILE_ANALYZER = "fragile-analyzer"


def analyzer(lab, name: str) -> dict:
    """The analyzer `name` as the API shows it."""
    return next(a for a in lab.http("GET", "/api/analyzers").json() if a["name"] == name)


def recorder_starts(lab, name: str) -> int:
    """How many times analyzer `name`'s recorder has said, in its log, that it records."""
    log = STATE_DIR / f"recorder-{analyzer(lab, name)['vm']}.log"
    return log.read_text().count("recording copies on")


def restarted_recorder(lab, name: str, old_pid: int, starts: int) -> dict:
    """Wait until analyzer `name`'s recorder runs again, as a new process, and has said it
    records (more than `starts` times: it binds its socket after it starts); return its health."""
    def running():
        health = analyzer(lab, name)["recorder"]
        return health if health["state"] == "running" and health["pid"] != old_pid else None

    health = lab.wait_for(running, what=f"the recorder of {name} to be restarted")
    lab.wait_for(lambda: recorder_starts(lab, name) > starts, what="the restarted recorder to listen")
    return health


def capture_flows_of(lab, compute: str, capture_id: int) -> list[InstalledFlow]:
    """The vRouter's flows owned by capture `capture_id`."""
    return [f for f in lab.flows(compute) if f.capture == capture_id]


@pytest.fixture(scope="module")
def default_analyzer(lab):
    """The default analyzer exists (a first capture launched it) and vm1 knows its peers."""
    lab.stop_all_captures()
    if not any(a["name"] == DEFAULT_ANALYZER for a in lab.http("GET", "/api/analyzers").json()):
        lab.http("DELETE", f"/api/captures/{start(lab, vm='vm1')['id']}")
    lab.shell("vm1", "ping -c 1 -W 1 10.1.1.12; ping -c 1 -W 1 10.1.1.13", check=False)
    return lab


def test_a_killed_recorder_is_restarted_and_its_capture_keeps_recording(default_analyzer, clean_lab,
                                                                         tmp_path):
    """kill -9 of the analyzer's recorder during a capture: the recorder comes back, the API
    and the CLI show the restart and why, the capture stays active and its file holds the
    pings from before and after the kill; a new capture to that analyzer records too."""
    lab = clean_lab
    capture = start(lab, vm="vm1", direction="ingress")
    lab.shell("vm1", "ping -c 3 -i 0.2 10.1.1.12")
    before = settle(lab, capture["id"], 3)
    old = analyzer(lab, DEFAULT_ANALYZER)["recorder"]
    assert old["state"] == "running"
    starts = recorder_starts(lab, DEFAULT_ANALYZER)
    os.kill(old["pid"], signal.SIGKILL)
    health = restarted_recorder(lab, DEFAULT_ANALYZER, old["pid"], starts)
    assert health["restarts"] == old["restarts"] + 1 and health["last_error"] == "killed by SIGKILL"
    lab.shell("vm1", "ping -c 3 -i 0.2 10.1.1.12")
    settle(lab, capture["id"], before + 3)
    assert lab.http("GET", f"/api/captures/{capture['id']}").json()["state"] == "active"
    requests = [seq for _src, _dst, kind, seq in pings(frames(lab, capture["id"], tmp_path)) if kind == 8]
    assert requests == [1, 2, 3, 1, 2, 3]
    listed = lab.cli("analyzer", "list").stdout
    assert re.search(rf"analyzer {DEFAULT_ANALYZER}: .*recorder running \(\d+ restarts\), "
                     rf"last failure: killed by SIGKILL", listed), listed
    assert re.search(rf"analyzer {DEFAULT_ANALYZER}: .*recorder running", lab.cli("status").stdout)
    second = start(lab, vm="vm3", direction="ingress")
    lab.shell("vm3", "ping -c 2 -i 0.2 10.1.1.11")
    settle(lab, second["id"], 2)
    assert len(pings(frames(lab, second["id"], tmp_path))) == 2


def test_a_recorder_that_keeps_dying_fails_its_captures(default_analyzer, clean_lab, page):
    """Killed more often than the supervisor restarts it: the recorder is failed, its capture
    is failed with the reason and its flows removed, in the API, the CLI and the web UI's
    interfaces table, and the analyzer takes no new capture until it is re-created."""
    lab = clean_lab
    created = lab.http("POST", "/api/analyzers", json={"name": FRAGILE_ANALYZER, "compute": "compute2"})
    assert created.status_code == 201, created.text
    try:
        capture = start(lab, vm="vm2", analyzer=FRAGILE_ANALYZER)
        assert capture_flows_of(lab, "compute2", capture["id"])
        pid = None
        for _ in range(MAX_RESTARTS + 1):
            health = lab.wait_for(lambda: (h := analyzer(lab, FRAGILE_ANALYZER)["recorder"])["state"]
                                  == "running" and h["pid"] != pid and h, what="a running recorder")
            pid = health["pid"]
            os.kill(pid, signal.SIGKILL)
        failed = lab.wait_for(lambda: (c := lab.http("GET", f"/api/captures/{capture['id']}").json())
                              ["state"] == "failed" and c, what="the capture to fail")
        reason = (f"the recorder of analyzer '{FRAGILE_ANALYZER}' failed: died {MAX_RESTARTS + 1} "
                  f"times within 60 s; last: killed by SIGKILL")
        assert failed["stop_reason"] == reason
        assert analyzer(lab, FRAGILE_ANALYZER)["recorder"]["state"] == "failed"
        assert capture_flows_of(lab, "compute2", capture["id"]) == []
        shown = lab.cli("capture", "show", str(capture["id"])).stdout
        assert f"capture {capture['id']}: failed" in shown and reason in shown
        assert re.search(rf"analyzer {FRAGILE_ANALYZER}: .*recorder failed \({MAX_RESTARTS} restarts\): "
                         rf"died", lab.cli("analyzer", "list").stdout)
        refused = lab.http("POST", "/api/captures", json={"vm": "vm2", "analyzer": FRAGILE_ANALYZER})
        assert refused.status_code == 409 and "its recorder failed" in refused.json()["error"]
        assert lab.http("GET", "/api/captures", params={"state": "failed"}).json()[0]["id"] == capture["id"]
        page.goto(f"{lab.api_url}/#/vrouters/compute2/interfaces")
        chip = page.locator(".chip-analyzer", has_text=FRAGILE_ANALYZER)
        expect(chip).to_have_text(f"analyzer {FRAGILE_ANALYZER} \u00b7 recorder failed")
        expect(chip).to_have_attribute("title", re.compile(rf"last failure: died {MAX_RESTARTS + 1} times within 60 s"))
    finally:
        lab.stop_all_captures()
        assert lab.http("DELETE", f"/api/analyzers/{FRAGILE_ANALYZER}").status_code == 200


def test_a_capture_stops_at_its_limit_with_the_reason(default_analyzer, clean_lab, tmp_path):
    """A capture with a 20,000-byte limit and more traffic than that: the recorder stops at the
    limit, the controller stops the capture and removes its flows, and the API and the CLI
    say why; the file is a valid pcap no larger than the limit."""
    lab = clean_lab
    capture = start(lab, vm="vm1", limit_bytes=20000)
    assert capture["limit_bytes"] == 20000 and capture["stop_reason"] is None
    lab.shell("vm1", "ping -c 40 -i 0.05 -s 1200 -q 10.1.1.12")
    stopped = lab.wait_for(lambda: (c := lab.http("GET", f"/api/captures/{capture['id']}").json())
                           ["state"] == "stopped" and c, what="the capture to stop at its limit")
    assert stopped["stop_reason"] == "limit reached (20000 bytes)"
    assert 20000 - 1300 < stopped["file_bytes"] <= 20000
    assert capture_flows_of(lab, "compute1", capture["id"]) == []
    shown = lab.cli("capture", "show", str(capture["id"])).stdout
    assert f"capture {capture['id']}: stopped" in shown and "(limit reached (20000 bytes))" in shown
    pcap = tmp_path / "limited.pcap"  # the recorded file itself, which the limit bounds
    assert f"({stopped['file_bytes']} bytes, pcap)" in lab.cli(
        "capture", "pcap", str(capture["id"]), "--classic", "-o", str(pcap)).stdout
    assert len(rdpcap(str(pcap))) == stopped["packets"] > 10
    pcapng = tmp_path / "limited.pcapng"  # the same packets, with their directions
    lab.cli("capture", "pcap", str(capture["id"]), "-o", str(pcapng))
    assert [bytes(f) for f in rdpcap(str(pcapng))] == [bytes(f) for f in rdpcap(str(pcap))]
    refused = lab.http("POST", "/api/captures", json={"vm": "vm1", "limit_bytes": 100})
    assert refused.status_code == 400 and refused.json()["field"] == "limit_bytes"
