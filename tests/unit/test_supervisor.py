"""The recorder supervisor, on real processes: restarts, giving up, and the lab's record."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from mirrorlab.state import LabState, process_alive
from mirrorlab.supervisor import MAX_RESTARTS, RecorderSupervisor


def _wait(condition, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def _recorded(state: LabState) -> dict:
    return next(r for r in state.read().get("recorders", []) if r["name"] == "recorder-an1")


def test_a_killed_process_is_restarted_and_recorded(tmp_path):
    """kill -9: the supervisor starts it again, counts the restart, says why, and the lab's
    record follows the new process (so `down` stops it); stop() ends it and the record."""
    state = LabState(tmp_path)
    supervisor = RecorderSupervisor(
        "an1", lambda log: subprocess.Popen(["sleep", "60"], stdout=log, stderr=log), state,
        delays=(0.01,)).start()
    first = supervisor.health()
    assert first["state"] == "running" and first["restarts"] == 0 and first["last_error"] is None
    os.kill(first["pid"], signal.SIGKILL)
    _wait(lambda: supervisor.health()["restarts"] == 1 and supervisor.health()["state"] == "running")
    second = supervisor.health()
    assert second["pid"] != first["pid"] and second["last_error"] == "killed by SIGKILL"
    assert _recorded(state)["pid"] == second["pid"] and process_alive(_recorded(state))
    supervisor.stop()
    assert "recorders" not in state.read() or state.read()["recorders"] == []
    assert supervisor.health()["state"] == "stopped"
    _wait(lambda: subprocess.run(["kill", "-0", str(second["pid"])], capture_output=True).returncode)


def test_a_process_that_keeps_dying_is_left_failed_with_the_reason(tmp_path):
    """More than MAX_RESTARTS deaths within the window: failed, with the exit and its log."""
    state = LabState(tmp_path)
    supervisor = RecorderSupervisor(
        "an1", lambda log: subprocess.Popen(["sh", "-c", "echo 'no such device' >&2; exit 3"],
                                            stdout=log, stderr=log), state,
        delays=(0.01,)).start()
    _wait(lambda: supervisor.health()["state"] == "failed")
    health = supervisor.health()
    assert health["restarts"] == MAX_RESTARTS and health["pid"] is None
    assert health["last_error"] == (f"died {MAX_RESTARTS + 1} times within 60 s; "
                                    f"last: exited with code 3: no such device")
    assert _recorded(state)["state"] == "failed"
    supervisor.stop()


def test_waiting_for_the_recorder_to_listen(tmp_path):
    """wait_listening returns once the process started last logs that it records (not on an
    earlier process's line), and False at once for one that dies first."""
    state = LabState(tmp_path)
    (tmp_path / "recorder-an1.log").write_text("recorder: recording copies on an1-eth0 (earlier)\n")
    late = RecorderSupervisor("an1", lambda log: subprocess.Popen(
        ["sh", "-c", "sleep 0.3; echo 'recorder: recording copies on an1-eth0'; sleep 60"],
        stdout=log, stderr=log), state).start()
    started = time.monotonic()
    assert late.wait_listening(timeout=5)
    assert time.monotonic() - started >= 0.25
    late.stop()
    dying = RecorderSupervisor("an1", lambda log: subprocess.Popen(["false"], stdout=log, stderr=log),
                               state, delays=(30,)).start()
    started = time.monotonic()
    assert not dying.wait_listening(timeout=5)
    assert time.monotonic() - started < 2
    dying.stop()
