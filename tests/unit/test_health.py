"""What of a lab has died, as the controller reads it (`health.RecentProblems`): at most one
reading of the lab's record and processes per interval, and a failure seen once it is over."""
from __future__ import annotations

import os

from mirrorlab.health import RecentProblems
from mirrorlab.state import LabState, process_record


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_problems_are_read_again_once_the_last_reading_is_max_age_old(tmp_path):
    """A lab whose lab process dies between two readings: the death shows at the first
    reading `max_age` after the last one, not before, and not later."""
    state = LabState(tmp_path)
    with state.update() as record:
        record["lab_process"] = process_record(os.getpid())
    clock = Clock()
    problems = RecentProblems(state, max_age=0.2, clock=clock)
    assert problems() == []
    with state.update() as record:
        record["lab_process"] = {"pid": record["lab_process"]["pid"], "start": 1}  # not that process
    clock.now += 0.199
    assert problems() == []
    clock.now += 0.001
    [problem] = problems()
    assert problem.startswith(f"the lab process (pid {os.getpid()}) is not running")


def test_a_caller_cannot_change_what_the_next_one_reads(tmp_path):
    problems = RecentProblems(LabState(tmp_path), clock=Clock())
    problems().append("scribbled")
    assert problems() == ["the lab is not up"]
