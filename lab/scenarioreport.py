"""What a scenario run leaves behind: its outcome, and the Markdown and JUnit XML reports of it.

Pure: the runner (`mirrorlab.runner`) fills a `RunResult`; these functions turn it into text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from mirrorlab.scenario import (
    EXPECTATIONS, Craft, CreateAnalyzer, ExpectAnalyzer, ExpectFlows, ExpectLoss, ExpectPackets,
    ExpectState, Fault, Iperf3, Mark, Ping, PolicyRule, Probe, Scenario, Show, ShowReceived,
    StartCapture, Step, StopCapture, Wait, WritePolicy,
)

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"


@dataclass
class Outcome:
    """What became of one step: `status` (passed, failed, error, skipped), what was seen
    (`detail`), how long it took, and the evidence lines of a `show` step."""

    step: Step
    status: str
    detail: str = ""
    seconds: float = 0.0
    evidence: tuple[str, ...] = ()


@dataclass
class RunResult:
    """A whole run: every step's outcome, the error that stopped it early (bring-up, a fault
    that could not be injected), and the files kept."""

    scenario: Scenario
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    pcaps: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every expectation held and nothing went wrong."""
        return self.error is None and all(o.status in (PASSED, SKIPPED) for o in self.outcomes) \
            and any(isinstance(o.step, EXPECTATIONS) and o.status == PASSED for o in self.outcomes)


def describe(step: Step) -> str:
    """One line saying what `step` does, as the progress lines and reports show it."""
    match step:
        case StartCapture():
            where = f"analyzer {step.of_analyzer}'s own port" if step.of_analyzer else \
                f"{step.vm}-eth{step.index}"
            return (f"capture {step.name}: {where}, {step.direction}, to "
                    f"{step.analyzer or 'the default analyzer'}")
        case StopCapture():
            return f"stop capture {step.capture}"
        case CreateAnalyzer():
            return f"create analyzer {step.name}" + (f" on {step.compute}" if step.compute else "")
        case Ping():
            size = f", {step.size} bytes" if step.size != 56 else ""
            return (f"ping{'6' if step.ipv6 else ''} {step.sender} -> {step.receiver} x{step.count}"
                    f"{size}{' (background)' if step.background else ''}")
        case Iperf3():
            return (f"iperf3 {step.source.vm} -> {step.target} {step.seconds:g}s"
                    f"{' UDP' if step.udp else ''}{' at ' + step.bitrate if step.bitrate else ''}")
        case Probe():
            return f"{step.protocol} probe {step.source.vm} -> {step.target}:{step.port} x{step.count}"
        case Craft():
            return f"scapy from {step.source.vm}: {step.packet} x{step.count}"
        case Fault():
            target = f" {step.target}" if step.target else ""
            extra = "".join(f", {k} {v}" for k, v in (("loss", f"{step.loss}%" if step.loss else None),
                                                       ("rate", step.rate)) if v)
            return f"fault: {step.action}{target}{extra}"
        case Wait():
            if step.capture:
                return f"wait for {step.packets} packets in capture {step.capture}"
            if step.vrouter:
                return f"wait for vRouter {step.vrouter} to be {'' if step.connected else 'dis'}connected"
            return f"wait {step.seconds:g}s"
        case WritePolicy():
            parts = []
            if step.rules is not None:
                parts.append(f"rules {'; '.join(map(describe_rule, step.rules)) or 'none'}")
            if step.order is not None:
                parts.append(f"rules reordered {', '.join(map(str, step.order))}")
            if step.attach:
                parts.append("attached to " + ", ".join(
                    f"{a.network} (sequence {a.sequence[0]}.{a.sequence[1]})" for a in step.attach))
            if step.detach:
                parts.append(f"detached from {', '.join(step.detach)}")
            return f"policy {step.name}: {'; '.join(parts)}"
        case Mark():
            return f"mark {step.name}: frames analyzer {step.analyzer} has received"
        case ExpectAnalyzer():
            span = "".join(f" {word} {mark}" for word, mark in (("since", step.since),
                                                                ("until", step.until)) if mark)
            return (f"expect analyzer {step.analyzer}: {step.count} packets received"
                    f"{' matching ' + repr(step.filter) if step.filter else ''}{span}")
        case ExpectPackets():
            return (f"expect capture {step.capture}: {step.count} packets"
                    f"{' matching ' + repr(step.filter) if step.filter else ''}")
        case ExpectLoss():
            return f"expect {step.traffic}: loss {step.loss}%"
        case ExpectState():
            return f"expect capture {step.capture}: {step.state}"
        case ExpectFlows():
            return f"expect vRouter {step.vrouter}: {step.count} flows of capture {step.capture}"
        case ShowReceived():
            return f"show: {step.title}"
        case Show():
            return f"show: {step.title}"
    raise TypeError(f"not a step: {step!r}")


def describe_rule(rule: PolicyRule) -> str:
    """A policy rule in a few words, as Contrail's UI lists one: `pass icmp blue <> red mirror
    to an1`."""
    def ports(ranges):
        return "" if not ranges else " port " + ",".join(
            str(start) if start == end else f"{start}-{end}" for start, end in ranges)
    return (f"{rule.action} {rule.protocol} {','.join(rule.sources)}{ports(rule.source_ports)} "
            f"{rule.direction} {','.join(rule.destinations)}{ports(rule.destination_ports)}"
            + (f" mirror to {rule.mirror_to}" if rule.mirror_to else ""))


def markdown(result: RunResult) -> str:
    """The run as a Markdown report: what it reproduces, each step and what it saw, the
    evidence, and the pcaps kept."""
    scenario = result.scenario
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [f"# {scenario.title}", "",
             f"Scenario `{scenario.name}` ({scenario.source}): **{verdict}** in {result.seconds:.1f} s, "
             f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(result.started))}.", "",
             f"Topology: {scenario.topology_ref} ({_count(scenario.topology.computes, 'compute node')}, "
             f"{_count(scenario.topology.vms, 'VM')}).", ""]
    if scenario.contrail:
        lines += ["## The Contrail field issue", "", scenario.contrail.strip(), ""]
    if scenario.description:
        lines += [scenario.description.strip(), ""]
    if scenario.question:
        lines += ["## Question", "", scenario.question.strip(), ""]
    if result.error:
        lines += ["## Error", "", f"    {result.error}", ""]
    lines += ["## Steps", "", "| line | step | result | seen | seconds |", "|---|---|---|---|---|"]
    for outcome in result.outcomes:
        lines.append(f"| {outcome.step.line} | {_cell(describe(outcome.step))} | {outcome.status} | "
                     f"{_cell(outcome.detail)} | {outcome.seconds:.1f} |")
    lines.append("")
    for outcome in result.outcomes:
        if outcome.evidence or isinstance(outcome.step, (Show, ShowReceived)):
            lines += [f"## Evidence: {outcome.step.title}", "", "```",
                      *(outcome.evidence or ["(no packets)"]), "```", ""]
    if scenario.answer:
        lines += ["## Answer", "", scenario.answer.strip(), ""]
    if result.pcaps:
        lines += ["## Packet captures", ""] + [f"- `{p.name}`" for p in result.pcaps] + [""]
    return "\n".join(lines)


def _count(items, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def junit(result: RunResult) -> str:
    """The run as JUnit XML: one test suite, one test case per expectation (and one for an
    error that stopped the run), so CI shows each check."""
    scenario = result.scenario
    cases = [o for o in result.outcomes if isinstance(o.step, EXPECTATIONS) or o.status == ERROR]
    failures = sum(o.status == FAILED for o in cases)
    errors = sum(o.status == ERROR for o in cases) + (result.error is not None)
    suite = ElementTree.Element("testsuite", name=f"scenario.{scenario.name}",
                                tests=str(len(cases) + (result.error is not None)),
                                failures=str(failures), errors=str(errors),
                                skipped=str(sum(o.status == SKIPPED for o in cases)),
                                time=f"{result.seconds:.3f}",
                                timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(result.started)))
    suites = ElementTree.Element("testsuites")
    suites.append(suite)
    for outcome in cases:
        case = ElementTree.SubElement(suite, "testcase", classname=f"scenario.{scenario.name}",
                                      name=f"line {outcome.step.line}: {describe(outcome.step)}",
                                      file=scenario.source, line=str(outcome.step.line),
                                      time=f"{outcome.seconds:.3f}")
        if outcome.status in (FAILED, ERROR):
            ElementTree.SubElement(case, "failure" if outcome.status == FAILED else "error",
                                   message=outcome.detail).text = outcome.detail
        elif outcome.status == SKIPPED:
            ElementTree.SubElement(case, "skipped", message=outcome.detail)
    if result.error is not None:
        case = ElementTree.SubElement(suite, "testcase", classname=f"scenario.{scenario.name}",
                                      name="the run", file=scenario.source)
        ElementTree.SubElement(case, "error", message=result.error).text = result.error
    ElementTree.indent(suites)
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            + ElementTree.tostring(suites, encoding="unicode") + "\n")
