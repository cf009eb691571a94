"""Group commit of the datapath's revalidation: one wait serves every request that needs it.

A request that changed flows may answer only once Open vSwitch's datapath forwards by them,
that is once a revalidation round that began after the vRouter confirmed the change has ended
(see `VRouterApp.confirm`). Watching a round end costs the lab's ovs-vswitchd a control request
and the waiter up to a revalidation interval; concurrent requests would each pay that, one after
another. `SharedRounds` makes them share: it watches one round end at a time, on behalf of
everyone waiting, and releases each waiter at the end of the second round it watched after the
waiter came (the first may have begun earlier; the second began after the first ended). A
request that arrives while a round is being watched joins the next one, so however many
requests wait, the watching never stops for long and each waits at most about three rounds.

No thread of its own: whoever waits and finds nobody watching watches the next round itself.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Callable


class SharedRounds:
    """Shares the calls of `watch_round` (returns at the end of the datapath's next
    revalidation round; raises if it cannot tell) among every thread in `wait`."""

    def __init__(self, watch_round: Callable[[], None]):
        self._watch_round = watch_round
        self._changed = threading.Condition()
        self._started = 0            # rounds watched so far, including the one being watched
        self._ended = 0              # rounds whose end was seen (they end in order)
        self._watching = False
        self._failures: dict[int, Exception] = {}  # round number -> why it could not be seen
        self._waiting: Counter[int] = Counter()    # first round each waiter needs -> waiters

    def wait(self) -> None:
        """Return at the end of a revalidation round that began after this call; raise what
        the watching of a round this needs raised."""
        with self._changed:
            first = self._started + 1  # the first round watched from now on; the next one is ours
            self._waiting[first] += 1
            try:
                while True:
                    failed = self._failures.get(first) or self._failures.get(first + 1)
                    if failed is not None:
                        raise failed
                    if self._ended >= first + 1:
                        return
                    if self._watching:
                        self._changed.wait()
                    else:
                        self._watch_next()
            finally:
                self._waiting[first] -= 1
                if not self._waiting[first]:
                    del self._waiting[first]
                oldest = min(self._waiting, default=self._started + 1)
                for number in [n for n in self._failures if n < oldest]:
                    del self._failures[number]

    def _watch_next(self) -> None:
        """Watch one round for everyone (called holding `_changed`, released meanwhile)."""
        self._watching = True
        self._started += 1
        number = self._started
        self._changed.release()
        failure = None
        try:
            self._watch_round()
        except Exception as err:  # every waiter that needs this round gets it
            failure = err
        finally:
            self._changed.acquire()
            self._watching = False
            self._ended = number
            if failure is not None:
                self._failures[number] = failure
            self._changed.notify_all()
