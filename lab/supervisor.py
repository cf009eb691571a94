"""Supervision of the analyzers' recorders, in the lab process that owns the analyzer VMs.

A recorder that dies (killed, crashed) is started again after a short pause, and appends to
its capture files (see `lab.recorder`). A recorder that keeps dying (more than MAX_RESTARTS
times within RESTART_WINDOW seconds) is left failed, with the reason; the controller then
fails the captures that use it. Each recorder's process and health are kept in the lab's
record, so `down` stops the current process, and the controller asks for the health over the
control socket.
"""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, TextIO

from mirrorlab.recorder import LISTENING
from mirrorlab.state import LabState, process_record

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
RESTART_DELAYS = (0.2, 0.5, 1.0, 2.0)  # seconds before the 1st, 2nd, 3rd and later restarts
STOP_TIMEOUT = 2.0
LISTEN_TIMEOUT = 10.0
# The name the lab's mirror encapsulator is supervised and recorded under.
ENCAPSULATOR = "mirror-encapsulator"


def _last_line(path: Path) -> str | None:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1].strip() if lines else None


def describe_exit(code: int, log_path: Path) -> str:
    """Why a process ended, from its exit code (negative: the signal) and its log's last line."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    last = _last_line(log_path)
    return f"exited with code {code}" + (f": {last}" if last else "")


class RecorderSupervisor:
    """Keeps the recorder of analyzer VM `vm` running: `spawn(log)` starts it (in the VM) with
    its output going to the open file `log`; `delays` are the pauses before restarts. The lab's
    mirror encapsulator is supervised the same way, under its own `name`."""

    def __init__(self, vm: str, spawn: Callable[[TextIO], subprocess.Popen], state: LabState,
                 delays: tuple[float, ...] = RESTART_DELAYS, name: str | None = None):
        self.vm = vm
        self.name = name or f"recorder-{vm}"
        self.spawn = spawn
        self.delays = delays
        self.state = state
        self.log_path = state.dir / f"{self.name}.log"
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.process: subprocess.Popen | None = None
        self.listening_before = 0  # how often the log said LISTENING before the last spawn
        self.process_record: dict | None = None  # taken while it runs: a dead PID has no start time
        self.status = "starting"
        self.restarts = 0
        self.last_error: str | None = None
        self.deaths: list[float] = []
        self.thread = threading.Thread(target=self._watch, name=f"supervise-{self.name}", daemon=True)

    def start(self) -> "RecorderSupervisor":
        """Start the recorder and watch it; return self."""
        with self.lock:
            self._spawn()
        self.thread.start()
        return self

    def wait_listening(self, timeout: float = LISTEN_TIMEOUT) -> bool:
        """Wait until the recorder started last has bound its socket (it logs LISTENING);
        False if it did not within `timeout` seconds or died first (its health says why)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                process, before = self.process, self.listening_before
            if self._listening_count() > before:
                return True
            if process is None or process.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def _listening_count(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(LISTENING)
        except OSError:
            return 0

    def health(self) -> dict:
        """{"state": running | restarting | failed | stopped, "restarts", "last_error", "pid"}."""
        with self.lock:
            return {"state": self.status, "restarts": self.restarts, "last_error": self.last_error,
                    "pid": self.process.pid if self.process and self.status == "running" else None}

    def stop(self) -> None:
        """Stop supervising, stop the recorder, and forget its record."""
        self.stopping.set()
        with self.lock:
            process = self.process
            self.status = "stopped"
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.thread.is_alive():
            self.thread.join()
        self.state.forget("recorders", self.name)

    def _spawn(self) -> None:
        self.listening_before = self._listening_count()
        with open(self.log_path, "a") as log:
            self.process = self.spawn(log)
        self.process_record = process_record(self.process.pid)
        self.status = "running"
        self._record()

    def _record(self) -> None:
        entry = {"name": self.name, **self.process_record, "state": self.status,
                 "restarts": self.restarts, "last_error": self.last_error}
        with self.state.update() as record:
            others = [r for r in record.get("recorders", []) if r.get("name") != self.name]
            record["recorders"] = others + [entry]

    def _watch(self) -> None:
        while True:
            code = self.process.wait()
            now = time.monotonic()
            with self.lock:
                if self.stopping.is_set():
                    return
                self.last_error = describe_exit(code, self.log_path)
                self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
                if len(self.deaths) > MAX_RESTARTS:
                    self.status = "failed"
                    self.last_error = (f"died {len(self.deaths)} times within {RESTART_WINDOW:.0f} s; "
                                       f"last: {self.last_error}")
                    self._record()
                    return
                self.status = "restarting"
                self._record()
                delay = self.delays[min(len(self.deaths), len(self.delays)) - 1]
            if self.stopping.wait(delay):
                return
            with self.lock:
                if self.stopping.is_set():
                    return
                self.restarts += 1
                self._spawn()
