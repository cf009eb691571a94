"""What of a running lab has died: read from the lab's record, for `mirrorlab status` and the
controller's API (which refuses changes to a lab that is not whole)."""
from __future__ import annotations

import threading
import time
from typing import Callable

from mirrorlab.sandbox import Sandbox
from mirrorlab.supervisor import ENCAPSULATOR
from mirrorlab.state import LabState, process_alive


def lab_problems(state: LabState) -> list[str]:
    """One line for each part of the lab recorded in `state` that is not running (the lab
    process, its Open vSwitch, a VM, the mirror encapsulator); empty when the lab is whole."""
    record = state.read()
    if not record.get("lab_process"):
        return ["the lab is not up"]
    problems = []
    if not process_alive(record["lab_process"]):
        problems.append(f"the lab process (pid {record['lab_process']['pid']}) is not running: "
                        f"the VMs are gone; run `mirrorlab down`, then `mirrorlab up`")
    if record.get("netns") and Sandbox(state).vswitchd_pid() is None:
        problems.append("the lab's Open vSwitch (ovs-vswitchd) is not running")
    for host in record.get("hosts", []):
        if not process_alive(host):
            problems.append(f"vm {host['name']} (pid {host['pid']}) is not running")
    for supervised in record.get("recorders", []):
        if supervised.get("name") == ENCAPSULATOR and supervised.get("state") == "failed":
            problems.append(f"the mirror encapsulator failed ({supervised.get('last_error')}): "
                            f"no copy reaches an analyzer; run `mirrorlab down`, then `mirrorlab up`")
    return problems


class RecentProblems:
    """`lab_problems` of the lab in `state`, read again only once the last reading is
    `max_age` seconds old. The controller asks before every change and every active capture
    it shows, hundreds of times a second under load, and each reading opens the lab's record
    and a file per process: a failure still shows within `max_age`."""

    def __init__(self, state: LabState, max_age: float = 0.2,
                 clock: Callable[[], float] = time.monotonic):
        self.state = state
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._problems: list[str] = []

    def __call__(self) -> list[str]:
        """The problems as last read, at most `max_age` seconds ago."""
        with self._lock:
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.max_age:
                self._problems, self._read_at = lab_problems(self.state), now
            return list(self._problems)
