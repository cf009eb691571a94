"""The lab's state directory is its owner's alone (0700), and so is every file the lab writes
there (0600): the record (which may hold the API token), the logs, and what the lab's
processes write (the store, pcaps), as they run with umask 077."""
from __future__ import annotations

import json
import sys
import os
import stat
import time

import pytest

from mirrorlab.driver import spawn
from mirrorlab.state import LabState, process_alive


def mode(path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def permissive_umask():
    """A umask that lets others read new files (022, the usual one), restored after."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_state_directory_and_record_are_private(tmp_path):
    """A new state directory is 0700 (an existing 0755 one is tightened); the record, its lock
    and the progress log are 0600."""
    state = LabState(tmp_path / "lab")
    with state.update() as record:
        record["api_token"] = "secret"
    state.progress("step")
    assert mode(state.dir) == 0o700
    assert {p.name: mode(p) for p in state.dir.iterdir()} == {
        "lab.json": 0o600, "lab.lock": 0o600, "progress.log": 0o600}
    state.dir.chmod(0o755)
    state.ensure_dir()
    assert mode(state.dir) == 0o700


def test_lab_processes_write_private_files(tmp_path):
    """A process the CLI spawns logs to a 0600 file and creates its own files 0600."""
    state = LabState(tmp_path / "lab")
    state.ensure_dir()
    source = tmp_path / "in.json"
    source.write_text(json.dumps({"a": 1}))
    written = state.dir / "out.json"
    process = spawn(state, [sys.executable, "-m", "json.tool", str(source), str(written)],
                     "tool.log", token="tok")
    deadline = time.monotonic() + 30
    while process_alive(process) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(written.read_text()) == {"a": 1}
    assert mode(written) == 0o600 and mode(state.dir / "tool.log") == 0o600
