"""Watching the lab's ovs-vswitchd end its revalidation rounds (`sandbox.RevalidationWatch`),
against a stand-in for its control socket that answers JSON-RPC as Open vSwitch's unixctl
server does: the request on one connection kept open, the round started while it waits, and
every way the answer can fail."""
from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from mirrorlab.sandbox import RevalidationWatch, Sandbox, SandboxError
from mirrorlab.state import LabState

HANG_GUARD = 10.0


class FakeControlSocket:
    """ovs-vswitchd's control socket `ovs-vswitchd.PID.ctl` in `ovs_dir`: each request is
    answered by `answer(request)` (a dict to send, or None to stay silent)."""

    def __init__(self, ovs_dir, pid: int, answer):
        self.answer = answer
        self.requests: list[dict] = []
        self.connections = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(ovs_dir / f"ovs-vswitchd.{pid}.ctl"))
        self.server.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection) -> None:
        with connection:
            received = b""
            while chunk := connection.recv(4096):
                received += chunk
                try:
                    request = json.loads(received)
                except ValueError:
                    continue
                received = b""
                self.requests.append(request)
                reply = self.answer(request)
                if reply is not None:
                    # Open vSwitch sends its answer in pieces when it likes: so do we.
                    data = json.dumps(reply).encode()
                    connection.sendall(data[:5])
                    connection.sendall(data[5:])

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def lab_ovs(tmp_path):
    """A lab state directory whose ovs-vswitchd is this very process (a live PID)."""
    state = LabState(tmp_path)
    ovs_dir = Sandbox(state).ovs_dir
    ovs_dir.mkdir()
    (ovs_dir / "ovs-vswitchd.pid").write_text(f"{os.getpid()}\n")
    return state, ovs_dir


def round_ended(request) -> dict:
    return {"id": request["id"], "result": "", "error": None}


def test_the_round_is_started_while_the_request_waits_and_one_connection_serves_every_round(lab_ovs):
    """`revalidator/wait` goes out first; `start_round` is called while it waits (this fake
    answers only once the round was started, so a watch that started it afterwards would
    hang); three rounds use one connection."""
    state, ovs_dir = lab_ovs
    started = threading.Event()

    def answer(request):
        assert started.wait(HANG_GUARD), "the round was not started while the request waited"
        started.clear()
        return round_ended(request)

    control = FakeControlSocket(ovs_dir, os.getpid(), answer)
    watch = RevalidationWatch(Sandbox(state), timeout=HANG_GUARD)
    for _ in range(3):
        watch.next_round_end(started.set)
    assert [(r["method"], r["params"]) for r in control.requests] == [("revalidator/wait", [])] * 3
    assert len({r["id"] for r in control.requests}) == 3
    assert control.connections == 1


def test_an_error_answer_is_a_sandbox_error_naming_it(lab_ovs):
    state, ovs_dir = lab_ovs
    FakeControlSocket(ovs_dir, os.getpid(),
                      lambda r: {"id": r["id"], "result": None, "error": "can't wait on multiple udpifs."})
    with pytest.raises(SandboxError, match="did not revalidate its datapath flows: can't wait on "
                                           "multiple udpifs"):
        RevalidationWatch(Sandbox(state), timeout=HANG_GUARD).next_round_end()


def test_no_answer_in_time_fails_and_the_next_round_gets_a_new_connection(lab_ovs):
    """Revalidators that never finish a round (paused): the watch gives up after its timeout
    with a SandboxError saying so; the unanswered connection is dropped, so a late answer
    cannot pass for the next round's."""
    state, ovs_dir = lab_ovs
    silent = [True]
    control = FakeControlSocket(ovs_dir, os.getpid(), lambda r: None if silent[0] else round_ended(r))
    watch = RevalidationWatch(Sandbox(state), timeout=0.2)
    with pytest.raises(SandboxError, match="did not revalidate its datapath flows within 0.2 s"):
        watch.next_round_end()
    silent[0] = False
    watch.next_round_end()
    assert control.connections == 2


def test_a_restarted_ovs_vswitchd_is_reached_on_its_new_socket(lab_ovs):
    """Its monitor restarts ovs-vswitchd with a new PID and so a new control socket: the
    watch follows the PID file."""
    state, ovs_dir = lab_ovs
    first = FakeControlSocket(ovs_dir, os.getpid(), round_ended)
    watch = RevalidationWatch(Sandbox(state), timeout=HANG_GUARD)
    watch.next_round_end()
    first.close()
    restarted = os.getppid()  # another live process stands for the restarted ovs-vswitchd
    second = FakeControlSocket(ovs_dir, restarted, round_ended)
    (ovs_dir / "ovs-vswitchd.pid").write_text(f"{restarted}\n")
    watch.next_round_end()
    assert (len(first.requests), len(second.requests)) == (1, 1)


def test_no_running_ovs_vswitchd_is_a_sandbox_error(lab_ovs):
    state, ovs_dir = lab_ovs
    (ovs_dir / "ovs-vswitchd.pid").unlink()
    with pytest.raises(SandboxError, match=r"ovs-vswitchd\) is not running"):
        RevalidationWatch(Sandbox(state)).next_round_end()
