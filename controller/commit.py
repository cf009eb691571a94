"""Group commit of the datapath's revalidation: one wait serves every request that needs it.

A request that changed flows may answer only once Open vSwitch's datapath forwards by them,
that is once a revalidation round that began after the vRouter confirmed the change has ended
(see `VRouterApp.confirm`). Watching a round end costs the lab's ovs-vswitchd a control request
and the waiter a round; concurrent requests would each pay that, one after another.
`SharedRounds` makes them share: a watcher thread watches one round at a time, for as long as
anyone waits, and releases each waiter at the end of the second round it watched after the
waiter came (the first may have begun earlier; the second began after the first ended). A
request that arrives while a round is being watched joins the next one, so however many
requests wait, each waits about two to three rounds. A waiter is woken only by the rounds it
needs, never by every round that ends.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class _Round:
    """The end of one watched round, as its waiters see it."""

    ended: threading.Event = field(default_factory=threading.Event)
    failure: Exception | None = None


class SharedRounds:
    """Shares the calls of `watch_round` (returns at the end of the datapath's next
    revalidation round; raises if it cannot tell) among every thread in `wait`."""

    def __init__(self, watch_round: Callable[[], None]):
        self._watch_round = watch_round
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)  # the watcher sleeps on it
        self._started = 0           # rounds watched so far, including the one being watched
        self._needs: Counter[int] = Counter()  # the last round each waiter needs -> waiters
        self._rounds: dict[int, _Round] = {}  # rounds waited for, not ended yet
        self._watcher: threading.Thread | None = None

    def wait(self) -> None:
        """Return at the end of a revalidation round that began after this call; raise what
        the watching of a round this needs raised."""
        with self._lock:
            first = self._started + 1  # the first round watched from now on; the next is ours
            needed = [self._rounds.setdefault(n, _Round()) for n in (first, first + 1)]
            self._needs[first + 1] += 1
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="revalidation-rounds",
                                                 daemon=True)
                self._watcher.start()
            self._wanted.notify()
        try:
            for watched in needed:
                watched.ended.wait()
                if watched.failure is not None:
                    raise watched.failure
        finally:
            with self._lock:
                self._needs[first + 1] -= 1
                if not self._needs[first + 1]:
                    del self._needs[first + 1]

    def _watch(self) -> None:
        while True:
            with self._lock:  # rounds are watched while a waiter needs one not watched yet
                while self._started >= max(self._needs, default=0):
                    self._wanted.wait()
                self._started += 1
                number = self._started
            failure = None
            try:
                self._watch_round()
            except Exception as err:  # every waiter that needs this round gets it
                failure = err
            with self._lock:
                watched = self._rounds.pop(number, None)
            if watched is not None:
                watched.failure = failure
                watched.ended.set()
