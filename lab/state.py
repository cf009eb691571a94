"""What a running lab has created, recorded on disk so that `down` removes exactly that, even
after the lab process crashed.

The state directory (default /run/mirrorlab, or $MIRRORLAB_STATE_DIR) holds:
  lab.json        settings, the lab's network namespace and the processes the lab started
  topology.yaml   the validated topology every process of the lab loads (a copy made at `up`)
  progress.log    bring-up progress, read by `mirrorlab up`
  lab.sock        the lab process's control socket (analyzer VMs are added through it)
  ovs/            the lab's own Open vSwitch: database, sockets, logs, and openflow.sock, the
                  controller's OpenFlow socket that the vRouters call (see `lab.sandbox`)
  controller.db   the controller's capture store
  captures/       the pcap files analyzers recorded (label-N.pcap), each capture's limits
                  (label-N.limits.json) and why its recorder stopped it (label-N.stopped.json)
  *.log           process logs (recorder-VM.log: an analyzer's recorder, across restarts)
The directory is its owner's alone (0700) and so are the files in it (0600: the lab's processes
run with umask 077): pcaps hold guests' traffic, lab.json may hold the API token.
Processes are recorded with their start time, so a recycled PID is never killed by mistake.
Bridges and links need no record: they live in the lab's namespace and go with it.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

DEFAULT_STATE_DIR = "/run/mirrorlab"


def state_dir() -> Path:
    """The state directory in use."""
    return Path(os.environ.get("MIRRORLAB_STATE_DIR", DEFAULT_STATE_DIR))


def private_file(path: Path, mode: str = "a"):
    """Open `path` for writing ("a" appends, "w" truncates), creating it readable and writable
    by its owner only (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if it is gone (a
    zombie, killed but not yet reaped by its parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(record: dict | None) -> bool:
    """Whether the recorded process {"pid", "start"} still runs (the same process, not a reuse)."""
    return bool(record) and process_start_time(record["pid"]) == record["start"]


def process_record(pid: int) -> dict:
    """A record identifying a running process."""
    return {"pid": pid, "start": process_start_time(pid)}


def stop_process(record: dict | None, timeout: float = 10.0, sig=signal.SIGTERM) -> None:
    """Stop a recorded process: `sig`, then SIGKILL after `timeout` seconds."""
    if not process_alive(record):
        return
    try:
        os.kill(record["pid"], sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(record):
            return
        time.sleep(0.05)
    try:
        os.kill(record["pid"], signal.SIGKILL)
    except ProcessLookupError:
        pass
    while process_alive(record):
        time.sleep(0.02)


class LabState:
    """The record of one lab, in `directory`."""

    def __init__(self, directory: Path | None = None):
        self.dir = Path(directory) if directory else state_dir()

    @property
    def record_path(self) -> Path:
        return self.dir / "lab.json"

    @property
    def socket_path(self) -> Path:
        return self.dir / "lab.sock"

    @property
    def topology_path(self) -> Path:
        return self.dir / "topology.yaml"

    @property
    def progress_path(self) -> Path:
        return self.dir / "progress.log"

    @property
    def database_path(self) -> Path:
        return self.dir / "controller.db"

    @property
    def captures_dir(self) -> Path:
        return self.dir / "captures"

    def ensure_dir(self) -> None:
        """Create the state directory if need be; either way only its owner may enter it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)

    def exists(self) -> bool:
        """Whether a lab is recorded here."""
        return self.record_path.exists()

    def read(self) -> dict:
        """The record (empty if there is none)."""
        try:
            return json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}

    @contextmanager
    def update(self):
        """Edit the record under a lock: `with state.update() as record: record[...] = ...`."""
        self.ensure_dir()
        with private_file(self.dir / "lab.lock") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = self.read()
            yield record
            tmp = self.record_path.with_suffix(".tmp")
            with private_file(tmp, "w") as out:
                out.write(json.dumps(record, indent=2, sort_keys=True))
            tmp.replace(self.record_path)

    def add(self, kind: str, *items) -> None:
        """Append `items` to the list `kind` (hosts, switches, recorders), in one update (the
        record is rewritten whole each time: a lab of 1000 VMs recorded host by host spent
        seconds on it)."""
        with self.update() as record:
            recorded = record.setdefault(kind, [])
            for item in items:
                if item not in recorded:
                    recorded.append(item)

    def forget(self, kind: str, name: str) -> list[dict]:
        """Drop the records called `name` from the list `kind` (hosts, recorders); return them."""
        with self.update() as record:
            forgotten = [i for i in record.get(kind, []) if i.get("name") == name]
            record[kind] = [i for i in record.get(kind, []) if i.get("name") != name]
        return forgotten

    def progress(self, message: str) -> None:
        """Append a line to the bring-up progress log."""
        with private_file(self.progress_path) as log:
            log.write(message + "\n")

    def sweep(self) -> list[str]:
        """Stop every recorded process that still runs; return what was stopped. Only what
        this lab recorded is touched (its namespace is removed by `lab.sandbox`)."""
        record = self.read()
        removed = []
        for kind in ("lab_process", "controller_process"):
            if process_alive(record.get(kind)):
                stop_process(record[kind])
                removed.append(f"process {record[kind]['pid']} ({kind})")
        for host in record.get("hosts", []) + record.get("switches", []) + record.get("recorders", []):
            if process_alive(host):
                stop_process(host, timeout=2, sig=signal.SIGKILL)
                removed.append(f"process {host['pid']} ({host.get('name', 'host')})")
        return removed

    def clear(self, keep_logs: bool = False) -> None:
        """Delete the state directory's contents (but the process logs, with `keep_logs`)."""
        if not self.dir.exists():
            return
        for path in sorted(self.dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if keep_logs and path.suffix == ".log" and path.parent == self.dir:
                continue
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
