"""The controller's side of capture limits and recorder failures: the limit a capture gets,
the disk floor, and captures stopped (or failed) by what the analyzer's recorder reports."""
from __future__ import annotations

import json
import socketserver
import threading

import pytest

from mirrorlab.controller.errors import Conflict, InvalidRequest
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.control import LabControl
from mirrorlab.recorder import DEFAULT_LIMIT_BYTES, Recorder, limits_file
from mirrorlab.topofile import load
from tests.unit.helpers import ANALYZER_INTERFACE, copy_of
from tests.unit.test_recording import ORIGINAL


class _LabAnswering(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A control socket answering "recorders" with `health`, as the lab process does."""

    daemon_threads = True
    health: dict = {}


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            assert json.loads(line)["op"] == "recorders"
            self.wfile.write((json.dumps({"ok": True, "recorders": self.server.health}) + "\n").encode())


@pytest.fixture
def lab_socket(tmp_path):
    """A control socket path whose lab process reports the recorders' health it is given."""
    server = _LabAnswering(str(tmp_path / "lab.sock"), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_service(tmp_path):
    """A service on a store in tmp_path with the default analyzer (VM an1) in place."""
    def make(socket_name: str = "no.sock", **settings) -> ControllerService:
        topology = load("topologies/default.yaml")
        store = Store(tmp_path / "controller.db")
        if not store.analyzers():
            store.add_analyzer(plan_analyzer(topology, DEFAULT_ANALYZER, None, "compute1"))
        return ControllerService(topology, store, LabControl(tmp_path / socket_name),
                                 tmp_path / "captures", **settings)
    return make


def test_a_capture_gets_the_default_limit_or_its_own(make_service):
    """Without a limit a capture gets the controller's; its own is kept across a restart, and
    the recorder is told both limit and floor before any copy flows."""
    service = make_service(capture_limit_bytes=5 << 20, min_free_bytes=1 << 20)
    default = service.start_capture("compute1", "tap-vm1-0")
    own = service.start_capture("compute1", "tap-vm3-0", limit_bytes=20000)
    assert default.limit_bytes == 5 << 20 and own.limit_bytes == 20000
    assert json.loads(limits_file(service.captures_dir, own.label).read_text()) == {
        "limit_bytes": 20000, "min_free_bytes": 1 << 20}
    assert make_service().capture(own.id).limit_bytes == 20000
    assert make_service().capture_limit_bytes == DEFAULT_LIMIT_BYTES


def test_a_too_small_limit_is_refused(make_service):
    """A limit that cannot hold a few frames is a bad request naming the field."""
    with pytest.raises(InvalidRequest, match="bad limit_bytes 10") as refused:
        make_service().start_capture("compute1", "tap-vm1-0", limit_bytes=10)
    assert refused.value.field == "limit_bytes"


def test_no_capture_starts_below_the_disk_floor(make_service):
    """With less free disk than the floor, a capture is refused with the numbers."""
    service = make_service(min_free_bytes=1 << 62)
    with pytest.raises(Conflict, match="free in .* less than the floor of"):
        service.start_capture("compute1", "tap-vm1-0")
    assert service.active_captures() == []


def test_a_capture_the_recorder_stopped_at_its_limit_is_stopped_with_the_reason(make_service):
    """When the recorder reports a capture's limit, the controller stops it (its flows go)
    and says why, also after a restart; other captures go on."""
    service = make_service()
    limited = service.start_capture("compute1", "tap-vm1-0", limit_bytes=1024)
    other = service.start_capture("compute1", "tap-vm3-0")
    with_both = service.desired_flows_for(service.topology.compute("compute1").dpid)
    recorder = Recorder(service.captures_dir, ANALYZER_INTERFACE)
    for n in range(40):
        recorder.write(copy_of(service.captures_dir, ORIGINAL, limited.label), float(n))
        recorder.write(copy_of(service.captures_dir, ORIGINAL, other.label), float(n))
    recorder.flush()
    assert [c.id for c in service.apply_recorder_reports()] == [limited.id]
    stopped = service.capture(limited.id)
    assert stopped.state == "stopped" and stopped.stop_reason == "limit reached (1024 bytes)"
    assert service.capture(other.id).active
    assert service.desired_flows_for(service.topology.compute("compute1").dpid) < with_both
    assert make_service().capture(limited.id).stop_reason == "limit reached (1024 bytes)"
    assert service.apply_recorder_reports() == []


def test_captures_of_a_failed_recorder_fail_and_new_ones_are_refused(make_service, lab_socket):
    """A recorder the lab gave up on fails its analyzer's active captures, with the reason,
    and the analyzer takes no new capture; while it restarts, captures stay active."""
    service = make_service("lab.sock")
    capture = service.start_capture("compute1", "tap-vm1-0")
    lab_socket.health = {"an1": {"state": "restarting", "restarts": 2,
                                 "last_error": "killed by SIGKILL", "pid": None}}
    assert service.apply_recorder_reports() == []
    assert service.recorders()[DEFAULT_ANALYZER]["state"] == "restarting"
    lab_socket.health = {"an1": {"state": "failed", "restarts": 5, "pid": None,
                                 "last_error": "died 6 times within 60 s; last: killed by SIGKILL"}}
    assert [c.id for c in service.apply_recorder_reports()] == [capture.id]
    failed = service.capture(capture.id)
    assert failed.state == "failed"
    assert failed.stop_reason == (f"the recorder of analyzer '{DEFAULT_ANALYZER}' failed: died 6 "
                                  f"times within 60 s; last: killed by SIGKILL")
    with pytest.raises(Conflict, match="its recorder failed"):
        service.start_capture("compute1", "tap-vm1-0")


def test_recorder_health_is_unknown_when_the_lab_does_not_answer(make_service):
    """Without the lab process, each analyzer's recorder is "unknown", with the reason."""
    health = make_service().recorders()[DEFAULT_ANALYZER]
    assert health["state"] == "unknown" and "does not answer" in health["last_error"]
