"""Which analyzer a one-click capture (the capture screen's) goes to. Pure.

Contrail's Packet Capture mirrors to the default analyzer, "If a mirroring instance is already
launched, the traffic will be redirected to the selected instance". Here: an analyzer instance
someone launched (any but the default) is preferred; of several, the one the latest capture
used, else the first by name. Without one, the default analyzer, launched if it is not running.
"""
from __future__ import annotations

from dataclasses import dataclass

from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, Capture, analyzers
from mirrorlab.topology import Topology

ANALYZER_RULE = ("an analyzer instance launched besides the default one is used; of several, "
                 "the one the latest capture used, else the first by name; without one, the "
                 f"default analyzer {DEFAULT_ANALYZER}, launched on the interface's compute node "
                 "if it is not running")


@dataclass(frozen=True)
class AnalyzerChoice:
    """The analyzer to capture to, whether it runs already, and why it was picked."""

    analyzer: str
    running: bool
    reason: str


def preferred_analyzer(topology: Topology, captures: list[Capture]) -> AnalyzerChoice:
    """The analyzer a capture started with one click goes to, by `ANALYZER_RULE`, given the
    lab's analyzers and every capture so far (active or stopped)."""
    running = analyzers(topology)
    launched = sorted(name for name in running if name != DEFAULT_ANALYZER)
    if not launched:
        if DEFAULT_ANALYZER in running:
            return AnalyzerChoice(DEFAULT_ANALYZER, True, "the default analyzer; no other instance "
                                                          "is running")
        return AnalyzerChoice(DEFAULT_ANALYZER, False, "the default analyzer, launched now; no "
                                                       "analyzer instance is running")
    latest = max((c for c in captures if c.analyzer in launched), key=lambda c: c.id, default=None)
    if latest is not None:
        return AnalyzerChoice(latest.analyzer, True,
                              f"the running instance the latest capture used (#{latest.id})")
    if len(launched) == 1:
        return AnalyzerChoice(launched[0], True, "the analyzer instance already running")
    return AnalyzerChoice(launched[0], True, f"the first by name of the {len(launched)} running "
                                             f"instances; none was used yet")
