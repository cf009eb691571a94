"""Group commit of the datapath's revalidation (`controller.commit.SharedRounds`): requests that
wait at the same time share the rounds watched, and none is released by a round that may have
begun before it came. Each round here ends when the test says so, so the order of events is
the test's, never the clock's."""
from __future__ import annotations

import threading
import time

import pytest

from mirrorlab.controller.commit import SharedRounds

HANG_GUARD = 10.0  # only a guard against a test hanging on a broken implementation


class HeldRounds:
    """A `watch_round` whose rounds end (or fail) only when the test says so."""

    def __init__(self):
        self.started = 0
        self.condition = threading.Condition()
        self.outcomes: dict[int, Exception | None] = {}  # round number -> how it ends

    def __call__(self) -> None:
        with self.condition:
            self.started += 1
            number = self.started
            self.condition.notify_all()
            assert self.condition.wait_for(lambda: number in self.outcomes, HANG_GUARD)
            outcome = self.outcomes[number]
        if outcome is not None:
            raise outcome

    def end(self, number: int, failure: Exception | None = None) -> None:
        """Let round `number` end, or fail with `failure`."""
        with self.condition:
            self.outcomes[number] = failure
            self.condition.notify_all()

    def wait_started(self, count: int) -> None:
        """Wait until `count` rounds have been watched (begun)."""
        with self.condition:
            assert self.condition.wait_for(lambda: self.started >= count, HANG_GUARD), \
                f"round {count} was never watched"


class Waiter(threading.Thread):
    """A request calling `rounds.wait()`; `outcome` is "released" or what it raised."""

    def __init__(self, rounds: SharedRounds):
        super().__init__(daemon=True)
        self.rounds = rounds
        self.outcome: str | Exception | None = None

    def run(self) -> None:
        try:
            self.rounds.wait()
            self.outcome = "released"
        except Exception as err:
            self.outcome = err

    def result(self):
        self.join(HANG_GUARD)
        assert not self.is_alive(), "the waiter was never released"
        return self.outcome


def waiting(rounds: SharedRounds, count: int) -> None:
    """Wait until `count` threads are inside `rounds.wait()` (a white-box look: the only way
    to know a thread has joined, not just that it is about to)."""
    deadline = time.monotonic() + HANG_GUARD
    while sum(rounds._needs.values()) != count:
        assert time.monotonic() < deadline, f"never {count} waiters"
        time.sleep(0.001)


def test_a_lone_request_waits_for_two_rounds_watched_after_it_came():
    """The first round may have begun before the request; the second began after the first
    ended: it is released when the second ends, and not before."""
    held = HeldRounds()
    rounds = SharedRounds(held)
    waiter = Waiter(rounds)
    waiter.start()
    held.wait_started(1)
    held.end(1)
    held.wait_started(2)
    assert waiter.outcome is None
    held.end(2)
    assert waiter.result() == "released"
    assert held.started == 2


def test_requests_arriving_during_a_round_share_the_next_rounds():
    """Three requests arrive while the first's first round is watched: they all join the next
    round, so four requests cost three rounds, not eight; each is released by the second round
    watched after it came."""
    held = HeldRounds()
    rounds = SharedRounds(held)
    first = Waiter(rounds)
    first.start()
    held.wait_started(1)
    later = [Waiter(rounds) for _ in range(3)]
    for waiter in later:
        waiter.start()
    waiting(rounds, 4)
    held.end(1)
    held.wait_started(2)
    held.end(2)
    assert first.result() == "released"
    assert [w.outcome for w in later] == [None, None, None]  # round 2 may have begun before them
    held.wait_started(3)
    held.end(3)
    assert [w.result() for w in later] == ["released"] * 3
    assert held.started == 3


def test_a_failed_round_fails_only_the_requests_that_needed_it():
    """Round 1 fails: the request that needed it gets the failure at once; one that came
    during round 1 needs rounds 2 and 3 only, and is released when they end."""
    held = HeldRounds()
    rounds = SharedRounds(held)
    early = Waiter(rounds)
    early.start()
    held.wait_started(1)
    late = Waiter(rounds)
    late.start()
    waiting(rounds, 2)
    failure = RuntimeError("the datapath did not revalidate")
    held.end(1, failure)
    assert early.result() is failure
    held.wait_started(2)
    held.end(2)
    held.wait_started(3)
    held.end(3)
    assert late.result() == "released"


def test_a_failure_is_not_kept_for_requests_that_come_later():
    """After a failed round, a new request is served by new rounds (whether the watcher had
    gone on to the next round for nobody or not), and released when they end."""
    held = HeldRounds()
    rounds = SharedRounds(held)
    failed = Waiter(rounds)
    failed.start()
    held.wait_started(1)
    held.end(1, RuntimeError("no"))
    assert isinstance(failed.result(), RuntimeError)
    again = Waiter(rounds)
    again.start()
    waiting(rounds, 1)
    deadline, ended = time.monotonic() + HANG_GUARD, 1
    while again.is_alive():  # end each round the watcher starts, until `again` is released
        assert time.monotonic() < deadline, "the waiter was never released"
        if held.started > ended:
            ended += 1
            held.end(ended)
        time.sleep(0.001)
    assert again.result() == "released"


def test_rounds_are_watched_one_at_a_time():
    """However many requests wait, one round is watched at a time (the watcher never runs
    twice at once), and none costs more than its own two rounds."""
    active, most, calls = [0], [0], [0]
    lock = threading.Lock()

    def watch_round():
        with lock:
            active[0] += 1
            calls[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.001)  # room for a second watcher to start, if the code allowed one
        with lock:
            active[0] -= 1

    rounds = SharedRounds(watch_round)
    waiters = [Waiter(rounds) for _ in range(20)]
    for waiter in waiters:
        waiter.start()
    assert [w.result() for w in waiters] == ["released"] * 20
    assert most[0] == 1
    assert 2 <= calls[0] <= 40


@pytest.mark.parametrize("failing_round", [1, 2])
def test_either_needed_round_failing_fails_the_request(failing_round):
    """A lone request needs both rounds: a failure of either reaches it."""
    held = HeldRounds()
    rounds = SharedRounds(held)
    waiter = Waiter(rounds)
    waiter.start()
    failure = RuntimeError(f"round {failing_round} failed")
    for number in range(1, failing_round + 1):
        held.wait_started(number)
        held.end(number, failure if number == failing_round else None)
    assert waiter.result() is failure
